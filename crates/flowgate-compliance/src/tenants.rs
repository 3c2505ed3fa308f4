//! Per-tenant state: detection thresholds adjusted by feedback (the "learning feedback" loop) and
//! finding-rate baselines (what is normal for an organisation), both in memory. Thresholds are
//! also persisted (see [`crate::store`]); baselines are rebuilt from traffic after a restart.
//!
//! # Thresholds
//! Each tenant has a minimum score per kind ([`DEFAULT_THRESHOLDS`] until it sends feedback).
//! Feedback moves it:
//! - `false_positive` with the finding's `score`: the threshold moves half-way towards just above
//!   that score (so one report does not silence a detector, repeated reports do); without a score
//!   it rises by [`STEP`].
//! - `false_negative` with the score the missed content got: half-way towards just below it;
//!   without a score it falls by [`STEP`].
//!
//! A report that would not change the outcome (a false positive already below the threshold, a
//! false negative already above) leaves the threshold alone. Thresholds stay within
//! [`min_threshold`]..=1.
//!
//! # Baselines
//! For every tenant and kind: an exponentially weighted mean and variance of findings per scan
//! (slow, α = [`ALPHA`], about the last 50 scans; a plain average during the first 50) and a fast
//! mean (β = [`BETA`], about the last 5 scans). After [`WARM_UP`] scans of a kind, a scan is
//! anomalous for that kind when its count is at least [`MIN_ANOMALY_COUNT`] and above
//! `mean + 4·max(stddev, 0.5)`; a tenant's kind is `elevated` when the fast mean is at least 0.5 and
//! three times the slow mean. Only kinds a scan ran are counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

use serde::Serialize;

use crate::detect::{ALL_KINDS, DEFAULT_THRESHOLDS, PROMPT_INJECTION, TRACKED_KINDS, Thresholds};

/// Threshold change of a report without a score.
pub const STEP: f32 = 0.05;
/// Share of the distance to the reported score a threshold moves.
pub const RATE: f32 = 0.5;
/// Gap kept between a reported score and the threshold.
pub const MARGIN: f32 = 0.01;
/// Slow EWMA weight.
pub const ALPHA: f64 = 0.02;
/// Fast EWMA weight.
pub const BETA: f64 = 0.2;
/// Scans of a kind before anomalies are reported.
pub const WARM_UP: u64 = 20;
/// Smallest count that can be anomalous.
pub const MIN_ANOMALY_COUNT: u32 = 2;
/// Tenants tracked at most; the least recently seen is dropped first.
pub const MAX_TENANTS: usize = 10_000;
/// Anomalies remembered per tenant.
const RECENT_ANOMALIES: usize = 20;

/// The lowest a tenant may set a kind's threshold: prompt injection keeps 0.1 so the classifier
/// never reports every text.
pub fn min_threshold(kind_index: usize) -> f32 {
    if ALL_KINDS[kind_index] == PROMPT_INJECTION { 0.1 } else { 0.0 }
}

/// A feedback verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A finding that should not have been reported.
    FalsePositive,
    /// Content that should have been reported and was not.
    FalseNegative,
}

/// The new threshold after one report.
pub fn adjust(current: f32, verdict: Verdict, score: Option<f32>, floor: f32) -> f32 {
    let next = match (verdict, score) {
        (Verdict::FalsePositive, Some(score)) if score >= current => current + RATE * (score + MARGIN - current),
        (Verdict::FalseNegative, Some(score)) if score < current => current - RATE * (current - (score - MARGIN)),
        (_, Some(_)) => current,
        (Verdict::FalsePositive, None) => current + STEP,
        (Verdict::FalseNegative, None) => current - STEP,
    };
    next.clamp(floor, 1.0)
}

/// A tenant's thresholds and how many reports shaped them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantThresholds {
    /// Minimum score per kind.
    pub values: Thresholds,
    /// False-positive reports per kind.
    pub false_positives: [u64; TRACKED_KINDS],
    /// False-negative reports per kind.
    pub false_negatives: [u64; TRACKED_KINDS],
}

impl Default for TenantThresholds {
    fn default() -> Self {
        Self { values: DEFAULT_THRESHOLDS, false_positives: [0; TRACKED_KINDS], false_negatives: [0; TRACKED_KINDS] }
    }
}

/// The outcome of one feedback report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adjustment {
    /// Threshold before.
    pub previous_threshold: f32,
    /// Threshold after.
    pub threshold: f32,
    /// False positives reported for this tenant and kind so far.
    pub false_positives: u64,
    /// False negatives reported so far.
    pub false_negatives: u64,
}

/// Running finding rates of one kind for one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindBaseline {
    /// Scans that ran this kind.
    pub observations: u64,
    /// Findings counted.
    pub total: u64,
    /// Slow mean of findings per scan.
    pub mean: f64,
    /// Slow variance.
    pub variance: f64,
    /// Fast mean of findings per scan.
    pub recent: f64,
}

impl KindBaseline {
    /// Whether `count` would be anomalous now (before it is counted).
    fn anomalous(&self, count: u32) -> bool {
        self.observations >= WARM_UP
            && count >= MIN_ANOMALY_COUNT
            && f64::from(count) > self.mean + 4.0 * self.variance.sqrt().max(0.5)
    }

    fn observe(&mut self, count: u32) {
        let c = f64::from(count);
        #[expect(clippy::cast_precision_loss, reason = "observation counts stay far below 2^52")]
        let alpha = (1.0 / (self.observations + 1) as f64).max(ALPHA);
        let diff = c - self.mean;
        let increment = alpha * diff;
        self.mean += increment;
        self.variance = (1.0 - alpha) * (self.variance + diff * increment);
        self.recent = if self.observations == 0 { c } else { self.recent + BETA * (c - self.recent) };
        self.observations += 1;
        self.total += u64::from(count);
    }

    /// Whether the fast rate is far above the slow one.
    pub fn elevated(&self) -> bool {
        self.observations >= WARM_UP && self.recent >= 0.5 && self.recent > 3.0 * self.mean.max(0.05)
    }
}

/// One anomalous scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// The kind.
    pub kind: &'static str,
    /// Findings of that kind in the scan.
    pub count: u32,
    /// The tenant's mean per scan before it.
    pub expected: f64,
    /// The tenant's standard deviation per scan.
    pub stddev: f64,
    /// Unix milliseconds.
    pub at: i64,
}

#[derive(Debug, Clone)]
struct TenantBaseline {
    scans: u64,
    kinds: [KindBaseline; TRACKED_KINDS],
    recent_anomalies: VecDeque<Anomaly>,
    last_seen: Instant,
}

impl TenantBaseline {
    fn new() -> Self {
        Self {
            scans: 0,
            kinds: [KindBaseline::default(); TRACKED_KINDS],
            recent_anomalies: VecDeque::new(),
            last_seen: Instant::now(),
        }
    }
}

/// A tenant's baselines, as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineView {
    /// The tenant.
    pub tenant_id: String,
    /// Scans counted.
    pub scans: u64,
    /// Per kind that has been scanned.
    pub kinds: serde_json::Map<String, serde_json::Value>,
    /// Kinds whose recent rate is far above normal.
    pub elevated: Vec<&'static str>,
    /// The last anomalous scans, newest last.
    pub recent_anomalies: Vec<Anomaly>,
}

/// Every tenant's thresholds and baselines.
#[derive(Debug, Default)]
pub struct Tenants {
    thresholds: RwLock<HashMap<String, TenantThresholds>>,
    baselines: Mutex<HashMap<String, TenantBaseline>>,
}

impl Tenants {
    /// The thresholds of `tenant` (the defaults when it has none or is empty).
    pub fn thresholds(&self, tenant: &str) -> Thresholds {
        if tenant.is_empty() {
            return DEFAULT_THRESHOLDS;
        }
        self.thresholds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .map_or(DEFAULT_THRESHOLDS, |t| t.values)
    }

    /// The thresholds and report counts of `tenant`.
    pub fn tenant_thresholds(&self, tenant: &str) -> TenantThresholds {
        self.thresholds.read().unwrap_or_else(PoisonError::into_inner).get(tenant).copied().unwrap_or_default()
    }

    /// Applies one feedback report; returns what changed.
    pub fn feedback(&self, tenant: &str, kind_index: usize, verdict: Verdict, score: Option<f32>) -> Adjustment {
        let mut all = self.thresholds.write().unwrap_or_else(PoisonError::into_inner);
        let entry = all.entry(tenant.to_owned()).or_default();
        let previous = entry.values[kind_index];
        entry.values[kind_index] = adjust(previous, verdict, score, min_threshold(kind_index));
        match verdict {
            Verdict::FalsePositive => entry.false_positives[kind_index] += 1,
            Verdict::FalseNegative => entry.false_negatives[kind_index] += 1,
        }
        Adjustment {
            previous_threshold: previous,
            threshold: entry.values[kind_index],
            false_positives: entry.false_positives[kind_index],
            false_negatives: entry.false_negatives[kind_index],
        }
    }

    /// Replaces `tenant`'s thresholds (loading from the database).
    pub fn set_thresholds(&self, tenant: &str, thresholds: TenantThresholds) {
        self.thresholds.write().unwrap_or_else(PoisonError::into_inner).insert(tenant.to_owned(), thresholds);
    }

    /// Tenants with thresholds of their own.
    pub fn tenants_with_thresholds(&self) -> usize {
        self.thresholds.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Tenants with baselines.
    pub fn tenants_tracked(&self) -> usize {
        self.baselines.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Counts one scan of `tenant`: `counts[i]` findings of `ALL_KINDS[i]`, for the kinds with
    /// `ran[i]`. Returns the kinds whose count is anomalous for this tenant.
    pub fn observe(
        &self,
        tenant: &str,
        counts: &[u32; TRACKED_KINDS],
        ran: &[bool; TRACKED_KINDS],
        now_millis: i64,
    ) -> Vec<Anomaly> {
        if tenant.is_empty() {
            return Vec::new();
        }
        let mut all = self.baselines.lock().unwrap_or_else(PoisonError::into_inner);
        if !all.contains_key(tenant) && all.len() >= MAX_TENANTS {
            let oldest = all.iter().min_by_key(|(_, b)| b.last_seen).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        let baseline = all.entry(tenant.to_owned()).or_insert_with(TenantBaseline::new);
        baseline.scans += 1;
        baseline.last_seen = Instant::now();
        let mut anomalies = Vec::new();
        for (index, kind) in baseline.kinds.iter_mut().enumerate() {
            if !ran[index] {
                continue;
            }
            if kind.anomalous(counts[index]) {
                anomalies.push(Anomaly {
                    kind: ALL_KINDS[index],
                    count: counts[index],
                    expected: round3(kind.mean),
                    stddev: round3(kind.variance.sqrt()),
                    at: now_millis,
                });
            }
            kind.observe(counts[index]);
        }
        for anomaly in &anomalies {
            if baseline.recent_anomalies.len() == RECENT_ANOMALIES {
                baseline.recent_anomalies.pop_front();
            }
            baseline.recent_anomalies.push_back(anomaly.clone());
        }
        anomalies
    }

    /// `tenant`'s baselines, if it has been scanned.
    pub fn baseline(&self, tenant: &str) -> Option<BaselineView> {
        let all = self.baselines.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(tenant).map(|b| view(tenant, b))
    }

    /// Every tracked tenant's baselines (at most `limit`, most recently seen first).
    pub fn all_baselines(&self, limit: usize) -> Vec<BaselineView> {
        let all = self.baselines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tenants: Vec<(&String, &TenantBaseline)> = all.iter().collect();
        tenants.sort_by_key(|(_, b)| std::cmp::Reverse(b.last_seen));
        tenants.into_iter().take(limit).map(|(t, b)| view(t, b)).collect()
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn view(tenant: &str, baseline: &TenantBaseline) -> BaselineView {
    let mut kinds = serde_json::Map::new();
    let mut elevated = Vec::new();
    for (index, kind) in baseline.kinds.iter().enumerate() {
        if kind.observations == 0 {
            continue;
        }
        if kind.elevated() {
            elevated.push(ALL_KINDS[index]);
        }
        kinds.insert(
            ALL_KINDS[index].to_owned(),
            serde_json::json!({
                "observations": kind.observations,
                "total_findings": kind.total,
                "mean_per_scan": round3(kind.mean),
                "stddev": round3(kind.variance.sqrt()),
                "recent_per_scan": round3(kind.recent),
                "elevated": kind.elevated(),
                "warmed_up": kind.observations >= WARM_UP,
            }),
        );
    }
    BaselineView {
        tenant_id: tenant.to_owned(),
        scans: baseline.scans,
        kinds,
        elevated,
        recent_anomalies: baseline.recent_anomalies.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::kind_index;

    #[test]
    fn false_positives_raise_and_false_negatives_lower_the_threshold() {
        let pi = kind_index(PROMPT_INJECTION).unwrap();
        let floor = min_threshold(pi);
        assert!((adjust(0.5, Verdict::FalsePositive, Some(0.7), floor) - 0.605).abs() < 1e-6);
        assert!((adjust(0.5, Verdict::FalseNegative, Some(0.3), floor) - 0.395).abs() < 1e-6);
        assert_eq!(adjust(0.5, Verdict::FalsePositive, Some(0.4), floor), 0.5, "already below: no change");
        assert_eq!(adjust(0.5, Verdict::FalseNegative, Some(0.9), floor), 0.5, "already above: no change");
        assert!((adjust(0.5, Verdict::FalsePositive, None, floor) - 0.55).abs() < 1e-6);
        assert_eq!(adjust(0.12, Verdict::FalseNegative, None, floor), 0.1, "floor");
        assert_eq!(adjust(0.98, Verdict::FalsePositive, None, 0.0), 1.0, "ceiling");
        // Repeated reports converge on just above the reported score.
        let mut t = 0.0;
        for _ in 0..10 {
            t = adjust(t, Verdict::FalsePositive, Some(0.7), 0.0);
        }
        assert!((0.70..=0.711).contains(&t), "{t}");
    }

    #[test]
    fn feedback_is_per_tenant_and_counted() {
        let tenants = Tenants::default();
        let email = kind_index("email").unwrap();
        let a = tenants.feedback("acme", email, Verdict::FalsePositive, Some(0.99));
        assert_eq!((a.previous_threshold, a.false_positives), (0.0, 1));
        assert!(tenants.thresholds("acme")[email] > 0.49);
        assert_eq!(tenants.thresholds("globex")[email], 0.0);
        assert_eq!(tenants.thresholds("")[email], 0.0);
    }

    #[test]
    fn baselines_flag_a_burst_far_above_normal() {
        let tenants = Tenants::default();
        let email = kind_index("email").unwrap();
        let ssn = kind_index("ssn").unwrap();
        let mut ran = [false; TRACKED_KINDS];
        ran[email] = true;
        ran[ssn] = true;
        let mut counts = [0u32; TRACKED_KINDS];
        // Normal: about one email every other request, no SSNs.
        for i in 0..40 {
            counts[email] = i % 2;
            assert!(tenants.observe("acme", &counts, &ran, 0).is_empty(), "scan {i}");
        }
        counts[email] = 1;
        counts[ssn] = 5;
        let anomalies = tenants.observe("acme", &counts, &ran, 7);
        assert_eq!(anomalies.len(), 1);
        assert_eq!((anomalies[0].kind, anomalies[0].count, anomalies[0].at), ("ssn", 5, 7));
        counts[email] = 9;
        counts[ssn] = 0;
        assert_eq!(tenants.observe("acme", &counts, &ran, 8)[0].kind, "email");
        let view = tenants.baseline("acme").unwrap();
        assert_eq!(view.scans, 42);
        assert_eq!(view.recent_anomalies.len(), 2);
        assert!(view.kinds["email"]["mean_per_scan"].as_f64().unwrap() > 0.4);
        assert!(!view.kinds.contains_key("phone"), "kinds never run are not shown");
        // A run of bursts makes the kind elevated.
        for _ in 0..5 {
            tenants.observe("acme", &counts, &ran, 9);
        }
        assert_eq!(tenants.baseline("acme").unwrap().elevated, vec!["email"]);
    }

    #[test]
    fn no_anomalies_during_warm_up_or_without_a_tenant() {
        let tenants = Tenants::default();
        let ran = [true; TRACKED_KINDS];
        let counts = [9u32; TRACKED_KINDS];
        assert!(tenants.observe("", &counts, &ran, 0).is_empty());
        assert_eq!(tenants.tenants_tracked(), 0);
        assert!(tenants.observe("new", &[0; TRACKED_KINDS], &ran, 0).is_empty());
        assert!(tenants.observe("new", &counts, &ran, 0).is_empty(), "one scan is no baseline");
    }
}
