//! The Responses API's conversation state: a response kept with `store` can be continued with
//! `previous_response_id`, read back (`GET /v1/responses/{id}`, `.../input_items`) and deleted,
//! by keys of the tenant that made it, for `responses.retention_hours`.
//!
//! Kept only for tenants that keep prompts (`store_prompts`): a conversation is prompts and
//! answers, and this is the tenant's rule for keeping them. `store` absent counts as true, as
//! in OpenAI's API. What is kept is one JSON document, `{"input": [...], "response": {...}}`,
//! sealed with ChaCha20-Poly1305 under a key derived from the server secret
//! ([`flowgate_common::secretbox`]); ids, owners and times are the only columns in the clear.
//!
//! A continuation is expanded here, before guardrails and translation: the stored input, the
//! stored response's output and the new input become the request's `input`, and
//! `previous_response_id` is removed, so every upstream (chat, Anthropic or Responses) gets the
//! whole conversation and nothing depends on the provider having kept it. As in OpenAI's API, the
//! earlier request's `instructions` are not carried over.
//!
//! Affinity: a response answered by a deployment that speaks Responses itself is kept with that
//! deployment's id. Its continuation goes back to that deployment, `previous_response_id` as sent
//! (the provider has the conversation, and its cache of it), while the deployment is configured
//! and not cooling down; otherwise it is expanded as above and any deployment may answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use flowgate_common::secretbox::{self, SealKey};
use flowgate_common::tasks::Tasks;
use flowgate_db::text::opt_text;
use flowgate_db::{Database, sqlx};
use serde_json::{Value, json};

use crate::error::ProxyError;
use crate::sse::SseParser;
use crate::translate::responses::TERMINAL_EVENTS;

/// Context of the key that seals stored conversations.
const SEAL_CONTEXT: &str = "flowgate/secretbox/v1/stored-responses";

/// The largest answer kept (bigger answers are served, not stored).
const MAX_STORED_BYTES: usize = 16 << 20;

/// How often expired conversations are deleted (at most; on a save).
const PURGE_EVERY_MS: i64 = 60_000;

/// The conversation store.
#[derive(Debug, Clone)]
pub(crate) struct Conversations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    database: Database,
    seal: SealKey,
    retention: Duration,
    tasks: Tasks,
    last_purge: AtomicI64,
    /// Responses being written, readable at once: the client has the answer's end before the
    /// row is written, and may continue it right away.
    writing: Mutex<HashMap<String, Arc<Written>>>,
}

/// A response on its way to the database.
#[derive(Debug)]
struct Written {
    tenant_id: String,
    input: Vec<Value>,
    response: Value,
    deployment: Option<String>,
}

/// A stored response, opened.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The input items it answered (the whole conversation before it).
    pub(crate) input: Vec<Value>,
    /// The response object.
    pub(crate) response: Value,
    /// The deployment that answered it, when that deployment speaks Responses itself.
    pub(crate) deployment: Option<String>,
}

/// A Responses request's input once its continuation is read.
#[derive(Debug)]
pub(crate) struct Expansion {
    /// Bytes the earlier turns add to the prompt (for the estimate).
    pub(crate) added: usize,
    /// The whole conversation: what a kept answer is stored with.
    pub(crate) input: Vec<Value>,
    /// The deployment the continuation must go to (affinity); the request then keeps its
    /// `previous_response_id` and its own `input`.
    pub(crate) pinned: Option<String>,
}

/// What a response to be kept needs once it has been answered.
#[derive(Debug)]
pub(crate) struct Pending {
    store: Conversations,
    tenant_id: String,
    key_id: String,
    model: String,
    input: Vec<Value>,
    deployment: Option<String>,
}

fn storage_error(error: &sqlx::Error) -> ProxyError {
    tracing::error!(%error, "conversation store unavailable");
    ProxyError::Unavailable { message: "the conversation store is unavailable".into(), retry_after_secs: None }
}

/// A continuation of a response that is not there: a 400 naming `previous_response_id`, as
/// OpenAI answers it.
fn not_found(id: &str) -> ProxyError {
    ProxyError::BadRequest {
        message: format!(
            "previous_response_id: no stored response with id `{id}` (never stored, deleted, expired, or another tenant's)"
        ),
        param: Some("previous_response_id".to_owned()),
    }
}

/// `input` as a list of items (a string is one user message).
fn items_of(input: Option<&Value>) -> Vec<Value> {
    match input {
        Some(Value::String(text)) => vec![json!({"type": "message", "role": "user", "content": text})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

impl Conversations {
    /// The store over `database`, sealing with a key derived from the server secret.
    pub(crate) fn new(
        database: Database,
        hasher: &flowgate_common::keys::KeyHasher,
        retention_hours: u64,
        tasks: &Tasks,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                database,
                seal: SealKey::from_hasher(hasher, SEAL_CONTEXT),
                retention: Duration::from_secs(retention_hours.saturating_mul(3600)),
                tasks: tasks.clone(),
                last_purge: AtomicI64::new(0),
                writing: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether anything is kept at all (`retention_hours` > 0).
    pub(crate) fn enabled(&self) -> bool {
        !self.inner.retention.is_zero()
    }

    /// The stored response `id` of `tenant_id`, if it is there and not expired.
    pub(crate) async fn load(&self, tenant_id: &str, id: &str) -> Result<Option<Stored>, ProxyError> {
        use sqlx::Row;
        let writing = self.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        if let Some(written) = writing {
            return Ok((written.tenant_id == tenant_id).then(|| Stored {
                input: written.input.clone(),
                response: written.response.clone(),
                deployment: written.deployment.clone(),
            }));
        }
        let row = sqlx::query(&self.inner.database.sql(
            "SELECT sealed, deployment FROM stored_responses WHERE id = $1 AND tenant_id = $2 AND expires_at > $3",
        ))
        .bind(id)
        .bind(tenant_id)
        .bind(flowgate_db::now_millis())
        .fetch_optional(self.inner.database.pool())
        .await
        .map_err(|e| storage_error(&e))?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("sealed").map_err(|e| storage_error(&e))?;
        let deployment = opt_text(&row, "deployment").map_err(|e| storage_error(&e))?;
        let opened = secretbox::open(&self.inner.seal, &sealed).map_err(|error| {
            tracing::error!(%error, id, "a stored response cannot be opened (was the server secret changed?)");
            ProxyError::Unavailable { message: "the stored response cannot be read".into(), retry_after_secs: None }
        })?;
        let mut document: Value = {
            use secrecy::ExposeSecret;
            serde_json::from_str(opened.expose_secret()).unwrap_or(Value::Null)
        };
        let input = match document.get_mut("input").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let response = document.get_mut("response").map(Value::take).unwrap_or(Value::Null);
        Ok(Some(Stored { input, response, deployment }))
    }

    /// Deletes the stored response `id` of `tenant_id`; whether there was one.
    pub(crate) async fn delete(&self, tenant_id: &str, id: &str) -> Result<bool, ProxyError> {
        // A response still being written is deleted once it is.
        let writing = self.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        if let Some(written) = writing
            && written.tenant_id == tenant_id
        {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if !self.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).contains_key(id) {
                    break;
                }
            }
        }
        let done =
            sqlx::query(&self.inner.database.sql("DELETE FROM stored_responses WHERE id = $1 AND tenant_id = $2"))
                .bind(id)
                .bind(tenant_id)
                .execute(self.inner.database.pool())
                .await
                .map_err(|e| storage_error(&e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Continues `previous_response_id`, when the request names one. When the response was
    /// answered by a deployment that `available` says can take the continuation, the request is
    /// left as it is and pinned to it; otherwise the stored conversation, the stored output and the
    /// new input become `input`.
    pub(crate) async fn expand(
        &self,
        tenant_id: &str,
        body: &mut Value,
        available: impl Fn(&str) -> bool,
    ) -> Result<Expansion, ProxyError> {
        let Some(object) = body.as_object_mut() else {
            return Ok(Expansion { added: 0, input: Vec::new(), pinned: None });
        };
        let previous = match object.get("previous_response_id") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                object.remove("previous_response_id");
                return Ok(Expansion { added: 0, input: items_of(object.get("input")), pinned: None });
            }
        };
        let stored = if self.enabled() { self.load(tenant_id, &previous).await? } else { None };
        let Some(stored) = stored else { return Err(not_found(&previous)) };
        let mut input = stored.input;
        if let Some(output) = stored.response.get("output").and_then(Value::as_array) {
            input.extend(output.iter().cloned());
        }
        let added = serde_json::to_vec(&input).map_or(0, |bytes| bytes.len());
        input.extend(items_of(object.get("input")));
        if let Some(deployment) = stored.deployment.filter(|id| available(id)) {
            return Ok(Expansion { added, input, pinned: Some(deployment) });
        }
        object.remove("previous_response_id");
        object.insert("input".to_owned(), Value::Array(input.clone()));
        Ok(Expansion { added, input, pinned: None })
    }

    /// What to keep of a request once answered, when it is to be kept: the key's tenant keeps
    /// prompts and the request did not say `store: false`.
    pub(crate) fn pending(
        &self,
        body: &Value,
        store_prompts: bool,
        owner: (&str, &str, &str),
        input: Vec<Value>,
    ) -> Option<Pending> {
        let asked = body.get("store").and_then(Value::as_bool).unwrap_or(true);
        (asked && store_prompts && self.enabled()).then(|| Pending {
            store: self.clone(),
            tenant_id: owner.0.to_owned(),
            key_id: owner.1.to_owned(),
            model: owner.2.to_owned(),
            input,
            deployment: None,
        })
    }

    /// Purges expired rows, at most once a minute.
    async fn purge(&self, now: i64) {
        let last = self.inner.last_purge.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_MS
            || self.inner.last_purge.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        if let Err(error) = sqlx::query(&self.inner.database.sql("DELETE FROM stored_responses WHERE expires_at <= $1"))
            .bind(now)
            .execute(self.inner.database.pool())
            .await
        {
            tracing::warn!(%error, "cannot purge expired stored responses");
        }
    }
}

impl Pending {
    /// Records that `deployment`, which speaks Responses itself, answered: its continuation goes
    /// back to it.
    pub(crate) fn answered_by(mut self, deployment: &str) -> Self {
        self.deployment = Some(deployment.to_owned());
        self
    }

    /// Keeps `response` (the response object as the client got it), on a job.
    fn save(self, mut response: Value) {
        let Some(id) = response.get("id").and_then(Value::as_str).map(str::to_owned) else { return };
        if let Some(object) = response.as_object_mut() {
            object.insert("store".to_owned(), Value::Bool(true));
        }
        let store = self.store.clone();
        let document = json!({"input": self.input, "response": response}).to_string();
        let written = Written {
            tenant_id: self.tenant_id.clone(),
            input: self.input,
            response,
            deployment: self.deployment.clone(),
        };
        store.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), Arc::new(written));
        store.inner.tasks.clone().job("store-response", async move {
            let sealed = match secretbox::seal(&store.inner.seal, &document) {
                Ok(sealed) => sealed,
                Err(error) => {
                    tracing::error!(%error, "cannot seal a response to store");
                    store.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                    return;
                }
            };
            let now = flowgate_db::now_millis();
            let expires = now.saturating_add(i64::try_from(store.inner.retention.as_millis()).unwrap_or(i64::MAX));
            let result = sqlx::query(
                &store.inner.database.sql("INSERT INTO stored_responses (id, tenant_id, key_id, model, created_at, expires_at, sealed, deployment) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            )
            .bind(&id)
            .bind(&self.tenant_id)
            .bind(&self.key_id)
            .bind(&self.model)
            .bind(now)
            .bind(expires)
            .bind(sealed)
            .bind(self.deployment.as_deref())
            .execute(store.inner.database.pool())
            .await;
            if let Err(error) = result {
                tracing::error!(%error, id, "cannot store a response");
            }
            store.inner.writing.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            store.purge(now).await;
        });
    }

    /// `response` with its body watched: once the answer is whole (the JSON body, or a stream's
    /// `response.completed`/`response.incomplete`), the final response object is kept. Nothing is
    /// held back from the client.
    pub(crate) fn store_after(self, response: Response) -> Response {
        if !response.status().is_success() {
            return response;
        }
        let stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let (parts, body) = response.into_parts();
        let watch = Watch {
            inner: body.into_data_stream(),
            stream,
            parser: SseParser::default(),
            buffer: BytesMut::new(),
            pending: Some(self),
        };
        Response::from_parts(parts, Body::from_stream(watch))
    }
}

/// A body passed on as it is, read on the way for the final response object.
struct Watch {
    inner: axum::body::BodyDataStream,
    stream: bool,
    parser: SseParser,
    buffer: BytesMut,
    pending: Option<Pending>,
}

impl Watch {
    fn read(&mut self, chunk: &Bytes) {
        if self.pending.is_none() {
            return;
        }
        if !self.stream {
            if self.buffer.len() + chunk.len() > MAX_STORED_BYTES {
                self.pending = None;
            } else {
                self.buffer.extend_from_slice(chunk);
                // Kept before the client has the last byte, so it may continue at once.
                if self.buffer.ends_with(b"}") {
                    self.end();
                }
            }
            return;
        }
        let Ok(events) = self.parser.push(chunk) else {
            self.pending = None;
            return;
        };
        for event in events {
            if !event.event.as_deref().is_some_and(|name| TERMINAL_EVENTS[..2].contains(&name)) {
                continue;
            }
            if let Ok(mut value) = serde_json::from_str::<Value>(&event.data)
                && let Some(pending) = self.pending.take()
            {
                pending.save(value.get_mut("response").map(Value::take).unwrap_or(Value::Null));
            }
        }
    }

    fn end(&mut self) {
        if !self.stream
            && self.pending.is_some()
            && let Ok(value) = serde_json::from_slice::<Value>(&self.buffer)
            && let Some(pending) = self.pending.take()
            && value.get("object").and_then(Value::as_str) == Some("response")
        {
            pending.save(value);
        }
    }
}

impl futures_util::Stream for Watch {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_next(cx) {
            std::task::Poll::Ready(Some(Ok(chunk))) => {
                this.read(&chunk);
                std::task::Poll::Ready(Some(Ok(chunk)))
            }
            std::task::Poll::Ready(None) => {
                this.end();
                std::task::Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// The stored input items as `GET /v1/responses/{id}/input_items` lists them: newest first
/// unless `order=asc`, `limit` (1 to 100, default 20) after the item `after`.
pub(crate) fn input_items_page(input: Vec<Value>, order_asc: bool, limit: usize, after: Option<&str>) -> Value {
    let mut items: Vec<Value> = input
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if item.get("id").is_none()
                && let Some(object) = item.as_object_mut()
            {
                object.insert("id".to_owned(), json!(format!("item_{i}")));
            }
            if item.get("type").is_none()
                && let Some(object) = item.as_object_mut()
            {
                object.insert("type".to_owned(), json!("message"));
            }
            item
        })
        .collect();
    if !order_asc {
        items.reverse();
    }
    if let Some(after) = after
        && let Some(at) = items.iter().position(|item| item.get("id").and_then(Value::as_str) == Some(after))
    {
        items.drain(..=at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    json!({
        "object": "list",
        "data": items,
        "first_id": items.first().and_then(|i| i.get("id")).cloned(),
        "last_id": items.last().and_then(|i| i.get("id")).cloned(),
        "has_more": has_more,
    })
}
