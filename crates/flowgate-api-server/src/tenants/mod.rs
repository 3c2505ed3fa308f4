//! Tenants: `/api/enterprise/tenants`. Tenants own keys and may carry a budget, guardrail
//! defaults and the choice to keep (redacted) prompts in the audit trail.
//!
//! - `handlers`: the HTTP handlers;
//! - `model`: request and response documents and their validation;
//! - `store`: the SQL (also the default tenant keys fall back to).

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
