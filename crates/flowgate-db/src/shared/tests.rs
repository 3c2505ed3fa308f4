use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::claim::bundle;
use super::*;

fn redis_url() -> Option<SecretString> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    Some(SecretString::from(url))
}

async fn backends() -> Vec<SharedState> {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    let mut states = vec![SharedState::local(&prefix)];
    let redis = SharedState::new(redis_url().as_ref(), &prefix).unwrap();
    match redis.ping().await {
        Ok(()) => states.push(redis),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and Redis is unreachable: {error}")
        }
        Err(error) => eprintln!("SKIPPING the Redis half of this test, Redis unreachable: {error}"),
    }
    states
}

#[tokio::test]
async fn counters_add_up_and_expire_as_a_window() {
    for state in backends().await {
        assert_eq!(state.incr_by("c", 2, Duration::from_millis(300)).await.unwrap(), 2);
        assert_eq!(state.incr_by("c", 3, Duration::from_secs(60)).await.unwrap(), 5);
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            state.incr_by("c", 1, Duration::from_secs(60)).await.unwrap(),
            1,
            "the window opened by the first increment expired ({state:?})"
        );
    }
}

#[tokio::test]
async fn values_round_trip_and_expire() {
    for state in backends().await {
        state.set_ex("v", b"hello", Duration::from_millis(300)).await.unwrap();
        assert_eq!(state.get("v").await.unwrap().as_deref(), Some(&b"hello"[..]));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(state.get("v").await.unwrap(), None, "{state:?}");
        state.set_ex("w", b"x", Duration::from_secs(60)).await.unwrap();
        state.delete("w").await.unwrap();
        assert_eq!(state.get("w").await.unwrap(), None);
    }
}

#[tokio::test]
async fn concurrent_increments_are_not_lost() {
    for state in backends().await {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let state = state.clone();
            tasks.spawn(async move { state.incr_by("n", 1, Duration::from_secs(60)).await.unwrap() });
        }
        let mut seen = Vec::new();
        while let Some(value) = tasks.join_next().await {
            seen.push(value.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "{state:?}");
    }
}

#[tokio::test]
async fn unreachable_redis_reports_unavailable_quickly() {
    let state = SharedState::new(Some(&SecretString::from("redis://127.0.0.1:1")), "x:").unwrap();
    let started = std::time::Instant::now();
    let error = state.ping().await.unwrap_err();
    assert!(matches!(error, SharedError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn published_messages_reach_subscribers() {
    for state in backends().await {
        let mut receiver = state.subscribe("events");
        // Redis subscriptions are established in the background; publish until one arrives.
        let received = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                state.publish("events", "key-1").await.unwrap();
                match tokio::time::timeout(Duration::from_millis(100), receiver.recv()).await {
                    Ok(Ok(notification)) => return notification,
                    _ => continue,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(received, Notification::Message("key-1".to_owned()), "{state:?}");
    }
}

fn budget(estimate: i64, limit: i64) -> Claim {
    Claim {
        key: "reserved".to_owned(),
        delta: estimate,
        limit,
        ttl: Duration::from_secs(60),
        kind: ClaimKind::Budget { settled_key: "settled".to_owned() },
    }
}

#[tokio::test]
async fn concurrent_reservations_never_exceed_the_limit() {
    for state in backends().await {
        // Nothing is reserved against a settled amount that was never loaded.
        let unloaded = state.claim(&[budget(10, 300)]).await.unwrap();
        assert_eq!((unloaded.unloaded, unloaded.rejected), (Some(0), None), "{state:?}");
        assert!(unloaded.values.is_empty(), "{state:?}");
        assert!(state.set_nx("settled", 100, Duration::from_secs(60)).await.unwrap());
        assert!(!state.set_nx("settled", 5, Duration::from_secs(60)).await.unwrap(), "second set_nx is a no-op");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let state = state.clone();
            tasks.spawn(async move { state.claim(&[budget(10, 300)]).await.unwrap().rejected.is_none() });
        }
        let mut admitted = 0;
        while let Some(result) = tasks.join_next().await {
            admitted += usize::from(result.unwrap());
        }
        assert_eq!(admitted, 20, "(300 - 100) / 10 reservations fit ({state:?})");
        // Settling: settled += actual, reserved -= what was taken.
        let ttl = Duration::from_secs(60);
        state
            .adjust(&[
                Adjustment { key: "settled".to_owned(), delta: 7, ttl, refresh: true, reservation: None },
                Adjustment { key: "reserved".to_owned(), delta: -10, ttl, refresh: false, reservation: None },
            ])
            .await
            .unwrap();
        let outcome = state.claim(&[budget(0, 300)]).await.unwrap();
        assert_eq!((outcome.rejected, outcome.values, outcome.settled), (None, vec![190], vec![107]), "{state:?}");
        // 3 is left: an estimate of 10 is admitted and reserves those 3; then nothing is left.
        let last = state.claim(&[budget(10, 300)]).await.unwrap();
        assert_eq!((last.rejected, last.taken), (None, vec![3]), "{state:?}");
        assert_eq!(state.claim(&[budget(1, 300)]).await.unwrap().rejected, Some(0), "{state:?}");
    }
}

#[tokio::test]
async fn a_claim_applies_all_of_its_parts_or_none() {
    for state in backends().await {
        let ttl = Duration::from_secs(60);
        let window = |limit| Claim { key: "rpm".to_owned(), delta: 1, limit, ttl, kind: ClaimKind::Window };
        let tokens = |delta, limit| Claim { key: "tpm".to_owned(), delta, limit, ttl, kind: ClaimKind::TokenWindow };
        let flight = |limit| Claim { key: "flight".to_owned(), delta: 1, limit, ttl, kind: ClaimKind::InFlight };

        let first = state.claim(&[flight(2), window(3), tokens(40, 50)]).await.unwrap();
        assert_eq!((first.rejected, first.values.clone()), (None, vec![1, 1, 40]), "{state:?}");
        // The token window admits while it is below its limit, even if the estimate overshoots.
        let second = state.claim(&[flight(2), window(3), tokens(40, 50)]).await.unwrap();
        assert_eq!((second.rejected, second.values.clone()), (None, vec![2, 2, 80]), "{state:?}");
        // Now the in-flight limit (2) is full: nothing of this claim is applied.
        let third = state.claim(&[window(3), flight(2)]).await.unwrap();
        assert_eq!((third.rejected, third.values.clone()), (Some(1), vec![2, 2]), "{state:?}");
        // The window was not charged for the rejected claim; the token window is now full.
        let fourth = state.claim(&[window(3), tokens(1, 50)]).await.unwrap();
        assert_eq!((fourth.rejected, fourth.values.clone()), (Some(1), vec![2, 80]), "{state:?}");
        let fifth = state.claim(&[window(3)]).await.unwrap();
        assert_eq!((fifth.rejected, fifth.values.clone()), (None, vec![3]), "{state:?}");
        let sixth = state.claim(&[window(3)]).await.unwrap();
        assert_eq!(sixth.rejected, Some(0), "{state:?}");
        // A limit of 0 claims without checking.
        let unchecked = state.claim(&[window(0)]).await.unwrap();
        assert_eq!((unchecked.rejected, unchecked.values), (None, vec![4]), "{state:?}");
    }
}

#[tokio::test]
async fn claims_keep_working_after_redis_forgets_the_script() {
    for state in backends().await {
        let ttl = Duration::from_secs(60);
        let window = Claim { key: "w".to_owned(), delta: 1, limit: 10, ttl, kind: ClaimKind::Window };
        assert_eq!(state.claim(std::slice::from_ref(&window)).await.unwrap().values, vec![1], "{state:?}");
        if let Inner::Redis(server) = &state.inner {
            // As after a Redis restart: the cached script is gone, the claim loads it again.
            let () = server.run(async |c| ::redis::cmd("SCRIPT").arg("FLUSH").query_async(c).await).await.unwrap();
        }
        assert_eq!(state.claim(std::slice::from_ref(&window)).await.unwrap().values, vec![2], "{state:?}");
    }
}

#[tokio::test]
async fn rejected_claims_leave_nothing_behind_and_abandoned_ones_are_given_back() {
    for state in backends().await {
        let ttl = Duration::from_secs(60);
        let window = |key: &str| Claim { key: key.to_owned(), delta: 1, limit: 5, ttl, kind: ClaimKind::Window };
        let flight = Claim { key: "flight".to_owned(), delta: 1, limit: 1, ttl, kind: ClaimKind::InFlight };
        assert!(state.claim(std::slice::from_ref(&flight)).await.unwrap().admitted(), "{state:?}");
        // The window's counter did not exist: the rejected claim must not leave one behind.
        let rejected = state.claim(&[window("fresh"), flight.clone()]).await.unwrap();
        assert_eq!((rejected.rejected, rejected.values), (Some(1), vec![0, 1]), "{state:?}");
        assert_eq!(state.get("fresh").await.unwrap(), None, "{state:?}");

        // A request that goes away while its claim is on its way: in Redis the claim is queued
        // when first polled, so the caller is gone when it is applied, and it is given back.
        use futures_util::FutureExt;
        let abandoned = state.claim(&[window("abandoned")]).now_or_never().is_none();
        assert_eq!(abandoned, state.is_shared(), "{state:?}");
        // Given back, the counter reads 0 (it exists: it was applied, then taken back).
        let expected = if abandoned { "0" } else { "1" };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let value = state.get("abandoned").await.unwrap();
            if value.as_deref() == Some(expected.as_bytes()) {
                break;
            }
            assert!(Instant::now() < deadline, "counter {value:?}, expected {expected} ({state:?})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A batch sent to Redis in one script call (bundled by counters) decides exactly as claiming
/// the same requests one after the other in process does (bundle by bundle: requests of one
/// batch are concurrent, so any order is theirs), counters included.
#[tokio::test]
async fn a_bundled_batch_decides_as_claims_one_after_the_other() {
    let states = backends().await;
    let [local, redis] = states.as_slice() else { return };
    let Inner::Redis(server) = &redis.inner else { panic!("second backend is Redis") };
    let ttl = Duration::from_secs(60);
    // A small deterministic generator: the same batches on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        i64::try_from(seed % below).unwrap_or(0)
    };
    for state in [local, redis] {
        assert!(state.set_nx("b-settled", 40, ttl).await.unwrap());
    }
    // Admitted and rejected requests: both paths of the script must be taken.
    let mut decided = [0; 2];
    for round in 0..30 {
        let mut groups: Vec<Vec<Claim>> = Vec::new();
        for _ in 0..(1 + next(12)) {
            // Two shapes of request, so a batch holds two bundles; limits tight enough to reject.
            let mut claims = vec![
                Claim { key: "f".to_owned(), delta: 1, limit: 6, ttl, kind: ClaimKind::InFlight },
                Claim { key: "w".to_owned(), delta: 1, limit: 200, ttl, kind: ClaimKind::Window },
                Claim { key: "t".to_owned(), delta: next(30), limit: 900, ttl, kind: ClaimKind::TokenWindow },
            ];
            if next(2) == 0 {
                claims.push(Claim {
                    key: "b".to_owned(),
                    delta: next(20),
                    limit: 300,
                    ttl,
                    kind: ClaimKind::Budget { settled_key: "b-settled".to_owned() },
                });
            }
            groups.push(claims);
        }
        let order: Vec<&[Claim]> = groups.iter().map(Vec::as_slice).collect();
        let mut expected = vec![ClaimOutcome::default(); groups.len()];
        for index in bundle(&order).into_iter().flatten() {
            expected[index] = local.claim(&groups[index]).await.unwrap();
        }
        let prefixed: Vec<Vec<Claim>> = groups.iter().map(|claims| redis.prefixed(claims)).collect();
        let batch: Vec<&[Claim]> = prefixed.iter().map(Vec::as_slice).collect();
        let ids: Vec<u64> = (0..batch.len() as u64).collect();
        let mut outcomes = server.claim_groups(&batch, &ids).await.unwrap();
        // Reservation ids are the caller's: compare the decisions.
        for outcome in outcomes.iter_mut().chain(expected.iter_mut()) {
            outcome.reservation = 0;
        }
        assert_eq!(outcomes, expected, "round {round}: {groups:?}");
        for outcome in &outcomes {
            decided[usize::from(outcome.rejected.is_some())] += 1;
        }
        for key in ["f", "w", "t", "b"] {
            let read =
                |value: Option<Vec<u8>>| value.map_or(0, |v| String::from_utf8_lossy(&v).parse::<i64>().unwrap());
            assert_eq!(
                read(redis.get(key).await.unwrap()),
                read(local.get(key).await.unwrap()),
                "round {round}, {key}"
            );
        }
        // Release some in-flight slots so later rounds admit again.
        let release = [Adjustment { key: "f".to_owned(), delta: -next(4), ttl, refresh: false, reservation: None }];
        for state in [local, redis] {
            let value =
                state.get("f").await.unwrap().map_or(0, |v| String::from_utf8_lossy(&v).parse::<i64>().unwrap());
            let release = [Adjustment { delta: release[0].delta.max(-value), ..release[0].clone() }];
            state.adjust(&release).await.unwrap();
        }
    }
    assert!(decided[0] > 20 && decided[1] > 20, "admitted and rejected: {decided:?}");
}

fn flight(ttl: Duration) -> Claim {
    Claim { key: "f".to_owned(), delta: 1, limit: 2, ttl, kind: ClaimKind::InFlight }
}

fn give_back(outcome: &ClaimOutcome) -> Adjustment {
    Adjustment {
        key: "f".to_owned(),
        delta: -1,
        ttl: Duration::from_secs(60),
        refresh: false,
        reservation: Some(outcome.reservation),
    }
}

/// A slot that is never given back (its process died, its settlement was lost) stops counting at
/// its own deadline, even while steady traffic keeps claiming on the same counter.
#[tokio::test]
async fn every_reservation_expires_on_its_own_however_busy_the_counter() {
    for state in backends().await {
        let leaked = state.claim(&[flight(Duration::from_millis(800))]).await.unwrap();
        assert!(leaked.admitted(), "{state:?}");
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2_200) {
            let busy = state.claim(&[flight(Duration::from_secs(60))]).await.unwrap();
            assert!(busy.admitted(), "the other slot is free ({state:?})");
            state.adjust(&[give_back(&busy)]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a = state.claim(&[flight(Duration::from_secs(60))]).await.unwrap();
        let b = state.claim(&[flight(Duration::from_secs(60))]).await.unwrap();
        assert!(a.admitted() && b.admitted(), "the leaked slot expired: both slots are free ({state:?})");
    }
}

/// Giving a reservation back twice (a replayed settlement), or after it expired, takes nothing
/// more than it held.
#[tokio::test]
async fn a_reservation_is_given_back_once_and_not_after_it_expired() {
    for state in backends().await {
        let five = |ttl| Claim { limit: 5, ..flight(ttl) };
        let a = state.claim(&[five(Duration::from_secs(60))]).await.unwrap();
        let _b = state.claim(&[five(Duration::from_secs(60))]).await.unwrap();
        state.adjust(&[give_back(&a)]).await.unwrap();
        state.adjust(&[give_back(&a)]).await.unwrap();
        let c = state.claim(&[five(Duration::from_millis(300))]).await.unwrap();
        assert_eq!(c.values, vec![2], "b and c; a was given back once ({state:?})");
        tokio::time::sleep(Duration::from_millis(1_400)).await;
        state.adjust(&[give_back(&c)]).await.unwrap();
        let d = state.claim(&[five(Duration::from_secs(60))]).await.unwrap();
        assert_eq!(d.values, vec![2], "b and d: c expired, and giving it back late took nothing ({state:?})");
    }
}

#[tokio::test]
async fn streams_keep_records_in_order_trimmed_and_read_after_an_id() {
    for state in backends().await {
        for payload in [&b"one"[..], b"two", b"three"] {
            state.stream_append("s", payload, 100).await.unwrap();
        }
        let all = state.stream_after("s", "0-0", 10).await.unwrap();
        let payloads: Vec<&[u8]> = all.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [&b"one"[..], b"two", b"three"], "{state:?}");
        let after_first = state.stream_after("s", &all[0].0, 1).await.unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].1, b"two");
        assert!(state.stream_after("s", &all[2].0, 10).await.unwrap().is_empty());
        assert!(state.stream_after("other", "0-0", 10).await.unwrap().is_empty());
    }
    // In process the stream is trimmed exactly (Redis trims approximately, by whole nodes).
    let local = SharedState::local("t:");
    for n in 0..5u8 {
        local.stream_append("s", &[n], 2).await.unwrap();
    }
    let kept: Vec<Vec<u8>> = local.stream_after("s", "0-0", 10).await.unwrap().into_iter().map(|(_, p)| p).collect();
    assert_eq!(kept, [vec![3], vec![4]]);
}
