//! The in-process backend: one map of counters and values with expiry behind one lock, and the
//! claim and settle rules applied under that lock (atomic, as the claim script is in Redis).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claim::{Adjustment, Claim, ClaimKind, ClaimOutcome};

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
pub(super) struct LocalStore {
    map: std::sync::Mutex<LocalMap>,
}

#[derive(Debug)]
struct LocalMap {
    /// Keys are made by the server (never by clients), so a fast hasher is safe here.
    entries: std::collections::HashMap<String, LocalEntry, foldhash::fast::RandomState>,
    /// In-flight and budget reservations held, by (counter, reservation id): (amount, deadline).
    /// Past its deadline a reservation is taken out of its counter (at the next sweep).
    reservations: std::collections::HashMap<(String, u64), (i64, Instant), foldhash::fast::RandomState>,
    last_sweep: Instant,
}

/// How often expired entries are removed from the in-process map.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl LocalStore {
    pub(super) fn new() -> Self {
        Self {
            map: std::sync::Mutex::new(LocalMap {
                entries: std::collections::HashMap::default(),
                reservations: std::collections::HashMap::default(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Runs `op` on the map with expired entries out of the way.
    fn with<T>(&self, op: impl FnOnce(&mut LocalMap, Instant) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(map.last_sweep) >= SWEEP_EVERY {
            map.expire_reservations(now);
            map.entries.retain(|_, entry| entry.expires > now);
            map.last_sweep = now;
        }
        op(&mut map, now)
    }

    /// The value at `key`, if present and not expired (a counter reads as its decimal text).
    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.with(|map, now| {
            map.live(key, now).map(|entry| match &entry.data {
                LocalData::Bytes(bytes) => bytes.to_vec(),
                LocalData::Counter(n) => n.to_string().into_bytes(),
            })
        })
    }

    pub(super) fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) {
        self.with(|map, now| {
            map.entries
                .insert(key.to_owned(), LocalEntry { data: LocalData::Bytes(Arc::from(value)), expires: now + ttl });
        });
    }

    /// Adds `delta` to a counter that keeps the expiry it got when created (a fixed window).
    pub(super) fn incr_by(&self, key: &str, delta: i64, ttl: Duration) -> i64 {
        self.with(|map, now| map.add(key, delta, ttl, false, now))
    }

    /// Every live byte value whose key starts with `prefix`.
    pub(super) fn values_with_prefix(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.with(|map, now| {
            map.entries
                .iter()
                .filter(|(key, entry)| key.starts_with(prefix) && entry.expires > now)
                .filter_map(|(key, entry)| match &entry.data {
                    LocalData::Bytes(bytes) => Some((key.clone(), bytes.to_vec())),
                    LocalData::Counter(_) => None,
                })
                .collect()
        })
    }

    pub(super) fn delete(&self, key: &str) {
        self.with(|map, _| map.entries.remove(key));
    }

    pub(super) fn set_nx(&self, key: &str, value: i64, ttl: Duration) -> bool {
        self.with(|map, now| {
            if map.live(key, now).is_some() {
                return false;
            }
            map.entries.insert(key.to_owned(), LocalEntry { data: LocalData::Counter(value), expires: now + ttl });
            true
        })
    }

    /// Raises the counter at `key` to `value` when it holds less (or is absent).
    pub(super) fn raise(&self, key: &str, value: i64, ttl: Duration) {
        self.with(|map, now| {
            if map.counter(key, now) < value || map.live(key, now).is_none() {
                map.entries.insert(key.to_owned(), LocalEntry { data: LocalData::Counter(value), expires: now + ttl });
            }
        });
    }

    /// Checks every claim and applies them all, or none when one does not fit (the rules of
    /// [`ClaimKind`]); a budget whose settled counter is missing stops the claim as unloaded.
    pub(super) fn claim(&self, id: u64, claims: &[Claim]) -> ClaimOutcome {
        self.with(|map, now| {
            let mut outcome = ClaimOutcome { reservation: id, ..ClaimOutcome::default() };
            for (index, claim) in claims.iter().enumerate() {
                let value = map.counter(&claim.key, now);
                let settled = match &claim.kind {
                    ClaimKind::Budget { settled_key } => match map.live(settled_key, now) {
                        Some(LocalEntry { data: LocalData::Counter(n), .. }) => *n,
                        _ => {
                            return ClaimOutcome { unloaded: Some(index), reservation: id, ..ClaimOutcome::default() };
                        }
                    },
                    _ => 0,
                };
                // What the claim takes: its delta or, for a budget, what is left of the budget
                // when that is less (a budget admits while anything is left); `None`: no fit.
                let take = if claim.limit <= 0 {
                    Some(claim.delta)
                } else {
                    match claim.kind {
                        ClaimKind::TokenWindow => (value < claim.limit).then_some(claim.delta),
                        ClaimKind::Budget { .. } => {
                            let room = claim.limit.saturating_sub(settled).saturating_sub(value);
                            (room > 0).then(|| claim.delta.min(room))
                        }
                        ClaimKind::Window | ClaimKind::InFlight => {
                            (value.saturating_add(claim.delta) <= claim.limit).then_some(claim.delta)
                        }
                    }
                };
                if take.is_none() && outcome.rejected.is_none() {
                    outcome.rejected = Some(outcome.values.len());
                }
                outcome.values.push(value);
                outcome.settled.push(settled);
                outcome.taken.push(take.unwrap_or(0));
            }
            if outcome.rejected.is_none() {
                for ((claim, value), taken) in claims.iter().zip(&mut outcome.values).zip(&outcome.taken) {
                    let reserves = matches!(claim.kind, ClaimKind::InFlight | ClaimKind::Budget { .. });
                    *value = map.add(&claim.key, *taken, claim.ttl, reserves, now);
                    if reserves && *taken != 0 {
                        map.reservations.insert((claim.key.clone(), id), (*taken, now + claim.ttl));
                    }
                }
            } else {
                outcome.taken.clear();
            }
            outcome
        })
    }

    /// Applies `changes` together, under one lock.
    pub(super) fn adjust(&self, changes: &[Adjustment]) {
        self.with(|map, now| {
            for change in changes {
                match change.reservation {
                    // Given back only while held (not expired, not given back before).
                    Some(id) => {
                        if map.reservations.remove(&(change.key.clone(), id)).is_some() {
                            map.give_back(&change.key, change.delta.saturating_neg(), now);
                        }
                    }
                    None => {
                        map.add(&change.key, change.delta, change.ttl, change.refresh, now);
                    }
                }
            }
        });
    }
}

impl LocalMap {
    /// Takes every reservation past its deadline out of its counter.
    fn expire_reservations(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.reservations.retain(|(key, _), (amount, deadline)| {
            let keep = *deadline > now;
            if !keep {
                expired.push((key.clone(), *amount));
            }
            keep
        });
        for (key, amount) in expired {
            self.give_back(&key, amount, now);
        }
    }

    /// Takes `amount` out of a live counter; a counter left at 0 or below is removed.
    fn give_back(&mut self, key: &str, amount: i64, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key)
            && entry.expires > now
            && let LocalData::Counter(n) = entry.data
        {
            let left = n.saturating_sub(amount);
            if left <= 0 {
                self.entries.remove(key);
            } else {
                entry.data = LocalData::Counter(left);
            }
        }
    }

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
    /// expiry unless `refresh` (which extends it to `ttl` from now when that is later).
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
                // Extended, never shortened.
                entry.expires = entry.expires.max(expires);
            }
            return next;
        }
        self.entries.insert(key.to_owned(), LocalEntry { data: LocalData::Counter(delta), expires });
        delta
    }
}
