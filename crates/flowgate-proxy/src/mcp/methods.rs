//! The methods the gateway answers: `ping`, `tools/list` (the tools of every server the key may
//! reach, without the ones it may not use) and `tools/call` (access checked, served from the
//! tool-call cache or forwarded; one audit record and the metrics per call); prompts and
//! resources are passed through (`catalog`). Anything else is "method not found".
//!
//! The key's guardrails run on a call's arguments before it is sent (pre-call) and on its result
//! (cached or not) before it is answered: at the pre-call stage too, since a tool's result is the
//! next prompt's tool message (prompt-injection detection runs there), then at the post-call
//! stage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate_contracts::GuardrailStage;
use flowgate_contracts::audit::AuditRecord;
use serde_json::{Map, Value, json};

use super::access::KeyAccess;
use super::jsonrpc::{self, Id};
use super::upstream::UpstreamError;
use super::{CallLabels, McpState, Server, ToolLabels};
use crate::auth::KeyInfo;
use crate::error::ProxyError;
use crate::guardrails::{self, Plan};
use crate::translate::{TextKind, TextPointer};

/// Most `tools/list` pages read from one upstream.
const MAX_PAGES: usize = 20;
/// What the audit trail's route says.
pub(crate) const AUDIT_ROUTE: &str = "/api/mcp";

/// One request's context.
pub(crate) struct Call<'a> {
    pub(crate) state: &'a McpState,
    pub(crate) key: &'a KeyInfo,
    /// `Some(server)` at `/api/mcp/{server}`.
    pub(crate) scope: Option<&'a str>,
    pub(crate) client_ip: &'a str,
    /// The upstream servers when the request arrived (servers registered at run time come and go).
    servers: Arc<BTreeMap<String, Arc<Server>>>,
}

impl<'a> Call<'a> {
    /// The context of one request, over the servers configured now.
    pub(crate) fn new(state: &'a McpState, key: &'a KeyInfo, scope: Option<&'a str>, client_ip: &'a str) -> Self {
        Self { state, key, scope, client_ip, servers: state.gateway.servers() }
    }
}

/// The client a call goes through: the server's own, or one carrying the key's (or tenant's)
/// credential.
pub(crate) enum Routed<'a> {
    Shared(&'a super::upstream::Upstream),
    Own(Arc<super::credentials::Credentialed>),
}

impl Routed<'_> {
    pub(crate) fn get(&self) -> &super::upstream::Upstream {
        match self {
            Self::Shared(upstream) => upstream,
            Self::Own(own) => &own.upstream,
        }
    }

    /// Whose credential, when not the server's own.
    fn owner(&self) -> Option<&str> {
        match self {
            Self::Shared(_) => None,
            Self::Own(own) => Some(&own.owner),
        }
    }
}

impl Call<'_> {
    /// The client for the key's calls to `server`.
    pub(crate) async fn upstream<'s>(&self, name: &str, server: &'s Server) -> Result<Routed<'s>, UpstreamError> {
        match self.state.gateway.credentials.for_key(name, server.settings.as_ref(), &self.key.key).await {
            Ok(None) => Ok(Routed::Shared(&server.upstream)),
            Ok(Some(own)) => Ok(Routed::Own(own)),
            Err(error) => {
                tracing::warn!(server = name, %error, "cannot look up the key's upstream credential; the call is refused");
                Err(UpstreamError::Unavailable("the key's credential for this server cannot be read".to_owned()))
            }
        }
    }

    /// The answer to request `id`.
    pub(crate) async fn dispatch(&self, id: &Id, method: &str, params: Map<String, Value>) -> Value {
        match method {
            "ping" => jsonrpc::result(id, json!({})),
            "tools/list" => jsonrpc::result(id, json!({"tools": self.list_tools().await})),
            "tools/call" => self.call_tool(id, params).await,
            "prompts/list" => self.list(id, "prompts/list", "prompts", true).await,
            "prompts/get" => self.get_prompt(id, params).await,
            "resources/list" => self.list(id, "resources/list", "resources", false).await,
            "resources/templates/list" => self.list(id, "resources/templates/list", "resourceTemplates", false).await,
            "resources/read" => self.read_resource(id, params).await,
            _ => jsonrpc::error(
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("method `{method}` is not served by this gateway"),
            ),
        }
    }

    /// The servers in scope that the key may reach, by name.
    pub(crate) fn servers(&self) -> impl Iterator<Item = (&str, &Server)> {
        let access = KeyAccess::of(&self.key.key);
        self.servers
            .iter()
            .filter(move |(name, _)| self.scope.is_none_or(|scope| scope == name.as_str()))
            .filter(move |(name, _)| access.server(name).is_ok())
            .map(|(name, server)| (name.as_str(), server.as_ref()))
    }

    /// The name a client sees for `tool` of `server`.
    pub(crate) fn public_name(&self, server: &str, tool: &str) -> String {
        if self.scope.is_some() { tool.to_owned() } else { format!("{server}__{tool}") }
    }

    async fn list_tools(&self) -> Vec<Value> {
        let access = KeyAccess::of(&self.key.key);
        let lists = futures_util::future::join_all(self.servers().map(|(name, server)| async move {
            let listed = match self.upstream(name, server).await {
                Ok(routed) => upstream_tools(name, routed.get()).await,
                Err(error) => Err(error),
            };
            (name, server, listed)
        }))
        .await;
        let mut tools = Vec::new();
        for (name, server, listed) in lists {
            let listed = match listed {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::warn!(server = name, %error, "an MCP server's tools could not be listed; left out");
                    continue;
                }
            };
            for mut tool in listed {
                let Some(bare) = tool.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
                if access.tool(name, &bare, &server.allowed_tools, &server.disallowed_tools).is_err() {
                    continue;
                }
                if let Some(object) = tool.as_object_mut() {
                    object.insert("name".to_owned(), Value::String(self.public_name(name, &bare)));
                }
                tools.push(tool);
            }
        }
        tools
    }

    /// Splits a public tool name into server and tool.
    pub(crate) fn resolve<'n>(&self, name: &'n str) -> Option<(&str, &Server, &'n str)> {
        let (server, tool) = match self.scope {
            Some(scope) => (scope, name),
            None => name.split_once("__")?,
        };
        let (server, config) = self.servers.get_key_value(server)?;
        Some((server.as_str(), config.as_ref(), tool))
    }

    async fn call_tool(&self, id: &Id, params: Map<String, Value>) -> Value {
        let started = Instant::now();
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, "`params.name` (the tool's name) is required");
        };
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(arguments)) => Value::Object(arguments.clone()),
            Some(_) => {
                return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, "`params.arguments` must be an object");
            }
        };
        let argument_bytes = arguments.to_string().len();
        let mut audit = ToolAudit {
            call: self,
            name,
            server: None,
            argument_bytes,
            started,
            actions: Vec::new(),
            cost_nanos: 0,
            stored: None,
        };
        let Some((server_name, server, tool)) = self.resolve(name) else {
            audit.finish(404, Some("unknown_tool"), 0, false, None);
            return jsonrpc::error(Some(id), jsonrpc::INVALID_PARAMS, &format!("unknown tool `{name}`"));
        };
        audit.server = Some(server_name);
        if let Err(refusal) =
            KeyAccess::of(&self.key.key).tool(server_name, tool, &server.allowed_tools, &server.disallowed_tools)
        {
            audit.finish(403, Some("tool_not_allowed"), 0, false, None);
            self.count(server_name, "(refused)", "refused");
            return jsonrpc::error(Some(id), jsonrpc::FORBIDDEN, &refusal.message(server_name, tool));
        }
        let label = format!("{server_name}__{tool}");
        let mut guard = match self.plan() {
            Ok(plan) => plan.map(|plan| Guard { call: self, plan, label: &label }),
            Err(error) => return self.refused_by_guardrail(id, &mut audit, server_name, &error),
        };
        let mut arguments = json!({"arguments": arguments});
        if let Some(guard) = &mut guard {
            let pointer = TextPointer {
                pointer: "/arguments".to_owned(),
                role: "assistant".to_owned(),
                kind: TextKind::ToolArguments,
            };
            if let Err(error) = guard.check(GuardrailStage::PreCall, &mut arguments, vec![pointer]).await {
                audit.actions = guard.plan.actions.clone();
                return self.refused_by_guardrail(id, &mut audit, server_name, &error);
            }
        }
        let arguments = arguments.get_mut("arguments").map(Value::take).unwrap_or_default();
        // Rate limits and budgets: a call is one request, reserved at its configured cost.
        let cost = server.cost(tool);
        let admission = match self.state.proxy.limiter().admit(self.key, 0, cost).await {
            Ok(admission) => admission,
            Err(error) => {
                audit.finish(i64::from(error.status().as_u16()), Some(error.code()), 0, false, None);
                self.count(server_name, "(refused)", "limited");
                return jsonrpc::error_with_data(
                    id,
                    jsonrpc::LIMITED,
                    &error.to_string(),
                    json!({"code": error.code()}),
                );
            }
        };
        let routed = match self.upstream(server_name, server).await {
            Ok(routed) => routed,
            Err(error) => {
                admission.settle(None);
                let (status, code) = error.audit_status();
                audit.finish(status, Some(code), 0, false, None);
                self.count(server_name, "(failed)", "upstream_error");
                return upstream_error(id, server_name, error);
            }
        };
        // Scoped per tenant and per upstream credential: a key's own credential may see other data.
        let scope = match routed.owner() {
            Some(owner) => format!("{}\u{0}{owner}", self.key.key.tenant_id),
            None => self.key.key.tenant_id.clone(),
        };
        let cache_key = server
            .cacheable
            .get(tool)
            .map(|ttl| (super::cache::key(&scope, server_name, tool, &arguments), Duration::from_secs(*ttl)));
        let cached = match &cache_key {
            Some((key, _)) => self.state.gateway.cache.get(key, &label).await,
            None => None,
        };
        let cache_hit = cached.is_some();
        // Kept for the audit trail only for tenants that store prompts (redacted first).
        let stored_arguments = self.key.key.tenant_store_prompts.then(|| arguments.clone());
        let (result, upstream_time) = match cached {
            Some(result) => (result, None),
            None => {
                let mut forwarded = params.clone();
                forwarded.insert("name".to_owned(), Value::String(tool.to_owned()));
                forwarded.insert("arguments".to_owned(), arguments);
                let upstream_started = Instant::now();
                let answer = routed.get().request("tools/call", forwarded).await;
                let upstream_time = upstream_started.elapsed();
                match answer {
                    Ok(result) => {
                        // Labelled with the tool only when it answered normally: an error result
                        // may be a name the client made up, and labels must stay bounded.
                        let label = if is_error_result(&result) { "(tool_error)" } else { tool };
                        self.state
                            .gateway
                            .metrics
                            .latency
                            .get_or_create(&ToolLabels { server: server_name.to_owned(), tool: label.to_owned() })
                            .observe(upstream_time.as_secs_f64());
                        if let Some((key, ttl)) = cache_key {
                            self.state.gateway.cache.put(key, &result, ttl, upstream_time).await;
                        }
                        (result, Some(upstream_time))
                    }
                    Err(error) => {
                        admission.settle(None);
                        let (status, code) = error.audit_status();
                        audit.finish(status, Some(code), 0, false, Some(upstream_time));
                        self.count(server_name, "(failed)", if status == 504 { "timeout" } else { "upstream_error" });
                        return upstream_error(id, server_name, error);
                    }
                }
            }
        };
        // A cache hit is settled at no cost, like a model answer from the response cache.
        let charged = if cache_hit { 0 } else { cost };
        admission.settle(Some((crate::wire::Usage::default(), charged)));
        audit.cost_nanos = charged;
        let mut result = result;
        if let Some(guard) = &mut guard {
            let pointers = result_pointers(&result);
            for stage in [GuardrailStage::PreCall, GuardrailStage::PostCall] {
                if let Err(error) = guard.check(stage, &mut result, pointers.clone()).await {
                    audit.actions = guard.plan.actions.clone();
                    return self.refused_by_guardrail(id, &mut audit, server_name, &error);
                }
            }
            audit.actions = guard.plan.actions.clone();
        }
        let is_error = is_error_result(&result);
        let outcome = if cache_hit {
            "cache_hit"
        } else if is_error {
            "tool_error"
        } else {
            "success"
        };
        self.count(server_name, if is_error { "(tool_error)" } else { tool }, outcome);
        let result_text = result.to_string();
        audit.stored =
            stored_arguments.map(|arguments| (json!({"tool": label, "arguments": arguments}), result_text.clone()));
        audit.finish(200, is_error.then_some("tool_error"), result_text.len(), cache_hit, upstream_time);
        jsonrpc::result(id, result)
    }

    /// The guardrail plan of the key, `None` when no guardrail applies to it.
    fn plan(&self) -> Result<Option<Plan>, ProxyError> {
        let policy = self.key.guardrail_policy()?;
        let plan = guardrails::plan(self.state.proxy.catalog(), policy, &[])?;
        Ok((!plan.is_empty()).then_some(plan))
    }

    /// A call stopped by a guardrail (or by an unreadable policy): audited with the error's
    /// status and code, answered with a JSON-RPC error that says why.
    fn refused_by_guardrail(&self, id: &Id, audit: &mut ToolAudit<'_>, server: &str, error: &ProxyError) -> Value {
        self.state.proxy.metrics().count_guardrail_actions(&audit.actions);
        audit.finish(i64::from(error.status().as_u16()), Some(error.code()), 0, false, None);
        self.count(server, "(refused)", "refused");
        jsonrpc::error_with_data(id, jsonrpc::GUARDRAIL, &error.to_string(), json!({"code": error.code()}))
    }

    fn count(&self, server: &str, tool: &str, outcome: &'static str) {
        self.state
            .gateway
            .metrics
            .calls
            .get_or_create(&CallLabels { server: server.to_owned(), tool: tool.to_owned(), outcome })
            .inc();
    }
}

/// A failed upstream call as the client's answer: the server's own JSON-RPC error passed on,
/// anything else named as the gateway's.
pub(crate) fn upstream_error(id: &Id, server: &str, error: UpstreamError) -> Value {
    match error {
        UpstreamError::Rpc { code, message, data: Some(data) } => jsonrpc::error_with_data(id, code, &message, data),
        UpstreamError::Rpc { code, message, data: None } => jsonrpc::error(Some(id), code, &message),
        other => jsonrpc::error(
            Some(id),
            jsonrpc::UPSTREAM_UNAVAILABLE,
            &format!("the MCP server `{server}` did not answer: {other}"),
        ),
    }
}

/// Whether a tool's result says the tool failed (`isError: true`).
fn is_error_result(result: &Value) -> bool {
    result.get("isError").and_then(Value::as_bool) == Some(true)
}

/// The guardrails of one tool call.
struct Guard<'a> {
    call: &'a Call<'a>,
    plan: Plan,
    /// `server__tool`, as the guardrails' context names the model.
    label: &'a str,
}

impl Guard<'_> {
    async fn check(
        &mut self,
        stage: GuardrailStage,
        document: &mut Value,
        pointers: Vec<TextPointer>,
    ) -> Result<(), ProxyError> {
        let key = &self.call.key.key;
        let context =
            guardrails::Context { key_id: &key.id, tenant_id: &key.tenant_id, model: self.label, route: AUDIT_ROUTE };
        guardrails::check_document(self.call.state.proxy.guard(), &mut self.plan, stage, document, pointers, context)
            .await
    }
}

/// Where a tool result's texts are: its text content blocks, and its structured content.
fn result_pointers(result: &Value) -> Vec<TextPointer> {
    let tool = |pointer: String, kind: TextKind| TextPointer { pointer, role: "tool".to_owned(), kind };
    let mut pointers: Vec<TextPointer> = result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .enumerate()
                .filter(|(_, block)| block.get("type").and_then(Value::as_str) == Some("text"))
                .map(|(index, _)| tool(format!("/content/{index}/text"), TextKind::Text))
                .collect()
        })
        .unwrap_or_default();
    if result.get("structuredContent").is_some_and(|v| !v.is_null()) {
        pointers.push(tool("/structuredContent".to_owned(), TextKind::ToolArguments));
    }
    pointers
}

/// Every tool of `server` (following `nextCursor`).
pub(super) async fn upstream_tools(
    name: &str,
    server: &super::upstream::Upstream,
) -> Result<Vec<Value>, UpstreamError> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = Map::new();
        if let Some(cursor) = cursor.take() {
            params.insert("cursor".to_owned(), Value::String(cursor));
        }
        let page = server.request("tools/list", params).await?;
        if let Some(Value::Array(listed)) = page.get("tools") {
            tools.extend(listed.iter().cloned());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => return Ok(tools),
        }
    }
    tracing::warn!(server = name, pages = MAX_PAGES, "an MCP server's tool list has too many pages; the rest left out");
    Ok(tools)
}

/// The audit record of one tool call.
struct ToolAudit<'a> {
    call: &'a Call<'a>,
    /// The call (tool and arguments) and the result as answered, for a tenant that stores
    /// prompts: redacted by a compliance scan before the record is written.
    stored: Option<(Value, String)>,
    /// What the call was charged, in nano-dollars.
    cost_nanos: i64,
    /// What the guardrails did.
    actions: Vec<Value>,
    /// The tool's name as the client gave it.
    name: &'a str,
    server: Option<&'a str>,
    argument_bytes: usize,
    started: Instant,
}

impl ToolAudit<'_> {
    /// Writes the record: the tool's public name as the model, the server as the deployment and
    /// `mcp:<server>` as the provider; sizes and the session's route in `metadata`.
    fn finish(
        &self,
        status: i64,
        code: Option<&str>,
        result_bytes: usize,
        cache_hit: bool,
        upstream: Option<Duration>,
    ) {
        let key = &self.call.key.key;
        let tool_name = match (self.call.scope, self.server) {
            (Some(server), _) => format!("{server}__{}", self.name),
            (None, _) => self.name.to_owned(),
        };
        let mut metadata = BTreeMap::new();
        metadata.insert("mcp_tool".to_owned(), tool_name.clone());
        metadata.insert("mcp_arguments_bytes".to_owned(), self.argument_bytes.to_string());
        metadata.insert("mcp_result_bytes".to_owned(), result_bytes.to_string());
        if let Some(server) = self.server {
            metadata.insert("mcp_server".to_owned(), server.to_owned());
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let record = AuditRecord {
            request_id: uuid::Uuid::now_v7().to_string(),
            ts: i64::try_from(now).unwrap_or(i64::MAX),
            tenant_id: Some(key.tenant_id.clone()),
            key_id: Some(key.id.clone()),
            client_ip: Some(self.call.client_ip.to_owned()),
            route: self.call.scope.map_or_else(|| AUDIT_ROUTE.to_owned(), |s| format!("{AUDIT_ROUTE}/{s}")),
            model_requested: Some(tool_name.clone()),
            model_used: self.server.map(|_| tool_name),
            deployment: self.server.map(str::to_owned),
            provider: self.server.map(|s| format!("mcp:{s}")),
            status,
            error_code: code.map(str::to_owned),
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            upstream_latency_ms: upstream.map(|d| d.as_secs_f64() * 1000.0),
            cache_hit,
            cost_nanos: self.cost_nanos,
            guardrail_actions: self.actions.clone(),
            metadata,
            ..AuditRecord::default()
        };
        let proxy = &self.call.state.proxy;
        let Some((call, result)) = self.stored.clone() else {
            proxy.audit().record(record);
            return;
        };
        // As for model requests: redaction is a compliance scan, on a job, the record written
        // after it (with nothing stored when the scan fails), and shutdown waits for it.
        let services = proxy.guard().clone();
        let mut pending = Pending { sink: proxy.audit().clone(), record: Some(record), _hold: proxy.audit().hold() };
        proxy.tasks().job("mcp-prompt-redaction", async move {
            let tenant_id = pending.record.as_ref().and_then(|r| r.tenant_id.clone()).unwrap_or_default();
            if let Some((call, result)) = guardrails::redact_for_storage(&services, &call, &result, &tenant_id).await
                && let Some(record) = pending.record.as_mut()
            {
                record.prompt = Some(call);
                record.response = Some(result);
            }
            drop(pending);
        });
    }
}

/// A record waiting for its redaction: written when dropped, so a job that panics or is
/// cancelled still writes it (without the stored call).
struct Pending {
    sink: crate::audit::AuditSink,
    record: Option<AuditRecord>,
    _hold: crate::audit::AuditHold,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            self.sink.record(record);
        }
    }
}
