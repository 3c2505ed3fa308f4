//! Claims and settlements: what a claim is, and how Redis claims of concurrent requests are
//! batched into one call of the claim script (`claim.lua`) and bundled by counters. The in-process
//! rules are in `in_process.rs`; both decide alike.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;

use super::SharedError;
use super::redis::{Redis, millis};

/// What a [`Claim`] counts, and so when it is admitted and how its counter expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimKind {
    /// A fixed window (requests per minute or hour): admitted when counter + delta ≤ limit. The
    /// expiry is set when the window opens and kept.
    Window,
    /// A token window: admitted while the counter before this claim is below the limit (the
    /// estimate may take it past). The expiry is set when the window opens and kept.
    TokenWindow,
    /// Requests in flight: admitted when counter + delta ≤ limit. Each admitted claim is a
    /// reservation that expires on its own `ttl` after it was made, however busy the counter (a
    /// crashed process's claims, or lost settlements, stop counting then).
    InFlight,
    /// A budget reservation: the claim's counter holds reservations, `settled_key` the settled
    /// amount; admitted while anything is left (settled + reserved < limit), taking the delta or,
    /// when less is left, what is left (see [`ClaimOutcome::taken`]). Like [`Self::InFlight`], each
    /// reservation expires on its own `ttl` after it was made.
    Budget {
        /// Counter of settled spend.
        settled_key: String,
    },
}

/// One limit checked and claimed by [`SharedState::claim`](super::SharedState::claim).
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

/// The answer to [`SharedState::claim`](super::SharedState::claim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimOutcome {
    /// Index of the first claim that did not fit; `None` when all were applied.
    pub rejected: Option<usize>,
    /// Index of the first budget claim whose settled counter does not exist (never loaded, or
    /// expired): nothing was applied. Load it (e.g. with
    /// [`SharedState::set_nx`](super::SharedState::set_nx)) and claim again.
    pub unloaded: Option<usize>,
    /// Per claim: the counter after the claim (when admitted) or as found (when rejected).
    pub values: Vec<i64>,
    /// Per claim: the settled amount of a budget claim (0 for other kinds).
    pub settled: Vec<i64>,
    /// Per claim: what it added to its counter (its delta, or for a budget the part of it that was
    /// left); what settling gives back. Empty when nothing was applied.
    pub taken: Vec<i64>,
    /// The id of this claim's reservations (its in-flight and budget claims): give them back with
    /// [`Adjustment::reservation`] set to it. Unique per claim in the process (and, from a random
    /// start, across processes).
    pub reservation: u64,
}

impl ClaimOutcome {
    /// Whether every claim was applied.
    pub fn admitted(&self) -> bool {
        self.rejected.is_none() && self.unloaded.is_none()
    }
}

/// One counter change of [`SharedState::adjust`](super::SharedState::adjust).
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
    /// Gives back the reservation of this id (see [`ClaimOutcome::reservation`]) on an in-flight
    /// or budget counter; `delta` is minus what it took. Applied only while the reservation is
    /// held: one that expired, or was already given back, is not given back again.
    pub reservation: Option<u64>,
}

impl Adjustment {
    /// The reservation's member in the counter's sorted set of deadlines (see `claim.lua`).
    pub(super) fn member(&self) -> Option<String> {
        self.reservation.map(|id| format!("{id}:{}", self.delta.saturating_neg()))
    }
}

/// [`SharedState::claim`](super::SharedState::claim) in Redis, for a batch of requests at once.
/// Requests claiming the same counters (one key's, in one window) come as a *bundle*: their deltas
/// are added with one `INCRBY` per counter and, when every limit holds for the sum, all are
/// admitted, which is what admitting them one after the other would have done. When a limit does
/// not hold for the sum, the bundle is decided one request at a time (each all or nothing) and the
/// counters are corrected to what was admitted. The common case costs a call per counter per
/// bundle, not per request. A counter left at 0 is removed (so a rejected claim leaves nothing
/// behind). Its KEYS, ARGV and reply are described at the top of `claim.lua`, and built and read
/// by [`claim_arguments`] and [`claim_reply`].
const CLAIM_SCRIPT: &str = include_str!("claim.lua");

/// SHA1 of [`CLAIM_SCRIPT`], as Redis answered `SCRIPT LOAD` (the same on every server).
static CLAIM_SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Most requests' claims sent in one script call.
const CLAIM_BATCH: usize = 64;

/// Where a queued request's claim outcome goes.
type ClaimReply = oneshot::Sender<Result<ClaimOutcome, SharedError>>;

/// The settle script (see `settle.lua`), sent like the claim script.
const SETTLE_SCRIPT: &str = include_str!("settle.lua");

/// SHA1 of [`SETTLE_SCRIPT`].
static SETTLE_SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Claims waiting for the script, and whether a task is sending them.
/// Clears the queue's `sending` mark when the sender unwinds.
struct ResetOnPanic<'a>(&'a std::sync::Mutex<ClaimQueue>);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).sending = false;
        }
    }
}

#[derive(Default)]
pub(super) struct ClaimQueue {
    waiting: Vec<(u64, Vec<Claim>, ClaimReply)>,
    sending: bool,
}

impl Redis {
    /// Queues one request's `claims` (keys already prefixed) and waits for their outcome. One task
    /// sends at a time, all claims that queued up while its previous call was on the wire: under
    /// load many requests share one script call, and a lone request's claims go at once.
    pub(super) async fn claim(self: &Arc<Self>, id: u64, claims: Vec<Claim>) -> Result<ClaimOutcome, SharedError> {
        let (reply, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.claims.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.waiting.push((id, claims, reply));
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            self.tasks.job("claim-sender", Arc::clone(self).send_claims());
        }
        outcome.await.unwrap_or_else(|_| Err(SharedError::Unavailable("the claim sender stopped".to_owned())))
    }

    async fn send_claims(self: Arc<Self>) {
        // A panic must not leave the queue marked as being sent: the next claim starts a sender.
        let _reset = ResetOnPanic(&self.claims);
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
            let groups: Vec<&[Claim]> = batch.iter().map(|(_, claims, _)| claims.as_slice()).collect();
            let ids: Vec<u64> = batch.iter().map(|(id, _, _)| *id).collect();
            let outcomes = self.claim_groups(&groups, &ids).await;
            let mut abandoned = Vec::new();
            for (index, (id, claims, reply)) in batch.into_iter().enumerate() {
                let outcome = match &outcomes {
                    Ok(outcomes) => outcomes.get(index).cloned().ok_or_else(|| {
                        SharedError::Command(format!("claim script answered {} groups for {index}", outcomes.len()))
                    }),
                    Err(error) => Err(error.clone()),
                };
                let admitted = outcome.as_ref().is_ok_and(ClaimOutcome::admitted);
                let taken = match (&outcome, admitted) {
                    (Ok(outcome), true) => outcome.taken.clone(),
                    _ => Vec::new(),
                };
                if reply.send(outcome).is_err() && admitted {
                    // The request went away while its claims were on the wire: give them back.
                    abandoned.extend(claims.into_iter().zip(taken).map(|(claim, taken)| Adjustment {
                        reservation: matches!(claim.kind, ClaimKind::InFlight | ClaimKind::Budget { .. }).then_some(id),
                        key: claim.key,
                        delta: -taken,
                        ttl: claim.ttl,
                        refresh: false,
                    }));
                }
            }
            if !abandoned.is_empty()
                && let Err(error) = self.adjust(&abandoned, str::to_owned).await
            {
                tracing::warn!(%error, "cannot give back the claims of abandoned requests; they expire with their counters");
            }
        }
    }

    /// Runs the claim script over `groups` (one request's claims each, keys already prefixed, with
    /// its reservation id in `ids`), bundled by counters; answers per group, in order. EVALSHA: the script is sent (SCRIPT
    /// LOAD) once per process and again only when the server lost it (a restart or SCRIPT FLUSH),
    /// not with every call.
    pub(super) async fn claim_groups(
        &self,
        groups: &[&[Claim]],
        ids: &[u64],
    ) -> Result<Vec<ClaimOutcome>, SharedError> {
        let bundles = bundle(groups);
        let now = crate::now_millis();
        let command = |sha: &str| {
            let mut command = redis::cmd("EVALSHA");
            command.arg(sha);
            claim_arguments(&mut command, groups, ids, &bundles, now);
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
        let mut outcomes = claim_reply(&reply, groups, &bundles)?;
        for (outcome, id) in outcomes.iter_mut().zip(ids) {
            outcome.reservation = *id;
        }
        Ok(outcomes)
    }

    /// Applies `changes` (keys already prefixed) in one call of the settle script.
    pub(super) async fn settle(&self, changes: &[Adjustment]) -> Result<(), SharedError> {
        if changes.is_empty() {
            return Ok(());
        }
        let command = |sha: &str| {
            let mut command = redis::cmd("EVALSHA");
            command.arg(sha).arg(changes.len());
            for change in changes {
                command.arg(&change.key);
            }
            for change in changes {
                command
                    .arg(change.delta)
                    .arg(millis(change.ttl))
                    .arg(u8::from(change.refresh))
                    .arg(change.member().unwrap_or_default());
            }
            command
        };
        let _: i64 = self
            .run(async |c| match SETTLE_SHA.get() {
                Some(sha) => match command(sha).query_async(c).await {
                    Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        let sha = load_script(c, SETTLE_SCRIPT, &SETTLE_SHA).await?;
                        command(&sha).query_async(c).await
                    }
                    reply => reply,
                },
                None => {
                    let sha = load_script(c, SETTLE_SCRIPT, &SETTLE_SHA).await?;
                    command(&sha).query_async(c).await
                }
            })
            .await?;
        Ok(())
    }
}

/// Whether two requests claim the same counters (same keys, kinds and limits, in order).
fn same_counters(a: &[Claim], b: &[Claim]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.key == b.key && a.kind == b.kind && a.limit == b.limit)
}

/// Groups `groups` (by index) into bundles of requests that claim the same counters, in order.
pub(super) fn bundle(groups: &[&[Claim]]) -> Vec<Vec<usize>> {
    let mut bundles: Vec<Vec<usize>> = Vec::new();
    for (index, claims) in groups.iter().enumerate() {
        let same = bundles
            .iter_mut()
            .find(|b| b.first().and_then(|&first| groups.get(first)).is_some_and(|first| same_counters(first, claims)));
        match same {
            Some(bundle) => bundle.push(index),
            None => bundles.push(vec![index]),
        }
    }
    bundles
}

/// The claim script's KEYS and ARGV for `groups` (with reservation `ids`) in `bundles`, at `now`
/// (unix ms; see `claim.lua`).
fn claim_arguments(command: &mut redis::Cmd, groups: &[&[Claim]], ids: &[u64], bundles: &[Vec<usize>], now: i64) {
    let group = |index: usize| groups.get(index).copied().unwrap_or_default();
    let first = |bundle: &[usize]| bundle.first().map_or(&[][..], |&index| group(index));
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
    command.arg(bundles.len()).arg(now);
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
            for claim in group(index) {
                command.arg(claim.delta);
            }
            command.arg(ids.get(index).copied().unwrap_or_default());
        }
        base = settled_index;
    }
}

/// Reads the claim script's answer for `groups` in `bundles`: one outcome per group, in order.
fn claim_reply(reply: &[i64], groups: &[&[Claim]], bundles: &[Vec<usize>]) -> Result<Vec<ClaimOutcome>, SharedError> {
    let malformed = || SharedError::Command(format!("claim script answered {} values", reply.len()));
    let mut rest = reply;
    let mut outcomes = vec![ClaimOutcome::default(); groups.len()];
    for &index in bundles.iter().flatten() {
        let count = groups.get(index).map_or(0, |claims| claims.len());
        let (Some((&status, values)), true) = (rest.split_first(), rest.len() > 3 * count) else {
            return Err(malformed());
        };
        let (triples, next) = values.split_at(3 * count);
        rest = next;
        let position = |i: i64| usize::try_from(i).unwrap_or(1).saturating_sub(1);
        let outcome = outcomes.get_mut(index).ok_or_else(malformed)?;
        *outcome = if status < 0 {
            ClaimOutcome { unloaded: Some(position(-status)), ..ClaimOutcome::default() }
        } else {
            ClaimOutcome {
                rejected: (status > 0).then(|| position(status)),
                unloaded: None,
                values: triples.iter().step_by(3).copied().collect(),
                settled: triples.iter().skip(1).step_by(3).copied().collect(),
                taken: if status == 0 { triples.iter().skip(2).step_by(3).copied().collect() } else { Vec::new() },
                reservation: 0,
            }
        };
    }
    Ok(outcomes)
}

async fn load_claim_script(conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
    load_script(conn, CLAIM_SCRIPT, &CLAIM_SHA).await
}

async fn load_script(
    conn: &mut MultiplexedConnection,
    script: &str,
    sha: &std::sync::OnceLock<String>,
) -> redis::RedisResult<String> {
    let loaded: String = redis::cmd("SCRIPT").arg("LOAD").arg(script).query_async(conn).await?;
    let _ = sha.set(loaded.clone());
    Ok(loaded)
}

#[cfg(test)]
mod tests;
