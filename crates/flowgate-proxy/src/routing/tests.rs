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
