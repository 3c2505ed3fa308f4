//! `/api/alerts`: the budget and key-expiry alerts the worker raised, each with its delivery log
//! (written by the worker, only read here).
//!
//! - `handlers`: the HTTP handler;
//! - `model`: the query and the documents;
//! - `store`: the SQL.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
