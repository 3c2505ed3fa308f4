//! Generated gRPC types, clients and server traits for Flowgate's internal services, compiled from
//! `proto/` at build time. The only crate that contains generated code.

/// `flowgate.compliance.v1`: content scanning.
#[expect(clippy::allow_attributes, reason = "which lints generated code trips depends on the generator version")]
pub mod compliance {
    #![allow(missing_debug_implementations, unreachable_pub, clippy::all, reason = "generated code")]
    tonic::include_proto!("flowgate.compliance.v1");
}

/// `flowgate.policy.v1`: guardrail rule-set evaluation.
#[expect(clippy::allow_attributes, reason = "which lints generated code trips depends on the generator version")]
pub mod policy {
    #![allow(missing_debug_implementations, unreachable_pub, clippy::all, reason = "generated code")]
    tonic::include_proto!("flowgate.policy.v1");
}

/// `flowgate.keys.v1`: virtual-key resolution served by the api-server.
#[expect(clippy::allow_attributes, reason = "which lints generated code trips depends on the generator version")]
pub mod keys {
    #![allow(missing_debug_implementations, unreachable_pub, clippy::all, reason = "generated code")]
    tonic::include_proto!("flowgate.keys.v1");
}
