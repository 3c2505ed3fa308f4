//! The internal gRPC contracts answer across a real socket.

use flowgate_proto::compliance::ScanRequest;
use flowgate_proto::compliance::compliance_service_client::ComplianceServiceClient;
use flowgate_proto::keys::ResolveKeyRequest;
use flowgate_proto::keys::key_service_client::KeyServiceClient;
use flowgate_proto::policy::policy_service_client::PolicyServiceClient;
use flowgate_proto::policy::{Decision, EvaluateRequest, FindingSummary};
use flowgate_test_utils::{FlowgateProcess, TempDir, base_env, internal_request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn grpc_services_answer_over_the_network() {
    let dir = TempDir::new();
    let process =
        FlowgateProcess::spawn(&["all"], &base_env(dir.path()), &["api-server", "compliance", "policy"]).await;

    let mut compliance = ComplianceServiceClient::connect(process.url("compliance")).await.unwrap();
    let scan = compliance
        .scan(internal_request(ScanRequest {
            text: "write to jane@example.com".into(),
            detectors: vec![],
            tenant_id: String::new(),
            redact: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scan.findings.len(), 1);
    assert_eq!(scan.findings[0].kind, "email");
    assert_eq!(scan.redacted_text, "write to <EMAIL_1>");
    let unknown = compliance
        .scan(internal_request(ScanRequest {
            text: "x".into(),
            detectors: vec!["nope".into()],
            tenant_id: String::new(),
            redact: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);

    let mut policy = PolicyServiceClient::connect(process.url("policy")).await.unwrap();
    let decision = policy
        .evaluate(internal_request(EvaluateRequest {
            stage: "pre_call".into(),
            findings: vec![FindingSummary { kind: "prompt_injection".into(), count: 1, max_score: 0.97 }],
            ..EvaluateRequest::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.decision(), Decision::Deny);
    assert_eq!(decision.matched_rule, "deny-prompt-injection");

    let mut keys = KeyServiceClient::connect(process.url("api-server")).await.unwrap();
    let missing =
        keys.resolve_key(internal_request(ResolveKeyRequest { key_hash: vec![7; 32] })).await.unwrap().into_inner();
    assert!(missing.key.is_none(), "no key has this hash");
    let bad = keys.resolve_key(internal_request(ResolveKeyRequest { key_hash: vec![1; 3] })).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    for service in ["api-server", "compliance", "policy"] {
        let channel = tonic::transport::Endpoint::from_shared(process.url(service)).unwrap().connect().await.unwrap();
        let mut health = HealthClient::new(channel);
        let status = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(status.status, 1, "{service} reports SERVING");
    }
}
