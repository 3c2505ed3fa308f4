//! `/api/metacache`: the response cache's stats over every proxy replica, its savings, and its
//! entries (inspect, delete).
//!
//! - `handlers`: the HTTP handlers;
//! - `model`: the stats report, assembled from the shared counters the proxies add to every second
//!   (Redis, or the in-process store in `all` mode), and percentiles from their latency buckets;
//! - `store`: the savings, read from the audit records of hits (SQL), and the entries, read from
//!   the semantic entries stream.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
