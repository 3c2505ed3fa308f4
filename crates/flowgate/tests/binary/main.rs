//! Integration tests: the gateway in process (`flowgate_test_utils::spawn_app`) for what it does,
//! and the real binary (`FlowgateProcess`) for what the process does: modes, configuration,
//! migrations, split services over gRPC, signals and shutdown, logs and traces.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on setup errors")]
#![expect(
    clippy::disallowed_methods,
    reason = "tests spawn helpers (fake upstreams, concurrent clients) and join or abort them"
)]

mod audit;
mod audit_api;
mod cache;
mod compliance;
mod deployment_limits;
mod edge;
mod exit_paths;
mod gateway;
mod grpc;
mod guardrails;
mod guardrails_api;
mod input;
mod internal;
mod keys;
mod limits;
mod litellm_configs;
mod management_access;
mod mariadb;
mod model_modes;
mod modes;
mod policy;
mod portal;
mod provider_embeddings;
mod providers;
mod proxy;
mod responses;
mod routing;
mod semantic_cache;
mod shutdown;
mod sso;
mod tracing;
mod worker;
