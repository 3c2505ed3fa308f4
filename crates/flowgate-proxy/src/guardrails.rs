//! The guardrail stage of the proxy: which guardrails apply to a request (key policy, tenant
//! defaults, client request), the pre-call scan and policy decision, post-call checks on JSON
//! answers, and during-call processing of streams with only the look-behind a detector needs.
//!
//! One compliance scan per stage covers every active guardrail (the union of their detectors), so a
//! guarded request pays one gRPC hop per stage; a key with no active guardrail pays nothing.
//! Personal data is replaced by placeholders (`<EMAIL_1>`) numbered across the whole request, and
//! `restore_output` puts the originals back in the answer, also when a placeholder is split
//! across stream chunks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flowgate_common::secretbox::{GUARDRAIL_TOKEN_CONTEXT, SealKey};
use flowgate_db::sqlx::{self, Row};
use flowgate_db::{Database, Notification, SharedState};
use flowgate_proto::compliance::{Finding, ScanRequest};
use flowgate_proto::policy::{Decision, EvaluateRequest, FindingSummary};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::error::ProxyError;
use crate::peers::{CompliancePeer, PolicyPeer};

// The channel on which the api-server announces catalog changes, and the kinds of personal
// data `pii-redact` handles by default: shared facts, defined in `flowgate-contracts`.
use flowgate_contracts::channels::GUARDRAILS_CHANGED as CHANGED_CHANNEL;
use flowgate_contracts::guardrails::PII_ENTITIES as DEFAULT_PII;

/// One catalog entry, as the proxy uses it.
#[derive(Debug, Clone)]
pub(crate) struct Guardrail {
    /// Unique name, e.g. `pii-redact`.
    pub name: String,
    /// `pii`, `secrets`, `prompt_injection`, `blocked_terms` or `http`.
    pub kind: String,
    /// Stages it supports.
    pub stages: Vec<String>,
    /// Configuration (catalog defaults).
    pub config: Value,
    /// Applied to every key that does not forbid it.
    pub default_on: bool,
    /// Let the request through when the guardrail cannot run.
    pub fail_open: bool,
    /// HTTP guardrails: where to POST.
    pub http_url: Option<String>,
    /// HTTP guardrails: timeout.
    pub http_timeout: Duration,
    /// HTTP guardrails: bearer token (opened from its sealed form).
    pub http_token: Option<SecretString>,
}

impl Guardrail {
    /// Whether it runs at `stage` (`pre_call`, `post_call`, `during_call`).
    pub(crate) fn supports(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s == stage)
    }
}

/// The catalog, reloaded from the database when it changes.
#[derive(Clone)]
pub(crate) struct Catalog {
    entries: Arc<ArcSwap<HashMap<String, Arc<Guardrail>>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("entries", &self.entries.load().len()).finish()
    }
}

async fn load(database: &Database, seal: &SealKey) -> Result<HashMap<String, Arc<Guardrail>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, kind, stages, runtime_config, default_on, fail_open, http_url, http_timeout_ms, http_token_sealed FROM guardrails",
    )
    .fetch_all(database.pool())
    .await?;
    let mut entries = HashMap::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let stages: String = row.try_get("stages")?;
        let config: String = row.try_get("runtime_config")?;
        let sealed: Option<Vec<u8>> = row.try_get("http_token_sealed")?;
        let http_token = sealed.and_then(|sealed| match flowgate_common::secretbox::open(seal, &sealed) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::error!(guardrail = %name, %error, "cannot open the guardrail's bearer token");
                None
            }
        });
        let timeout_ms: Option<i64> = row.try_get("http_timeout_ms")?;
        let guardrail = Guardrail {
            kind: row.try_get("kind")?,
            stages: serde_json::from_str(&stages).unwrap_or_default(),
            config: serde_json::from_str(&config).unwrap_or_else(|_| json!({})),
            default_on: row.try_get::<i64, _>("default_on")? != 0,
            fail_open: row.try_get::<i64, _>("fail_open")? != 0,
            http_url: row.try_get("http_url")?,
            http_timeout: Duration::from_millis(u64::try_from(timeout_ms.unwrap_or(5000)).unwrap_or(5000)),
            http_token,
            name: name.clone(),
        };
        entries.insert(name, Arc::new(guardrail));
    }
    Ok(entries)
}

impl Catalog {
    /// Loads the catalog and keeps it fresh: on `guardrails:changed`, after a lost subscription,
    /// and every 30 seconds.
    pub(crate) fn start(database: Database, shared: &SharedState, hasher: &flowgate_common::keys::KeyHasher) -> Self {
        let entries: Arc<ArcSwap<HashMap<String, Arc<Guardrail>>>> = Arc::default();
        let seal = SealKey::from_hasher(hasher, GUARDRAIL_TOKEN_CONTEXT);
        let mut changes = shared.subscribe(CHANGED_CHANNEL);
        let target = entries.clone();
        tokio::spawn(async move {
            loop {
                match load(&database, &seal).await {
                    Ok(loaded) => target.store(Arc::new(loaded)),
                    Err(error) => tracing::warn!(%error, "cannot load the guardrail catalog; keeping the previous one"),
                }
                tokio::select! {
                    message = changes.recv() => {
                        if matches!(message, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return;
                        }
                        let _: Option<Notification> = message.ok();
                    }
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        });
        Self { entries }
    }

    fn get(&self, name: &str) -> Option<Arc<Guardrail>> {
        self.entries.load().get(name).cloned()
    }

    /// Names a key may discover: default-on, mandatory and optional ones, minus forbidden ones.
    pub(crate) fn visible(&self, policy: &GuardrailPolicy) -> Vec<Value> {
        let entries = self.entries.load();
        let mut names: Vec<&String> = entries.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter(|name| !policy.forbidden_guardrails.contains(name))
            .filter_map(|name| {
                let g = entries.get(name)?;
                let mode = if policy.mandatory_guardrails.contains(name) {
                    "mandatory"
                } else if g.default_on {
                    "default"
                } else if policy.optional_guardrails.contains(name) {
                    "optional"
                } else {
                    return None;
                };
                Some(json!({"name": name, "kind": g.kind, "stages": g.stages, "mode": mode}))
            })
            .collect()
    }
}

/// A key's guardrail policy over its tenant's defaults, resolved once when the key is (see
/// `auth::KeyInfo::guardrail_policy`).
pub(crate) use flowgate_contracts::GuardrailPolicy;

/// One guardrail applied to this request, with its effective configuration.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    /// The catalog entry.
    pub guardrail: Arc<Guardrail>,
    /// Catalog config with the key's overrides merged over it.
    pub config: Value,
}

/// What the guardrail stage decided for one request, and what the answer needs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Active guardrails.
    pub active: Vec<Active>,
    /// Rule set for the policy service.
    pub policy_id: Option<String>,
    /// Placeholder → original, for `restore_output`.
    pub restore: Vec<(String, String)>,
    /// Whether originals are put back in the answer.
    pub restore_output: bool,
    /// Audit entries: `{guardrail, action, findings}`.
    pub actions: Vec<Value>,
    /// Model to use instead (policy reroute).
    pub reroute: Option<String>,
}

impl Plan {
    /// True when nothing needs to run.
    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty() && self.policy_id.is_none()
    }

    fn has(&self, stage: &str) -> bool {
        self.active.iter().any(|a| a.guardrail.supports(stage))
    }
}

fn merge(base: &Value, overrides: Option<&Value>) -> Value {
    let mut merged = base.clone();
    if let (Some(target), Some(Value::Object(extra))) = (merged.as_object_mut(), overrides) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// Guardrails asked for by the client: body `guardrails: [...]` and header `x-flowgate-guardrails`.
pub(crate) fn requested(body: &Value, headers: &axum::http::HeaderMap) -> Result<Vec<String>, ProxyError> {
    let mut names = Vec::new();
    match body.get("guardrails") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let name = item.as_str().ok_or_else(|| ProxyError::BadRequest {
                    message: "`guardrails` must be an array of names".into(),
                    param: Some("guardrails".into()),
                })?;
                names.push(name.to_owned());
            }
        }
        Some(_) => {
            return Err(ProxyError::BadRequest {
                message: "`guardrails` must be an array of names".into(),
                param: Some("guardrails".into()),
            });
        }
    }
    if let Some(header) = headers.get("x-flowgate-guardrails").and_then(|v| v.to_str().ok()) {
        names.extend(header.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned));
    }
    Ok(names)
}

/// Decides which guardrails apply: mandatory + default-on + the optional ones asked for. Asking for
/// a forbidden or unknown one is a 400.
pub(crate) fn plan(catalog: &Catalog, policy: &GuardrailPolicy, asked: &[String]) -> Result<Plan, ProxyError> {
    let mut names: Vec<String> = Vec::new();
    for name in asked {
        if policy.forbidden_guardrails.contains(name) {
            return Err(ProxyError::BadRequest {
                message: format!("guardrail `{name}` is not allowed for this key"),
                param: Some("guardrails".into()),
            });
        }
        let known = catalog.get(name).is_some();
        let allowed = policy.optional_guardrails.contains(name)
            || policy.mandatory_guardrails.contains(name)
            || catalog.get(name).is_some_and(|g| g.default_on);
        if !known || !allowed {
            return Err(ProxyError::BadRequest {
                message: format!("guardrail `{name}` is not available for this key; see GET /v1/guardrails"),
                param: Some("guardrails".into()),
            });
        }
        names.push(name.clone());
    }
    names.extend(policy.mandatory_guardrails.iter().cloned());
    for (name, guardrail) in catalog.entries.load().iter() {
        if guardrail.default_on && !policy.forbidden_guardrails.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    names.dedup();
    let mut active = Vec::new();
    for name in names {
        match catalog.get(&name) {
            Some(guardrail) => {
                let config = merge(&guardrail.config, policy.guardrail_config_overrides.get(&name));
                active.push(Active { guardrail, config });
            }
            None => {
                // A mandatory guardrail missing from the catalog cannot run: fail closed.
                return Err(ProxyError::GuardrailUnavailable {
                    message: format!("mandatory guardrail `{name}` is not in the catalog"),
                });
            }
        }
    }
    let restore_output = active
        .iter()
        .filter(|a| a.guardrail.kind == "pii")
        .any(|a| a.config.get("restore_output").and_then(Value::as_bool).unwrap_or(true));
    Ok(Plan { active, policy_id: policy.policy_id.clone(), restore_output, ..Plan::default() })
}

/// Separator between segments in one scan (never part of a finding).
const SEPARATOR: &str = "\n\u{1}\n";

/// Detector names for the active guardrails at `stage`.
fn detectors(plan: &Plan, stage: &str) -> Vec<String> {
    let mut detectors = Vec::new();
    for active in plan.active.iter().filter(|a| a.guardrail.supports(stage)) {
        match active.guardrail.kind.as_str() {
            "pii" => {
                let entities: Vec<String> = active
                    .config
                    .get("entities")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_else(|| DEFAULT_PII.iter().map(|s| (*s).to_owned()).collect());
                detectors.extend(entities);
            }
            "secrets" => detectors.push("secret".to_owned()),
            "prompt_injection" => detectors.push("prompt_injection".to_owned()),
            "blocked_terms" => {
                let terms: Vec<&str> = active
                    .config
                    .get("terms")
                    .and_then(Value::as_array)
                    .map(|t| t.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !terms.is_empty() {
                    detectors.push(format!("blocked_terms:{}", terms.join("|")));
                }
            }
            _ => {}
        }
    }
    detectors.sort();
    detectors.dedup();
    detectors
}

/// The guardrail stage's view of the services it calls.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    /// Compliance scanning.
    pub compliance: CompliancePeer,
    /// Policy evaluation.
    pub policy: PolicyPeer,
    /// Upstream HTTP client (for HTTP guardrails).
    pub http: reqwest::Client,
    /// Longest a scan may take.
    pub timeout: Duration,
}

fn unavailable(what: &str) -> ProxyError {
    ProxyError::GuardrailUnavailable { message: format!("{what}; the request was not sent (fail closed)") }
}

fn blocked(guardrail: &str, reason: &str) -> ProxyError {
    ProxyError::GuardrailBlocked { message: format!("blocked by guardrail `{guardrail}`: {reason}") }
}

fn summarize(findings: &[Finding]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for f in findings {
        *counts.entry(f.kind.clone()).or_insert(0) += 1;
    }
    counts
}

/// Which findings a guardrail acts on.
fn owned_by(active: &Active, finding: &Finding) -> bool {
    match active.guardrail.kind.as_str() {
        "pii" => {
            let entities = active.config.get("entities").and_then(Value::as_array);
            match entities {
                Some(e) => e.iter().any(|v| v.as_str() == Some(finding.kind.as_str())),
                None => DEFAULT_PII.contains(&finding.kind.as_str()),
            }
        }
        "secrets" => finding.kind == "secret",
        "prompt_injection" => finding.kind == "prompt_injection",
        "blocked_terms" => finding.kind.starts_with("blocked_term"),
        _ => false,
    }
}

async fn scan(
    services: &Services,
    plan: &Plan,
    stage: &str,
    text: &str,
    tenant_id: &str,
) -> Result<Vec<Finding>, ProxyError> {
    let detectors = detectors(plan, stage);
    if detectors.is_empty() {
        return Ok(Vec::new());
    }
    let request = ScanRequest { text: text.to_owned(), detectors, tenant_id: tenant_id.to_owned(), redact: false };
    let fail_open = plan
        .active
        .iter()
        .filter(|a| a.guardrail.supports(stage) && a.guardrail.kind != "http")
        .all(|a| a.guardrail.fail_open);
    match tokio::time::timeout(services.timeout, services.compliance.scan(request)).await {
        Ok(Ok(response)) => Ok(response.findings),
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), "compliance scan failed");
            if fail_open { Ok(Vec::new()) } else { Err(unavailable("the compliance service is unavailable")) }
        }
        Err(_) => {
            tracing::warn!(timeout_secs = services.timeout.as_secs(), "compliance scan timed out");
            if fail_open { Ok(Vec::new()) } else { Err(unavailable("the compliance scan timed out")) }
        }
    }
}

/// Assigns placeholders across the request: the same value gets the same placeholder.
fn placeholder(restore: &mut Vec<(String, String)>, kind: &str, value: &str) -> String {
    if let Some((placeholder, _)) =
        restore.iter().find(|(p, v)| v == value && p.starts_with(&format!("<{}_", kind.to_ascii_uppercase())))
    {
        return placeholder.clone();
    }
    let prefix = format!("<{}_", kind.to_ascii_uppercase());
    let n = restore.iter().filter(|(p, _)| p.starts_with(&prefix)).count() + 1;
    let placeholder = format!("{prefix}{n}>");
    restore.push((placeholder.clone(), value.to_owned()));
    placeholder
}

/// Replaces `findings` in `text` with placeholders.
fn redact(text: &str, findings: &[&Finding], restore: &mut Vec<(String, String)>) -> String {
    let mut sorted: Vec<&&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| f.start);
    let mut out = String::with_capacity(text.len());
    let mut last = 0usize;
    for f in sorted {
        let (start, end) = (f.start as usize, f.end as usize);
        if start < last || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[last..start]);
        out.push_str(&placeholder(restore, &f.kind, &text[start..end]));
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// Applies the verdicts of the active guardrails at `stage` to `findings` over `text`: blocks, or
/// returns the redacted text (when anything was redacted).
fn apply(plan: &mut Plan, stage: &str, text: &str, findings: &[Finding]) -> Result<Option<String>, ProxyError> {
    let mut to_redact: Vec<&Finding> = Vec::new();
    let mut actions = Vec::new();
    for active in plan.active.iter().filter(|a| a.guardrail.supports(stage)) {
        let mine: Vec<&Finding> = findings.iter().filter(|f| owned_by(active, f)).collect();
        if mine.is_empty() {
            continue;
        }
        let counts = summarize(&mine.iter().map(|f| (*f).clone()).collect::<Vec<_>>());
        let name = &active.guardrail.name;
        let action = match active.guardrail.kind.as_str() {
            "pii" => active.config.get("action").and_then(Value::as_str).unwrap_or("redact"),
            "prompt_injection" => {
                let threshold = active.config.get("threshold").and_then(Value::as_f64).unwrap_or(0.8);
                if mine.iter().all(|f| f64::from(f.score) < threshold) {
                    continue;
                }
                active.config.get("action").and_then(Value::as_str).unwrap_or("block")
            }
            _ => active.config.get("action").and_then(Value::as_str).unwrap_or("block"),
        };
        actions.push(json!({"guardrail": name, "stage": stage, "action": action, "findings": counts}));
        match action {
            "redact" => to_redact.extend(mine),
            "flag" | "log" => {}
            _ => {
                plan.actions.extend(actions);
                let what: Vec<&String> = counts.keys().collect();
                return Err(blocked(
                    name,
                    &format!("{} detected", what.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                ));
            }
        }
    }
    plan.actions.extend(actions);
    if to_redact.is_empty() {
        return Ok(None);
    }
    Ok(Some(redact(text, &to_redact, &mut plan.restore)))
}

/// Calls an HTTP guardrail. Returns its action and replacement text.
async fn call_http(
    services: &Services,
    active: &Active,
    stage: &str,
    text: &str,
    context: &Context<'_>,
) -> Result<(String, Option<String>, Option<String>), ProxyError> {
    let guardrail = &active.guardrail;
    let Some(url) = &guardrail.http_url else { return Ok(("allow".to_owned(), None, None)) };
    let mut request = services.http.post(url).json(&json!({
        "stage": stage, "text": text, "model": context.model, "key_id": context.key_id, "tenant_id": context.tenant_id,
        "config": active.config,
    }));
    if let Some(token) = &guardrail.http_token {
        request = request.bearer_auth(token.expose_secret());
    }
    let outcome = tokio::time::timeout(guardrail.http_timeout, async {
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        response.json::<Value>().await.map_err(|e| e.without_url().to_string())
    })
    .await;
    match outcome {
        Ok(Ok(verdict)) => Ok((
            verdict.get("action").and_then(Value::as_str).unwrap_or("allow").to_owned(),
            verdict.get("reason").and_then(Value::as_str).map(str::to_owned),
            verdict.get("text").and_then(Value::as_str).map(str::to_owned),
        )),
        Ok(Err(error)) if !guardrail.fail_open => {
            tracing::warn!(guardrail = %guardrail.name, %error, "HTTP guardrail failed");
            Err(unavailable(&format!("guardrail `{}` is unavailable", guardrail.name)))
        }
        Err(_) if !guardrail.fail_open => Err(unavailable(&format!("guardrail `{}` timed out", guardrail.name))),
        _ => Ok(("allow".to_owned(), Some("failed open".to_owned()), None)),
    }
}

/// Who is asking, for HTTP guardrails and the policy service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Key id.
    pub key_id: &'a str,
    /// Tenant id.
    pub tenant_id: &'a str,
    /// Model asked for.
    pub model: &'a str,
    /// Route.
    pub route: &'a str,
}

/// Findings of one scan over the joined segments, split back per segment (offsets made local).
fn split_findings(
    pointers: &[String],
    segments: &[String],
    findings: &[Finding],
) -> Vec<(String, String, Vec<Finding>)> {
    let mut out = Vec::with_capacity(segments.len());
    let mut offset = 0usize;
    for (pointer, segment) in pointers.iter().zip(segments) {
        let end = offset + segment.len();
        let local = findings
            .iter()
            .filter(|f| (f.start as usize) >= offset && (f.end as usize) <= end)
            .map(|f| Finding {
                start: u32::try_from(f.start as usize - offset).unwrap_or(0),
                end: u32::try_from(f.end as usize - offset).unwrap_or(0),
                ..f.clone()
            })
            .collect();
        out.push((pointer.clone(), segment.clone(), local));
        offset = end + SEPARATOR.len();
    }
    out
}

/// The pre-call stage: scans the request (one compliance call for every active guardrail), calls
/// HTTP guardrails, asks the policy service, and rewrites `body` (redaction, reroute) or blocks.
pub(crate) async fn pre_call(
    services: &Services,
    plan: &mut Plan,
    codec: &dyn crate::translate::Codec,
    body: &mut Value,
    context: Context<'_>,
) -> Result<(), ProxyError> {
    if plan.is_empty() {
        return Ok(());
    }
    let pointers = codec.prompt_pointers(body);
    let segments: Vec<String> =
        pointers.iter().filter_map(|p| body.pointer(p).and_then(Value::as_str).map(str::to_owned)).collect();
    let joined = segments.join(SEPARATOR);
    let findings = scan(services, plan, "pre_call", &joined, context.tenant_id).await?;
    // Split findings back into segments and apply per segment, so placeholders land in place.
    for (pointer, segment, local) in split_findings(&pointers, &segments, &findings) {
        if let Some(redacted) = apply(plan, "pre_call", &segment, &local)?
            && let Some(slot) = body.pointer_mut(&pointer)
        {
            *slot = Value::String(redacted);
        }
    }
    for active in plan.active.clone().iter().filter(|a| a.guardrail.kind == "http" && a.guardrail.supports("pre_call"))
    {
        let last = pointers.iter().rev().find(|p| p.starts_with("/messages/")).or(pointers.last()).cloned();
        let text = last.as_ref().and_then(|p| body.pointer(p)).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (action, reason, replacement) = call_http(services, active, "pre_call", &text, &context).await?;
        plan.actions.push(json!({"guardrail": active.guardrail.name, "stage": "pre_call", "action": action}));
        match action.as_str() {
            "block" | "deny" => {
                return Err(blocked(&active.guardrail.name, reason.as_deref().unwrap_or("rejected by the guardrail")));
            }
            "redact" | "modify" => {
                if let (Some(pointer), Some(replacement)) = (last, replacement)
                    && let Some(slot) = body.pointer_mut(&pointer)
                {
                    *slot = Value::String(replacement);
                }
            }
            _ => {}
        }
    }
    if let Some(policy_id) = plan.policy_id.clone() {
        let mut counts: BTreeMap<String, (u32, f32)> = BTreeMap::new();
        for f in &findings {
            let entry = counts.entry(f.kind.clone()).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(f.score);
        }
        let request = EvaluateRequest {
            key_id: context.key_id.to_owned(),
            tenant_id: context.tenant_id.to_owned(),
            model: context.model.to_owned(),
            route: context.route.to_owned(),
            stage: "pre_call".to_owned(),
            findings: counts
                .into_iter()
                .map(|(kind, (count, max_score))| FindingSummary { kind, count, max_score })
                .collect(),
            policy_id: policy_id.clone(),
        };
        let decision = match tokio::time::timeout(services.timeout, services.policy.evaluate(request)).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                return Err(unavailable(&format!("policy `{policy_id}` does not exist")));
            }
            _ => return Err(unavailable("the policy service is unavailable")),
        };
        let action = decision.decision();
        plan.actions.push(json!({
            "guardrail": format!("policy:{policy_id}"), "stage": "pre_call",
            "action": format!("{action:?}").to_lowercase(), "rule": decision.matched_rule,
        }));
        match action {
            Decision::Deny => return Err(blocked(&format!("policy:{policy_id}"), &decision.reason)),
            Decision::Reroute if !decision.reroute_model.is_empty() => plan.reroute = Some(decision.reroute_model),
            Decision::Redact => {
                for (pointer, segment, local) in split_findings(&pointers, &segments, &findings) {
                    let unchanged = body.pointer(&pointer).and_then(Value::as_str) == Some(segment.as_str());
                    if !local.is_empty() && unchanged {
                        let refs: Vec<&Finding> = local.iter().collect();
                        let redacted = redact(&segment, &refs, &mut plan.restore);
                        if let Some(slot) = body.pointer_mut(&pointer) {
                            *slot = Value::String(redacted);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a streamed answer can be guarded during the call: every active guardrail that checks
/// answers must support `during_call`.
pub(crate) fn stream_supported(plan: &Plan) -> Result<(), ProxyError> {
    for active in &plan.active {
        if active.guardrail.supports("post_call") && !active.guardrail.supports("during_call") {
            return Err(ProxyError::GuardrailUnavailable {
                message: format!(
                    "guardrail `{}` checks answers but cannot run on a stream; ask without stream",
                    active.guardrail.name
                ),
            });
        }
    }
    Ok(())
}

/// Puts original values back in place of placeholders.
pub(crate) fn restore(text: &str, restore: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (placeholder, original) in restore {
        if out.contains(placeholder.as_str()) {
            out = out.replace(placeholder.as_str(), original);
        }
    }
    out
}

/// The post-call stage for a JSON answer's text: scan (answer-side guardrails), block or redact,
/// then restore placeholders. Returns the new text.
pub(crate) async fn post_call_text(
    services: &Services,
    plan: &mut Plan,
    text: &str,
    context: Context<'_>,
) -> Result<String, ProxyError> {
    let mut text = text.to_owned();
    if plan.has("post_call") {
        let findings = scan(services, plan, "post_call", &text, context.tenant_id).await?;
        if let Some(redacted) = apply(plan, "post_call", &text, &findings)? {
            text = redacted;
        }
        for active in
            plan.active.clone().iter().filter(|a| a.guardrail.kind == "http" && a.guardrail.supports("post_call"))
        {
            let (action, reason, replacement) = call_http(services, active, "post_call", &text, &context).await?;
            plan.actions.push(json!({"guardrail": active.guardrail.name, "stage": "post_call", "action": action}));
            match action.as_str() {
                "block" | "deny" => {
                    return Err(blocked(
                        &active.guardrail.name,
                        reason.as_deref().unwrap_or("rejected by the guardrail"),
                    ));
                }
                "redact" | "modify" => {
                    if let Some(replacement) = replacement {
                        text = replacement;
                    }
                }
                _ => {}
            }
        }
    }
    if plan.restore_output {
        text = restore(&text, &plan.restore);
    }
    Ok(text)
}

/// Look-behind buffer for streamed text: releases text up to the last whitespace (a placeholder or
/// an email address never contains whitespace), so a value split across chunks is seen whole.
#[derive(Debug, Default)]
pub(crate) struct StreamText {
    held: String,
}

/// Longest run without whitespace that is held back before it is released anyway.
const MAX_HOLD: usize = 256;

impl StreamText {
    /// Adds a delta; returns the part that can be released now.
    pub(crate) fn push(&mut self, delta: &str) -> String {
        self.held.push_str(delta);
        let cut = match self.held.rfind(char::is_whitespace) {
            Some(index) => index + self.held[index..].chars().next().map_or(1, char::len_utf8),
            None if self.held.len() > MAX_HOLD => self.held.len(),
            None => 0,
        };
        let rest = self.held.split_off(cut);
        std::mem::replace(&mut self.held, rest)
    }

    /// Everything still held (at the end of the stream).
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// During-call processing of one released piece of streamed text: answer-side scans (block or
/// redact) and placeholder restoration.
pub(crate) async fn during_call_text(
    services: &Services,
    plan: &mut Plan,
    text: &str,
    context: Context<'_>,
) -> Result<String, ProxyError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let mut text = text.to_owned();
    if plan.has("during_call") && !detectors(plan, "during_call").is_empty() {
        let findings = scan(services, plan, "during_call", &text, context.tenant_id).await?;
        if let Some(redacted) = apply(plan, "during_call", &text, &findings)? {
            text = redacted;
        }
    }
    if plan.restore_output {
        text = restore(&text, &plan.restore);
    }
    Ok(text)
}

#[cfg(test)]
mod tests;

/// What the stream guard learned, read by the audit record when the response ends.
#[derive(Debug, Default)]
pub(crate) struct StreamOutcome {
    /// Guardrail actions taken during the call.
    pub actions: Vec<Value>,
    /// Whether a guardrail stopped the stream.
    pub blocked: bool,
}

struct Guard {
    services: Services,
    plan: Plan,
    codec: &'static dyn crate::translate::Codec,
    reader: Box<dyn crate::translate::TextEvents>,
    key_id: String,
    tenant_id: String,
    model: String,
    route: String,
    text: StreamText,
    parser: crate::sse::SseParser,
    outcome: Arc<std::sync::Mutex<StreamOutcome>>,
    done: bool,
}

impl Guard {
    fn context(&self) -> (String, String, String, String) {
        (self.key_id.clone(), self.tenant_id.clone(), self.model.clone(), self.route.clone())
    }

    async fn process(&mut self, text: &str) -> Result<String, ProxyError> {
        let (key_id, tenant_id, model, route) = self.context();
        let context = Context { key_id: &key_id, tenant_id: &tenant_id, model: &model, route: &route };
        let before = self.plan.actions.len();
        let result = during_call_text(&self.services, &mut self.plan, text, context).await;
        let new: Vec<Value> = self.plan.actions[before..].to_vec();
        if !new.is_empty() {
            self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).actions.extend(new);
        }
        result
    }

    /// The synthetic event that releases `text`, if there is any.
    fn flush_event(&self, text: &str) -> Option<bytes::Bytes> {
        (!text.is_empty()).then(|| self.reader.text_event(text))
    }

    /// Releases what the look-behind buffer still holds (a text block or the answer ends).
    async fn flush(&mut self) -> Result<Option<bytes::Bytes>, ProxyError> {
        let tail = self.text.finish();
        let tail = self.process(&tail).await?;
        Ok(self.flush_event(&tail))
    }

    /// Rewrites one event: its text delta passes the look-behind buffer and the guardrails; at a
    /// boundary, held text is released before it.
    async fn on_event(&mut self, event: crate::sse::SseEvent) -> Result<Vec<bytes::Bytes>, ProxyError> {
        let mut out = Vec::new();
        let Ok(mut value) = serde_json::from_str::<Value>(&event.data) else {
            if self.reader.classify(&event, None).boundary {
                out.extend(self.flush().await?);
            }
            out.push(crate::sse::encode(event.event.as_deref(), &event.data));
            return Ok(out);
        };
        let role = self.reader.classify(&event, Some(&value));
        if let Some(pointer) = role.text {
            let delta = value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
            let released = self.text.push(&delta);
            let processed = self.process(&released).await?;
            if let Some(slot) = value.pointer_mut(pointer) {
                *slot = Value::String(processed);
            }
        }
        if role.boundary {
            out.extend(self.flush().await?);
        }
        out.push(crate::sse::encode(event.event.as_deref(), &value.to_string()));
        Ok(out)
    }
}

/// Wraps a streamed response so every text delta passes the during-call guardrails (with
/// look-behind) before it reaches the client. A block ends the stream with an error event in the
/// client's format (`guardrail_blocked`), which also cancels the upstream request.
pub(crate) fn guard_stream(
    response: axum::response::Response,
    services: Services,
    plan: Plan,
    format: crate::translate::ApiFormat,
    context: Context<'_>,
    outcome: Arc<std::sync::Mutex<StreamOutcome>>,
) -> axum::response::Response {
    use futures_util::StreamExt;
    let (parts, body) = response.into_parts();
    let guard = Guard {
        services,
        plan,
        codec: format.codec(),
        reader: format.codec().text_events(),
        key_id: context.key_id.to_owned(),
        tenant_id: context.tenant_id.to_owned(),
        model: context.model.to_owned(),
        route: context.route.to_owned(),
        text: StreamText::default(),
        parser: crate::sse::SseParser::default(),
        outcome,
        done: false,
    };
    let upstream = body.into_data_stream();
    let stream = futures_util::stream::unfold((upstream, guard), |(mut upstream, mut guard)| async move {
        if guard.done {
            return None;
        }
        loop {
            let chunk = match upstream.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => return Some((Err(std::io::Error::other(error)), (upstream, guard))),
                None => {
                    guard.done = true;
                    let tail = guard.text.finish();
                    let tail = guard.process(&tail).await.unwrap_or_default();
                    let out = guard.flush_event(&tail).unwrap_or_default();
                    return Some((Ok(out), (upstream, guard)));
                }
            };
            let events = match guard.parser.push(&chunk) {
                Ok(events) => events,
                Err(_) => return Some((Ok(chunk), (upstream, guard))),
            };
            let mut out = Vec::new();
            for event in events {
                match guard.on_event(event).await {
                    Ok(bytes) => out.extend(bytes),
                    Err(error) => {
                        guard.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocked = true;
                        guard.done = true;
                        out.extend(guard.codec.error_events(&error));
                        break;
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok(bytes::Bytes::from(out.concat())), (upstream, guard)));
            }
        }
    });
    axum::response::Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// Post-call processing of a whole JSON answer in the client's format: each text is checked and
/// restored. Returns the new body.
pub(crate) async fn post_call_json(
    services: &Services,
    plan: &mut Plan,
    format: crate::translate::ApiFormat,
    body: &[u8],
    context: Context<'_>,
) -> Result<bytes::Bytes, ProxyError> {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else { return Ok(bytes::Bytes::copy_from_slice(body)) };
    let pointers = format.codec().answer_pointers(&value);
    for pointer in pointers {
        let Some(text) = value.pointer(&pointer).and_then(Value::as_str).map(str::to_owned) else { continue };
        let processed = post_call_text(services, plan, &text, context).await?;
        if let Some(slot) = value.pointer_mut(&pointer) {
            *slot = Value::String(processed);
        }
    }
    Ok(bytes::Bytes::from(value.to_string()))
}

/// Redacts a prompt document and an answer before they are stored: the whole document as JSON
/// (every field, tool arguments included) and the answer go through one compliance scan for PII
/// and secrets, whose findings are replaced by placeholders (`<EMAIL_1>`). Returns the prompt as
/// JSON text and the answer, or `None` when the compliance service does not answer in time or
/// the redacted document is no longer JSON: nothing unredacted is ever stored.
pub(crate) async fn redact_for_storage(
    services: &Services,
    prompt: &Value,
    answer: &str,
    tenant_id: &str,
) -> Option<(String, String)> {
    // JSON text escapes control characters, so the separator can only come from the answer.
    let joined = format!("{prompt}{SEPARATOR}{answer}");
    let mut detectors: Vec<String> = DEFAULT_PII.iter().map(|d| (*d).to_owned()).collect();
    detectors.push("secret".to_owned());
    let request = ScanRequest { text: joined.clone(), detectors, tenant_id: tenant_id.to_owned(), redact: true };
    let response = match tokio::time::timeout(services.timeout, services.compliance.scan(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(status)) => {
            tracing::warn!(code = ?status.code(), "compliance scan failed; the prompt is not stored");
            return None;
        }
        Err(_) => {
            tracing::warn!("compliance scan timed out; the prompt is not stored");
            return None;
        }
    };
    let redacted = if response.findings.is_empty() { joined } else { response.redacted_text };
    let parts: Vec<&str> = redacted.split(SEPARATOR).collect();
    let [prompt, answer] = parts.as_slice() else {
        tracing::warn!("redacted text does not split back into prompt and answer; the prompt is not stored");
        return None;
    };
    if serde_json::from_str::<serde::de::IgnoredAny>(prompt).is_err() {
        tracing::warn!("the redacted prompt is not JSON; the prompt is not stored");
        return None;
    }
    Some(((*prompt).to_owned(), (*answer).to_owned()))
}
