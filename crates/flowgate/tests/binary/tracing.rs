//! OpenTelemetry: one trace crosses the proxy, the api-server and the compliance service (W3C
//! context propagated over gRPC), exported over OTLP to a collector running in this test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowgate_test_utils::{FlowgateProcess, TempDir, base_env, http_client};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};

/// (service.name, trace id, span name, attributes as "key=value")
type Spans = Arc<Mutex<Vec<(String, Vec<u8>, String, Vec<String>)>>>;

#[derive(Clone, Default)]
struct Collector {
    spans: Spans,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .map(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => format!("{}={s}", a.key),
                            other => format!("{}={other:?}", a.key),
                        })
                        .collect();
                    spans.push((service.clone(), span.trace_id.clone(), span.name.clone(), attributes));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test]
async fn one_trace_spans_proxy_api_server_and_compliance() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let router = tonic::service::Routes::new(TraceServiceServer::new(collector.clone())).into_axum_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = TempDir::new();
    let config = dir.path().join("flowgate.yaml");
    std::fs::write(&config, "model_list:\n  - {model_name: local, litellm_params: {model: mock/local}}\n").unwrap();
    let mut env = base_env(dir.path());
    for (k, v) in [
        ("ADMIN_API_KEY", "trace-admin"),
        ("FLOWGATE__SECURITY__KEY_HASH_SECRET", "trace-secret"),
        ("FLOWGATE_CONFIG", config.to_str().unwrap()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    assert!(FlowgateProcess::command(&["migrate"], &env).output().await.unwrap().status.success());
    let mut api = FlowgateProcess::spawn(&["api-server"], &env, &["api-server"]).await;
    let mut compliance = FlowgateProcess::spawn(&["compliance"], &env, &["compliance"]).await;
    let mut proxy_env = env.clone();
    proxy_env.push(("FLOWGATE__PROXY__API_SERVER_URL".into(), api.url("api-server")));
    proxy_env.push(("FLOWGATE__PROXY__COMPLIANCE_URL".into(), compliance.url("compliance")));
    let mut proxy = FlowgateProcess::spawn(&["proxy"], &proxy_env, &["proxy"]).await;

    let (_, key) = flowgate_test_utils::create_key(
        &api.url("api-server"),
        "trace-admin",
        &json!({"name": "traced", "guardrail_policy": {"mandatory_guardrails": ["pii-redact"]}}),
    )
    .await;
    let mut status = 0;
    for _ in 0..30 {
        // The proxy loads the guardrail catalog the api-server seeded at start.
        let response = http_client()
            .post(format!("{}/v1/chat/completions", proxy.url("proxy")))
            .bearer_auth(&key)
            .json(&json!({"model": "local", "messages": [{"role": "user", "content": "mail jane@example.com"}]}))
            .send()
            .await
            .unwrap();
        status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if body["choices"][0]["message"]["content"].as_str().is_some_and(|t| t.contains("jane@example.com")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    for process in [&mut proxy, &mut compliance, &mut api] {
        process.sigterm();
        assert_eq!(process.wait(Duration::from_secs(20)).await, Some(0));
    }
    let spans = collector.spans.lock().unwrap().clone();
    let services_in = |trace: &Vec<u8>| {
        let mut names: Vec<&str> = spans.iter().filter(|s| &s.1 == trace).map(|s| s.0.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let crossing = spans
        .iter()
        .map(|s| &s.1)
        .find(|trace| {
            let names = services_in(trace);
            names.contains(&"flowgate-proxy")
                && names.contains(&"flowgate-api-server")
                && names.contains(&"flowgate-compliance")
        })
        .unwrap_or_else(|| {
            panic!(
                "no trace spans all three services; saw {:?}",
                spans.iter().map(|s| (&s.0, &s.2)).collect::<Vec<_>>()
            )
        });
    let upstream = spans.iter().find(|s| &s.1 == crossing && s.2 == "upstream").expect("upstream span in the trace");
    assert!(upstream.3.iter().any(|a| a == "gen_ai.request.model=local"), "{:?}", upstream.3);
}
