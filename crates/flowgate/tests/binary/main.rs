//! Black-box tests of the `flowgate` binary: modes, configuration, migrations, gRPC, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on setup errors")]

mod audit;
mod audit_api;
mod cache;
mod compliance;
mod exit_paths;
mod gateway;
mod grpc;
mod guardrails;
mod guardrails_api;
mod keys;
mod limits;
mod modes;
mod policy;
mod proxy;
mod shutdown;
mod tracing;
