//! The Redis backend: one multiplexed redis-rs connection shared by every caller, and the plain
//! commands over it (keys arrive already prefixed by the facade).

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::SharedError;
use super::claim::{Adjustment, ClaimQueue};

/// How long connecting to Redis, and each command, may take before the call fails (and the
/// callers fall back to in-process state).
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The process's Redis: one multiplexed connection that every caller shares. Concurrent commands
/// are pipelined on its socket (their writes and replies batched), with no checkout and no
/// liveness ping per command as a pool would do. A connection that breaks is dropped and the next
/// call connects again.
pub(super) struct Redis {
    client: redis::Client,
    connection: std::sync::Mutex<Option<MultiplexedConnection>>,
    /// Held while connecting, so a burst after an outage opens one connection, not one per call.
    connecting: tokio::sync::Mutex<()>,
    /// Claims waiting to be sent in one script call (see `claim.rs`).
    pub(super) claims: std::sync::Mutex<ClaimQueue>,
    /// The claim sender and the subscriptions run under supervision.
    pub(super) tasks: flowgate_common::tasks::Tasks,
}

impl Redis {
    /// A Redis at `client`'s address; connects on first use.
    pub(super) fn new(client: redis::Client) -> Self {
        Self {
            client,
            connection: std::sync::Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            claims: std::sync::Mutex::default(),
            tasks: flowgate_common::tasks::Tasks::default(),
        }
    }

    /// The client, for connections of their own (subscriptions).
    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

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
    pub(super) async fn run<T>(
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

    pub(super) async fn ping(&self) -> Result<(), SharedError> {
        let _: String = self.run(async |c| redis::cmd("PING").query_async(c).await).await?;
        Ok(())
    }

    pub(super) async fn get(&self, key: String) -> Result<Option<Vec<u8>>, SharedError> {
        self.run(async |c| c.get(key).await).await
    }

    /// Every key matching `pattern` (SCAN, so Redis is never blocked) with its value; keys that
    /// expired between the two steps are left out.
    pub(super) async fn values_matching(&self, pattern: String) -> Result<Vec<(String, Vec<u8>)>, SharedError> {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let command = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(200).to_owned();
            let (next, batch): (u64, Vec<String>) = self.run(async |c| command.query_async(c).await).await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() > 10_000 {
                break;
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let command = redis::cmd("MGET").arg(&keys).to_owned();
        let values: Vec<Option<Vec<u8>>> = self.run(async |c| command.query_async(c).await).await?;
        Ok(keys.into_iter().zip(values).filter_map(|(k, v)| Some((k, v?))).collect())
    }

    pub(super) async fn set_ex(&self, key: String, value: &[u8], ttl: Duration) -> Result<(), SharedError> {
        let command = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis(ttl)).to_owned();
        self.run(async |c| command.query_async(c).await).await
    }

    /// INCRBY then PEXPIRE NX: the expiry is set once, when the window opens.
    pub(super) async fn incr_by(&self, key: String, delta: i64, ttl: Duration) -> Result<i64, SharedError> {
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
        let (value, _): (i64, i64) = self.run(async |c| pipe.query_async(c).await).await?;
        Ok(value)
    }

    pub(super) async fn delete(&self, key: String) -> Result<(), SharedError> {
        let _: i64 = self.run(async |c| c.del(key).await).await?;
        Ok(())
    }

    pub(super) async fn set_nx(&self, key: String, value: i64, ttl: Duration) -> Result<bool, SharedError> {
        let command = redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(millis(ttl)).to_owned();
        let set: Option<String> = self.run(async |c| command.query_async(c).await).await?;
        Ok(set.is_some())
    }

    /// Applies `changes` at once (one call of the settle script), with keys through `key`.
    pub(super) async fn adjust(&self, changes: &[Adjustment], key: impl Fn(&str) -> String) -> Result<(), SharedError> {
        let prefixed: Vec<Adjustment> =
            changes.iter().map(|change| Adjustment { key: key(&change.key), ..change.clone() }).collect();
        self.settle(&prefixed).await
    }

    pub(super) async fn raise(&self, key: String, value: i64, ttl: Duration) -> Result<(), SharedError> {
        // Rare (after an outage): a plain EVAL, not worth caching.
        let command = redis::cmd("EVAL")
            .arg(
                "local v = tonumber(redis.call('GET', KEYS[1]) or '0') \
                 if v == nil or v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end \
                 return 0",
            )
            .arg(1)
            .arg(key)
            .arg(value)
            .arg(millis(ttl))
            .to_owned();
        let _: i64 = self.run(async |c| command.query_async(c).await).await?;
        Ok(())
    }

    pub(super) async fn stream_append(&self, key: String, payload: &[u8], max_len: u64) -> Result<(), SharedError> {
        let command =
            redis::cmd("XADD").arg(key).arg("MAXLEN").arg("~").arg(max_len).arg("*").arg("d").arg(payload).to_owned();
        let _: String = self.run(async |c| command.query_async(c).await).await?;
        Ok(())
    }

    pub(super) async fn stream_after(
        &self,
        key: String,
        after: &str,
        count: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, SharedError> {
        let command =
            redis::cmd("XRANGE").arg(key).arg(format!("({after}")).arg("+").arg("COUNT").arg(count).to_owned();
        let records: Vec<StreamRecord> = self.run(async |c| command.query_async(c).await).await?;
        Ok(records
            .into_iter()
            .filter_map(|(id, fields)| fields.into_iter().find(|(name, _)| name == "d").map(|(_, value)| (id, value)))
            .collect())
    }

    pub(super) async fn publish(&self, channel: String, message: &str) -> Result<(), SharedError> {
        let _: i64 = self.run(async |c| c.publish(channel, message).await).await?;
        Ok(())
    }
}

/// A stream record as XRANGE answers it: its id and its field-value pairs.
type StreamRecord = (String, Vec<(String, Vec<u8>)>);

/// A TTL in whole milliseconds, at least 1 (Redis rejects an expiry of 0).
pub(super) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
