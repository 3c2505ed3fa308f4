//! Phases 3 and 4 of the metacache: a request whose text means the same as a cached one's is
//! answered with its answer.
//!
//! - **What is compared:** the last user message (or, with `key_text: conversation`, the system
//!   prompt and the last `turns` messages), embedded by the local model (`flowgate-semantic`) on
//!   a bounded blocking pool (`embed_concurrency` at once, `embed_timeout_ms` at most: past it,
//!   or on any failure, the lookup is a miss).
//! - **Where:** an HNSW index in each process, partitioned by a hash that must match exactly:
//!   tenant, API format, endpoint, stream or not, model requested, tools offered, response format,
//!   temperature bucket (tenths), the operator's `partition_fields`, and every message that is
//!   not embedded (so a follow-up question only meets follow-ups of the same conversation).
//!   Tenants never share a partition.
//! - **Hit:** the nearest entries at or above the threshold, the first whose text agrees with the
//!   request's under the near-miss guard (numbers, identifiers, named entities, negation,
//!   antonyms, direction).
//! - **Not cached:** requests with tool results or tool calls, images or other non-text parts,
//!   or `n > 1`; requests with guardrails (as for the exact phases).
//! - **Phase 4:** with Redis, every stored entry is also appended to the stream
//!   [`ENTRIES_STREAM`]; each replica follows it (every 200 ms) into its own index, and reads it
//!   from the start when it starts, so lookups never leave the process. A hit on an entry another
//!   replica stored is a phase-4 hit. Redis down: nothing is published or read, phase 3 still
//!   answers.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use flowgate_common::settings::{SemanticCacheSettings, SemanticKeyText};
use flowgate_common::tasks::Tasks;
use flowgate_contracts::metacache::{ENTRIES_STREAM, STREAM_MAX_LEN, SharedEntry, StreamRecord};
use flowgate_db::SharedState;
use flowgate_semantic::Embedder;
use flowgate_semantic::guard::Features;
use flowgate_semantic::index::Index;
use serde_json::Value;

use crate::cache::Cached;
use crate::translate::{ApiFormat, TextKind};
use crate::wire::Endpoint;

/// Entries looked at per lookup (the nearest first); the guard may refuse the nearest.
const CANDIDATES: usize = 4;

/// How often a replica reads the entries stream.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// A stored entry.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) cached: Arc<Cached>,
    features: Features,
    pub(crate) text: String,
    pub(crate) tenant: String,
    pub(crate) model: String,
    pub(crate) expires_at_ms: u64,
    /// Published by another replica (a hit on it is phase 4).
    pub(crate) from_shared: bool,
}

/// What a request is looked up and stored under.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    partition: u64,
    text: String,
    tenant: String,
    model: String,
}

/// A request's query and, once computed, its vector: what its answer is stored with.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    query: Query,
    vector: Option<Arc<Vec<f32>>>,
}

impl Pending {
    /// A query whose vector is computed when its answer is stored.
    pub(crate) fn new(query: Query) -> Self {
        Self { query, vector: None }
    }
}

/// A semantic hit.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) cached: Arc<Cached>,
    pub(crate) similarity: f32,
    /// Answered from an entry another replica published (phase 4).
    pub(crate) shared: bool,
}

/// The process's semantic cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SemanticCache(Arc<Inner>);

struct Inner {
    embedder: Arc<Embedder>,
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
    threshold: f32,
    ttl: Duration,
    key_text: SemanticKeyText,
    turns: usize,
    partition_fields: Vec<String>,
    index: RwLock<Index<Entry>>,
    /// Where entries are published: Redis (phase 4), or in process (the api-server's listing).
    publish_to: SharedState,
    /// With Redis: other replicas apply the published entries.
    shared: Option<SharedState>,
    replica: String,
    tasks: Tasks,
}

impl std::fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache").field("threshold", &self.0.threshold).finish_non_exhaustive()
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SemanticCache {
    /// Loads the model `settings` name and, with Redis, starts following the entries stream.
    pub(crate) fn start(
        settings: &SemanticCacheSettings,
        ttl: Duration,
        shared: &SharedState,
        tasks: &Tasks,
    ) -> Result<Self, flowgate_semantic::Error> {
        let dir = settings.local_model_dir.clone().unwrap_or_default();
        let started = Instant::now();
        let embedder = Embedder::load(&dir)?;
        tracing::info!(dir = %dir.display(), elapsed_ms = started.elapsed().as_millis(), "semantic cache: local embedder loaded");
        #[expect(clippy::cast_possible_truncation, reason = "a threshold between 0 and 1")]
        let threshold = settings.threshold as f32;
        let cache = Self(Arc::new(Inner {
            embedder: Arc::new(embedder),
            permits: Arc::new(tokio::sync::Semaphore::new(settings.embed_concurrency.max(1))),
            timeout: Duration::from_millis(settings.embed_timeout_ms.max(1)),
            threshold,
            ttl,
            key_text: settings.key_text,
            turns: settings.turns.max(1),
            partition_fields: settings.partition_fields.clone(),
            index: RwLock::new(Index::new(settings.max_bytes)),
            publish_to: shared.clone(),
            shared: shared.is_shared().then(|| shared.clone()),
            replica: uuid::Uuid::new_v4().to_string(),
            tasks: tasks.clone(),
        }));
        if cache.0.shared.is_some() {
            let follower = cache.clone();
            tasks.spawn("semantic-cache-follower", async move { follower.follow().await });
        }
        Ok(cache)
    }

    /// The query of a request that may be semantically cached, or `None` (see the module
    /// documentation for what is not).
    pub(crate) fn query(
        &self,
        tenant: &str,
        format: ApiFormat,
        endpoint: Endpoint,
        model: &str,
        body: &Value,
    ) -> Option<Query> {
        if endpoint != Endpoint::Chat || body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
            return None;
        }
        let pointers = format.codec().prompt_pointers(body);
        if pointers.iter().any(|p| p.role == "tool" || p.kind != TextKind::Text) || has_non_text_parts(body) {
            return None;
        }
        // The texts grouped by message, in order: (message, role, text).
        let mut messages: Vec<(String, String, String)> = Vec::new();
        for pointer in &pointers {
            let text = body.pointer(&pointer.pointer).and_then(Value::as_str).unwrap_or_default();
            let message = message_of(&pointer.pointer);
            match messages.last_mut() {
                Some((last, _, joined)) if *last == message => {
                    joined.push('\n');
                    joined.push_str(text);
                }
                _ => messages.push((message, pointer.role.clone(), text.to_owned())),
            }
        }
        let last = messages.iter().rposition(|(_, role, _)| role == "user")?;
        if last + 1 != messages.len() {
            return None;
        }
        let embedded_from = match self.0.key_text {
            SemanticKeyText::LastUser => last,
            SemanticKeyText::Conversation => messages.len().saturating_sub(self.0.turns),
        };
        let mut text = String::new();
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut part = |bytes: &[u8]| {
            context.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
            context.update(bytes);
        };
        for (i, (_, role, message)) in messages.iter().enumerate() {
            let system = role == "system" || role == "developer";
            let embedded = i >= embedded_from || (self.0.key_text == SemanticKeyText::Conversation && system);
            if embedded {
                if self.0.key_text == SemanticKeyText::Conversation {
                    text.push_str(role);
                    text.push_str(": ");
                }
                text.push_str(message);
                text.push('\n');
            } else {
                part(role.as_bytes());
                part(message.as_bytes());
            }
        }
        let text = text.trim_end().to_owned();
        if text.is_empty() {
            return None;
        }
        part(b"|partition");
        for bytes in [tenant.as_bytes(), format!("{format:?}").as_bytes(), model.as_bytes()] {
            part(bytes);
        }
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        part(&[u8::from(stream)]);
        for field in ["tools", "tool_choice", "functions", "function_call", "response_format", "text", "output_format"]
        {
            part(field.as_bytes());
            part(&serde_json::to_vec(body.get(field).unwrap_or(&Value::Null)).unwrap_or_default());
        }
        let temperature = body.get("temperature").and_then(Value::as_f64).map(|t| (t * 10.0).round());
        part(format!("{temperature:?}").as_bytes());
        for field in &self.0.partition_fields {
            part(field.as_bytes());
            part(&serde_json::to_vec(body.get(field).unwrap_or(&Value::Null)).unwrap_or_default());
        }
        let digest = context.finish();
        let partition = digest.as_ref().first_chunk::<8>().map_or(0, |b| u64::from_le_bytes(*b));
        Some(Query { partition, text, tenant: tenant.to_owned(), model: model.to_owned() })
    }

    /// The unit vector of `text`, or `None` when the embedder is busy past the timeout or fails.
    async fn embed(&self, text: &str) -> Option<Arc<Vec<f32>>> {
        let inner = &self.0;
        let work = async {
            let _permit = inner.permits.clone().acquire_owned().await.ok()?;
            let embedder = inner.embedder.clone();
            let text = text.to_owned();
            tokio::task::spawn_blocking(move || embedder.embed(&text)).await.ok()
        };
        match tokio::time::timeout(inner.timeout, work).await {
            Ok(Some(vector)) => Some(Arc::new(vector)),
            Ok(None) => None,
            Err(_) => {
                tracing::debug!("semantic cache: embedding timed out; a miss");
                None
            }
        }
    }

    /// Looks `query` up: the hit, if any, and what the answer is stored with otherwise.
    #[tracing::instrument(name = "cache.semantic_lookup", skip_all)]
    pub(crate) async fn lookup(&self, query: Query) -> (Option<Hit>, Pending) {
        let Some(vector) = self.embed(&query.text).await else {
            return (None, Pending { query, vector: None });
        };
        let features = Features::of(&query.text);
        let hit = {
            let index = self.0.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let found = index
                .search(query.partition, &vector, CANDIDATES, now_ms())
                .into_iter()
                .filter(|hit| hit.similarity >= self.0.threshold)
                .find(|hit| hit.payload.features.disagreement(&features).is_none());
            found.map(|found| {
                index.touch(found.id);
                Hit {
                    cached: found.payload.cached.clone(),
                    similarity: found.similarity.min(1.0),
                    shared: found.payload.from_shared,
                }
            })
        };
        (hit, Pending { query, vector: Some(vector) })
    }

    /// Stores `cached` as the answer of `pending` (embedding its text first when the lookup did
    /// not) and publishes it for the other replicas. Runs on a job, after the answer has gone.
    pub(crate) fn store(&self, pending: Pending, cached: Arc<Cached>) {
        let cache = self.clone();
        self.0.tasks.job("semantic-cache-store", async move {
            let vector = match pending.vector {
                Some(vector) => vector,
                None => match cache.embed(&pending.query.text).await {
                    Some(vector) => vector,
                    None => return,
                },
            };
            let now = now_ms();
            let expires_at_ms = now.saturating_add(u64::try_from(cache.0.ttl.as_millis()).unwrap_or(u64::MAX));
            let query = pending.query;
            // In process, nobody needs the vector and the answer: the listing reads the rest.
            let replicated = cache.0.shared.is_some();
            let engine = base64::engine::general_purpose::STANDARD;
            let record = SharedEntry {
                replica: cache.0.replica.clone(),
                partition: query.partition,
                tenant: query.tenant.clone(),
                model: query.model.clone(),
                text: query.text.clone(),
                expires_at_ms,
                created_at_ms: now,
                vector: if replicated {
                    engine.encode(vector.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
                } else {
                    String::new()
                },
                stream: cached.stream,
                content_type: cached.content_type.clone(),
                body: if replicated { engine.encode(&cached.body) } else { String::new() },
            };
            cache.insert(
                query.partition,
                &vector,
                Entry {
                    features: Features::of(&query.text),
                    text: query.text,
                    tenant: query.tenant,
                    model: query.model,
                    expires_at_ms,
                    from_shared: false,
                    cached,
                },
            );
            let payload = serde_json::to_vec(&StreamRecord::Put(Box::new(record))).unwrap_or_default();
            if let Err(error) = cache.0.publish_to.stream_append(ENTRIES_STREAM, &payload, STREAM_MAX_LEN).await {
                tracing::debug!(%error, "semantic cache entry not published");
            }
        });
    }

    fn insert(&self, partition: u64, vector: &[f32], entry: Entry) {
        let bytes = entry.cached.body.len() + entry.text.len() + entry.content_type_len();
        let expires = entry.expires_at_ms;
        let mut index = self.0.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        index.insert(partition, vector, entry, bytes, expires);
    }

    /// Forgets the entries of `tenant` and of `model` (each when given); returns how many.
    pub(crate) fn delete(&self, tenant: Option<&str>, model: Option<&str>) -> usize {
        let mut index = self.0.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        index
            .remove_where(|_, entry| tenant.is_none_or(|t| entry.tenant == t) && model.is_none_or(|m| entry.model == m))
    }

    /// `(entries, bytes)` of the process's index.
    pub(crate) fn size(&self) -> (usize, usize) {
        let index = self.0.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (index.len(), index.bytes())
    }

    /// Applies the entries stream to the index, from its start, then every [`FOLLOW_EVERY`].
    async fn follow(self) {
        let Some(shared) = self.0.shared.clone() else { return };
        let mut after = "0-0".to_owned();
        let mut sweep = Instant::now();
        loop {
            match shared.stream_after(ENTRIES_STREAM, &after, 500).await {
                Ok(records) if !records.is_empty() => {
                    for (id, payload) in records {
                        self.apply(&payload);
                        after = id;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "semantic cache stream not read"),
            }
            if sweep.elapsed() > Duration::from_secs(30) {
                sweep = Instant::now();
                self.0.index.write().unwrap_or_else(std::sync::PoisonError::into_inner).sweep(now_ms());
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }

    fn apply(&self, payload: &[u8]) {
        match serde_json::from_slice::<StreamRecord>(payload) {
            Ok(StreamRecord::Put(entry)) if entry.replica != self.0.replica && entry.expires_at_ms > now_ms() => {
                let engine = base64::engine::general_purpose::STANDARD;
                let (Ok(vector), Ok(body)) = (engine.decode(&entry.vector), engine.decode(&entry.body)) else { return };
                let vector: Vec<f32> =
                    vector.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))).collect();
                if vector.len() != self.0.embedder.dimensions() {
                    return;
                }
                let entry = *entry;
                self.insert(
                    entry.partition,
                    &vector,
                    Entry {
                        cached: Arc::new(Cached {
                            stream: entry.stream,
                            content_type: entry.content_type,
                            body: bytes::Bytes::from(body),
                        }),
                        features: Features::of(&entry.text),
                        text: entry.text,
                        tenant: entry.tenant,
                        model: entry.model,
                        expires_at_ms: entry.expires_at_ms,
                        from_shared: true,
                    },
                );
            }
            Ok(StreamRecord::Delete { tenant, model }) => {
                self.delete(tenant.as_deref(), model.as_deref());
            }
            Ok(StreamRecord::Put(_)) => {}
            Err(error) => tracing::debug!(%error, "unreadable semantic cache record skipped"),
        }
    }
}

impl Entry {
    fn content_type_len(&self) -> usize {
        self.cached.content_type.len()
    }
}

/// The message a prompt pointer belongs to: `/messages/3/content/0/text` → `/messages/3`.
fn message_of(pointer: &str) -> String {
    let mut parts = pointer.splitn(4, '/');
    let _ = parts.next();
    match (parts.next(), parts.next()) {
        (Some(first @ ("messages" | "input")), Some(index)) if index.bytes().all(|b| b.is_ascii_digit()) => {
            format!("/{first}/{index}")
        }
        (Some(first), _) => format!("/{first}"),
        (None, _) => String::new(),
    }
}

/// Whether any message carries a part that is not text (an image, audio, a file).
fn has_non_text_parts(body: &Value) -> bool {
    let messages = body.get("messages").or_else(|| body.get("input")).and_then(Value::as_array);
    messages.into_iter().flatten().any(|message| {
        message.get("content").and_then(Value::as_array).into_iter().flatten().any(|part| {
            !matches!(part.get("type").and_then(Value::as_str), Some("text" | "input_text" | "output_text") | None)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_map_to_their_message() {
        assert_eq!(message_of("/messages/3/content/0/text"), "/messages/3");
        assert_eq!(message_of("/messages/12/content"), "/messages/12");
        assert_eq!(message_of("/system"), "/system");
        assert_eq!(message_of("/system/0/text"), "/system");
        assert_eq!(message_of("/input"), "/input");
        assert_eq!(message_of("/input/2/content/1/text"), "/input/2");
        assert_eq!(message_of(""), "");
    }

    #[test]
    fn images_and_audio_are_non_text() {
        let with_image = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "data:"}}]}]});
        assert!(has_non_text_parts(&with_image));
        let text = serde_json::json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        assert!(!has_non_text_parts(&text));
        assert!(!has_non_text_parts(&serde_json::json!({"messages": [{"role": "user", "content": "hi"}]})));
    }
}
