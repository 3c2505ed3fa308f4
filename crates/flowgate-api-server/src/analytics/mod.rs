//! `/api/analytics/spend` and `/api/providers/perf`: spend and provider performance, aggregated
//! over the audit trail (`audit_records`, written by the proxies; only read here).
//!
//! - `handlers`: the HTTP handlers;
//! - `model`: the queries, the reports, the spend totals and the latency percentiles;
//! - `store`: the SQL (sums and counts by the database, latencies read row by row).

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
