//! State shared by proxy replicas: counters and small values with an expiry.
//!
//! With a Redis URL the state lives in Redis (so every replica sees the same counters); without one
//! it lives in process (one locked map), behind the same methods. Redis keys are prefixed, so tests and
//! tenants of one Redis never collide; the in-process map belongs to one `SharedState` and needs none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
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
}

#[derive(Clone)]
enum Inner {
    Redis { pool: deadpool_redis::Pool, client: redis::Client },
    Local(Arc<LocalStore>),
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
struct LocalEntry {
    data: LocalData,
    expires: Instant,
}

/// The in-process backend: one map behind one lock, never held across an `await`. Every operation
/// is a few hash lookups, so one lock serves a whole process's requests; it also makes a
/// multi-key claim atomic, as the Lua script does in Redis. Expired entries are ignored when read
/// and swept at most once a second.
#[derive(Debug)]
struct LocalStore {
    map: std::sync::Mutex<LocalMap>,
}

#[derive(Debug)]
struct LocalMap {
    /// Keys are made by the server (never by clients), so a fast hasher is safe here.
    entries: std::collections::HashMap<String, LocalEntry, foldhash::fast::RandomState>,
    last_sweep: Instant,
}

/// How often expired entries are removed from the in-process map.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl LocalStore {
    fn new() -> Self {
        Self {
            map: std::sync::Mutex::new(LocalMap {
                entries: std::collections::HashMap::default(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Runs `op` on the map with expired entries out of the way.
    fn with<T>(&self, op: impl FnOnce(&mut LocalMap, Instant) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(map.last_sweep) >= SWEEP_EVERY {
            map.entries.retain(|_, entry| entry.expires > now);
            map.last_sweep = now;
        }
        op(&mut map, now)
    }
}

impl LocalMap {
    fn live(&self, key: &str, now: Instant) -> Option<&LocalEntry> {
        self.entries.get(key).filter(|entry| entry.expires > now)
    }

    fn counter(&self, key: &str, now: Instant) -> i64 {
        match self.live(key, now).map(|entry| &entry.data) {
            Some(LocalData::Counter(n)) => *n,
            _ => 0,
        }
    }

    /// Adds `delta`; a new (or expired) counter expires after `ttl`, an existing one keeps its
    /// expiry unless `refresh`.
    fn add(&mut self, key: &str, delta: i64, ttl: Duration, refresh: bool, now: Instant) -> i64 {
        let expires = now + ttl;
        if let Some(entry) = self.entries.get_mut(key)
            && entry.expires > now
        {
            let current = match entry.data {
                LocalData::Counter(n) => n,
                LocalData::Bytes(_) => 0,
            };
            let next = current.saturating_add(delta);
            entry.data = LocalData::Counter(next);
            if refresh {
                entry.expires = expires;
            }
            return next;
        }
        self.entries.insert(key.to_owned(), LocalEntry { data: LocalData::Counter(delta), expires });
        delta
    }
}

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
            None => Inner::Local(Arc::new(LocalStore::new())),
        };
        Ok(Self { inner, prefix: Arc::from(prefix), channels: Arc::default() })
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
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let key = self.key(key);
                let mut conn = Self::conn(pool).await?;
                Ok(conn.get(key).await?)
            }
            Inner::Local(store) => Ok(store.with(|map, now| {
                map.live(key, now).map(|entry| match &entry.data {
                    LocalData::Bytes(bytes) => bytes.to_vec(),
                    LocalData::Counter(n) => n.to_string().into_bytes(),
                })
            })),
        }
    }

    /// Stores `value` at `key` for `ttl`.
    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let key = self.key(key);
                let mut conn = Self::conn(pool).await?;
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let _: () = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis).query_async(&mut conn).await?;
                Ok(())
            }
            Inner::Local(store) => {
                store.with(|map, now| {
                    map.entries.insert(
                        key.to_owned(),
                        LocalEntry { data: LocalData::Bytes(Arc::from(value)), expires: now + ttl },
                    );
                });
                Ok(())
            }
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value. The counter is created at 0
    /// with expiry `ttl` on first use and keeps that expiry (a fixed window).
    pub async fn incr_by(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let key = self.key(key);
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
            Inner::Local(store) => Ok(store.with(|map, now| map.add(key, delta, ttl, false, now))),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let key = self.key(key);
                let mut conn = Self::conn(pool).await?;
                let _: i64 = conn.del(key).await?;
                Ok(())
            }
            Inner::Local(store) => {
                store.with(|map, _| map.entries.remove(key));
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

/// What a [`Claim`] counts, and so when it is admitted and how its counter expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKind {
    /// A fixed window (requests per minute or hour): admitted when counter + delta ≤ limit. The
    /// expiry is set when the window opens and kept.
    Window,
    /// A token window: admitted while the counter before this claim is below the limit (the
    /// estimate may take it past). The expiry is set when the window opens and kept.
    TokenWindow,
    /// Requests in flight: admitted when counter + delta ≤ limit. Every claim renews the expiry,
    /// so a crashed process's claims disappear after `ttl` without new traffic.
    InFlight,
    /// A budget reservation: the claim's counter holds reservations, `settled_key` the settled
    /// amount; admitted when settled + reserved + delta ≤ limit. Every claim renews the expiry.
    Budget {
        /// Counter of settled spend.
        settled_key: String,
    },
}

/// One limit checked and claimed by [`SharedState::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The counter.
    pub key: String,
    /// What this request adds to it.
    pub delta: i64,
    /// The limit; 0 claims without checking.
    pub limit: i64,
    /// Expiry of the counter (see [`ClaimKind`]).
    pub ttl: Duration,
    /// How the claim is checked.
    pub kind: ClaimKind,
}

/// The answer to [`SharedState::claim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimOutcome {
    /// Index of the first claim that did not fit; `None` when all were applied.
    pub rejected: Option<usize>,
    /// Index of the first budget claim whose settled counter does not exist (never loaded, or
    /// expired): nothing was applied. Load it (e.g. with [`SharedState::set_nx`]) and claim again.
    pub unloaded: Option<usize>,
    /// Per claim: the counter after the claim (when admitted) or as found (when rejected).
    pub values: Vec<i64>,
    /// Per claim: the settled amount of a budget claim (0 for other kinds).
    pub settled: Vec<i64>,
}

/// One counter change of [`SharedState::adjust`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// The counter.
    pub key: String,
    /// Added to it (negative to give back).
    pub delta: i64,
    /// Expiry for a counter created by this change.
    pub ttl: Duration,
    /// Renew the expiry of an existing counter too.
    pub refresh: bool,
}

/// [`SharedState::claim`] in Redis: all claims are checked, then either none or all are applied,
/// in one round trip. KEYS: each claim's counter, then the budgets' settled counters. ARGV: the
/// number of claims, then per claim: kind (w, t, f, b), delta, limit, ttl in ms, and the KEYS
/// index of the settled counter (0 when none). Returns {rejected index or 0, then per claim value
/// and settled}, or {-index} when a budget's settled counter does not exist (nothing applied).
const CLAIM_SCRIPT: &str = r"
local n = tonumber(ARGV[1])
local out = {0}
for i = 1, n do
  local b = 1 + (i - 1) * 5
  local kind, delta, limit, s = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5])
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  local settled = 0
  if s > 0 then
    local found = redis.call('GET', KEYS[s])
    if not found then return {-i} end
    settled = tonumber(found)
  end
  local fits = true
  if limit > 0 then
    if kind == 't' then fits = value < limit
    elseif kind == 'b' then fits = settled + value + delta <= limit
    else fits = value + delta <= limit end
  end
  out[2 * i] = value
  out[2 * i + 1] = settled
  if not fits and out[1] == 0 then out[1] = i end
end
if out[1] > 0 then return out end
for i = 1, n do
  local b = 1 + (i - 1) * 5
  out[2 * i] = redis.call('INCRBY', KEYS[i], ARGV[b + 2])
  if ARGV[b + 1] == 'w' or ARGV[b + 1] == 't' then
    redis.call('PEXPIRE', KEYS[i], ARGV[b + 4], 'NX')
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[b + 4])
  end
end
return out
";

/// SHA1 of [`CLAIM_SCRIPT`], as Redis answered `SCRIPT LOAD` (the same on every server).
static CLAIM_SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn load_claim_script(conn: &mut deadpool_redis::Connection) -> Result<String, SharedError> {
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(CLAIM_SCRIPT).query_async(conn).await?;
    let _ = CLAIM_SHA.set(sha.clone());
    Ok(sha)
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedState {
    /// Sets `key` to `value` for `ttl` unless it already exists; returns whether it was set.
    pub async fn set_nx(&self, key: &str, value: i64, ttl: Duration) -> Result<bool, SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let key = self.key(key);
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
            Inner::Local(store) => Ok(store.with(|map, now| {
                if map.live(key, now).is_some() {
                    return false;
                }
                map.entries.insert(key.to_owned(), LocalEntry { data: LocalData::Counter(value), expires: now + ttl });
                true
            })),
        }
    }

    /// Checks every claim and applies them all, or none when one does not fit: an admission's
    /// limits (requests in flight, windows, budgets) in one atomic step and, with Redis, one round
    /// trip.
    pub async fn claim(&self, claims: &[Claim]) -> Result<ClaimOutcome, SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                // EVALSHA: the script is sent (SCRIPT LOAD) once per process and again only when
                // the server lost it (a restart or SCRIPT FLUSH), not with every request.
                let command = |sha: &str| {
                    let mut command = redis::cmd("EVALSHA");
                    command.arg(sha);
                    self.claim_arguments(&mut command, claims);
                    command
                };
                let mut conn = Self::conn(pool).await?;
                let reply: Vec<i64> = match CLAIM_SHA.get() {
                    Some(sha) => match command(sha).query_async(&mut conn).await {
                        Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                            let sha = load_claim_script(&mut conn).await?;
                            command(&sha).query_async(&mut conn).await?
                        }
                        reply => reply?,
                    },
                    None => {
                        let sha = load_claim_script(&mut conn).await?;
                        command(&sha).query_async(&mut conn).await?
                    }
                };
                Self::claim_reply(&reply, claims.len())
            }
            Inner::Local(_) => Ok(self.claim_in_process(claims).unwrap_or_default()),
        }
    }

    /// The claim script's KEYS and ARGV for `claims` (see [`CLAIM_SCRIPT`]).
    fn claim_arguments(&self, command: &mut redis::Cmd, claims: &[Claim]) {
        let budgets = claims.iter().filter(|c| matches!(c.kind, ClaimKind::Budget { .. })).count();
        command.arg(claims.len() + budgets);
        for claim in claims {
            command.arg(self.key(&claim.key));
        }
        for claim in claims {
            if let ClaimKind::Budget { settled_key } = &claim.kind {
                command.arg(self.key(settled_key));
            }
        }
        command.arg(claims.len());
        let mut settled_index = claims.len();
        for claim in claims {
            let (kind, settled) = match &claim.kind {
                ClaimKind::Window => ("w", 0),
                ClaimKind::TokenWindow => ("t", 0),
                ClaimKind::InFlight => ("f", 0),
                ClaimKind::Budget { .. } => {
                    settled_index += 1;
                    ("b", settled_index)
                }
            };
            command.arg(kind).arg(claim.delta).arg(claim.limit).arg(millis(claim.ttl)).arg(settled);
        }
    }

    /// Reads the claim script's answer for `count` claims.
    fn claim_reply(reply: &[i64], count: usize) -> Result<ClaimOutcome, SharedError> {
        let rejected = reply.first().copied().unwrap_or(0);
        if rejected < 0 {
            let index = usize::try_from(-rejected).unwrap_or(1).saturating_sub(1);
            return Ok(ClaimOutcome { unloaded: Some(index), ..ClaimOutcome::default() });
        }
        let mut outcome = ClaimOutcome {
            rejected: usize::try_from(rejected).ok().filter(|&i| i > 0).map(|i| i - 1),
            ..ClaimOutcome::default()
        };
        for pair in reply.get(1..).unwrap_or_default().chunks_exact(2) {
            outcome.values.push(pair[0]);
            outcome.settled.push(pair[1]);
        }
        if outcome.values.len() != count {
            return Err(SharedError::Command(format!(
                "claim script answered {} values for {} claims",
                outcome.values.len(),
                count
            )));
        }
        Ok(outcome)
    }

    /// Applies counter changes together (atomically in Redis, in one round trip): what settling
    /// an admission does.
    pub async fn adjust(&self, changes: &[Adjustment]) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis { pool, .. } => {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for change in changes {
                    let key = self.key(&change.key);
                    pipe.cmd("INCRBY").arg(&key).arg(change.delta).ignore();
                    let expire = pipe.cmd("PEXPIRE").arg(&key).arg(millis(change.ttl));
                    if !change.refresh {
                        expire.arg("NX");
                    }
                    expire.ignore();
                }
                let mut conn = Self::conn(pool).await?;
                let _: () = pipe.query_async(&mut conn).await?;
                Ok(())
            }
            Inner::Local(_) => {
                self.adjust_in_process(changes);
                Ok(())
            }
        }
    }
}

impl SharedState {
    /// [`claim`](Self::claim) at once, without an `await`, when the state is in process; `None`
    /// without doing anything when it is in Redis.
    pub fn claim_in_process(&self, claims: &[Claim]) -> Option<ClaimOutcome> {
        let Inner::Local(store) = &self.inner else { return None };
        Some(store.with(|map, now| {
            let mut outcome = ClaimOutcome::default();
            for (index, claim) in claims.iter().enumerate() {
                let value = map.counter(&claim.key, now);
                let settled = match &claim.kind {
                    ClaimKind::Budget { settled_key } => match map.live(settled_key, now) {
                        Some(LocalEntry { data: LocalData::Counter(n), .. }) => *n,
                        _ => return ClaimOutcome { unloaded: Some(index), ..ClaimOutcome::default() },
                    },
                    _ => 0,
                };
                let fits = claim.limit <= 0
                    || match claim.kind {
                        ClaimKind::TokenWindow => value < claim.limit,
                        ClaimKind::Budget { .. } => {
                            settled.saturating_add(value).saturating_add(claim.delta) <= claim.limit
                        }
                        ClaimKind::Window | ClaimKind::InFlight => value.saturating_add(claim.delta) <= claim.limit,
                    };
                if !fits && outcome.rejected.is_none() {
                    outcome.rejected = Some(outcome.values.len());
                }
                outcome.values.push(value);
                outcome.settled.push(settled);
            }
            if outcome.rejected.is_none() {
                for (claim, value) in claims.iter().zip(&mut outcome.values) {
                    let refresh = matches!(claim.kind, ClaimKind::InFlight | ClaimKind::Budget { .. });
                    *value = map.add(&claim.key, claim.delta, claim.ttl, refresh, now);
                }
            }
            outcome
        }))
    }

    /// Applies `changes` at once, without a task or an `await`, when the state is in process;
    /// returns `false` without doing anything when it is in Redis (use [`adjust`](Self::adjust)).
    pub fn adjust_in_process(&self, changes: &[Adjustment]) -> bool {
        match &self.inner {
            Inner::Redis { .. } => false,
            Inner::Local(store) => {
                store.with(|map, now| {
                    for change in changes {
                        map.add(&change.key, change.delta, change.ttl, change.refresh, now);
                    }
                });
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
