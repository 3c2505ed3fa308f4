//! `model_info.mode`: an embedding deployment is not used for chat and a chat deployment is not
//! used for embeddings (a 400 in the caller's format naming the model and its mode); other modes
//! are accepted and listed, with no endpoint yet; a model name with deployments of both kinds sends
//! each request to the kind that serves it.

use serde_json::{Value, json};

const CONFIG: &str = "model_list:
  - {model_name: embedder, litellm_params: {model: mock/embed}, model_info: {mode: embedding}}
  - {model_name: talker, litellm_params: {model: mock/chat, mock_response: spoken}, model_info: {mode: chat}}
  - {model_name: drawer, litellm_params: {model: mock/image}, model_info: {mode: image_generation}}
  - {model_name: speaker, litellm_params: {model: mock/tts}, model_info: {mode: audio_speech}}
  - {model_name: both, litellm_params: {model: mock/both-embed}, model_info: {mode: embedding}}
  - {model_name: both, litellm_params: {model: mock/both-chat, mock_response: from-chat}, model_info: {mode: chat}}
  - {model_name: untyped, litellm_params: {model: mock/any, mock_response: anything}}
";

fn embeddings(model: &str) -> Value {
    json!({"model": model, "input": "vectors please"})
}

#[tokio::test]
async fn a_deployment_serves_only_the_endpoints_of_its_mode_and_every_model_is_listed() {
    let app = flowgate_test_utils::spawn_app(CONFIG).await;
    let (_, key) = app.create_key(json!({})).await;

    // Chat Completions to an embedding model.
    let response = app.chat(&key, "embedder", "hi").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["param"], "model");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`embedder`") && message.contains("`embedding`"), "{message}");

    // The same refusal in the Anthropic and Responses formats.
    let anthropic = json!({"model": "embedder", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let response = app.post("/anthropic/v1/messages", &key, &anthropic).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("embedding"), "{body}");
    let response = app.post("/v1/responses", &key, &json!({"model": "embedder", "input": "hi"})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("`embedder`"), "{body}");

    // Embeddings to a chat model.
    let response = app.post("/v1/embeddings", &key, &embeddings("talker")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`talker`") && message.contains("`chat`"), "{message}");

    // Each kind still serves its own endpoint.
    let response = app.post("/v1/embeddings", &key, &embeddings("embedder")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["data"][0]["embedding"].as_array().is_some_and(|v| !v.is_empty()), "{body}");
    let response = app.chat(&key, "talker", "hi").await;
    assert_eq!(response.status(), 200);

    // Modes without an endpoint here: accepted, refused for chat and embeddings alike.
    for (model, mode) in [("drawer", "image_generation"), ("speaker", "audio_speech")] {
        for response in [app.chat(&key, model, "hi").await, app.post("/v1/embeddings", &key, &embeddings(model)).await]
        {
            assert_eq!(response.status(), 400);
            let body: Value = response.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(mode) && message.contains(model), "{message}");
        }
    }

    // A model with deployments of both kinds: each request goes to the one that serves it.
    for _ in 0..5 {
        let response = app.chat(&key, "both", "hi").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "from-chat");
        let response = app.post("/v1/embeddings", &key, &embeddings("both")).await;
        assert_eq!(response.status(), 200);
    }

    // No mode: everything, as before.
    assert_eq!(app.chat(&key, "untyped", "hi").await.status(), 200);
    assert_eq!(app.post("/v1/embeddings", &key, &embeddings("untyped")).await.status(), 200);

    let models: Value = flowgate_test_utils::http_client()
        .get(format!("{}/v1/models", app.proxy()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for model in ["embedder", "talker", "drawer", "speaker", "both", "untyped"] {
        assert!(listed.contains(&model), "{model} is listed: {listed:?}");
    }
}
