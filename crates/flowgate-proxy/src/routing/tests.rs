use std::collections::HashMap;

use flowgate_common::settings::Sources;

use super::*;

fn table(yaml: &str) -> RoutingTable {
    let path = std::env::temp_dir().join(format!("flowgate-routing-{}.yaml", rand::random::<u64>()));
    std::fs::write(&path, yaml).unwrap();
    let settings = Settings::load(&Sources { config_file: Some(path.clone()), env: HashMap::new() }).unwrap();
    std::fs::remove_file(path).unwrap();
    RoutingTable::build(&settings, &HealthRegistry::default())
}

const TWO: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/a, weight: 3}}
  - {model_name: m, litellm_params: {model: mock/b, weight: 1}}
  - {model_name: backup, litellm_params: {model: mock/c}}
router_settings:
  fallbacks: [{m: [backup]}]
  allowed_fails: 2
  cooldown_time: 30
";

#[test]
fn weighted_shuffle_follows_the_weights() {
    let table = table(TWO);
    let mut counts = HashMap::new();
    for _ in 0..4000 {
        *counts.entry(table.pick("m", &[]).unwrap().id.clone()).or_insert(0u32) += 1;
    }
    let share = f64::from(counts["m/0"]) / 4000.0;
    assert!((0.70..0.80).contains(&share), "weight 3:1 gave share {share}");
}

#[test]
fn cooled_down_deployments_are_skipped_until_all_are() {
    let table = table(TWO);
    let first = table.pick("m", &["m/1".to_owned()]).unwrap();
    assert_eq!(first.id, "m/0", "tried deployments are avoided while others remain");
    assert!(!first.stats.record_failure(2, Duration::from_secs(30)));
    assert!(first.stats.record_failure(2, Duration::from_secs(30)), "second failure starts the cooldown");
    for _ in 0..50 {
        assert_eq!(table.pick("m", &[]).unwrap().id, "m/1");
    }
    assert!(table.cooldown_remaining("m").is_none(), "m/1 is still healthy");
    let other = table.pick("m", &[]).unwrap();
    other.stats.record_failure(1, Duration::from_secs(30));
    assert!(table.pick("m", &[]).is_none());
    assert!(table.cooldown_remaining("m").unwrap() > Duration::from_secs(25));
}

#[test]
fn chain_lists_fallbacks_after_the_model() {
    assert_eq!(table(TWO).chain("m"), vec!["m", "backup"]);
    assert_eq!(table(TWO).chain("backup"), vec!["backup"]);
}

#[test]
fn least_busy_prefers_idle_deployments() {
    let table = table(
        &TWO.replace("simple", "x").replace("router_settings:", "router_settings:\n  routing_strategy: least-busy"),
    );
    let busy = table.pick("m", &[]).unwrap();
    let _guard = busy.stats.begin();
    for _ in 0..20 {
        assert_ne!(table.pick("m", &[]).unwrap().id, busy.id);
    }
}

#[test]
fn latency_based_prefers_the_fastest_measured() {
    let table = table(&TWO.replace("router_settings:", "router_settings:\n  routing_strategy: latency-based-routing"));
    let deployments: Vec<_> = table.deployments().filter(|d| d.model_name == "m").cloned().collect();
    deployments[0].stats.record_success(Duration::from_millis(300));
    deployments[1].stats.record_success(Duration::from_millis(20));
    let fast = (0..200).filter(|_| table.pick("m", &[]).unwrap().id == "m/1").count();
    assert!(fast > 170, "fast deployment chosen {fast}/200");
}

/// Picks `n` times and counts the chosen deployment ids.
fn tally(table: &RoutingTable, model: &str, tried: &[String], n: u32) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        *counts.entry(table.pick(model, tried).unwrap().id.clone()).or_insert(0u32) += 1;
    }
    counts
}

fn share(counts: &HashMap<String, u32>, id: &str, n: u32) -> f64 {
    f64::from(counts.get(id).copied().unwrap_or(0)) / f64::from(n)
}

const THREE: &str = "model_list:
  - {model_name: m, litellm_params: {model: mock/a, weight: 5}}
  - {model_name: m, litellm_params: {model: mock/b, weight: 3}}
  - {model_name: m, litellm_params: {model: mock/c, weight: 2}}
";

#[test]
fn weighted_shuffle_gives_each_deployment_its_share_of_the_total_weight() {
    let table = table(THREE);
    let n = 10_000;
    let counts = tally(&table, "m", &[], n);
    // Binomial(10 000, p): standard deviation at most 0.005; ±0.03 is six of them.
    for (id, expected) in [("m/0", 0.5), ("m/1", 0.3), ("m/2", 0.2)] {
        let got = share(&counts, id, n);
        assert!((got - expected).abs() < 0.03, "{id}: share {got}, weight share {expected}");
    }
}

#[test]
fn weighted_shuffle_renormalises_over_the_deployments_not_yet_tried() {
    let table = table(THREE);
    let n = 10_000;
    let counts = tally(&table, "m", &["m/0".to_owned()], n);
    assert!(!counts.contains_key("m/0"), "a tried deployment is skipped while others remain");
    let got = share(&counts, "m/1", n);
    assert!((got - 0.6).abs() < 0.03, "3:2 between the untried ones gave {got}");
}

#[test]
fn rpm_stands_in_for_a_missing_weight_and_zero_weights_split_evenly() {
    let by_rpm = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a, rpm: 900}}
  - {model_name: m, litellm_params: {model: mock/b, rpm: 100}}
",
    );
    let n = 5_000;
    let got = share(&tally(&by_rpm, "m", &[], n), "m/0", n);
    assert!((got - 0.9).abs() < 0.03, "rpm 900:100 gave {got}");

    let zero = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a, weight: 0}}
  - {model_name: m, litellm_params: {model: mock/b, weight: 0}}
",
    );
    let got = share(&tally(&zero, "m", &[], n), "m/0", n);
    assert!((got - 0.5).abs() < 0.04, "all-zero weights are a uniform choice, gave {got}");
}

fn with_strategy(yaml: &str, strategy: &str) -> RoutingTable {
    table(&format!("{yaml}router_settings:\n  routing_strategy: {strategy}\n"))
}

#[test]
fn least_busy_follows_the_in_flight_counts_as_requests_start_and_end() {
    let table = with_strategy(THREE, "least-busy");
    let [a, b, c]: [Arc<Deployment>; 3] = table.deployments().cloned().collect::<Vec<_>>().try_into().unwrap();
    let a1 = a.stats.begin();
    let _a2 = a.stats.begin();
    let b1 = b.stats.begin();
    assert_eq!((a.stats.in_flight(), b.stats.in_flight(), c.stats.in_flight()), (2, 1, 0));
    for _ in 0..20 {
        assert_eq!(table.pick("m", &[]).unwrap().id, "m/2", "the idle deployment wins");
    }
    let _c1 = c.stats.begin();
    let _c2 = c.stats.begin();
    // a: 2, b: 1, c: 2.
    for _ in 0..20 {
        assert_eq!(table.pick("m", &[]).unwrap().id, "m/1");
    }
    drop(a1);
    drop(b1);
    // a: 1, b: 0, c: 2; ending a request (dropping its guard) frees its slot.
    assert_eq!(b.stats.in_flight(), 0);
    assert_eq!(table.pick("m", &[]).unwrap().id, "m/1");
    assert_eq!(a.stats.totals().0, 2, "requests are counted when they start");
}

#[test]
fn least_busy_spreads_ties_and_respects_tried() {
    let table = with_strategy(THREE, "least-busy");
    let n = 3_000;
    let counts = tally(&table, "m", &[], n);
    for id in ["m/0", "m/1", "m/2"] {
        let got = share(&counts, id, n);
        assert!((got - 1.0 / 3.0).abs() < 0.05, "idle deployments tie and share evenly ({id}: {got}), weights aside");
    }
    let counts = tally(&table, "m", &["m/2".to_owned(), "m/1".to_owned()], 50);
    assert_eq!(counts.keys().collect::<Vec<_>>(), vec!["m/0"]);
}

#[test]
fn latency_based_measures_unmeasured_deployments_first_then_explores_a_little() {
    let table = with_strategy(THREE, "latency-based-routing");
    let deployments: Vec<_> = table.deployments().cloned().collect();
    deployments[0].stats.record_success(Duration::from_millis(5));
    deployments[1].stats.record_success(Duration::from_millis(50));
    for _ in 0..50 {
        assert_eq!(table.pick("m", &[]).unwrap().id, "m/2", "an unmeasured deployment is tried before any other");
    }
    deployments[2].stats.record_success(Duration::from_millis(500));
    let n = 4_000;
    let counts = tally(&table, "m", &[], n);
    let fastest = share(&counts, "m/0", n);
    let slowest = share(&counts, "m/2", n);
    // 5% exploration spread over three: the fastest gets about 0.95 + 0.05/3, each other about 0.017.
    assert!(fastest > 0.93, "fastest chosen {fastest}");
    assert!(slowest > 0.0 && slowest < 0.04, "the slowest is still explored now and then: {slowest}");
}

#[test]
fn latency_is_a_moving_average_so_a_slowdown_moves_traffic() {
    let table = with_strategy(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a}}
  - {model_name: m, litellm_params: {model: mock/b}}
",
        "latency-based-routing",
    );
    let deployments: Vec<_> = table.deployments().cloned().collect();
    deployments[0].stats.record_success(Duration::from_millis(100));
    deployments[1].stats.record_success(Duration::from_millis(200));
    assert_eq!(deployments[0].stats.latency(), Some(Duration::from_millis(100)));
    // One slow answer moves the average a fifth of the way: (4 * 100 + 600) / 5 = 200.
    deployments[0].stats.record_success(Duration::from_millis(600));
    assert_eq!(deployments[0].stats.latency(), Some(Duration::from_millis(200)));
    deployments[0].stats.record_success(Duration::from_millis(600));
    assert_eq!(deployments[0].stats.latency(), Some(Duration::from_millis(280)));
    let n = 1_000;
    let got = share(&tally(&table, "m", &[], n), "m/1", n);
    assert!(got > 0.9, "traffic moved to the now faster deployment: {got}");
}

#[test]
fn a_deployment_cools_down_only_after_allowed_fails_failures() {
    let table = table(THREE);
    let d = table.deployments().next().unwrap().clone();
    let cooldown = Duration::from_secs(30);
    assert!(!d.stats.record_failure(3, cooldown));
    assert!(!d.stats.record_failure(3, cooldown));
    assert!(d.stats.cooldown_remaining().is_none(), "two failures of three allowed");
    assert!(d.stats.record_failure(3, cooldown), "the third failure starts the cooldown");
    let remaining = d.stats.cooldown_remaining().unwrap();
    assert!(remaining > Duration::from_secs(29) && remaining <= cooldown, "{remaining:?}");
    assert_eq!(d.stats.totals().1, 3, "every failure is counted as an error");
    for _ in 0..100 {
        assert_ne!(table.pick("m", &[]).unwrap().id, d.id, "skipped while cooling down");
    }
    // Even when it is the only deployment not yet tried.
    let tried = vec!["m/1".to_owned(), "m/2".to_owned()];
    assert_ne!(table.pick("m", &tried).unwrap().id, d.id);
}

#[test]
fn allowed_fails_zero_means_one_and_a_zero_cooldown_never_cools() {
    let table = table(THREE);
    let d = table.deployments().next().unwrap().clone();
    assert!(!d.stats.record_failure(5, Duration::ZERO));
    for _ in 0..10 {
        assert!(!d.stats.record_failure(5, Duration::ZERO), "cooldown_time 0 switches cooldowns off");
    }
    assert!(d.stats.cooldown_remaining().is_none());
    let other = table.deployments().nth(1).unwrap().clone();
    assert!(other.stats.record_failure(0, Duration::from_secs(1)), "allowed_fails 0 cools on the first failure");
}

#[test]
fn a_cooled_down_deployment_returns_after_cooldown_time_with_a_fresh_failure_count() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a}}
  - {model_name: m, litellm_params: {model: mock/b}}
",
    );
    let d = table.deployments().next().unwrap().clone();
    let cooldown = Duration::from_millis(150);
    d.stats.record_failure(2, cooldown);
    assert!(d.stats.record_failure(2, cooldown));
    assert!(table.pick("m", &["m/1".to_owned()]).unwrap().id == "m/1", "only m/1 is available");
    std::thread::sleep(Duration::from_millis(200));
    assert!(d.stats.cooldown_remaining().is_none(), "the cooldown has passed");
    assert_eq!(table.pick("m", &["m/1".to_owned()]).unwrap().id, "m/0", "and it is picked again");
    // The failures before the cooldown do not count again: it takes allowed_fails new ones.
    assert!(!d.stats.record_failure(2, cooldown));
    assert!(d.stats.record_failure(2, cooldown));
}

#[test]
fn when_every_deployment_cools_down_the_model_reports_the_shortest_wait() {
    let table = table(THREE);
    let waits = [Duration::from_secs(40), Duration::from_secs(10), Duration::from_secs(20)];
    for (d, wait) in table.deployments().zip(waits) {
        assert!(table.cooldown_remaining("m").is_none(), "some deployment is still healthy");
        assert!(d.stats.record_failure(1, wait));
    }
    assert!(table.pick("m", &[]).is_none());
    let shortest = table.cooldown_remaining("m").unwrap();
    assert!(shortest <= Duration::from_secs(10) && shortest > Duration::from_secs(9), "{shortest:?}");
    assert!(table.cooldown_remaining("unknown").is_none());
}

#[test]
fn pick_skips_tried_deployments_until_all_have_been_tried() {
    let table = table(THREE);
    let mut tried = Vec::new();
    for _ in 0..3 {
        let next = table.pick("m", &tried).unwrap();
        assert!(!tried.contains(&next.id), "{} was already tried ({tried:?})", next.id);
        tried.push(next.id.clone());
    }
    tried.sort();
    assert_eq!(tried, vec!["m/0", "m/1", "m/2"]);
    // Every deployment tried: the retry may go to any healthy one again.
    assert!(table.pick("m", &tried).is_some());
    assert!(table.pick("unknown", &[]).is_none());
}

#[test]
fn each_kind_of_failure_has_its_own_fallback_list_in_order_without_repeats() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/m}}
  - {model_name: a, litellm_params: {model: mock/a}}
  - {model_name: b, litellm_params: {model: mock/b}}
  - {model_name: c, litellm_params: {model: mock/c}}
router_settings:
  fallbacks: [{m: [b, a]}, {a: [c]}]
  context_window_fallbacks: [{m: [c, a]}]
  content_policy_fallbacks: [{m: [b]}]
",
    );
    assert_eq!(table.chain("m"), vec!["m", "b", "a"], "only `fallbacks` follow an ordinary failure");
    assert_eq!(table.chain("a"), vec!["a", "c"], "a fallback's own fallbacks are not followed");
    assert_eq!(table.chain("c"), vec!["c"]);
    assert_eq!(table.fallbacks_for("m", FallbackTrigger::ContextWindow), vec!["c", "a"]);
    assert_eq!(table.fallbacks_for("m", FallbackTrigger::ContentPolicy), vec!["b"]);
    assert_eq!(table.fallbacks_for("a", FallbackTrigger::ContextWindow), vec!["c"], "no list of its own: `fallbacks`");
    assert!(table.fallbacks_for("c", FallbackTrigger::ContentPolicy).is_empty());
    assert_eq!(table.names, vec!["m", "a", "b", "c"], "names keep configuration order");
}

#[test]
fn a_deployment_at_its_rpm_is_skipped_until_the_minute_is_over() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a, rpm: 2}}
  - {model_name: m, rpm: 1000, litellm_params: {model: mock/b}}
",
    );
    let a = table.models["m"].iter().find(|d| d.upstream_model == "a").unwrap().clone();
    assert_eq!((a.rpm, a.weight), (Some(2), 2.0), "rpm is also the weight");
    let _first = a.stats.begin();
    let _second = a.stats.begin();
    assert!(a.stats.limited_for(a.rpm, a.tpm).is_some_and(|wait| wait <= Duration::from_secs(60)));
    for _ in 0..50 {
        assert_eq!(table.pick("m", &[]).unwrap().upstream_model, "b", "a is at its limit");
    }
    assert!(table.limited_for("m").is_none(), "b is not");
    let b = table.models["m"].iter().find(|d| d.upstream_model == "b").unwrap();
    assert_eq!(b.rpm, Some(1000), "entry-level rpm");
}

#[test]
fn a_deployment_at_its_tpm_is_skipped_and_when_all_are_the_model_is_limited() {
    let table = table("model_list:\n  - {model_name: m, litellm_params: {model: mock/a, tpm: 100}}\n");
    let a = table.models["m"][0].clone();
    assert!(table.pick("m", &[]).is_some());
    a.stats.record_tokens(100);
    assert!(table.pick("m", &[]).is_none());
    assert!(table.limited_for("m").is_some());
}

#[test]
fn what_redis_reports_for_every_replica_limits_the_deployment_in_its_minute_only() {
    let table = table("model_list:\n  - {model_name: m, litellm_params: {model: mock/a, rpm: 5, tpm: 100}}\n");
    let a = table.models["m"][0].clone();
    let (minute, _) = unix_minute();
    a.stats.observe_shared(minute.saturating_sub(2), 5, 100);
    assert!(a.stats.limited_for(a.rpm, a.tpm).is_none(), "an older minute's figures do not count");
    a.stats.observe_shared(minute, 4, 99);
    assert!(a.stats.limited_for(a.rpm, a.tpm).is_none());
    assert_eq!(a.stats.tokens_this_minute(), 99, "usage-based routing reads every replica's tokens");
    a.stats.observe_shared(minute, 5, 0);
    assert!(table.pick("m", &[]).is_none(), "the replicas together used the rpm");
    assert!(table.limited_for("m").is_some());
}

#[test]
fn aliases_reach_the_same_deployments_and_hidden_ones_are_not_listed() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/a}}
router_settings:
  model_group_alias: {shown: m, quiet: {model: m, hidden: true}}
",
    );
    for alias in ["shown", "quiet"] {
        assert!(table.contains(alias));
        assert_eq!(table.pick(alias, &[]).unwrap().id, "m/0", "the same deployment, the same health");
    }
    assert_eq!(table.names, vec!["m", "shown"]);
}

#[test]
fn usage_based_and_cost_based_routing_pick_the_least_used_and_the_cheapest() {
    let table_of = |strategy: &str| {
        table(&format!(
            "model_list:
  - {{model_name: m, litellm_params: {{model: openai/x, api_base: 'http://127.0.0.1:9', input_cost_per_token: 0.000002, output_cost_per_token: 0.000002}}}}
  - {{model_name: m, litellm_params: {{model: openai/y, api_base: 'http://127.0.0.1:9', input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}}}}
router_settings: {{routing_strategy: {strategy}}}
"
        ))
    };
    let table = table_of("usage-based-routing-v2");
    table.models["m"][1].stats.record_tokens(500);
    for _ in 0..20 {
        assert_eq!(table.pick("m", &[]).unwrap().upstream_model, "x");
    }
    let table = table_of("cost-based-routing");
    for _ in 0..20 {
        assert_eq!(table.pick("m", &[]).unwrap().upstream_model, "y");
    }
}

#[test]
fn pre_call_checks_skip_deployments_the_prompt_does_not_fit() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/small}, model_info: {max_input_tokens: 100}}
  - {model_name: m, litellm_params: {model: mock/large}, model_info: {max_tokens: 10000}}
router_settings: {enable_pre_call_checks: true}
",
    );
    for _ in 0..20 {
        assert_eq!(table.pick_fitting("m", &[], Some(500), None).unwrap().upstream_model, "large");
    }
    assert!(!table.too_long_for("m", 500));
    assert!(table.too_long_for("m", 50_000));
}

mod concurrent_counters {
    //! The strategies decide on one snapshot of the live counters: whatever the in-flight counts
    //! and latencies read while a pick is under way (other requests start and end meanwhile), a
    //! pick among candidates never panics and always returns one of them.

    use std::cell::RefCell;
    use std::sync::atomic::Ordering;

    use proptest::prelude::*;

    use super::*;

    fn with_deployments(weights: &[u32], strategy: &str) -> RoutingTable {
        let mut yaml = String::from("model_list:\n");
        for (i, weight) in weights.iter().enumerate() {
            yaml.push_str(&format!("  - {{model_name: m, litellm_params: {{model: mock/d{i}, weight: {weight}}}}}\n"));
        }
        yaml.push_str(&format!("router_settings: {{routing_strategy: {strategy}}}\n"));
        table(&yaml)
    }

    fn strategy() -> impl Strategy<Value = RoutingStrategy> {
        prop_oneof![
            Just(RoutingStrategy::SimpleShuffle),
            Just(RoutingStrategy::LeastBusy),
            Just(RoutingStrategy::LatencyBasedRouting),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Every read of a counter may see a different value (a counter changing between reads).
        #[test]
        fn a_pick_among_candidates_always_returns_one_of_them(
            strategy in strategy(),
            weights in prop::collection::vec(0u32..4, 1..6),
            reads in prop::collection::vec((0u32..4, prop::option::of(1u64..500)), 1..64),
            seed in any::<u64>(),
        ) {
            let table = with_deployments(&weights, "simple-shuffle");
            let deployments: Vec<Arc<Deployment>> = table.deployments().cloned().collect();
            let candidates: Vec<&Arc<Deployment>> = deployments.iter().collect();
            let next = RefCell::new(reads.iter().cycle());
            let live = |_: &Deployment| {
                let (in_flight, latency) = next.borrow_mut().next().copied().unwrap_or_default();
                (in_flight, latency.map(Duration::from_millis))
            };
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let chosen = choose(strategy, &candidates, &mut rng, live);
            let chosen = chosen.map(|d| d.id.clone());
            prop_assert!(chosen.is_some(), "nothing chosen among {} candidates", candidates.len());
            prop_assert!(deployments.iter().any(|d| Some(&d.id) == chosen.as_ref()));
        }

        /// No candidates: no choice, and no panic.
        #[test]
        fn no_candidates_no_choice(strategy in strategy(), seed in any::<u64>()) {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            prop_assert!(choose(strategy, &[], &mut rng, |_| (0, None)).is_none());
        }
    }

    /// The same through `pick`, with real requests starting and ending on other threads.
    #[test]
    fn least_busy_picks_while_other_threads_start_and_end_requests() {
        let table = Arc::new(with_deployments(&[1, 1, 1], "least-busy"));
        let deployments: Vec<Arc<Deployment>> = table.deployments().cloned().collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn: Vec<_> = deployments
            .iter()
            .map(|d| {
                let (d, stop) = (d.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let guard = d.stats.begin();
                        std::hint::spin_loop();
                        drop(guard);
                    }
                })
            })
            .collect();
        for _ in 0..50_000 {
            assert!(table.pick("m", &[]).is_some());
        }
        stop.store(true, Ordering::Relaxed);
        for thread in churn {
            thread.join().unwrap();
        }
    }
}

#[test]
fn unpriced_deployments_are_known_with_the_models_that_may_reach_them() {
    let table = table(
        "model_list:
  - {model_name: tabled, litellm_params: {model: openai/gpt-4o-mini, api_base: 'http://127.0.0.1:9'}}
  - {model_name: configured, litellm_params: {model: openai/my-finetune, api_base: 'http://127.0.0.1:9', input_cost_per_token: 0, output_cost_per_token: 0}}
  - {model_name: demo, litellm_params: {model: mock/anything}}
  - {model_name: mixed, litellm_params: {model: openai/gpt-4o, api_base: 'http://127.0.0.1:9'}}
  - {model_name: mixed, litellm_params: {model: openai/my-own-model, api_base: 'http://127.0.0.1:9'}}
  - {model_name: free, litellm_params: {model: hosted_vllm/llama, api_base: 'http://127.0.0.1:9'}}
router_settings:
  fallbacks: [{tabled: [free]}]
",
    );
    let unpriced: Vec<&str> = table.unpriced_deployments().map(|d| d.id.as_str()).collect();
    assert_eq!(unpriced, vec!["mixed/4", "free/5"], "a price of 0 set on purpose and mock are priced");
    assert!(table.serves_unpriced("mixed"), "one unpriced deployment is enough");
    assert!(table.serves_unpriced("free"));
    assert!(table.serves_unpriced("tabled"), "its fallback is unpriced");
    assert!(!table.serves_unpriced("configured"));
    assert!(!table.serves_unpriced("demo"));
}

#[test]
fn default_fallbacks_serve_models_without_fallbacks_of_their_own() {
    let table = table(
        "model_list:
  - {model_name: m, litellm_params: {model: mock/m}}
  - {model_name: a, litellm_params: {model: mock/a}}
  - {model_name: safe, litellm_params: {model: mock/safe}}
router_settings:
  fallbacks: [{a: [m]}]
  default_fallbacks: [safe]
",
    );
    assert_eq!(table.chain("m"), vec!["m", "safe"]);
    assert_eq!(table.chain("a"), vec!["a", "m"], "a list of its own wins");
    assert_eq!(table.chain("safe"), vec!["safe"], "never itself");
    assert_eq!(table.fallbacks_for("m", FallbackTrigger::ContentPolicy), vec!["safe"]);
}

#[test]
fn a_swap_keeps_the_health_of_unchanged_deployments_and_resets_changed_ones() {
    let path = std::env::temp_dir().join(format!("flowgate-routing-{}.yaml", rand::random::<u64>()));
    std::fs::write(&path, TWO).unwrap();
    let settings = Settings::load(&Sources { config_file: Some(path.clone()), env: HashMap::new() }).unwrap();
    std::fs::remove_file(path).unwrap();
    let health = HealthRegistry::default();
    let versions = |a: i64| HashMap::from([("m/0".to_owned(), a), ("m/1".to_owned(), 0), ("backup/2".to_owned(), 0)]);
    health.keep(&versions(1));
    let before = RoutingTable::build(&settings, &health);
    let cooling = |table: &RoutingTable, id: &str| {
        table.deployments().find(|d| d.id == id).unwrap().stats.cooldown_remaining().is_some()
    };
    for id in ["m/0", "m/1"] {
        let d = before.deployments().find(|d| d.id == id).unwrap();
        d.stats.record_failure(1, Duration::from_secs(30));
    }
    assert!(cooling(&before, "m/0") && cooling(&before, "m/1"));
    // Same versions: the new table sees the same health.
    health.keep(&versions(1));
    let same = RoutingTable::build(&settings, &health);
    assert!(cooling(&same, "m/0") && cooling(&same, "m/1"), "unchanged deployments keep their cooldown");
    // m/0 rewritten (a new version): it starts afresh; m/1 keeps its cooldown.
    health.keep(&versions(2));
    let after = RoutingTable::build(&settings, &health);
    assert!(!cooling(&after, "m/0"), "a changed deployment starts afresh");
    assert!(cooling(&after, "m/1"), "the others keep theirs");
    // The old table (held by requests in flight) still has its own stats.
    assert!(cooling(&before, "m/0"));
    // A deployment that left the table is forgotten.
    health.keep(&HashMap::from([("m/1".to_owned(), 0)]));
    assert_eq!(health.stats.lock().unwrap().len(), 1);
}
