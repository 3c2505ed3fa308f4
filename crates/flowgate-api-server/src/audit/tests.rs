use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flowgate_contracts::audit::AuditRecord;

use super::model::*;
use crate::error::ApiError;
use crate::sql::Sql;

fn filter(params: FilterParams<'_>) -> Result<AuditFilter, ApiError> {
    AuditFilter::parse(params)
}

#[test]
fn status_takes_a_code_or_a_class() {
    assert_eq!(parse_status("429").unwrap(), (429, 429));
    assert_eq!(parse_status("2xx").unwrap(), (200, 299));
    assert_eq!(parse_status("5XX").unwrap(), (500, 599));
    for bad in ["", "6xx", "0xx", "20x", "99", "600", "abc", "1e3", "+200", "12xx", "xx"] {
        let error = parse_status(bad).unwrap_err().to_string();
        assert!(error.starts_with("`status`"), "{bad}: {error}");
    }
}

#[test]
fn times_take_rfc3339_or_unix_millis() {
    assert_eq!(parse_time("from", "1772446500123").unwrap(), 1_772_446_500_123);
    assert_eq!(parse_time("from", "2030-01-01T00:00:00Z").unwrap(), 1_893_456_000_000);
    assert_eq!(parse_time("from", "2030-01-01T01:00:00.5+01:00").unwrap(), 1_893_456_000_500);
    for bad in ["", "yesterday", "-5", "1.5", "99999999999999999999", "253402300800000"] {
        assert!(parse_time("to", bad).unwrap_err().to_string().starts_with("`to`"), "{bad}");
    }
    let error = filter(FilterParams { from: Some("2000"), to: Some("1000"), ..FilterParams::default() });
    assert!(error.unwrap_err().to_string().contains("must not be after"));
}

#[test]
fn filters_become_bound_conditions() {
    let parsed = filter(FilterParams {
        key_id: Some("k1"),
        model: Some("gpt-4o"),
        status: Some("5xx"),
        from: Some("1000"),
        guardrail_action: Some("block"),
        ..FilterParams::default()
    })
    .unwrap();
    let mut sql = Sql::new("SELECT 1 FROM audit_records WHERE 1 = 1");
    parsed.apply(&mut sql);
    assert_eq!(
        sql.as_str(),
        "SELECT 1 FROM audit_records WHERE 1 = 1 AND key_id = $1 AND (model_requested = $2 OR model_used = $3) \
         AND status >= $4 AND status <= $5 AND ts >= $6 AND guardrail_actions LIKE $7 ESCAPE '\\'"
    );
    assert_eq!(action_pattern("prompt_injection"), r#"%"action":"prompt\_injection"%"#);
    for bad in ["BLOCK", "a b", "x%", "\"", ""] {
        let params = FilterParams { guardrail_action: Some(bad), ..FilterParams::default() };
        assert!(filter(params).is_err(), "{bad}");
    }
    assert!(filter(FilterParams { key_id: Some(""), ..FilterParams::default() }).is_err());
}

#[test]
fn cursors_round_trip_and_reject_garbage() {
    let cursor = AuditCursor { ts: 1_772_446_500_123, request_id: "req-1".into() };
    let text = cursor.encode();
    assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
    assert_eq!(AuditCursor::decode(&text).unwrap(), cursor);
    for bad in ["", "!!!", "e30", &URL_SAFE_NO_PAD.encode("[1]"), &URL_SAFE_NO_PAD.encode("[1,\"\"]")] {
        assert!(AuditCursor::decode(bad).is_err(), "{bad}");
    }
}

fn sample() -> AuditRecord {
    AuditRecord {
        request_id: "r1".into(),
        ts: 1_893_456_000_250,
        tenant_id: Some("t".into()),
        key_id: None,
        client_ip: Some("10.0.0.1".into()),
        route: "/v1/chat/completions".into(),
        model_requested: Some("gpt".into()),
        model_used: Some("gpt".into()),
        deployment: Some("d1".into()),
        provider: Some("openai".into()),
        status: 200,
        error_code: None,
        latency_ms: 12.5,
        upstream_latency_ms: None,
        ttft_ms: None,
        prompt_tokens: 3,
        completion_tokens: 4,
        cost_nanos: 1_500_000_000,
        usage_estimated: true,
        cache_hit: true,
        stream: false,
        retries: 0,
        fallbacks: Vec::new(),
        guardrail_actions: vec![serde_json::json!({"guardrail": "pii-redact", "action": "redact", "count": 1})],
        prompt: Some("=SUM(A1), \"quoted\"".into()),
        response: None,
        metadata: [("session_id".to_owned(), "s1".to_owned())].into(),
    }
}

#[test]
fn items_have_friendly_types_and_hide_absent_prompts() {
    let item = serde_json::to_value(AuditItem::from(sample())).unwrap();
    assert_eq!(item["ts"], "2030-01-01T00:00:00.25Z");
    assert_eq!(item["cost_usd"], 1.5);
    assert_eq!(item["cache_hit"], true);
    assert_eq!(item["usage_estimated"], true);
    assert_eq!(item["total_tokens"], 7);
    assert_eq!(item["guardrail_actions"][0]["action"], "redact");
    assert_eq!(item["metadata"], serde_json::json!({"session_id": "s1"}));
    assert!(item.get("response").is_none() && item.get("prompt").is_some());
    let fields: Vec<&String> = item.as_object().unwrap().keys().collect();
    for field in fields {
        assert!(CSV_COLUMNS.contains(&field.as_str()), "{field} is not exported to CSV");
    }
}

#[test]
fn csv_quotes_and_defuses_formulas() {
    let mut out = Vec::new();
    render(ExportFormat::Csv, &AuditItem::from(sample()), &mut out);
    let line = String::from_utf8(out).unwrap();
    assert!(line.starts_with("r1,2030-01-01T00:00:00.25Z,1893456000250,t,,10.0.0.1,"), "{line}");
    assert!(
        line.contains(r#",true,false,0,[],"[{""action"":""redact"",""count"":1,""guardrail"":""pii-redact""}]","#),
        "{line}"
    );
    assert!(line.ends_with(",\"'=SUM(A1), \"\"quoted\"\"\",,\"{\"\"session_id\"\":\"\"s1\"\"}\"\r\n"), "{line}");
    assert_eq!(line.matches(',').count() - 3, CSV_COLUMNS.len() - 1, "{line}");
}
