//! State shared by proxy replicas: counters and small values with an expiry.
//!
//! With a Redis URL the state lives in Redis (so every replica sees the same counters); without one
//! it lives in process (one locked map), behind the same methods. Redis keys are prefixed, so tests and
//! tenants of one Redis never collide; the in-process map belongs to one `SharedState` and needs none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

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
    Redis(Arc<Redis>),
    Local(Arc<LocalStore>),
}

/// How long connecting to Redis, and each command, may take before the call fails (and the
/// callers fall back to in-process state).
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The process's Redis: one multiplexed connection that every caller shares. Concurrent commands
/// are pipelined on its socket (their writes and replies batched), with no checkout and no
/// liveness ping per command as a pool would do. A connection that breaks is dropped and the next
/// call connects again.
struct Redis {
    client: redis::Client,
    connection: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held while connecting, so a burst after an outage opens one connection, not one per call.
    connecting: tokio::sync::Mutex<()>,
    claims: std::sync::Mutex<ClaimQueue>,
}

impl Redis {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SharedError> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| SharedError::Unavailable(e.to_string()))?;
        *self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `op` on the shared connection; forgets the connection when the failure means it is
    /// broken.
    async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, SharedError> {
        let mut connection = self.connection().await?;
        match op(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                if error.is_unrecoverable_error() || error.is_io_error() || error.is_connection_dropped() {
                    *self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    return Err(SharedError::Unavailable(error.to_string()));
                }
                Err(error.into())
            }
        }
    }
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
                Inner::Redis(Arc::new(Redis {
                    client,
                    connection: std::sync::Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    claims: std::sync::Mutex::default(),
                }))
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
            Inner::Redis(server) => {
                let _: String = server.run(async |c| redis::cmd("PING").query_async(c).await).await?;
                Ok(())
            }
            Inner::Local(_) => Ok(()),
        }
    }

    /// The value at `key`, if present and not expired.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SharedError> {
        match &self.inner {
            Inner::Redis(server) => {
                let key = self.key(key);
                server.run(async |c| c.get(key).await).await
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
            Inner::Redis(server) => {
                let command = redis::cmd("SET").arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl)).to_owned();
                server.run(async |c| command.query_async(c).await).await
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
            Inner::Redis(server) => {
                let key = self.key(key);
                // INCRBY then PEXPIRE NX: the expiry is set once, when the window opens.
                let pipe = redis::pipe()
                    .atomic()
                    .cmd("INCRBY")
                    .arg(&key)
                    .arg(delta)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis(ttl))
                    .arg("NX")
                    .to_owned();
                let (value, _): (i64, i64) = server.run(async |c| pipe.query_async(c).await).await?;
                Ok(value)
            }
            Inner::Local(store) => Ok(store.with(|map, now| map.add(key, delta, ttl, false, now))),
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => {
                let key = self.key(key);
                let _: i64 = server.run(async |c| c.del(key).await).await?;
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
            Inner::Redis(server) => {
                let channel = self.key(channel);
                let _: i64 = server.run(async |c| c.publish(channel, message).await).await?;
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
        if let Inner::Redis(server) = &self.inner {
            tokio::spawn(listen(server.client.clone(), self.key(channel), sender));
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

impl ClaimOutcome {
    /// Whether every claim was applied.
    pub fn admitted(&self) -> bool {
        self.rejected.is_none() && self.unloaded.is_none()
    }
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

/// [`SharedState::claim`] in Redis, for a batch of requests at once. Requests claiming the same
/// counters (one key's, in one window) come as a *bundle*: their deltas are added with one
/// `INCRBY` per counter and, when every limit holds for the sum, all are admitted, which is what
/// admitting them one after the other would have done. When a limit does not hold for the sum,
/// the bundle is decided one request at a time (each all or nothing) and the counters are
/// corrected to what was admitted. The common case costs a call per counter per bundle, not per
/// request. A counter left at 0 is removed (so a rejected claim leaves nothing behind).
///
/// KEYS: per bundle, its counters, then its budgets' settled counters. ARGV: the number of
/// bundles; per bundle the number of counters `n`, of settled counters `m` and of requests `k`,
/// then per counter: kind (w, t, f, b), limit, ttl in ms and the KEYS index of its settled
/// counter (0 when none), then per request its `n` deltas. Returns per request: status (0
/// admitted, i rejected at claim i, -i: claim i's settled counter does not exist and nothing was
/// applied), then per claim its value (after the claim when admitted, as found otherwise) and
/// settled amount.
const CLAIM_SCRIPT: &str = r"
local out = {}
local a = 2
local kb = 0
for _ = 1, tonumber(ARGV[1]) do
  local n, m, k = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local kind, limit, ttl, settled = {}, {}, {}, {}
  local unloaded = 0
  for i = 1, n do
    local p = a + 3 + (i - 1) * 4
    kind[i], limit[i], ttl[i], settled[i] = ARGV[p], tonumber(ARGV[p + 1]), ARGV[p + 2], 0
    local s = tonumber(ARGV[p + 3])
    if s > 0 and unloaded == 0 then
      local found = redis.call('GET', KEYS[s])
      if found then settled[i] = tonumber(found) else unloaded = i end
    end
  end
  local d = a + 3 + 4 * n
  local delta = {}
  for j = 1, k do
    delta[j] = {}
    for i = 1, n do delta[j][i] = tonumber(ARGV[d + (j - 1) * n + i - 1]) end
  end
  local function fits(i, after, last)
    if limit[i] <= 0 then return true end
    if kind[i] == 't' then return after - last < limit[i] end
    return settled[i] + after <= limit[i]
  end
  local status, value = {}, {}
  if unloaded > 0 then
    for j = 1, k do
      status[j], value[j] = -unloaded, {}
      for i = 1, n do value[j][i] = 0 end
    end
  else
    local sum, after, all = {}, {}, true
    for i = 1, n do
      sum[i] = 0
      for j = 1, k do sum[i] = sum[i] + delta[j][i] end
      after[i] = redis.call('INCRBY', KEYS[kb + i], sum[i])
      all = all and fits(i, after[i], delta[k][i])
    end
    local final = after
    if all then
      local later = {}
      for i = 1, n do later[i] = 0 end
      for j = k, 1, -1 do
        status[j], value[j] = 0, {}
        for i = 1, n do
          value[j][i] = after[i] - later[i]
          later[i] = later[i] + delta[j][i]
        end
      end
    else
      local current = {}
      for i = 1, n do current[i] = after[i] - sum[i] end
      for j = 1, k do
        status[j] = 0
        for i = 1, n do
          if not fits(i, current[i] + delta[j][i], delta[j][i]) then
            status[j] = i
            break
          end
        end
        if status[j] == 0 then
          for i = 1, n do current[i] = current[i] + delta[j][i] end
        end
        value[j] = {}
        for i = 1, n do value[j][i] = current[i] end
      end
      final = current
      for i = 1, n do
        if current[i] ~= after[i] then redis.call('DECRBY', KEYS[kb + i], after[i] - current[i]) end
      end
    end
    for i = 1, n do
      local added = final[i] - (after[i] - sum[i])
      if final[i] == 0 then
        redis.call('DEL', KEYS[kb + i])
      elseif kind[i] == 'w' or kind[i] == 't' then
        if final[i] == added then redis.call('PEXPIRE', KEYS[kb + i], ttl[i], 'NX') end
      elseif added ~= 0 then
        redis.call('PEXPIRE', KEYS[kb + i], ttl[i])
      end
    end
  end
  for j = 1, k do
    out[#out + 1] = status[j]
    for i = 1, n do
      out[#out + 1] = value[j][i]
      out[#out + 1] = settled[i]
    end
  end
  a = d + k * n
  kb = kb + n + m
end
return out
";

/// SHA1 of [`CLAIM_SCRIPT`], as Redis answered `SCRIPT LOAD` (the same on every server).
static CLAIM_SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Most requests' claims sent in one script call.
const CLAIM_BATCH: usize = 64;

/// Where a queued request's claim outcome goes.
type ClaimReply = oneshot::Sender<Result<ClaimOutcome, SharedError>>;

/// Claims waiting for the script, and whether a task is sending them.
#[derive(Default)]
struct ClaimQueue {
    waiting: Vec<(Vec<Claim>, ClaimReply)>,
    sending: bool,
}

impl Redis {
    /// Queues one request's `claims` (keys already prefixed) and waits for their outcome. One task
    /// sends at a time, all claims that queued up while its previous call was on the wire: under
    /// load many requests share one script call, and a lone request's claims go at once.
    async fn claim(self: &Arc<Self>, claims: Vec<Claim>) -> Result<ClaimOutcome, SharedError> {
        let (reply, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.waiting.push((claims, reply));
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).send_claims());
        }
        outcome.await.unwrap_or_else(|_| Err(SharedError::Unavailable("the claim sender stopped".to_owned())))
    }

    async fn send_claims(self: Arc<Self>) {
        loop {
            let batch: Vec<_> = {
                let mut queue = self.claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if queue.waiting.is_empty() {
                    queue.sending = false;
                    return;
                }
                let take = queue.waiting.len().min(CLAIM_BATCH);
                queue.waiting.drain(..take).collect()
            };
            let groups: Vec<&[Claim]> = batch.iter().map(|(claims, _)| claims.as_slice()).collect();
            let outcomes = self.claim_groups(&groups).await;
            let mut abandoned = Vec::new();
            for (index, (claims, reply)) in batch.into_iter().enumerate() {
                let outcome = match &outcomes {
                    Ok(outcomes) => outcomes.get(index).cloned().ok_or_else(|| {
                        SharedError::Command(format!("claim script answered {} groups for {index}", outcomes.len()))
                    }),
                    Err(error) => Err(error.clone()),
                };
                let admitted = outcome.as_ref().is_ok_and(ClaimOutcome::admitted);
                if reply.send(outcome).is_err() && admitted {
                    // The request went away while its claims were on the wire: give them back.
                    abandoned.extend(claims.into_iter().map(|claim| Adjustment {
                        key: claim.key,
                        delta: -claim.delta,
                        ttl: claim.ttl,
                        refresh: false,
                    }));
                }
            }
            if !abandoned.is_empty() {
                let pipe = adjust_pipeline(&abandoned, |key| key.to_owned());
                if let Err(error) = self.run(async |c| pipe.query_async::<()>(c).await).await {
                    tracing::warn!(%error, "cannot give back the claims of abandoned requests; they expire with their counters");
                }
            }
        }
    }

    /// Runs the claim script over `groups` (one request's claims each, keys already prefixed),
    /// bundled by counters; answers per group, in order. EVALSHA: the script is sent (SCRIPT
    /// LOAD) once per process and again only when the server lost it (a restart or SCRIPT FLUSH),
    /// not with every call.
    async fn claim_groups(&self, groups: &[&[Claim]]) -> Result<Vec<ClaimOutcome>, SharedError> {
        let bundles = bundle(groups);
        let command = |sha: &str| {
            let mut command = redis::cmd("EVALSHA");
            command.arg(sha);
            claim_arguments(&mut command, groups, &bundles);
            command
        };
        let reply: Vec<i64> = self
            .run(async |c| match CLAIM_SHA.get() {
                Some(sha) => match command(sha).query_async(c).await {
                    Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        let sha = load_claim_script(c).await?;
                        command(&sha).query_async(c).await
                    }
                    reply => reply,
                },
                None => {
                    let sha = load_claim_script(c).await?;
                    command(&sha).query_async(c).await
                }
            })
            .await?;
        claim_reply(&reply, groups, &bundles)
    }
}

/// Whether two requests claim the same counters (same keys, kinds and limits, in order).
fn same_counters(a: &[Claim], b: &[Claim]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.key == b.key && a.kind == b.kind && a.limit == b.limit)
}

/// Groups `groups` (by index) into bundles of requests that claim the same counters, in order.
fn bundle(groups: &[&[Claim]]) -> Vec<Vec<usize>> {
    let mut bundles: Vec<Vec<usize>> = Vec::new();
    for (index, claims) in groups.iter().enumerate() {
        let same = bundles.iter_mut().find(|b| b.first().is_some_and(|&first| same_counters(groups[first], claims)));
        match same {
            Some(bundle) => bundle.push(index),
            None => bundles.push(vec![index]),
        }
    }
    bundles
}

/// The claim script's KEYS and ARGV for `groups` in `bundles` (see [`CLAIM_SCRIPT`]).
fn claim_arguments(command: &mut redis::Cmd, groups: &[&[Claim]], bundles: &[Vec<usize>]) {
    let first = |bundle: &[usize]| bundle.first().map_or(&[][..], |&index| groups[index]);
    let settled = |claims: &[Claim]| claims.iter().filter(|c| matches!(c.kind, ClaimKind::Budget { .. })).count();
    command.arg(bundles.iter().map(|bundle| first(bundle).len() + settled(first(bundle))).sum::<usize>());
    for bundle in bundles {
        let claims = first(bundle);
        for claim in claims {
            command.arg(&claim.key);
        }
        for claim in claims {
            if let ClaimKind::Budget { settled_key } = &claim.kind {
                command.arg(settled_key);
            }
        }
    }
    command.arg(bundles.len());
    let mut base = 0;
    for bundle in bundles {
        let claims = first(bundle);
        command.arg(claims.len()).arg(settled(claims)).arg(bundle.len());
        let mut settled_index = base + claims.len();
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
            command.arg(kind).arg(claim.limit).arg(millis(claim.ttl)).arg(settled);
        }
        for &index in bundle {
            for claim in groups[index] {
                command.arg(claim.delta);
            }
        }
        base = settled_index;
    }
}

/// Reads the claim script's answer for `groups` in `bundles`: one outcome per group, in order.
fn claim_reply(reply: &[i64], groups: &[&[Claim]], bundles: &[Vec<usize>]) -> Result<Vec<ClaimOutcome>, SharedError> {
    let mut rest = reply;
    let mut outcomes = vec![ClaimOutcome::default(); groups.len()];
    for &index in bundles.iter().flatten() {
        let count = groups[index].len();
        let (Some((&status, values)), true) = (rest.split_first(), rest.len() > 2 * count) else {
            return Err(SharedError::Command(format!("claim script answered {} values", reply.len())));
        };
        let (pairs, next) = values.split_at(2 * count);
        rest = next;
        let position = |i: i64| usize::try_from(i).unwrap_or(1).saturating_sub(1);
        outcomes[index] = if status < 0 {
            ClaimOutcome { unloaded: Some(position(-status)), ..ClaimOutcome::default() }
        } else {
            ClaimOutcome {
                rejected: (status > 0).then(|| position(status)),
                unloaded: None,
                values: pairs.iter().step_by(2).copied().collect(),
                settled: pairs.iter().skip(1).step_by(2).copied().collect(),
            }
        };
    }
    Ok(outcomes)
}

async fn load_claim_script(conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(CLAIM_SCRIPT).query_async(conn).await?;
    let _ = CLAIM_SHA.set(sha.clone());
    Ok(sha)
}

/// One atomic pipeline applying `changes`, with keys through `key`.
fn adjust_pipeline(changes: &[Adjustment], key: impl Fn(&str) -> String) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for change in changes {
        let key = key(&change.key);
        pipe.cmd("INCRBY").arg(&key).arg(change.delta).ignore();
        let expire = pipe.cmd("PEXPIRE").arg(&key).arg(millis(change.ttl));
        if !change.refresh {
            expire.arg("NX");
        }
        expire.ignore();
    }
    pipe
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedState {
    /// Sets `key` to `value` for `ttl` unless it already exists; returns whether it was set.
    pub async fn set_nx(&self, key: &str, value: i64, ttl: Duration) -> Result<bool, SharedError> {
        match &self.inner {
            Inner::Redis(server) => {
                let command =
                    redis::cmd("SET").arg(self.key(key)).arg(value).arg("NX").arg("PX").arg(millis(ttl)).to_owned();
                let set: Option<String> = server.run(async |c| command.query_async(c).await).await?;
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
            Inner::Redis(server) => server.claim(self.prefixed(claims)).await,
            Inner::Local(_) => Ok(self.claim_in_process(claims).unwrap_or_default()),
        }
    }

    /// Applies counter changes together (atomically in Redis, in one round trip): what settling
    /// an admission does.
    pub async fn adjust(&self, changes: &[Adjustment]) -> Result<(), SharedError> {
        match &self.inner {
            Inner::Redis(server) => {
                let pipe = adjust_pipeline(changes, |key| self.key(key));
                server.run(async |c| pipe.query_async(c).await).await
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
            Inner::Redis(_) => false,
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
