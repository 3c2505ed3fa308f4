//! `/v1/embeddings` through the providers with embedding APIs of their own, against the fakes of
//! `providers.rs` (same sockets, same checks: Gemini's key header, Bedrock's SigV4 signature,
//! Vertex AI's minted token), which also check each embedding request's documented shape:
//! Gemini `embedContent` / `batchEmbedContents`, Bedrock `InvokeModel` for Titan Text Embeddings
//! and Cohere Embed, Vertex AI `predict`. Usage reaches the answer and the key's spend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use flowgate_test_utils::TestApp;
use serde_json::{Value, json};

use crate::providers::{
    AWS_KEY_ID, AWS_SECRET, AWS_TOKEN, GEMINI_KEY, Seen, bedrock_error, fake_bedrock, fake_gemini, fake_vertex,
    fixture, gemini_error, json_fixture,
};

fn json_response(body: &Value) -> Response {
    Response::builder().header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

/// Whether `object` has only members named in `known`.
fn only(object: &Value, known: &[&str]) -> Result<(), String> {
    match object.as_object() {
        Some(map) => match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!("Invalid JSON payload received. Unknown name \"{unknown}\"")),
            None => Ok(()),
        },
        None => Err("payload is not an object".to_owned()),
    }
}

/// One Gemini `EmbedContentRequest`: `content.parts[].text`, an optional `model` matching the URL's.
fn gemini_embed_request(request: &Value, model: &str) -> Result<(), String> {
    only(request, &["model", "content", "taskType", "title", "outputDimensionality"])?;
    if request.get("model").is_some_and(|m| m != &json!(format!("models/{model}"))) {
        return Err("model does not match the URL".into());
    }
    let parts = request.pointer("/content/parts").and_then(Value::as_array).ok_or("content.parts is required")?;
    if parts.is_empty() || !parts.iter().all(|p| p["text"].is_string()) {
        return Err("content.parts must hold text".into());
    }
    Ok(())
}

/// The fake Gemini's `embedContent` and `batchEmbedContents` (`path` is `/v1beta/models/{m}:{method}`).
pub(super) fn gemini_embeddings(method: &str, path: &str, request: &Value) -> Response {
    let model = path.trim_start_matches("/v1beta/models/").split(':').next().unwrap_or_default();
    let checked = if method == "embedContent" {
        gemini_embed_request(request, model)
    } else {
        only(request, &["requests"]).and_then(|()| {
            let requests = request["requests"].as_array().ok_or("requests is required")?;
            requests.iter().try_for_each(|r| {
                // In a batch each request names its model.
                if r.get("model").is_none() {
                    return Err("requests[].model is required".to_owned());
                }
                gemini_embed_request(r, model)
            })
        })
    };
    if let Err(message) = checked {
        return gemini_error(StatusCode::BAD_REQUEST, &message, "INVALID_ARGUMENT");
    }
    if method == "embedContent" {
        return json_response(&json_fixture("gemini/embed_content.json"));
    }
    let vectors = json_fixture("gemini/batch_embed.json")["embeddings"].as_array().cloned().unwrap();
    let count = request["requests"].as_array().map_or(0, Vec::len);
    json_response(&json!({"embeddings": vectors.iter().cycle().take(count).collect::<Vec<_>>()}))
}

/// The fake Bedrock's `InvokeModel` for embedding models (the signature is checked by the caller).
pub(super) fn bedrock_invoke(seen: &Seen, path: &str, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", "Malformed input request");
    };
    seen.lock().unwrap().push((path.to_owned(), request.clone()));
    let invalid = |message: &str| bedrock_error(StatusCode::BAD_REQUEST, "ValidationException", message);
    if path.contains("amazon.titan-embed-text") {
        if let Err(message) = only(&request, &["inputText", "dimensions", "normalize", "embeddingTypes"]) {
            return invalid(&message);
        }
        if request["inputText"].as_str().is_none_or(str::is_empty) {
            return invalid("Malformed input request: required key [inputText] not found");
        }
        if request.get("dimensions").is_some_and(|d| ![256, 512, 1024].contains(&d.as_u64().unwrap_or(0))) {
            return invalid("Malformed input request: dimensions must be 256, 512 or 1024");
        }
        return json_response(&json_fixture("bedrock/titan_embed.json"));
    }
    if path.contains("cohere.embed") {
        if let Err(message) = only(&request, &["texts", "input_type", "truncate", "embedding_types", "images"]) {
            return invalid(&message);
        }
        let texts = request["texts"].as_array().cloned().unwrap_or_default();
        if texts.is_empty() || texts.len() > 96 || !texts.iter().all(Value::is_string) {
            return invalid("Malformed input request: texts must be 1 to 96 strings");
        }
        if !matches!(
            request["input_type"].as_str(),
            Some("search_document" | "search_query" | "classification" | "clustering")
        ) {
            return invalid("Malformed input request: input_type is required");
        }
        let mut answer = json_fixture("bedrock/cohere_embed.json");
        let vectors = answer["embeddings"].as_array().cloned().unwrap();
        answer["embeddings"] = json!(vectors.iter().cycle().take(texts.len()).collect::<Vec<_>>());
        answer["texts"] = json!(texts);
        return Response::builder()
            .header("content-type", "application/json")
            .header("x-amzn-bedrock-input-token-count", "7")
            .body(Body::from(answer.to_string()))
            .unwrap();
    }
    invalid("The provided model identifier is invalid.")
}

/// The fake Vertex AI's `predict` for text-embedding models (the token is checked by the caller).
pub(super) fn vertex_predict(request: &Value) -> Response {
    let checked = only(request, &["instances", "parameters"]).and_then(|()| {
        let instances = request["instances"].as_array().filter(|i| !i.is_empty()).ok_or("instances is required")?;
        instances.iter().try_for_each(|instance| {
            only(instance, &["content", "task_type", "title"])?;
            if instance["content"].is_string() { Ok(()) } else { Err("instances[].content is required".to_owned()) }
        })?;
        match request.get("parameters") {
            Some(parameters) => only(parameters, &["autoTruncate", "outputDimensionality"]),
            None => Ok(()),
        }
    });
    if let Err(message) = checked {
        return gemini_error(StatusCode::BAD_REQUEST, &message, "INVALID_ARGUMENT");
    }
    let mut answer = json_fixture("vertex/text_embedding_predict.json");
    let predictions = answer["predictions"].as_array().cloned().unwrap();
    let count = request["instances"].as_array().map_or(0, Vec::len);
    answer["predictions"] = json!(predictions.iter().cycle().take(count).collect::<Vec<_>>());
    json_response(&answer)
}

async fn embed(app: &TestApp, key: &str, model: &str, input: Value) -> (u16, Value) {
    let response = app.post("/v1/embeddings", key, &json!({"model": model, "input": input})).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits until the key's recorded spend is `expected` USD.
async fn spend_reaches(app: &TestApp, key_id: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, report) =
            app.admin(reqwest::Method::GET, &format!("/api/enterprise/vkeys/{key_id}/budget"), None).await;
        let spent = report["spent_usd"].as_f64().unwrap_or(-1.0);
        if (spent - expected).abs() < 1e-12 {
            return;
        }
        assert!(Instant::now() < deadline, "spend {spent} never reached {expected}: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn gemini_embeds_one_input_with_embed_content_and_charges_an_estimate() {
    let seen = Seen::default();
    let base = fake_gemini(seen.clone()).await;
    let app = TestApp::builder(format!(
        "model_list:
  - model_name: gemini-embed
    litellm_params: {{model: gemini/gemini-embedding-001, api_base: '{base}', api_key: {GEMINI_KEY}}}
    model_info: {{mode: embedding}}
"
    ))
    .spawn()
    .await;
    let (id, key) = app.create_key(json!({"budget_usd": 100})).await;
    let (status, answer) = embed(&app, &key, "gemini-embed", json!("sixteen bytes!!!")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 1);
    assert_eq!(answer["data"][0]["embedding"][0], 0.0213);
    assert_eq!(answer["usage"]["prompt_tokens"], 4, "Gemini reports no tokens: 16 bytes are estimated at 4");
    let (path, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(path, "/v1beta/models/gemini-embedding-001:embedContent");
    assert_eq!(request["content"]["parts"][0]["text"], "sixteen bytes!!!");

    let (status, answer) = embed(&app, &key, "gemini-embed", json!(["one", "two", "three"])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 3);
    assert_eq!(answer["usage"]["prompt_tokens"], 4, "each input estimated on its own: 1 + 1 + 2");
    assert_eq!(seen.lock().unwrap().last().unwrap().0, "/v1beta/models/gemini-embedding-001:batchEmbedContents");
    // 4 + 4 estimated tokens at gemini-embedding-001's $0.15 per million.
    spend_reaches(&app, &id, 8.0 * 0.15e-6).await;
}

#[tokio::test]
async fn bedrock_embeds_with_titan_and_cohere_through_signed_invoke_model_calls() {
    let seen = Seen::default();
    let base = fake_bedrock(seen.clone()).await;
    let aws = |model: &str| {
        format!(
            "{{model: bedrock/{model}, aws_bedrock_runtime_endpoint: '{base}', aws_region_name: us-west-2, \
             aws_access_key_id: {AWS_KEY_ID}, aws_secret_access_key: os.environ/AWS_SECRET_ACCESS_KEY, aws_session_token: {AWS_TOKEN}}}"
        )
    };
    let app = TestApp::builder(format!(
        "model_list:
  - {{model_name: titan, litellm_params: {}}}
  - {{model_name: cohere, litellm_params: {}}}
",
        aws("amazon.titan-embed-text-v2:0"),
        aws("cohere.embed-english-v3"),
    ))
    .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    .spawn()
    .await;
    let (id, key) = app.create_key(json!({"budget_usd": 100})).await;

    let response =
        app.post("/v1/embeddings", &key, &json!({"model": "titan", "input": "hello", "dimensions": 512})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"][0]["embedding"], json_fixture("bedrock/titan_embed.json")["embedding"]);
    assert_eq!(answer["usage"]["prompt_tokens"], 6, "Titan's inputTextTokenCount");
    let (path, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert!(path.starts_with("/model/amazon.titan-embed-text-v2") && path.ends_with("/invoke"), "{path}");
    assert_eq!(request, json!({"inputText": "hello", "dimensions": 512}));

    let (status, error) = embed(&app, &key, "titan", json!(["a", "b"])).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("one text per request"), "{error}");

    let (status, answer) = embed(&app, &key, "cohere", json!(["first document", "second document"])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["data"][1]["embedding"][1], 0.0518);
    assert_eq!(answer["usage"]["prompt_tokens"], 7, "the x-amzn-bedrock-input-token-count header");
    let (path, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert!(path.contains("cohere.embed-english-v3"), "{path}");
    assert_eq!(request["input_type"], "search_document");
    // Titan's 6 tokens at $0.02 per million, Cohere's 7 at $0.10.
    spend_reaches(&app, &id, 6.0 * 0.02e-6 + 7.0 * 0.10e-6).await;
}

#[tokio::test]
async fn vertex_ai_embeds_with_predict_under_the_minted_token() {
    let seen = Seen::default();
    let minted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let base = fake_vertex(seen.clone(), minted.clone()).await;
    let mut account = json_fixture("vertex/service_account.json");
    account["token_uri"] = json!(format!("{base}/token"));
    let vertex = |model: &str| {
        format!(
            "{{model: vertex_ai/{model}, vertex_project: flowgate-test, vertex_location: us-central1, \
             vertex_credentials: os.environ/VERTEX_SERVICE_ACCOUNT, api_base: '{base}'}}"
        )
    };
    let app = TestApp::builder(format!(
        "model_list:
  - model_name: vertex-embed
    litellm_params: {}
    model_info: {{mode: embedding, input_cost_per_token: 0.000001}}
  - model_name: vertex-claude
    litellm_params: {}
",
        vertex("text-embedding-005"),
        vertex("claude-3-5-haiku@20241022"),
    ))
    .env("VERTEX_SERVICE_ACCOUNT", &account.to_string())
    .spawn()
    .await;
    let (id, key) = app.create_key(json!({"budget_usd": 100})).await;
    let response =
        app.post("/v1/embeddings", &key, &json!({"model": "vertex-embed", "input": ["a", "b"], "dimensions": 3})).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"][0]["embedding"], json!([0.0311, -0.0125, 0.0447]));
    assert_eq!(answer["data"][1]["index"], 1);
    assert_eq!(answer["usage"]["prompt_tokens"], 9, "statistics.token_count of each prediction");
    let (path, request) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        path,
        "/v1/projects/flowgate-test/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    );
    assert_eq!(request["parameters"]["outputDimensionality"], 3);
    assert_eq!(minted.load(std::sync::atomic::Ordering::SeqCst), 1);
    spend_reaches(&app, &id, 9.0 * 1e-6).await;

    let (status, error) = embed(&app, &key, "vertex-claude", json!("x")).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("embeddings"), "{error}");
}

#[test]
fn the_fixtures_have_the_documented_shapes() {
    // What the fakes serve must stay what the references document.
    assert!(json_fixture("gemini/embed_content.json")["embedding"]["values"].is_array());
    let titan = json_fixture("bedrock/titan_embed.json");
    assert!(titan["embedding"].is_array() && titan["inputTextTokenCount"].is_u64());
    assert!(json_fixture("bedrock/cohere_embed.json")["embeddings"][0].is_array());
    let vertex = json_fixture("vertex/text_embedding_predict.json");
    assert!(vertex["predictions"][0]["embeddings"]["statistics"]["token_count"].is_u64());
    assert!(!fixture("gemini/batch_embed.json").is_empty());
}
