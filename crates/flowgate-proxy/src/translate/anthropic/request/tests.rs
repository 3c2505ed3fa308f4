use serde_json::json;

use super::*;

#[test]
fn openai_conversation_with_tools_becomes_alternating_anthropic_messages() {
    let body = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "stop": "END",
        "temperature": 0.2,
        "stream": true
    });
    let out = openai_to_anthropic(&body, "claude-3-5-haiku").unwrap();
    assert_eq!(out["model"], "claude-3-5-haiku");
    assert_eq!(out["system"], "be brief");
    assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["tool_choice"], json!({"type": "any"}));
    assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "tool results merge into one user turn: {messages:?}");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Rome"}));
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(messages[2]["content"][1]["tool_use_id"], "call_2");
}

#[test]
fn anthropic_conversation_with_tools_becomes_openai_messages() {
    let body = json!({
        "model": "gpt",
        "system": [{"type": "text", "text": "sys"}],
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "snow"}]},
                {"type": "text", "text": "and tomorrow?"}
            ]}
        ],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "stream": true
    });
    let out = anthropic_to_openai(&body, "gpt-4o-mini").unwrap();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages[0], json!({"role": "system", "content": "sys"}));
    assert_eq!(messages[2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "snow"}));
    assert_eq!(messages[4], json!({"role": "user", "content": "and tomorrow?"}));
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["tool_choice"]["function"]["name"], "weather");
}

#[test]
fn malformed_requests_are_bad_requests_naming_the_field() {
    let error = openai_to_anthropic(&json!({"messages": "nope"}), "m").unwrap_err();
    assert!(matches!(error, ProxyError::BadRequest { param: Some(ref p), .. } if p == "messages"));
    let error = openai_to_anthropic(&json!({"messages": [{"role": "wizard", "content": "x"}]}), "m").unwrap_err();
    assert!(error.to_string().contains("wizard"));
    let error = anthropic_to_openai(&json!([1, 2]), "m").unwrap_err();
    assert!(matches!(error, ProxyError::BadRequest { .. }));
}

#[test]
fn a_system_turn_inside_messages_becomes_an_openai_system_message() {
    // Claude Code sends `role: "system"` inside `messages`.
    let body = json!({
        "model": "claude", "max_tokens": 10, "system": "top",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "inline rules"}]},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "later rules"}
        ]
    });
    let out = anthropic_to_openai(&body, "gpt").unwrap();
    assert_eq!(
        out["messages"],
        json!([
            {"role": "system", "content": "top"},
            {"role": "system", "content": "inline rules"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "later rules"}
        ])
    );
}
