//! Claim and settle logic without Redis: the in-process rules (all or nothing, budgets, giving
//! back, expiry) and the script's argument layout, bundling and reply reading.
//! `shared/tests.rs` runs the common cases against both backends.

use std::time::Duration;

use secrecy::SecretString;

use super::*;
use crate::SharedState;

const TTL: Duration = Duration::from_secs(60);

fn window(key: &str, limit: i64) -> Claim {
    Claim { key: key.to_owned(), delta: 1, limit, ttl: TTL, kind: ClaimKind::Window }
}

fn flight(limit: i64) -> Claim {
    Claim { key: "flight".to_owned(), delta: 1, limit, ttl: TTL, kind: ClaimKind::InFlight }
}

fn budget(delta: i64, limit: i64) -> Claim {
    Claim {
        key: "reserved".to_owned(),
        delta,
        limit,
        ttl: TTL,
        kind: ClaimKind::Budget { settled_key: "settled".to_owned() },
    }
}

fn give_back(claim: &Claim) -> Adjustment {
    Adjustment { key: claim.key.clone(), delta: -claim.delta, ttl: claim.ttl, refresh: false, reservation: None }
}

fn claim(state: &SharedState, claims: &[Claim]) -> ClaimOutcome {
    state.claim_in_process(claims).unwrap()
}

fn counter(state: &SharedState, key: &str) -> Option<i64> {
    use futures_util::FutureExt;
    let value = state.get(key).now_or_never().unwrap().unwrap()?;
    Some(String::from_utf8(value).unwrap().parse().unwrap())
}

fn load_settled(state: &SharedState, amount: i64) {
    use futures_util::FutureExt;
    assert!(state.set_nx("settled", amount, TTL).now_or_never().unwrap().unwrap());
}

#[test]
fn a_budget_admits_while_anything_is_left_and_reserves_at_most_that() {
    let state = SharedState::local("");
    load_settled(&state, 90);
    // 10 is left of 100: an estimate of 20 is admitted and reserves the 10 that are left.
    let admitted = claim(&state, &[window("rpm", 10), budget(20, 100)]);
    assert_eq!(
        admitted,
        ClaimOutcome {
            rejected: None,
            unloaded: None,
            values: vec![1, 10],
            settled: vec![0, 90],
            taken: vec![1, 10],
            reservation: admitted.reservation,
        }
    );
    // Nothing is left: the budget (claim 1) rejects, and the window before it is not charged.
    let rejected = claim(&state, &[window("rpm", 10), budget(1, 100)]);
    assert_eq!(
        rejected,
        ClaimOutcome {
            rejected: Some(1),
            unloaded: None,
            values: vec![1, 10],
            settled: vec![0, 90],
            taken: vec![],
            reservation: rejected.reservation,
        }
    );
    assert_eq!(counter(&state, "rpm"), Some(1), "nothing of a rejected claim is applied");
    // Not even a request estimated at nothing gets in once the budget is used up.
    assert_eq!(claim(&state, &[budget(0, 100)]).rejected, Some(0));
}

#[test]
fn an_unloaded_budget_stops_the_claim_before_anything_is_applied() {
    let state = SharedState::local("");
    let outcome = claim(&state, &[window("rpm", 10), flight(5), budget(1, 100)]);
    assert_eq!(outcome.unloaded, Some(2));
    assert!(!outcome.admitted());
    assert_eq!(counter(&state, "rpm"), None);
    assert_eq!(counter(&state, "flight"), None);
}

#[test]
fn settling_gives_back_what_was_claimed() {
    let state = SharedState::local("");
    // In flight: the second request waits for the first to give its slot back.
    assert!(claim(&state, &[flight(1)]).admitted());
    assert_eq!(claim(&state, &[flight(1)]).rejected, Some(0));
    assert!(state.adjust_in_process(&[give_back(&flight(1))]));
    assert_eq!(claim(&state, &[flight(1)]).values, vec![1]);

    // Budget: a reservation of 30 settles at 25 (settled += actual, reserved -= what was taken),
    // which leaves exactly 25.
    load_settled(&state, 0);
    assert_eq!(claim(&state, &[budget(30, 50)]).taken, vec![30]);
    let rest = claim(&state, &[budget(30, 50)]);
    assert_eq!(rest.taken, vec![20], "the second reservation takes the 20 left");
    assert_eq!(claim(&state, &[budget(1, 50)]).rejected, Some(0), "nothing is left");
    assert!(state.adjust_in_process(&[
        Adjustment { key: "settled".to_owned(), delta: 25, ttl: TTL, refresh: true, reservation: None },
        give_back(&budget(30, 50)),
        Adjustment { key: "reserved".to_owned(), delta: -20, ttl: TTL, refresh: false, reservation: None },
    ]));
    let after = claim(&state, &[budget(25, 50)]);
    assert_eq!((after.rejected, after.values, after.settled), (None, vec![25], vec![25]));
    assert_eq!(claim(&state, &[budget(1, 50)]).rejected, Some(0));
}

#[test]
fn in_flight_claims_renew_their_expiry_and_windows_keep_theirs() {
    let state = SharedState::local("");
    let ttl = Duration::from_millis(400);
    let claims = [
        Claim { key: "w".to_owned(), delta: 1, limit: 10, ttl, kind: ClaimKind::Window },
        Claim { key: "f".to_owned(), delta: 1, limit: 10, ttl, kind: ClaimKind::InFlight },
    ];
    assert_eq!(claim(&state, &claims).values, vec![1, 1]);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(claim(&state, &claims).values, vec![2, 2]);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(counter(&state, "w"), None, "the window expires 400 ms after it opened");
    assert_eq!(counter(&state, "f"), Some(2), "the second claim renewed the in-flight counter");
}

#[test]
fn the_in_process_calls_do_nothing_on_redis() {
    // Connecting is lazy, so nothing is dialled here.
    let state = SharedState::new(Some(&SecretString::from("redis://127.0.0.1:1")), "x:").unwrap();
    assert_eq!(state.claim_in_process(&[flight(1)]), None);
    assert!(!state.adjust_in_process(&[give_back(&flight(1))]));
}

#[test]
fn requests_with_the_same_counters_share_a_bundle_in_order() {
    let a = [window("rpm", 10), flight(2)];
    let other_limit = [window("rpm", 11), flight(2)];
    let other_order = [flight(2), window("rpm", 10)];
    let with_delta = [Claim { delta: 5, ..window("rpm", 10) }, flight(2)];
    let groups: Vec<&[Claim]> = vec![&a, &other_limit, &a, &other_order, &with_delta];
    assert_eq!(bundle(&groups), vec![vec![0, 2, 4], vec![1], vec![3]], "deltas may differ within a bundle");
    assert!(bundle(&[]).is_empty());
}

#[test]
fn script_arguments_list_keys_then_counters_then_deltas_and_ids() {
    let first = [window("rpm", 5), budget(7, 100)];
    let second = [window("rpm", 5), budget(9, 100)];
    let groups: Vec<&[Claim]> = vec![&first, &second];
    let bundles = bundle(&groups);
    let mut command = redis::cmd("EVALSHA");
    command.arg("sha");
    claim_arguments(&mut command, &groups, &[41, 42], &bundles, 1_000);
    let args: Vec<String> = command
        .args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => format!("{other:?}"),
        })
        .collect();
    #[rustfmt::skip]
    let expected = [
        "EVALSHA", "sha",
        "3", "rpm", "reserved", "settled",       // KEYS: counters, then settled counters
        "1", "1000",                             // one bundle, the time
        "2", "1", "2",                           // 2 counters, 1 settled counter, 2 requests
        "w", "5", "60000", "0",                  // the window
        "b", "100", "60000", "3",                // the budget, settled at KEYS[3]
        "1", "7", "41", "1", "9", "42",          // each request's deltas and reservation id
    ];
    assert_eq!(args, expected);
}

#[test]
fn script_replies_are_read_per_request_and_short_ones_refused() {
    let one = [budget(1, 100)];
    let groups: Vec<&[Claim]> = vec![&one, &one, &one];
    let bundles = vec![vec![0, 2], vec![1]];
    // Bundle order: request 0 (admitted), request 2 (rejected at claim 1), then request 1
    // (unloaded at claim 1). Per claim: value, settled, taken.
    let reply = [0, 11, 40, 1, 1, 10, 40, 0, -1, 0, 0, 0];
    let outcomes = claim_reply(&reply, &groups, &bundles).unwrap();
    assert_eq!(
        outcomes[0],
        ClaimOutcome { values: vec![11], settled: vec![40], taken: vec![1], ..ClaimOutcome::default() }
    );
    assert_eq!(outcomes[1], ClaimOutcome { unloaded: Some(0), ..ClaimOutcome::default() });
    assert_eq!(
        outcomes[2],
        ClaimOutcome { rejected: Some(0), values: vec![10], settled: vec![40], ..ClaimOutcome::default() }
    );
    let short = claim_reply(&reply[..11], &groups, &bundles).unwrap_err();
    assert!(matches!(short, SharedError::Command(_)), "{short:?}");
}
