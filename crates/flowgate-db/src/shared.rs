//! State shared by proxy replicas: counters and small values with an expiry.
//!
//! With a Redis URL the state lives in Redis (so every replica sees the same counters); without one
//! it lives in process (moka), behind the same methods. Every key is prefixed, so tests and tenants
//! of one Redis never collide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
use moka::Expiry;
use secrecy::{ExposeSecret, SecretString};

/// Failures of the shared state. Messages never contain the Redis URL's password.
#[derive(Debug, thiserror::Error)]
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

impl From<redis::RedisError> for SharedError {
    fn from(error: redis::RedisError) -> Self {
        Self::Command(error.to_string())
    }
}

/// Shared counters and values, in Redis or in process. Cheap to clone.
#[derive(Clone)]
pub struct SharedState {
    inner: Inner,
    prefix: Arc<str>,
    channels: Arc<std::sync::Mutex<std::collections::HashMap<String, tokio::sync::broadcast::Sender<Notification>>>>,
    /// Serialises in-process budget reservations (Redis uses a script instead).
    budget_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Clone)]
enum Inner {
    Redis { pool: deadpool_redis::Pool, client: redis::Client },
    Local(moka::future::Cache<String, LocalValue>),
}

/// What a subscriber of a channel receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A published message.
    Message(String),
    /// The subscription was re-established after Redis was unreachable: messages may have been
    /// missed, so anything cached on their account should be dropped.
    Resync,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("backend", &if self.is_shared() { "redis" } else { "local" })
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Clone, Debug)]
enum LocalData {
    Bytes(Arc<[u8]>),
    Counter(i64),
}

#[derive(Clone, Debug)]
struct LocalValue {
    data: LocalData,
    ttl: Duration,
}

/// Values expire after their own TTL; a counter keeps the TTL of its first increment (a fixed
/// window), a value rewritten with `set_ex` gets its new TTL.
struct LocalExpiry;

impl Expiry<String, LocalValue> for LocalExpiry {
    fn expire_after_create(&self, _key: &String, value: &LocalValue, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &LocalValue,
        _now: Instant,
        current: Option<Duration>,
    ) -> Option<Duration> {
        match value.data {
            LocalData::Counter(_) => current,
            LocalData::Bytes(_) => Some(value.ttl),
        }
    }
}

/// Keys kept in process at most; the oldest are evicted first.
const LOCAL_CAPACITY: u64 = 1_000_000;

impl SharedState {
    /// Redis at `url`, or in-process state when `url` is `None`. Connecting to Redis is lazy: a
    /// Redis that is down at start does not stop the process; calls fail until it returns.
    pub fn new(url: Option<&SecretString>, prefix: &str) -> Result<Self, SharedError> {
        let inner = match url {
            Some(url) => {
                let client = redis::Client::open(url.expose_secret()).map_err(|e| SharedError::Url(e.to_string()))?;
                let mut config = deadpool_redis::Config::from_url(url.expose_secret());
                let mut pool = deadpool_redis::PoolConfig::new(64);
                pool.timeouts.wait = Some(Duration::from_millis(500));
                pool.timeouts.create = Some(Duration::from_millis(500));
                pool.timeouts.recycle = Some(Duration::from_millis(500));
                config.pool = Some(pool);
                let pool = config
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map_err(|e| SharedError::Url(e.to_string()))?;
                Inner::Redis { pool, client }
            }
            None => Inner::Local(
                moka::future::Cache::builder().max_capacity(LOCAL_CAPACITY).expire_after(LocalExpiry).build(),
            ),
        };
        Ok(Self { inner, prefix: Arc::from(prefix), channels: Arc::default(), budget_lock: Arc::default() })
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

    /// The Redis pool, for scripts and pub/sub in the services; `None` in process.
    pub fn redis(&self) -> Option<&deadpool_redis::Pool> {
        match &self.inner {
            Inner::Redis { pool, .. } => Some(pool),
            Inner::Local(_) => None,
        }
    }

    /// The key prefix, for services that build their own Redis commands.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn conn(pool: &deadpool_redis::Pool) -> Result<deadpool_redis::Connection, SharedError> {
        pool.get().await.map_err(|e| SharedError::Unavailable(e.to_string()))
    }

    /// Checks the backend answers.
    pub async fn ping(&self) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            }
            Inner::Local(_) => Ok(()),
        }
    }

    /// The value at `key`, if present and not expired.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SharedError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                Ok(conn.get(key).await?)
            }
            Inner::Local(cache) => Ok(cache.get(&key).await.map(|v| match v.data {
                LocalData::Bytes(bytes) => bytes.to_vec(),
                LocalData::Counter(n) => n.to_string().into_bytes(),
            })),
        }
    }

    /// Stores `value` at `key` for `ttl`.
    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), SharedError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let _: () = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis).query_async(&mut conn).await?;
                Ok(())
            }
            Inner::Local(cache) => {
                cache.insert(key, LocalValue { data: LocalData::Bytes(Arc::from(value)), ttl }).await;
                Ok(())
            }
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value. The counter is created at 0
    /// with expiry `ttl` on first use and keeps that expiry (a fixed window).
    pub async fn incr_by(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, SharedError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                // INCRBY then PEXPIRE NX: the expiry is set once, when the window opens.
                let (value, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .cmd("INCRBY")
                    .arg(&key)
                    .arg(delta)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis)
                    .arg("NX")
                    .query_async(&mut conn)
                    .await?;
                Ok(value)
            }
            Inner::Local(cache) => {
                let result = cache
                    .entry(key)
                    .and_compute_with(|existing| {
                        let current = match existing.map(moka::Entry::into_value) {
                            Some(LocalValue { data: LocalData::Counter(n), .. }) => n,
                            _ => 0,
                        };
                        let next = LocalValue { data: LocalData::Counter(current.saturating_add(delta)), ttl };
                        std::future::ready(moka::ops::compute::Op::Put(next))
                    })
                    .await;
                match result.into_entry().map(moka::Entry::into_value) {
                    Some(LocalValue { data: LocalData::Counter(n), .. }) => Ok(n),
                    _ => Ok(delta),
                }
            }
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), SharedError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let _: i64 = conn.del(key).await?;
                Ok(())
            }
            Inner::Local(cache) => {
                cache.invalidate(&key).await;
                Ok(())
            }
        }
    }
}

impl SharedState {
    /// Publishes `message` on `channel` to every subscriber, in every process sharing this Redis
    /// (or, in process, to this process's subscribers).
    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let _: i64 = conn.publish(self.key(channel), message).await?;
                Ok(())
            }
            Inner::Local(_) => {
                if let Some(sender) =
                    self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(channel)
                {
                    let _ = sender.send(Notification::Message(message.to_owned()));
                }
                Ok(())
            }
        }
    }

    /// Subscribes to `channel`. With Redis, one background task per channel keeps the subscription
    /// alive, reconnecting every second while Redis is down and sending [`Notification::Resync`]
    /// after each reconnection.
    pub fn subscribe(&self, channel: &str) -> tokio::sync::broadcast::Receiver<Notification> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = channels.get(channel) {
            return sender.subscribe();
        }
        let (sender, receiver) = tokio::sync::broadcast::channel(1024);
        channels.insert(channel.to_owned(), sender.clone());
        if let Inner::Redis { client, .. } = &self.inner {
            tokio::spawn(listen(client.clone(), self.key(channel), sender));
        }
        receiver
    }
}

/// Keeps a Redis subscription to `channel` alive and forwards its messages to `sender`, until no
/// receiver is left.
async fn listen(client: redis::Client, channel: String, sender: tokio::sync::broadcast::Sender<Notification>) {
    use futures_util::StreamExt;
    let mut first = true;
    while sender.receiver_count() > 0 {
        let pubsub = match tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                Ok(()) => Some(pubsub),
                Err(error) => {
                    tracing::warn!(%error, channel, "Redis subscribe failed");
                    None
                }
            },
            Ok(Err(error)) => {
                tracing::warn!(%error, channel, "Redis unreachable for subscription; retrying");
                None
            }
            Err(_) => None,
        };
        let Some(mut pubsub) = pubsub else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if !first {
            tracing::info!(channel, "Redis subscription re-established");
            let _ = sender.send(Notification::Resync);
        }
        first = false;
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            if let Ok(payload) = message.get_payload::<String>()
                && sender.send(Notification::Message(payload)).is_err()
            {
                return;
            }
        }
        tracing::warn!(channel, "Redis subscription lost; reconnecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Atomic check-and-reserve against a budget: admitted only when settled + reserved + estimate
/// stays within the limit. Same semantics in Redis (one Lua script) and in process (one lock).
const RESERVE_SCRIPT: &str = r"
local settled = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = tonumber(ARGV[1])
if settled + reserved + estimate > tonumber(ARGV[2]) then
  return {0, settled, reserved}
end
redis.call('INCRBY', KEYS[2], estimate)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, settled, reserved + estimate}
";

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Whether the estimate fit.
    pub admitted: bool,
    /// Settled amount at the time of the check.
    pub settled: i64,
    /// Reserved amount after the check (including this estimate when admitted).
    pub reserved: i64,
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedState {
    /// Sets `key` to `value` for `ttl` unless it already exists; returns whether it was set.
    pub async fn set_nx(&self, key: &str, value: i64, ttl: Duration) -> Result<bool, SharedError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let set: Option<String> = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn)
                    .await?;
                Ok(set.is_some())
            }
            Inner::Local(cache) => {
                let entry = cache
                    .entry(key)
                    .or_insert_with(async { LocalValue { data: LocalData::Counter(value), ttl } })
                    .await;
                Ok(entry.is_fresh())
            }
        }
    }

    /// Reserves `estimate` against `limit`, given the settled amount at `settled_key` and the
    /// reservations at `reserved_key` (both counters). The reservation counter expires after `ttl`
    /// without new reservations, so a crashed process cannot hold a budget forever.
    pub async fn reserve(
        &self,
        settled_key: &str,
        reserved_key: &str,
        estimate: i64,
        limit: i64,
        ttl: Duration,
    ) -> Result<Reservation, SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let (admitted, settled, reserved): (i64, i64, i64) = redis::cmd("EVAL")
                    .arg(RESERVE_SCRIPT)
                    .arg(2)
                    .arg(self.key(settled_key))
                    .arg(self.key(reserved_key))
                    .arg(estimate)
                    .arg(limit)
                    .arg(millis(ttl))
                    .query_async(&mut conn)
                    .await?;
                Ok(Reservation { admitted: admitted == 1, settled, reserved })
            }
            Inner::Local(cache) => {
                let _guard = self.budget_lock.lock().await;
                let read = |v: Option<LocalValue>| match v.map(|v| v.data) {
                    Some(LocalData::Counter(n)) => n,
                    _ => 0,
                };
                let settled = read(cache.get(&self.key(settled_key)).await);
                let reserved = read(cache.get(&self.key(reserved_key)).await);
                if settled.saturating_add(reserved).saturating_add(estimate) > limit {
                    return Ok(Reservation { admitted: false, settled, reserved });
                }
                let reserved = self.incr_by(reserved_key, estimate, ttl).await?;
                Ok(Reservation { admitted: true, settled, reserved })
            }
        }
    }

    /// Moves a reservation to settled: settled += `actual`, reserved -= `estimate`, atomically.
    pub async fn settle(
        &self,
        settled_key: &str,
        reserved_key: &str,
        actual: i64,
        estimate: i64,
        ttl: Duration,
    ) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut conn = Self::conn(pool).await?;
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("INCRBY")
                    .arg(self.key(settled_key))
                    .arg(actual)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(self.key(settled_key))
                    .arg(millis(ttl))
                    .ignore()
                    .cmd("DECRBY")
                    .arg(self.key(reserved_key))
                    .arg(estimate)
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            }
            Inner::Local(_) => {
                let _guard = self.budget_lock.lock().await;
                self.incr_by(settled_key, actual, ttl).await?;
                self.incr_by(reserved_key, -estimate, ttl).await?;
                Ok(())
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
