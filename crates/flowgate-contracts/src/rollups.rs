//! The hourly spend rollups the worker writes and the api-server's spend report reads.

/// The `worker_state` row whose value is the rollups' watermark (unix ms, a whole hour): audit
/// records before it are summed in `spend_rollups`, records from it on are not yet.
pub const WATERMARK: &str = "rollups.until";

/// One hour, the rollups' bucket, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
