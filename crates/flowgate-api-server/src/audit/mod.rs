//! `/api/audit`: the audit trail the proxies write (one row per request in `audit_records`),
//! queried with filters and keyset paging, or exported whole as CSV or NDJSON.
//!
//! Order is newest first by `(ts, request_id)`, descending. A cursor is the opaque base64url of
//! the last row's `[ts, request_id]`; the next page holds rows strictly after it in that order, so
//! rows inserted while a client pages never shift a page, and no row is returned twice.
//!
//! This module only reads the table.
//!
//! - `archived`: `?archived=true`, records read back from the archive in object storage (written
//!   by the worker after `audit.retention_days`), each object checked against its manifest;
//! - `handlers`: the list and the streamed CSV/NDJSON export;
//! - `model`: filters, cursor and the record as shown (also used by `analytics`);
//! - `store`: the SQL (records are the `flowgate_contracts::AuditRecord` the proxies write).

pub(crate) mod archived;
pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;

#[cfg(test)]
mod tests;
