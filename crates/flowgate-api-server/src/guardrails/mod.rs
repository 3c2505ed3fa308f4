//! `/api/guardrails`: the guardrail catalog. Built-ins are seeded at start; HTTP guardrails carry
//! a bearer token that is write-only: sealed with [`flowgate_common::secretbox`] before it is
//! stored, never selected back, shown only as `has_bearer_token`. Every write publishes the
//! guardrail's name on `guardrails:changed`.
//!
//! - `handlers`: the HTTP handlers (sealing the token);
//! - `model`: request and response documents and their validation;
//! - `schema`: each built-in kind's `runtime_config` schema, the schema check, and the built-in
//!   guardrails;
//! - `store`: the SQL, including the seed of the built-ins ([`store::seed_builtins`]).

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod schema;
pub(crate) mod store;

#[cfg(test)]
mod tests;
