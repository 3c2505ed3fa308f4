//! The hourly spend rollups the worker writes and the api-server's spend report reads.

/// The `worker_state` row whose value is the end of the rolled-up hours (unix ms, a whole hour):
/// audit records from it on are not summed in `spend_rollups` yet.
pub const WATERMARK: &str = "rollups.until";

/// The `worker_state` row whose value is the start of the rolled-up hours: records before it
/// (older than the worker's first run, or imported since) are not in `spend_rollups` until the
/// worker has rolled back to them. Reports use rollups only within `[FROM_MARK, WATERMARK)`.
pub const FROM_MARK: &str = "rollups.from";

/// One hour, the rollups' bucket, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
