//! The facts shared by the services, written once: pub/sub channel names, guardrail kinds,
//! stages and the per-key guardrail policy, the policy rule-set schema with its parse and
//! validation, and the audit record with its column list.
//!
//! Service crates never depend on each other; when two of them must agree on a name, a shape or
//! a check, it lives here and both use it. This crate holds data and its validation only: no I/O,
//! no runtime, no database driver.
//!
//! # Layout
//! - [`channels`]: the Redis pub/sub channels between the api-server and the other services.
//! - [`guardrails`]: [`GuardrailKind`], [`GuardrailStage`], [`PII_ENTITIES`] and
//!   [`GuardrailPolicy`] (parse, validation, key-over-tenant resolution, and its typed proto
//!   form in `flowgate.keys.v1`).
//! - [`rules`]: the policy rule-set schema ([`RuleSet`]) the api-server validates on write and
//!   the policy service evaluates.
//! - [`routing`]: the proxies' live deployment snapshots (key prefix, TTL, shape) that
//!   `GET /api/routing` reads, and the provider-key reference prefixes.
//! - [`budgets`]: the budget counters in shared state (key names, lifetime) and their `spend` rows.
//! - [`rollups`]: the hourly spend rollups' watermark, shared by the worker and the spend report.
//! - [`archive`]: the audit archive's layout in object storage and its manifest.
//! - [`audit`]: [`AuditRecord`], one request in the audit trail, and [`AUDIT_COLUMNS`].
//! - [`mcp`]: the tool options of an MCP server registered at run time ([`mcp::McpServerOptions`]);
//!   [`mcp_access`]: who may use which MCP server and tool (the key's and tenant's glob lists).
//! - [`metacache`]: the cache's phases, the semantic entries stream and the stats counters.

pub mod archive;
pub mod audit;
pub mod budgets;
pub mod channels;
pub mod guardrails;
pub mod mcp;
pub mod mcp_access;
pub mod metacache;
pub mod rollups;
pub mod routing;
pub mod rules;

pub use audit::{AUDIT_COLUMNS, AuditRecord};
pub use guardrails::{GuardrailKind, GuardrailPolicy, GuardrailStage, PII_ENTITIES, PolicyError};
pub use rules::{Action, Conditions, Rule, RuleSet, ValidationError};
