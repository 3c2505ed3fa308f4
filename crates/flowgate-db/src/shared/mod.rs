//! State shared by proxy replicas: counters and small values with an expiry.
//!
//! With a Redis URL the state lives in Redis (so every replica sees the same counters); without one
//! it lives in process (one locked map), behind the same methods. Redis keys are prefixed, so tests and
//! tenants of one Redis never collide; the in-process map belongs to one `SharedState` and needs none.
//!
//! # Layout
//! - this module: the [`SharedState`] facade; each method prefixes keys and picks the backend.
//! - `redis`: the one multiplexed Redis connection and the plain commands over it.
//! - `in_process`: the locked map, with the claim and settle rules applied under its lock.
//! - `pubsub`: [`Notification`]s, the process's broadcast channels and the Redis subscriptions.
//! - `claim`: [`Claim`], [`Adjustment`] and friends, and the batching and bundling of concurrent
//!   Redis claims into one call of the claim script (`claim.lua`); settlements go through the
//!   settle script (`settle.lua`). In-flight and budget reservations expire one by one.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod claim;
mod in_process;
mod pubsub;
mod redis;

pub use claim::{Adjustment, Claim, ClaimKind, ClaimOutcome};
pub use pubsub::Notification;

use self::in_process::LocalStore;
use self::pubsub::Channels;
use self::redis::Redis;

/// Failures of the shared state. Messages never contain the Redis URL's password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedError {
    /// The Redis URL is malformed.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis did not answer in time or refused the connection.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// A Redis command failed.
    #[error("Redis command failed: {0}")]
    Command(String),
}

impl From<::redis::RedisError> for SharedError {
    fn from(error: ::redis::RedisError) -> Self {
        Self::Command(error.to_string())
    }
}

/// Shared counters and values, in Redis or in process. Cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    inner: Inner,
    prefix: Arc<str>,
    channels: Arc<Channels>,
    /// The next claim's reservation id (from a random start, so processes sharing a Redis do not
    /// meet).
    reservations: Arc<std::sync::atomic::AtomicU64>,
    /// In process: the streams, by name (record number, payload), oldest first.
    streams: Arc<std::sync::Mutex<std::collections::HashMap<String, LocalStream>>>,
}

/// An in-process stream: the next record number and the records kept.
#[derive(Debug, Default)]
struct LocalStream {
    next: u64,
    records: std::collections::VecDeque<(u64, Vec<u8>)>,
}

/// A random start for reservation ids.
fn random_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[derive(Clone)]
enum Inner {
    Redis(Arc<Redis>),
    Local(Arc<LocalStore>),
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("backend", &if self.is_shared() { "redis" } else { "local" })
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl SharedState {
    /// Redis at `url`, or in-process state when `url` is `None`. Connecting to Redis is lazy: a
    /// Redis that is down at start does not stop the process; calls fail until it returns.
    pub fn new(url: Option<&SecretString>, prefix: &str) -> Result<Self, SharedError> {
        let inner = match url {
            Some(url) => {
                let client = ::redis::Client::open(url.expose_secret()).map_err(|e| SharedError::Url(e.to_string()))?;
                Inner::Redis(Arc::new(Redis::new(client)))
            }
            None => Inner::Local(Arc::new(LocalStore::new())),
        };
        Ok(Self {
            inner,
            prefix: Arc::from(prefix),
            channels: Arc::default(),
            reservations: Arc::new(std::sync::atomic::AtomicU64::new(random_start())),
            streams: Arc::default(),
        })
    }

    /// In-process state only; what a process uses without Redis, and the fallback when Redis is
    /// down.
    pub fn local(prefix: &str) -> Self {
        // `new(None, ..)` cannot fail.
        match Self::new(None, prefix) {
            Ok(state) => state,
            Err(_) => unreachable_local(),
        }
    }

    /// True when backed by Redis (shared by replicas).
    pub fn is_shared(&self) -> bool {
        matches!(self.inner, Inner::Redis { .. })
    }

    /// The key prefix, for services that build their own Redis commands.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Checks the backend answers.
    pub async fn ping(&self) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.ping().await,
            Inner::Local(_) => Ok(()),
        }
    }

    /// The value at `key`, if present and not expired.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.get(self.key(key)).await,
            Inner::Local(store) => Ok(store.get(key)),
        }
    }

    /// Stores `value` at `key` for `ttl`.
    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.set_ex(self.key(key), value, ttl).await,
            Inner::Local(store) => {
                store.set_ex(key, value, ttl);
                Ok(())
            }
        }
    }

    /// Every value whose key starts with `prefix` (keys returned without the state's own
    /// prefix): what a reader of per-replica snapshots uses. Cost grows with the keys that match.
    pub async fn values_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, SharedError> {
        match &self.inner {
            Inner::Redis(server) => {
                let escaped: String = self
                    .key(prefix)
                    .chars()
                    .flat_map(|c| if matches!(c, '*' | '?' | '[' | ']' | '\\') { vec!['\\', c] } else { vec![c] })
                    .collect();
                let found = server.values_matching(format!("{escaped}*")).await?;
                Ok(found
                    .into_iter()
                    .map(|(k, v)| (k.strip_prefix(&*self.prefix).map_or(k.clone(), str::to_owned), v))
                    .collect())
            }
            Inner::Local(store) => Ok(store.values_with_prefix(prefix)),
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value. The counter is created at 0
    /// with expiry `ttl` on first use and keeps that expiry (a fixed window).
    pub async fn incr_by(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.incr_by(self.key(key), delta, ttl).await,
            Inner::Local(store) => Ok(store.incr_by(key, delta, ttl)),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.delete(self.key(key)).await,
            Inner::Local(store) => {
                store.delete(key);
                Ok(())
            }
        }
    }

    /// Sets `key` to `value` for `ttl` unless it already exists; returns whether it was set.
    pub async fn set_nx(&self, key: &str, value: i64, ttl: Duration) -> Result<bool, SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.set_nx(self.key(key), value, ttl).await,
            Inner::Local(store) => Ok(store.set_nx(key, value, ttl)),
        }
    }

    /// Raises the counter at `key` to `value` (expiring after `ttl`) when it holds less or is
    /// absent; a larger value is kept. What reconciling a counter with its source of truth does.
    pub async fn raise(&self, key: &str, value: i64, ttl: Duration) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.raise(self.key(key), value, ttl).await,
            Inner::Local(store) => {
                store.raise(key, value, ttl);
                Ok(())
            }
        }
    }

    /// Appends `payload` to the stream `key` (trimmed to about `max_len` records): a Redis stream,
    /// or in process a list this process's readers see.
    pub async fn stream_append(&self, key: &str, payload: &[u8], max_len: u64) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.stream_append(self.key(key), payload, max_len).await,
            Inner::Local(_) => {
                let mut streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let stream = streams.entry(key.to_owned()).or_default();
                stream.next += 1;
                let number = stream.next;
                stream.records.push_back((number, payload.to_vec()));
                while u64::try_from(stream.records.len()).unwrap_or(u64::MAX) > max_len.max(1) {
                    stream.records.pop_front();
                }
                Ok(())
            }
        }
    }

    /// Up to `count` records of the stream `key` after the record id `after` (`0-0` for the
    /// first), as `(id, payload)`, oldest first.
    pub async fn stream_after(
        &self,
        key: &str,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.stream_after(self.key(key), after, count).await,
            Inner::Local(_) => {
                let after: u64 = after.split('-').next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let streams = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(streams
                    .get(key)
                    .map(|stream| {
                        stream
                            .records
                            .iter()
                            .filter(|(number, _)| *number > after)
                            .take(count)
                            .map(|(number, payload)| (format!("{number}-0"), payload.clone()))
                            .collect()
                    })
                    .unwrap_or_default())
            }
        }
    }

    /// Publishes `message` on `channel` to every subscriber, in every process sharing this Redis
    /// (or, in process, to this process's subscribers).
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.publish(self.key(channel), message).await,
            Inner::Local(_) => {
                self.channels.deliver(channel, message);
                Ok(())
            }
        }
    }

    /// Subscribes to `channel`. With Redis, one background task per channel keeps the subscription
    /// alive, reconnecting every second while Redis is down and sending [`Notification::Resync`]
    /// after each reconnection.
    pub fn subscribe(&self, channel: &str) -> tokio::sync::broadcast::Receiver<Notification> {
        self.channels.subscribe(channel, |sender| {
            if let Inner::Redis(server) = &self.inner {
                let (client, key) = (server.client().clone(), self.key(channel));
                server.tasks.supervise("redis-subscription", move || {
                    pubsub::listen(client.clone(), key.clone(), sender.clone())
                });
            }
        })
    }

    fn next_reservation(&self) -> u64 {
        self.reservations.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `claims` with their Redis keys (prefixed counters and settled counters).
    fn prefixed(&self, claims: &[Claim]) -> Vec<Claim> {
        let claim = |claim: &Claim| Claim {
            key: self.key(&claim.key),
            kind: match &claim.kind {
                ClaimKind::Budget { settled_key } => ClaimKind::Budget { settled_key: self.key(settled_key) },
                kind => kind.clone(),
            },
            ..*claim
        };
        claims.iter().map(claim).collect()
    }

    /// Checks every claim and applies them all, or none when one does not fit: an admission's
    /// limits (requests in flight, windows, budgets) in one atomic step and, with Redis, one
    /// script call shared with the requests claiming at the same moment.
    pub async fn claim(&self, claims: &[Claim]) -> Result<ClaimOutcome, SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.claim(self.next_reservation(), self.prefixed(claims)).await,
            Inner::Local(store) => Ok(store.claim(self.next_reservation(), claims)),
        }
    }

    /// Applies counter changes together (atomically in Redis, in one round trip): what settling
    /// an admission does.
    pub async fn adjust(&self, changes: &[Adjustment]) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => server.adjust(changes, |key| self.key(key)).await,
            Inner::Local(store) => {
                store.adjust(changes);
                Ok(())
            }
        }
    }

    /// [`claim`](Self::claim) at once, without an `await`, when the state is in process; `None`
    /// without doing anything when it is in Redis.
    pub fn claim_in_process(&self, claims: &[Claim]) -> Option<ClaimOutcome> {
        let Inner::Local(store) = &self.inner else { return None };
        Some(store.claim(self.next_reservation(), claims))
    }

    /// Applies `changes` at once, without a task or an `await`, when the state is in process;
    /// returns `false` without doing anything when it is in Redis (use [`adjust`](Self::adjust)).
    pub fn adjust_in_process(&self, changes: &[Adjustment]) -> bool {
        match &self.inner {
            Inner::Redis(_) => false,
            Inner::Local(store) => {
                store.adjust(changes);
                true
            }
        }
    }
}

#[cold]
fn unreachable_local() -> ! {
    // Building the in-process backend has no failure path; this is only here so `local` needs no
    // `expect`.
    panic!("in-process shared state cannot fail to build")
}

#[cfg(test)]
mod tests;
