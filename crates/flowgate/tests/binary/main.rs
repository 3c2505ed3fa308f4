//! Black-box tests of the `flowgate` binary: modes, configuration, migrations, gRPC, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on setup errors")]

mod audit;
mod gateway;
mod grpc;
mod keys;
mod limits;
mod modes;
mod proxy;
mod shutdown;
