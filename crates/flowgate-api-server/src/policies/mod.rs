//! `/api/policies`: policy rule sets, validated on write against the schema in
//! `flowgate_contracts::rules` (the one the policy service evaluates) and versioned: every new
//! document bumps `version`. Every write publishes the policy's name on `policies:changed`, so
//! policy services reload it.
//!
//! - `handlers`: the HTTP handlers;
//! - `model`: request and response documents; what is the api-server's own (the policy's name
//!   inside its document, errors under `document.`);
//! - `store`: the SQL.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
