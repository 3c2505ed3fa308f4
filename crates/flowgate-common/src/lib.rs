//! What every Flowgate service shares: layered settings (defaults < YAML < `FLOWGATE__*` env < the
//! seeds' env names), the shutdown signal, and the HTTP/gRPC server surface with `/health`, `/readyz`
//! and `/metrics`.
//!
//! # Layout
//! - [`auth`]: admin-key checks and the management JSON error shape.
//! - [`aws`]: AWS Signature Version 4 and a minimal S3 client (PUT, GET, HEAD, LIST) over it.
//! - [`budget`]: budget periods (daily, weekly, monthly, total) and their UTC bounds.
//! - [`internal`]: the shared token every internal gRPC call carries, and its check.
//! - [`keys`]: the virtual-key format, checksum and keyed hash.
//! - [`secretbox`]: secrets sealed at rest (ChaCha20-Poly1305 under a key derived from the server
//!   secret).
//! - [`settings`]: the configuration model, its loader and its validation.
//! - [`server`]: the router every service starts from and the graceful `serve` loop.
//! - [`metrics`]: the Prometheus registry shared by a process.
//! - [`shutdown`]: SIGTERM/SIGINT into a `CancellationToken`.
//! - [`tasks`]: background tasks under supervision (panics logged, restarted or shown in `/readyz`).

pub mod auth;
pub mod aws;
pub mod budget;
pub mod internal;
pub mod keys;
pub mod metrics;
pub mod secretbox;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod tasks;

pub use settings::{ConfigError, Settings};
