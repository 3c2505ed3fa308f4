//! The limiter's own logic over the in-process shared state: which claims a key's limits become,
//! that a rejected claim takes nothing, what settling gives back and charges, when the in-flight
//! slot is released, and the `x-ratelimit-*` figures. (The claim primitive itself, Redis and in
//! process alike, is tested in `flowgate-db`'s `shared/tests.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use flowgate_common::metrics::Metrics;
use flowgate_db::{Database, SharedState, migrate};
use flowgate_proto::keys::VirtualKey;

use super::*;

/// A nano-dollar amount from USD.
const USD: i64 = 1_000_000_000;

/// A limiter over in-process state and a migrated SQLite database in a throwaway directory.
struct Fixture {
    limiter: Limiter,
    database: Database,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(default_requests_per_hour: u32) -> Fixture {
    fixture_over(SharedState::local("test:"), default_requests_per_hour, RESERVATION_TTL).await
}

async fn fixture_over(shared: SharedState, default_requests_per_hour: u32, reservation_ttl: Duration) -> Fixture {
    let dir = std::env::temp_dir().join(format!("flowgate-limits-{:x}", rand::random::<u64>()));
    let database = Database::connect(None, &dir, 2, Duration::from_secs(5)).await.unwrap();
    migrate::run(&database).await.unwrap();
    let limiter = Limiter::new(
        shared,
        database.clone(),
        default_requests_per_hour,
        &Metrics::new(),
        &flowgate_common::tasks::Tasks::default(),
        reservation_ttl,
    );
    Fixture { limiter, database, dir }
}

/// A key with the limits `set` gives it (none by default).
fn key(set: impl FnOnce(&mut VirtualKey)) -> KeyInfo {
    let mut key = VirtualKey {
        id: format!("key-{:x}", rand::random::<u64>()),
        tenant_id: "tenant-a".to_owned(),
        ..VirtualKey::default()
    };
    set(&mut key);
    KeyInfo::new(key)
}

/// Minute windows are aligned to the clock: start a test that fills one early enough in a minute
/// that the window cannot roll over half way.
async fn early_in_a_minute() {
    let secs = (now_ms() / 1000) % 60;
    if secs > 50 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(61 - secs).unwrap_or(10))).await;
    }
}

/// The rejection's parts: (code, message, retry after, headers).
fn rejection(result: Result<Admission, ProxyError>) -> (&'static str, String, u64, RateHeaders) {
    match result {
        Err(ProxyError::RateLimited { message, code, retry_after_secs, headers }) => {
            (code, message, retry_after_secs, headers)
        }
        Err(other) => panic!("expected a rate limit, got {other:?}"),
        Ok(admission) => panic!("expected a rejection, was admitted with {:?}", admission.headers),
    }
}

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage { prompt_tokens, completion_tokens }
}

#[tokio::test]
async fn a_key_without_limits_claims_nothing() {
    let f = fixture(0).await;
    let admission = f.limiter.admit(&key(|_| {}), 1_000_000, 10 * USD).await.unwrap();
    assert!(!admission.holds_claims());
    assert_eq!(admission.headers, RateHeaders::default());
}

#[tokio::test]
async fn a_claim_that_fails_one_limit_takes_none_of_the_others() {
    early_in_a_minute().await;
    let f = fixture(0).await;
    let key = key(|k| {
        k.rpm = 5;
        k.tpm = 100;
        k.budget_usd = 1.0;
    });
    let first = f.limiter.admit(&key, 100, 4 * USD / 10).await.unwrap();
    assert_eq!(first.headers.requests.unwrap().remaining, 4);
    assert_eq!(first.headers.tokens.unwrap().remaining, 0);

    // The token window is used up (a token window admits while it is below its limit): the
    // request window and the budget are left alone.
    let (code, message, _, headers) = rejection(f.limiter.admit(&key, 10, USD / 10).await);
    assert_eq!(code, "rate_limit_exceeded");
    assert_eq!(message, "token rate limit of 100 tokens per minute reached");
    assert_eq!(headers.tokens.map(|t| (t.limit, t.remaining)), Some((100, 0)));
    assert!(headers.requests.is_none());

    first.settle(Some((usage(30, 20), 4 * USD / 10)));
    let second = f.limiter.admit(&key, 10, 6 * USD / 10).await.unwrap();
    assert_eq!(second.headers.requests.unwrap().remaining, 3, "the rejected request took no request slot");
    assert_eq!(second.headers.tokens.unwrap().remaining, 40, "nor tokens: 50 used + 10 estimated");

    // Nothing left of the budget (0.4 spent + 0.6 reserved = 1): the windows are left alone.
    let (code, message, _, _) = rejection(f.limiter.admit(&key, 0, 1).await);
    assert_eq!(code, "budget_exceeded");
    assert_eq!(
        message,
        "key budget of $1.00 per total period exhausted: spent $0.40 and $0.60 reserved by requests in flight; \
         the period never ends"
    );
    // Given back (the request failed): 0.6 is left again.
    drop(second);
    let third = f.limiter.admit(&key, 0, 0).await.unwrap();
    assert_eq!(third.headers.requests.unwrap().remaining, 2, "the budget rejection took no request slot");
    assert_eq!(third.headers.tokens.unwrap().remaining, 50, "nor tokens: 50 used");
    drop(third);
}

#[tokio::test]
async fn a_rejection_on_the_first_claim_takes_none_of_the_later_ones() {
    early_in_a_minute().await;
    let f = fixture(0).await;
    let key = key(|k| {
        k.max_parallel_requests = 1;
        k.rpm = 10;
        k.tpm = 100;
    });
    let held = f.limiter.admit(&key, 40, 0).await.unwrap();
    let (code, message, retry, headers) = rejection(f.limiter.admit(&key, 40, 0).await);
    assert_eq!((code, retry), ("rate_limit_exceeded", 1));
    assert_eq!(message, "too many requests in flight for this key (limit 1)");
    assert_eq!(headers, RateHeaders::default());
    held.settle(Some((usage(30, 10), 0)));
    let next = f.limiter.admit(&key, 40, 0).await.unwrap();
    let requests = next.headers.requests.unwrap();
    let tokens = next.headers.tokens.unwrap();
    assert_eq!(requests.remaining, 8, "two admitted so far, the rejected one not counted");
    assert_eq!(tokens.remaining, 100 - 40 - 40, "settled 40 actual tokens plus this estimate of 40");
}

#[tokio::test]
async fn settling_gives_back_the_unused_reservation_and_charges_the_actual_cost() {
    let f = fixture(0).await;
    let key = key(|k| k.budget_usd = 1.0);
    let admitted = f.limiter.admit(&key, 0, 6 * USD / 10).await.unwrap();
    // 0.4 is left: an estimate of 0.5 is admitted and reserves those 0.4; then nothing is left.
    let rest = f.limiter.admit(&key, 0, 5 * USD / 10).await.unwrap();
    let (code, _, _, _) = rejection(f.limiter.admit(&key, 0, 0).await);
    assert_eq!(code, "budget_exceeded", "0.6 + 0.4 reserved: nothing is left of the budget of 1");
    // An admission dropped unsettled (the request failed) gives its reservation back, uncharged.
    drop(rest);

    admitted.settle(Some((usage(700, 300), USD / 10)));
    // 0.1 settled: 0.9 is left, to the last nano-dollar; an estimate beyond it reserves the rest.
    let all = f.limiter.admit(&key, 0, 5 * USD).await.unwrap();
    let (_, message, _, _) = rejection(f.limiter.admit(&key, 0, 1).await);
    assert!(message.contains("spent $0.10 and $0.90 reserved by requests in flight"), "{message}");
    drop(all);
    let again = f.limiter.admit(&key, 0, 9 * USD / 10).await.unwrap();
    again.settle(None);

    // The database holds the one charge: its cost, tokens and a single request.
    f.limiter.flush().await;
    let row = sqlx::query(
        &f.database.sql("SELECT spent_nanos, prompt_tokens, completion_tokens, requests FROM spend WHERE key_id = $1 AND period_start = 0")
    )
    .bind(key.key.id.clone())
    .fetch_one(f.database.pool())
    .await
    .unwrap();
    let figures: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(figures, (USD / 10, 700, 300, 1));
}

#[tokio::test]
async fn settling_replaces_the_token_estimate_with_the_actual_usage() {
    early_in_a_minute().await;
    let f = fixture(0).await;
    let key = key(|k| k.tpm = 100);
    let admitted = f.limiter.admit(&key, 80, 0).await.unwrap();
    assert_eq!(admitted.headers.tokens.unwrap().remaining, 20);
    admitted.settle(Some((usage(10, 5), 0)));
    let next = f.limiter.admit(&key, 85, 0).await.unwrap();
    assert_eq!(next.headers.tokens.unwrap().remaining, 0, "15 used + 85 estimated = 100");
    let (_, _, _, headers) = rejection(f.limiter.admit(&key, 1, 0).await);
    assert_eq!(headers.tokens.unwrap().remaining, 0);
    // A failed request gives its whole estimate back.
    next.settle(None);
    assert_eq!(f.limiter.admit(&key, 85, 0).await.unwrap().headers.tokens.unwrap().remaining, 0);
}

#[tokio::test]
async fn the_parallel_slot_is_released_when_an_admission_is_dropped_or_settled() {
    let f = fixture(0).await;
    let key = key(|k| {
        k.max_parallel_requests = 2;
        k.budget_usd = 1.0;
    });
    let a = f.limiter.admit(&key, 0, USD / 2).await.unwrap();
    let b = f.limiter.admit(&key, 0, USD / 2).await.unwrap();
    assert!(a.holds_claims() && b.holds_claims());
    let (_, message, _, _) = rejection(f.limiter.admit(&key, 0, 0).await);
    assert!(message.contains("in flight"), "{message}");

    drop(a); // e.g. the client went away before the answer
    let c = f.limiter.admit(&key, 0, USD / 2).await.unwrap();
    assert!(f.limiter.admit(&key, 0, 0).await.is_err(), "b and c hold both slots");
    b.settle(Some((Usage::default(), 0)));
    let d = f.limiter.admit(&key, 0, USD / 2).await.unwrap();
    drop((c, d));
    // Both dropped: both slots and the whole budget are free again.
    let g = f.limiter.admit(&key, 0, 0).await.unwrap();
    let e = f.limiter.admit(&key, 0, USD).await.unwrap();
    drop((e, g));
}

#[tokio::test]
async fn rate_headers_count_down_the_minute_window_and_the_tokens() {
    early_in_a_minute().await;
    let f = fixture(0).await;
    let key = key(|k| {
        k.rpm = 3;
        k.requests_per_hour = 100;
        k.tpm = 1_000;
    });
    let mut held = Vec::new();
    for n in 1..=3 {
        let admission = f.limiter.admit(&key, 100, 0).await.unwrap();
        let requests = admission.headers.requests.unwrap();
        let tokens = admission.headers.tokens.unwrap();
        assert_eq!((requests.limit, requests.remaining), (3, 3 - n), "the minute window's figures, not the hour's");
        assert!((1..=60).contains(&requests.reset_secs), "{requests:?}");
        assert_eq!((tokens.limit, tokens.remaining), (1_000, 1_000 - 100 * n));
        assert_eq!(tokens.reset_secs, requests.reset_secs);
        held.push(admission);
    }
    let (code, message, retry, headers) = rejection(f.limiter.admit(&key, 100, 0).await);
    assert_eq!(code, "rate_limit_exceeded");
    assert_eq!(message, "rate limit of 3 requests per minute reached");
    assert!((1..=60).contains(&retry));
    let requests = headers.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining, requests.reset_secs), (3, 0, retry));

    let mut map = axum::http::HeaderMap::new();
    held[0].headers.apply(&mut map);
    assert_eq!(map["x-ratelimit-limit-requests"], "3");
    assert_eq!(map["x-ratelimit-remaining-requests"], "2");
    let reset = format!("{}s", held[0].headers.requests.unwrap().reset_secs);
    assert_eq!(map["x-ratelimit-reset-requests"], reset.as_str());
    assert_eq!(map["x-ratelimit-limit-tokens"], "1000");
    assert_eq!(map["x-ratelimit-remaining-tokens"], "900");
    let mut none = axum::http::HeaderMap::new();
    RateHeaders::default().apply(&mut none);
    assert!(none.is_empty(), "no limits, no headers");
}

#[tokio::test]
async fn the_default_requests_per_hour_applies_unless_the_key_has_its_own() {
    let f = fixture(2).await;
    let plain = key(|_| {});
    for remaining in [1, 0] {
        let admission = f.limiter.admit(&plain, 0, 0).await.unwrap();
        let requests = admission.headers.requests.unwrap();
        assert_eq!((requests.limit, requests.remaining), (2, remaining));
        assert!((1..=3_600).contains(&requests.reset_secs));
    }
    let (_, message, retry, _) = rejection(f.limiter.admit(&plain, 0, 0).await);
    assert_eq!(message, "rate limit of 2 requests per hour reached");
    assert!((1..=3_600).contains(&retry));

    let own = key(|k| k.requests_per_hour = 5);
    for _ in 0..5 {
        assert_eq!(f.limiter.admit(&own, 0, 0).await.unwrap().headers.requests.unwrap().limit, 5);
    }
}

#[tokio::test]
async fn a_tenant_budget_caps_the_tenants_keys_together() {
    let f = fixture(0).await;
    let first = key(|k| k.tenant_budget_usd = 1.0);
    let second = key(|k| k.tenant_budget_usd = 1.0);
    let other_tenant = key(|k| {
        k.tenant_id = "tenant-b".to_owned();
        k.tenant_budget_usd = 1.0;
    });
    let held = f.limiter.admit(&first, 0, 7 * USD / 10).await.unwrap();
    let rest = f.limiter.admit(&second, 0, 4 * USD / 10).await.unwrap();
    let (code, message, _, _) = rejection(f.limiter.admit(&second, 0, 1).await);
    assert_eq!(code, "budget_exceeded");
    assert!(message.starts_with("tenant budget of $1.00"), "{message}");
    f.limiter.admit(&other_tenant, 0, 4 * USD / 10).await.unwrap();
    held.settle(Some((Usage::default(), 2 * USD / 10)));
    drop(rest);
    f.limiter.admit(&second, 0, 8 * USD / 10).await.unwrap();
}

#[tokio::test]
async fn spend_recorded_in_the_database_counts_when_a_period_is_first_seen() {
    let f = fixture(0).await;
    let key = key(|k| {
        k.budget_usd = 1.0;
        k.budget_period = "total".to_owned();
    });
    sqlx::query(
        &f.database.sql("INSERT INTO spend (key_id, tenant_id, period_start, spent_nanos, prompt_tokens, completion_tokens, requests, updated_at) \
         VALUES ($1, $2, 0, $3, 0, 0, 1, 0)")
    )
    .bind(key.key.id.clone())
    .bind("tenant-a")
    .bind(9 * USD / 10)
    .execute(f.database.pool())
    .await
    .unwrap();
    let _last = f.limiter.admit(&key, 0, 2 * USD / 10).await.unwrap();
    let (_, message, _, _) = rejection(f.limiter.admit(&key, 0, 1).await);
    assert!(message.contains("spent $0.90 and $0.10 reserved"), "{message}");
}

/// The case: a key with a budget of $0.05 whose worst-case estimate is higher than the
/// whole budget is still served while anything is left; the budget is spent to the last cent and
/// overspent by at most one request's cost beyond its reservation.
#[tokio::test]
async fn a_small_budget_is_spent_to_the_last_cent_and_overspent_by_at_most_one_request() {
    let f = fixture(0).await;
    let key = key(|k| {
        k.budget_usd = 0.05;
        k.budget_period = "monthly".to_owned();
    });
    let cent = USD / 100;
    let mut spent = 0;
    let mut served = 0;
    loop {
        // Estimated at $0.20 (far over the budget), each request actually costs $0.02.
        match f.limiter.admit(&key, 0, 20 * cent).await {
            Ok(admission) => {
                admission.settle(Some((usage(10, 10), 2 * cent)));
                spent += 2 * cent;
                served += 1;
            }
            Err(error) => {
                let (code, message, retry, _) = rejection(Err(error));
                assert_eq!(code, "budget_exceeded");
                assert!(
                    message.starts_with("key budget of $0.05 per monthly period exhausted: spent $0.06;"),
                    "{message}"
                );
                assert!(message.contains("the period ends at 20"), "{message}");
                assert!(retry > 0 && retry <= 31 * 86_400, "{retry}");
                break;
            }
        }
        assert!(served < 10, "the budget must stop the key");
    }
    assert_eq!(served, 3, "$0.00, $0.02 and $0.04 spent: something was left each time");
    assert!(spent - 5 * cent <= 2 * cent, "overspent by at most one request");
}

#[test]
fn amounts_in_messages_show_cents_or_the_digits_that_matter() {
    assert_eq!(dollars(1.0), "$1.00");
    assert_eq!(dollars(0.4), "$0.40");
    assert_eq!(dollars(0.0001), "$0.0001");
    assert_eq!(dollars(0.000_123_4), "$0.000123");
    assert_eq!(dollars(12.5), "$12.50");
}

/// Shared Redis behind a TCP gate that a test closes and opens (the shared server itself is never
/// stopped), and a direct view of the same keys. `None` (skip) without Redis outside CI.
async fn gated_redis() -> Option<(flowgate_test_utils::TcpGate, SharedState, SharedState)> {
    if !flowgate_test_utils::require_redis().await {
        return None;
    }
    let url = flowgate_test_utils::redis_url();
    let target = url.trim_start_matches("redis://").split('/').next().unwrap_or("127.0.0.1:6379").to_owned();
    let gate = flowgate_test_utils::TcpGate::start(&target).await;
    let prefix = format!("blip-{:x}:", rand::random::<u64>());
    let gated = secrecy::SecretString::from(format!("redis://127.0.0.1:{}", gate.port));
    let through_gate = SharedState::new(Some(&gated), &prefix).unwrap();
    let direct = SharedState::new(Some(&secrecy::SecretString::from(url)), &prefix).unwrap();
    Some((gate, through_gate, direct))
}

async fn counter(direct: &SharedState, key: &str) -> i64 {
    direct.get(key).await.unwrap().map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap())
}

/// Polls until `key` reads `expected` (at most 10 s).
async fn until_counter(direct: &SharedState, key: &str, expected: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = counter(direct, key).await;
        if found == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{key} reads {found}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the limiter has met the outage (at most 5 s).
async fn until_resting(limiter: &Limiter) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !limiter.resting() {
        assert!(std::time::Instant::now() < deadline, "the outage was never noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Redis unreachable in the middle of a burst, then back with its data kept: the settlements that
/// could not reach it are replayed (the reservations they give back, the spend they settle, and
/// the spend settled on in-process counters meanwhile), so nothing stays held and no spend is lost;
/// a slot and a reservation that are never given back (a replica that died) expire on their own.
#[tokio::test]
async fn limits_do_not_drift_across_a_redis_blip() {
    let Some((gate, shared, direct)) = gated_redis().await else { return };
    let f = fixture_over(shared, 0, Duration::from_secs(6)).await;
    let key = key(|k| {
        k.budget_usd = 1.0;
        k.max_parallel_requests = 3;
    });
    let id = key.key.id.clone();
    let (settled, reserved, parallel) =
        (format!("spend:{id}:0:settled"), format!("spend:{id}:0:reserved"), format!("rl:{id}:parallel"));
    let cent = USD / 100;
    let before = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    before.settle(Some((usage(1, 1), cent)));
    until_counter(&direct, &settled, cent).await;

    let a = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    let b = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    // A replica that dies holding a slot and a reservation: never given back.
    let crashed = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    assert!(!a.local && !b.local && !crashed.local, "claimed in Redis");
    std::mem::forget(crashed);
    assert_eq!((counter(&direct, &parallel).await, counter(&direct, &reserved).await), (3, 30 * cent));

    gate.set_open(false);
    a.settle(Some((usage(1, 1), 2 * cent)));
    until_resting(&f.limiter).await;
    // Requests go on, on the in-process counters.
    let during = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    assert!(during.local, "Redis is unreachable");
    during.settle(Some((usage(1, 1), 3 * cent)));
    gate.set_open(true);
    b.settle(Some((usage(1, 1), 4 * cent)));

    // Everything reaches Redis once it answers again: 1 + 2 + 3 + 4 cents settled, a's and b's
    // slots and reservations given back; only the crashed replica's are held.
    until_counter(&direct, &settled, 10 * cent).await;
    until_counter(&direct, &reserved, 10 * cent).await;
    assert_eq!(counter(&direct, &parallel).await, 1);
    f.limiter.flush().await;
    let recorded: i64 =
        sqlx::query(&f.database.sql("SELECT spent_nanos FROM spend WHERE key_id = $1 AND period_start = 0"))
            .bind(id.clone())
            .fetch_one(f.database.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(recorded, 10 * cent);

    // The crashed replica's slot and reservation expire on their own (6 s after they were made),
    // although the key keeps claiming.
    let started = std::time::Instant::now();
    loop {
        let admission = f.limiter.admit(&key, 0, cent).await.unwrap();
        let held = (counter(&direct, &parallel).await, counter(&direct, &reserved).await);
        drop(admission);
        if held == (1, cent) {
            break;
        }
        assert_eq!(held, (2, 11 * cent), "the crashed replica's claims and this one");
        assert!(started.elapsed() < Duration::from_secs(12), "the crashed replica's claims never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// After an outage, spend in Redis is reconciled with the database: a Redis that came back with
/// less than was recorded (restarted from an older snapshot) is raised to the recorded figure.
#[tokio::test]
async fn spend_is_reconciled_with_the_database_after_an_outage() {
    let Some((gate, shared, direct)) = gated_redis().await else { return };
    let f = fixture_over(shared, 0, Duration::from_secs(60)).await;
    let key = key(|k| k.budget_usd = 1.0);
    let settled = format!("spend:{}:0:settled", key.key.id);
    let cent = USD / 100;
    let first = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();
    first.settle(Some((usage(1, 1), 5 * cent)));
    until_counter(&direct, &settled, 5 * cent).await;
    let second = f.limiter.admit(&key, 0, 10 * cent).await.unwrap();

    gate.set_open(false);
    second.settle(Some((usage(1, 1), 2 * cent)));
    until_resting(&f.limiter).await;
    // Redis restarts from a snapshot taken before any spend.
    direct.set_ex(&settled, b"0", Duration::from_secs(600)).await.unwrap();
    gate.set_open(true);

    // The replayed 2 cents, raised to the database's 7.
    until_counter(&direct, &settled, 7 * cent).await;
}

/// Settled spend is added to the stored row (the dialect's upsert) on MariaDB as on the other
/// engines: two settlements flushed apart end in one row with both charges.
#[tokio::test]
async fn settled_spend_adds_up_on_mariadb() {
    let Some(throwaway) = flowgate_test_utils::ThrowawayDb::create_mysql().await else { return };
    let dir = std::env::temp_dir().join(format!("flowgate-limits-{:x}", rand::random::<u64>()));
    let url = secrecy::SecretString::from(throwaway.url.clone());
    let database = Database::connect(Some(&url), &dir, 2, Duration::from_secs(5)).await.unwrap();
    migrate::run(&database).await.unwrap();
    let limiter = Limiter::new(
        SharedState::local("test:"),
        database.clone(),
        0,
        &Metrics::new(),
        &flowgate_common::tasks::Tasks::default(),
        RESERVATION_TTL,
    );
    let key = key(|k| k.budget_usd = 1.0);
    for (prompt, cost) in [(700, USD / 10), (300, USD / 20)] {
        let admitted = limiter.admit(&key, 0, USD / 5).await.unwrap();
        admitted.settle(Some((usage(prompt, 1), cost)));
        limiter.flush().await;
    }
    let row = sqlx::query(&database.sql(
        "SELECT spent_nanos, prompt_tokens, completion_tokens, requests FROM spend WHERE key_id = $1 AND period_start = 0",
    ))
    .bind(key.key.id.clone())
    .fetch_one(database.pool())
    .await
    .unwrap();
    let figures: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(figures, (USD / 10 + USD / 20, 1000, 2, 2));
    let _rest = limiter.admit(&key, 0, 2 * USD).await.unwrap();
    let (_, message, _, _) = rejection(limiter.admit(&key, 0, 1).await);
    assert!(message.contains("spent $0.15 and $0.85 reserved"), "{message}");
    database.close().await;
    throwaway.drop_db().await;
    let _ = std::fs::remove_dir_all(dir);
}
