use std::time::Duration;

use secrecy::SecretString;

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
        // Settling: settled += actual, reserved -= estimate.
        let ttl = Duration::from_secs(60);
        state
            .adjust(&[
                Adjustment { key: "settled".to_owned(), delta: 7, ttl, refresh: true },
                Adjustment { key: "reserved".to_owned(), delta: -10, ttl, refresh: false },
            ])
            .await
            .unwrap();
        let outcome = state.claim(&[budget(0, 300)]).await.unwrap();
        assert_eq!((outcome.rejected, outcome.values, outcome.settled), (None, vec![190], vec![107]), "{state:?}");
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
        if let Some(pool) = state.redis() {
            // As after a Redis restart: the cached script is gone, the claim loads it again.
            let mut conn = pool.get().await.unwrap();
            let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
        }
        assert_eq!(state.claim(std::slice::from_ref(&window)).await.unwrap().values, vec![2], "{state:?}");
    }
}
