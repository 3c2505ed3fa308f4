//! The Responses API (`/v1/responses`) end to end: served by the mock provider, by an
//! OpenAI-compatible chat server, by an Anthropic upstream and passed through to a deployment that
//! speaks Responses; keys, allowed models, guardrails (answers and streamed tool arguments
//! included) and the audit trail apply as to chat; the WebSocket probe is answered 426 at once.

use std::time::{Duration, Instant};

use flowgate_db::sqlx::{self, Row};
use flowgate_proxy::mock::MockParams;
use flowgate_test_utils::{http_client, spawn_app};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::gateway::{mock_upstream, sse_events};

const WEATHER: &str = r#"{"type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}"#;

fn weather() -> Value {
    serde_json::from_str(WEATHER).unwrap()
}

async fn config(upstream: &str) -> String {
    format!(
        "model_list:
  - {{model_name: local, litellm_params: {{model: mock/local, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}}}
  - {{model_name: chat-up, litellm_params: {{model: openai/up, api_base: '{upstream}/v1', api_key: k}}}}
  - {{model_name: claude, litellm_params: {{model: anthropic/claude-up, api_base: '{upstream}', api_key: k}}}}
  - {{model_name: resp-up, litellm_params: {{model: openai/resp, api_base: '{upstream}/v1', api_key: k, api: responses}}}}
"
    )
}

/// The events of a streamed Responses answer, as (name, data).
fn parsed(events: &[(Option<String>, String)]) -> Vec<(String, Value)> {
    events.iter().map(|(name, data)| (name.clone().unwrap_or_default(), serde_json::from_str(data).unwrap())).collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().unwrap().iter())
        .filter_map(|part| part["text"].as_str())
        .collect()
}

#[tokio::test]
async fn every_upstream_kind_answers_whole_and_streamed_with_tools() {
    let upstream = mock_upstream(MockParams { chunks: Some(4), ..MockParams::default() }).await;
    let gateway = spawn_app(&config(&upstream).await).await;
    let (_, key) = gateway.create_key(json!({})).await;
    for model in ["local", "chat-up", "claude", "resp-up"] {
        let request =
            json!({"model": model, "instructions": "be brief", "input": "hello responses", "max_output_tokens": 50});
        let response = gateway.post("/v1/responses", &key, &request).await;
        assert_eq!(response.status(), 200, "{model}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "response", "{model}: {body}");
        assert_eq!(body["status"], "completed");
        assert_eq!(output_text(&body), "Mock answer to: hello responses", "{model}");
        assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}: {body}");
        assert!(body["usage"]["output_tokens_details"]["reasoning_tokens"].is_u64(), "{model}: {body}");

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let response = gateway.post("/v1/responses", &key, &streamed).await;
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = parsed(&sse_events(response).await);
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names[..2], ["response.created", "response.in_progress"], "{model}");
        assert_eq!(names.last(), Some(&"response.completed"), "{model}: {names:?}");
        let text: String = events
            .iter()
            .filter(|(name, _)| name == "response.output_text.delta")
            .map(|(_, data)| data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Mock answer to: hello responses", "{model}");
        assert!(names.iter().filter(|n| **n == "response.output_text.delta").count() > 1, "{model}: in pieces");
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(output_text(completed), text);
        assert!(completed["usage"]["total_tokens"].as_u64().unwrap() > 0, "{model}: {completed}");

        // A function tool, whole and streamed: the call, then its output sent back.
        let ask = json!({"model": model, "input": "weather in Paris?", "tools": [weather()]});
        let body: Value = gateway.post("/v1/responses", &key, &ask).await.json().await.unwrap();
        let call = body["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap().clone();
        assert_eq!(call["name"], "get_weather", "{model}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "mock"})
        );
        let mut streamed = ask.clone();
        streamed["stream"] = json!(true);
        let events = parsed(&sse_events(gateway.post("/v1/responses", &key, &streamed).await).await);
        let arguments: String = events
            .iter()
            .filter(|(name, _)| name == "response.function_call_arguments.delta")
            .map(|(_, data)| data["delta"].as_str().unwrap())
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "mock"}), "{model}");
        let done = events.iter().find(|(name, _)| name == "response.function_call_arguments.done").unwrap();
        assert_eq!(done.1["arguments"], arguments.as_str());
        let second = json!({"model": model, "tools": [weather()], "input": [
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        ]});
        let body: Value = gateway.post("/v1/responses", &key, &second).await.json().await.unwrap();
        assert!(output_text(&body).starts_with("Mock answer"), "{model}: {body}");
    }
    for alias in ["/oai/v1/responses", "/cursor/v1/responses"] {
        let response = gateway.post(alias, &key, &json!({"model": "local", "input": "x"})).await;
        assert_eq!(response.status(), 200, "{alias}");
    }
}

#[tokio::test]
async fn what_a_chat_upstream_cannot_do_is_named_and_a_responses_upstream_gets_it_all() {
    let server = MockServer::start().await;
    let answer = json!({"id": "resp_up_1", "object": "response", "created_at": 1, "status": "completed", "model": "resp",
        "output": [{"type": "web_search_call", "id": "ws_1", "status": "completed"},
                   {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}]}],
        "usage": {"input_tokens": 7, "output_tokens": 4, "total_tokens": 11,
                  "output_tokens_details": {"reasoning_tokens": 2}}});
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&server)
        .await;
    let gateway = spawn_app(&config(&server.uri()).await).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let custom = json!({"model": "chat-up", "input": "patch it", "tools": [{"type": "custom", "name": "apply_patch"}]});
    let response = gateway.post("/v1/responses", &key, &custom).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "tools[0]");
    assert!(body["error"]["message"].as_str().unwrap().contains("custom"), "{body}");
    // A hosted tool is left out of a chat model's offer, and the answer names it.
    let hosted = json!({"model": "local", "input": "weather?", "tools": [{"type": "web_search"}], "include": ["web_search_call.action.sources"]});
    let response = gateway.post("/v1/responses", &key, &hosted).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-flowgate-dropped-tools"], "web_search");
    let item = json!({"model": "local", "input": [{"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "x"}]});
    let body: Value = gateway.post("/v1/responses", &key, &item).await.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("custom_tool_call"), "{body}");
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");

    // A deployment that speaks Responses gets the request as sent, model replaced.
    let mut passed = hosted.clone();
    passed["model"] = json!("resp-up");
    let body: Value = gateway.post("/v1/responses", &key, &passed).await.json().await.unwrap();
    assert_eq!(body["id"], "resp_up_1");
    assert_eq!(body["output"][0]["type"], "web_search_call");
    let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(sent["model"], "resp");
    assert_eq!(sent["tools"], json!([{"type": "web_search"}]));
    assert_eq!(sent["include"], json!(["web_search_call.action.sources"]));
    // A chat client of that deployment gets chat, with the reasoning tokens in the details.
    let chat = json!({"model": "resp-up", "messages": [{"role": "user", "content": "weather?"}]});
    let body: Value = gateway.post("/v1/chat/completions", &key, &chat).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "It is sunny.");
    assert_eq!(body["usage"]["completion_tokens_details"]["reasoning_tokens"], 2);
    let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[1].body).unwrap();
    assert_eq!(sent["input"][0]["content"][0], json!({"type": "input_text", "text": "weather?"}));
}

#[tokio::test]
async fn the_websocket_probe_is_answered_426_at_once_and_keys_and_models_are_checked() {
    let gateway = spawn_app(&config("http://127.0.0.1:9").await).await;
    let client = http_client();
    let started = Instant::now();
    let response = client
        .get(format!("{}/v1/responses", gateway.proxy()))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("openai-beta", "responses_websockets=2026-02-04")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "websocket_not_supported");
    let plain = client.get(format!("{}/v1/responses", gateway.proxy())).send().await.unwrap();
    assert_eq!(plain.status(), 405);

    let request = json!({"model": "local", "input": "hi"});
    let response = client.post(format!("{}/v1/responses", gateway.proxy())).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (_, key) = gateway.create_key(json!({"allowed_models": ["claude"]})).await;
    let response = gateway.post("/v1/responses", &key, &request).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
    let response = gateway.post("/v1/responses", &key, &json!({"model": "claude", "input": 5})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["param"], "input");
}

#[tokio::test]
async fn guardrails_cover_the_input_items_the_answer_and_streamed_tool_arguments() {
    const EMAIL: &str = "jane.doe@example.com";
    let upstream = mock_upstream(MockParams { chunks: Some(5), ..MockParams::default() }).await;
    let gateway = spawn_app(&config(&upstream).await).await;
    let (_, key) = gateway
        .create_key(json!({"guardrail_policy": {"mandatory_guardrails": ["pii-redact"],
            "guardrail_config_overrides": {"pii-redact": {"restore_output": false}}}}))
        .await;
    // The mock echoes the prompt: what it answers is what reached it.
    let request = json!({"model": "chat-up", "input": [{"role": "user", "content": [{"type": "input_text", "text": format!("mail {EMAIL}")}]}]});
    let body: Value = gateway.post("/v1/responses", &key, &request).await.json().await.unwrap();
    assert_eq!(output_text(&body), "Mock answer to: mail <EMAIL_1>", "{body}");
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = parsed(&sse_events(gateway.post("/v1/responses", &key, &streamed).await).await);
    for (name, data) in &events {
        assert!(!data.to_string().contains(EMAIL), "{name}: {data}");
    }
    assert_eq!(events.last().unwrap().0, "response.completed");

    // A tool call whose arguments carry an address the model made up: redacted in every event
    // that carries it (deltas, `.done`, the item and the final response).
    let tool = json!({"type": "function", "name": "send", "parameters": {"type": "object",
        "properties": {"to": {"type": "string", "enum": [EMAIL]}}}});
    let ask = json!({"model": "chat-up", "input": "send it", "tools": [tool], "stream": true});
    let events = parsed(&sse_events(gateway.post("/v1/responses", &key, &ask).await).await);
    let arguments: String = events
        .iter()
        .filter(|(name, _)| name == "response.function_call_arguments.delta")
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"to": "<EMAIL_1>"}));
    for (name, data) in &events {
        assert!(!data.to_string().contains(EMAIL), "{name}: {data}");
    }
    let completed = &events.last().unwrap().1;
    assert_eq!(completed["response"]["output"][0]["arguments"], arguments.as_str());
    let mut whole = ask.clone();
    whole["stream"] = json!(false);
    let body: Value = gateway.post("/v1/responses", &key, &whole).await.json().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body["output"][0]["arguments"].as_str().unwrap()).unwrap(),
        json!({"to": "<EMAIL_1>"})
    );
}

#[tokio::test]
async fn the_audit_record_names_the_route_and_counts_the_tokens() {
    let upstream = mock_upstream(MockParams::default()).await;
    let gateway = spawn_app(&config(&upstream).await).await;
    let (_, key) = gateway.create_key(json!({})).await;
    let response =
        gateway.post("/v1/responses", &key, &json!({"model": "local", "input": "count me", "stream": true})).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = response.bytes().await;
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", gateway.data_dir().join("flowgate.db").display());
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row = sqlx::query("SELECT * FROM audit_records WHERE request_id = ?")
            .bind(&request_id)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(Instant::now() < deadline, "no audit record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.get::<String, _>("route"), "/v1/responses");
    assert_eq!(row.get::<i64, _>("status"), 200);
    assert!(row.get::<i64, _>("prompt_tokens") > 0);
    assert!(row.get::<i64, _>("completion_tokens") > 0);
}

#[tokio::test]
async fn stored_responses_are_continued_read_listed_and_deleted_within_their_tenant() {
    let upstream = mock_upstream(MockParams::default()).await;
    let gateway = spawn_app(&config(&upstream).await).await;
    let (status, tenant) = gateway
        .admin(reqwest::Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "keeps", "store_prompts": true})))
        .await;
    assert_eq!(status, 201, "{tenant}");
    let (_, key) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    let (_, same_tenant) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    let (_, other) = gateway.create_key(json!({})).await;

    let first: Value = gateway
        .post("/v1/responses", &key, &json!({"model": "claude", "input": "weather in Paris?", "tools": [weather()]}))
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let call = first["output"][0].clone();
    assert_eq!(call["type"], "function_call", "{first}");
    // Readable at once, by any key of the tenant, by no other.
    let client = http_client();
    let get = |key: String, path: String| {
        let client = client.clone();
        let url = format!("{}{path}", gateway.proxy());
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let fetched = get(same_tenant.clone(), format!("/v1/responses/{id}")).await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.json::<Value>().await.unwrap()["output"][0]["call_id"], call["call_id"]);
    let response = get(other.clone(), format!("/v1/responses/{id}")).await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "response_not_found");

    // The continuation sends only the tool's output; the upstream gets the whole conversation.
    let next = json!({"model": "chat-up", "previous_response_id": id, "stream": true,
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}]});
    let events = parsed(&sse_events(gateway.post("/v1/responses", &key, &next).await).await);
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(output_text(completed), "Mock answer to: weather in Paris?");
    let second = completed["id"].as_str().unwrap().to_owned();
    let items: Value =
        get(key.clone(), format!("/v1/responses/{second}/input_items?order=asc")).await.json().await.unwrap();
    let kinds: Vec<&str> = items["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "function_call", "function_call_output"]);
    let page: Value =
        get(key.clone(), format!("/v1/responses/{second}/input_items?limit=1")).await.json().await.unwrap();
    assert_eq!(page["data"][0]["type"], "function_call_output");
    assert_eq!(page["has_more"], true);

    // Another tenant cannot continue it; after a delete nobody can.
    let response = gateway
        .post("/v1/responses", &other, &json!({"model": "local", "previous_response_id": second, "input": "x"}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["param"], "previous_response_id");
    let deleted =
        client.delete(format!("{}/v1/responses/{second}", gateway.proxy())).bearer_auth(&key).send().await.unwrap();
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"id": second, "object": "response", "deleted": true}));
    assert_eq!(get(key.clone(), format!("/v1/responses/{second}")).await.status(), 404);

    // `store: false`, and tenants that keep no prompts: nothing kept.
    let unstored: Value = gateway
        .post("/v1/responses", &key, &json!({"model": "local", "input": "x", "store": false}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(get(key.clone(), format!("/v1/responses/{}", unstored["id"].as_str().unwrap())).await.status(), 404);
    let theirs: Value =
        gateway.post("/v1/responses", &other, &json!({"model": "local", "input": "x"})).await.json().await.unwrap();
    assert_eq!(get(other.clone(), format!("/v1/responses/{}", theirs["id"].as_str().unwrap())).await.status(), 404);

    // At rest the conversation is sealed: the prompt is nowhere in the database file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let file = std::fs::read(gateway.data_dir().join("flowgate.db")).unwrap();
    assert!(!file.windows(b"weather in Paris".len()).any(|w| w == b"weather in Paris"), "stored in the clear");
}

#[tokio::test]
async fn a_wildcard_deployment_forwards_any_model_name_to_its_provider() {
    let upstream = mock_upstream(MockParams::default()).await;
    let gateway = spawn_app(&format!(
        "model_list:
  - {{model_name: 'anthropic/*', litellm_params: {{model: 'anthropic/*', api_base: '{upstream}', api_key: k}}}}
  - {{model_name: 'claude-*', litellm_params: {{model: 'anthropic/claude-*', api_base: '{upstream}', api_key: k}}}}
  - {{model_name: '*', litellm_params: {{model: 'openai/*', api_base: '{upstream}/v1', api_key: k}}}}
  - {{model_name: exact, litellm_params: {{model: mock/exact}}}}
budgets: {{unpriced: allow}}
"
    ))
    .await;
    let (_, key) = gateway.create_key(json!({})).await;
    for (asked, provider_model) in [
        ("anthropic/claude-opus-4-8", "claude-opus-4-8"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("gpt-anything", "gpt-anything"),
        ("exact", "exact"),
    ] {
        let request = json!({"model": asked, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
        let response = gateway.post("/anthropic/v1/messages", &key, &request).await;
        assert_eq!(response.status(), 200, "{asked}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], provider_model, "{asked}: {body}");
        assert_eq!(body["content"][0]["text"], "Mock answer to: hi");
    }
}

#[tokio::test]
async fn anthropic_token_counts_are_passed_through_or_estimated_in_one_shape() {
    let upstream = mock_upstream(MockParams::default()).await;
    let gateway = spawn_app(&config(&upstream).await).await;
    let (_, key) = gateway.create_key(json!({"allowed_models": ["claude", "local"]})).await;
    let messages = json!([{"role": "user", "content": "count the tokens of this prompt, please"}]);
    let client = http_client();
    let count = |model: &str| {
        let request = client
            .post(format!("{}/anthropic/v1/messages/count_tokens", gateway.proxy()))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-counting-2024-11-01")
            .json(&json!({"model": model, "messages": messages}));
        async move { request.send().await.unwrap() }
    };
    // Anthropic's own count (the mock's is odd), and an estimate for any other model.
    let counted: Value = count("claude").await.json().await.unwrap();
    let anthropic = counted["input_tokens"].as_u64().unwrap();
    assert_eq!(anthropic % 2, 1, "{counted}");
    let estimated: Value = count("local").await.json().await.unwrap();
    assert!(estimated["input_tokens"].as_u64().unwrap() > 0, "{estimated}");
    assert_eq!(estimated.as_object().unwrap().len(), 1);
    let refused = count("chat-up").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.unwrap()["type"], "error");
    // The models listing is Anthropic's shape.
    let models: Value = client
        .get(format!("{}/anthropic/v1/models", gateway.proxy()))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["type"], "model", "{models}");
    assert_eq!(models["has_more"], false);
}

/// A Responses upstream that answers with ids of its own (`resp_{name}_{n}`).
async fn responses_upstream(name: &'static str) -> MockServer {
    let server = MockServer::start().await;
    let count = std::sync::atomic::AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(move |_: &wiremock::Request| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("resp_{name}_{n}"), "object": "response", "created_at": 1, "status": "completed",
                "model": "up", "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": format!("from {name}"), "annotations": []}]}],
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}))
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_continuation_goes_back_to_the_responses_deployment_that_kept_it_while_it_is_there() {
    let (a, b) = (responses_upstream("a").await, responses_upstream("b").await);
    let config = format!(
        "model_list:
  - {{model_name: resp, litellm_params: {{model: openai/up, api_base: '{}/v1', api_key: k, api: responses}}}}
  - {{model_name: resp, litellm_params: {{model: openai/up, api_base: '{}/v1', api_key: k, api: responses}}}}
router_settings: {{num_retries: 1, cooldown_time: 60}}
",
        a.uri(),
        b.uri()
    );
    let gateway = spawn_app(&config).await;
    let (_, tenant) = gateway
        .admin(reqwest::Method::POST, "/api/enterprise/tenants", Some(&json!({"name": "keeps", "store_prompts": true})))
        .await;
    let (_, key) = gateway.create_key(json!({"tenant_id": tenant["id"]})).await;
    let first: Value =
        gateway.post("/v1/responses", &key, &json!({"model": "resp", "input": "hello"})).await.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    let (kept, other) = if id.starts_with("resp_a_") { (&a, &b) } else { (&b, &a) };

    // Every continuation goes to the deployment that answered, as sent: the provider has the
    // conversation, so only the new input travels.
    let mut previous = id.clone();
    for turn in 0..4 {
        let next = json!({"model": "resp", "previous_response_id": previous, "input": format!("turn {turn}")});
        let answer: Value = gateway.post("/v1/responses", &key, &next).await.json().await.unwrap();
        let sent = sent_to(kept).await;
        let last = sent.last().unwrap();
        assert_eq!(last["previous_response_id"], json!(previous), "{last}");
        assert_eq!(last["input"], json!(format!("turn {turn}")), "only the new input: {last}");
        previous = answer["id"].as_str().unwrap().to_owned();
        assert_eq!(previous.get(..7), id.get(..7), "turn {turn} went to the other deployment");
    }
    assert_eq!(sent_to(other).await.len(), 0, "the other deployment was never asked");

    // The kept deployment's credentials are refused (it cools down at once): the continuation is
    // expanded from what the gateway stored and answered by the other deployment.
    kept.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "bad key"}})))
        .mount(kept)
        .await;
    for _ in 0..20 {
        let _ = gateway.post("/v1/responses", &key, &json!({"model": "resp", "input": "x", "store": false})).await;
        if !kept.received_requests().await.unwrap().is_empty() {
            break;
        }
    }
    assert!(!kept.received_requests().await.unwrap().is_empty(), "the kept deployment was tried and cooled down");
    let next = json!({"model": "resp", "previous_response_id": previous, "input": "after the outage"});
    let response = gateway.post("/v1/responses", &key, &next).await;
    assert_eq!(response.status(), 200);
    let sent = sent_to(other).await;
    let last = sent.last().unwrap();
    assert!(last.get("previous_response_id").is_none(), "expanded, not passed on: {last}");
    let texts: Vec<String> = last["input"].as_array().unwrap().iter().map(|item| item.to_string()).collect();
    assert!(
        texts.first().unwrap().contains("hello") && texts.last().unwrap().contains("after the outage"),
        "{texts:?}"
    );
    assert_eq!(texts.len(), 1 + 2 * 5, "the first question, five answers, four turns and the new one");
}

/// The request bodies `server` received, in order.
async fn sent_to(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .collect()
}
