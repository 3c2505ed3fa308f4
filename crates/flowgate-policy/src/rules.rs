//! Rule sets as data (JSON; shown here as YAML for brevity). A rule set is an ordered list of rules; the first rule whose conditions all
//! hold decides, otherwise the set's default applies.
//!
//! ```yaml
//! name: default
//! default: allow
//! rules:
//!   - name: block-injection
//!     when: {finding: prompt_injection, min_score: 0.8}
//!     action: deny
//!     reason: prompt injection detected
//!   - name: cheap-model-for-pii
//!     when: {finding: email, model: "gpt-4*"}
//!     action: reroute
//!     reroute_model: local-llm
//!   - name: risky-content
//!     when:
//!       any_finding: [secret, prompt_injection]
//!       min_scores: {secret: 0.5, prompt_injection: 0.6}
//!     action: flag
//! ```
//!
//! # Finding conditions
//! - `finding: kind` (or `*`): findings of that kind; `any_finding: [kinds]`: of any of them
//!   (exclusive with `finding`).
//! - `min_count` (default 1): at least this many such findings in total.
//! - `min_score` (default 0): at least one such finding scored this high.
//! - `min_scores: {kind: score}`: a per-kind score floor; a kind counts only when its best finding
//!   reaches its floor (kinds not listed use `min_score`). On its own, `min_scores` means "any of
//!   the kinds listed, each with its floor".

use serde::{Deserialize, Serialize};

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Stop it with the rule's reason.
    Deny,
    /// Let it through with findings replaced by placeholders.
    Redact,
    /// Let it through and mark it in the audit trail.
    Flag,
    /// Send it to another model name.
    Reroute,
}

/// Conditions of a rule; every one given must hold. Strings match exactly, or as a prefix when they
/// end in `*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Virtual key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Tenant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Requested model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Route, e.g. `/v1/chat/completions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `pre_call`, `post_call` or `during_call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// A finding kind that must be present (`email`, `prompt_injection`, `*` for any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// With `finding`: at least this many such findings. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    /// With `finding`: at least one such finding scored this high. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    /// Finding kinds of which at least one must be present (instead of `finding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_finding: Option<Vec<String>>,
    /// Per-kind minimum score; see the module documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_scores: Option<std::collections::BTreeMap<String, f32>>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the set; reported as the matched rule.
    pub name: String,
    /// Conditions; an empty set always matches.
    #[serde(default)]
    pub when: Conditions,
    /// The decision.
    pub action: Action,
    /// Shown to the caller on deny, recorded otherwise.
    #[serde(default)]
    pub reason: Option<String>,
    /// Required for `reroute`.
    #[serde(default)]
    pub reroute_model: Option<String>,
}

/// A rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Name of the set.
    pub name: String,
    /// Decision when no rule matches. Default `allow`.
    #[serde(default = "default_action")]
    pub default: Action,
    /// Rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn default_action() -> Action {
    Action::Allow
}

/// A finding summary, as the proxy reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingSummary {
    /// Kind.
    pub kind: String,
    /// How many.
    pub count: u32,
    /// Highest score among them.
    pub max_score: f32,
}

/// What is known about the request being decided.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// Virtual key id.
    pub key_id: &'a str,
    /// Tenant id.
    pub tenant_id: &'a str,
    /// Requested model.
    pub model: &'a str,
    /// Route.
    pub route: &'a str,
    /// Stage.
    pub stage: &'a str,
    /// Findings so far.
    pub findings: &'a [FindingSummary],
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why (safe to show; never contains scanned text).
    pub reason: String,
    /// The rule that matched; `None` when the default applied.
    pub matched_rule: Option<String>,
    /// For reroute: the target model name.
    pub reroute_model: Option<String>,
}

/// A rule set failed validation; the message names the rule and field.
#[derive(Debug, thiserror::Error)]
#[error("invalid rule set: {0}")]
pub struct ValidationError(pub String);

fn matches_pattern(pattern: &Option<String>, value: &str) -> bool {
    match pattern.as_deref() {
        None => true,
        Some(p) => match p.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => p == value,
        },
    }
}

impl Conditions {
    /// Whether a finding of `kind` is one this condition is about.
    fn about(&self, kind: &str) -> bool {
        match (&self.finding, &self.any_finding, &self.min_scores) {
            (Some(f), _, _) => f == "*" || f == kind,
            (None, Some(list), _) => list.iter().any(|k| k == "*" || k == kind),
            (None, None, Some(scores)) => scores.contains_key(kind),
            (None, None, None) => false,
        }
    }

    fn has_finding_condition(&self) -> bool {
        self.finding.is_some() || self.any_finding.is_some() || self.min_scores.is_some()
    }

    fn holds(&self, context: &Context<'_>) -> bool {
        if !(matches_pattern(&self.key_id, context.key_id)
            && matches_pattern(&self.tenant_id, context.tenant_id)
            && matches_pattern(&self.model, context.model)
            && matches_pattern(&self.route, context.route)
            && matches_pattern(&self.stage, context.stage))
        {
            return false;
        }
        if !self.has_finding_condition() {
            return true;
        }
        let min_count = self.min_count.unwrap_or(1);
        let min_score = self.min_score.unwrap_or(0.0);
        let relevant = context.findings.iter().filter(|f| self.about(&f.kind));
        match &self.min_scores {
            // Without per-kind floors: the count over every relevant kind, and the best score.
            None => {
                let (count, best) =
                    relevant.fold((0u32, f32::MIN), |(n, best), f| (n.saturating_add(f.count), best.max(f.max_score)));
                count >= min_count && count > 0 && best >= min_score
            }
            // With them: only kinds whose best finding reaches their floor count.
            Some(floors) => {
                let count = relevant
                    .filter(|f| f.max_score >= floors.get(&f.kind).copied().unwrap_or(min_score))
                    .fold(0u32, |n, f| n.saturating_add(f.count));
                count >= min_count && count > 0
            }
        }
    }

    /// The conditions in words, for explanations: `model=gpt-4*, finding=email (min_count 2)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("key_id", &self.key_id),
            ("tenant_id", &self.tenant_id),
            ("model", &self.model),
            ("route", &self.route),
            ("stage", &self.stage),
            ("finding", &self.finding),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        }
        if let Some(kinds) = &self.any_finding {
            parts.push(format!("any_finding=[{}]", kinds.join(", ")));
        }
        if let Some(n) = self.min_count {
            parts.push(format!("min_count={n}"));
        }
        if let Some(score) = self.min_score {
            parts.push(format!("min_score={score}"));
        }
        if let Some(floors) = &self.min_scores {
            let floors: Vec<String> = floors.iter().map(|(k, v)| format!("{k}>={v}")).collect();
            parts.push(format!("min_scores={{{}}}", floors.join(", ")));
        }
        if parts.is_empty() { "always".to_owned() } else { parts.join(", ") }
    }
}

impl RuleSet {
    /// Parses a rule set from JSON text and validates it.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let set: RuleSet = serde_json::from_str(text).map_err(|e| ValidationError(e.to_string()))?;
        set.validate()?;
        Ok(set)
    }

    /// Checks names are unique and non-empty, reroutes name a model, scores are in range.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.name.trim().is_empty() {
            return Err(ValidationError("`name` must not be empty".to_owned()));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.name.trim().is_empty() {
                return Err(ValidationError(format!("rules[{index}].name must not be empty")));
            }
            if self.rules[..index].iter().any(|r| r.name == rule.name) {
                return Err(ValidationError(format!("rules[{index}].name `{}` is used twice", rule.name)));
            }
            if rule.action == Action::Reroute && rule.reroute_model.as_deref().is_none_or(str::is_empty) {
                return Err(ValidationError(format!("rules[{index}] (`{}`): reroute needs reroute_model", rule.name)));
            }
            if rule.when.min_score.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                return Err(ValidationError(format!("rules[{index}].when.min_score must be between 0 and 1")));
            }
            let when = &rule.when;
            if (when.min_score.is_some() || when.min_count.is_some()) && !when.has_finding_condition() {
                return Err(ValidationError(format!(
                    "rules[{index}].when: min_score/min_count need `finding`, `any_finding` or `min_scores`"
                )));
            }
            if when.finding.is_some() && when.any_finding.is_some() {
                return Err(ValidationError(format!("rules[{index}].when: use `finding` or `any_finding`, not both")));
            }
            if when
                .any_finding
                .as_ref()
                .is_some_and(|kinds| kinds.is_empty() || kinds.iter().any(|k| k.trim().is_empty()))
            {
                return Err(ValidationError(format!("rules[{index}].when.any_finding must list finding kinds")));
            }
            if let Some(floors) = &when.min_scores {
                if floors.is_empty() {
                    return Err(ValidationError(format!("rules[{index}].when.min_scores must not be empty")));
                }
                if let Some((kind, _)) = floors.iter().find(|(_, s)| !(0.0..=1.0).contains(*s)) {
                    return Err(ValidationError(format!(
                        "rules[{index}].when.min_scores.{kind} must be between 0 and 1"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The decision for `context`: the first matching rule, else the default.
    pub fn evaluate(&self, context: &Context<'_>) -> Decision {
        for rule in &self.rules {
            if rule.when.holds(context) {
                return Decision {
                    action: rule.action,
                    reason: rule.reason.clone().unwrap_or_else(|| format!("rule `{}` matched", rule.name)),
                    matched_rule: Some(rule.name.clone()),
                    reroute_model: rule.reroute_model.clone(),
                };
            }
        }
        Decision { action: self.default, reason: "no rule matched".to_owned(), matched_rule: None, reroute_model: None }
    }

    /// Why `decision` was reached, in words (names the rule and its conditions).
    pub fn explain(&self, decision: &Decision) -> String {
        match decision.matched_rule.as_deref().and_then(|name| self.rules.iter().find(|r| r.name == name)) {
            Some(rule) => format!("rule `{}` matched ({}) -> {:?}", rule.name, rule.when.describe(), rule.action),
            None => format!("no rule of `{}` matched -> default {:?}", self.name, self.default),
        }
    }

    /// The set used when a key names none: deny likely prompt injection, flag any other finding.
    pub fn builtin_default() -> Self {
        Self {
            name: "default".to_owned(),
            default: Action::Allow,
            rules: vec![
                Rule {
                    name: "deny-prompt-injection".to_owned(),
                    when: Conditions {
                        finding: Some("prompt_injection".to_owned()),
                        min_score: Some(0.8),
                        ..Conditions::default()
                    },
                    action: Action::Deny,
                    reason: Some("prompt injection detected".to_owned()),
                    reroute_model: None,
                },
                Rule {
                    name: "flag-findings".to_owned(),
                    when: Conditions { finding: Some("*".to_owned()), ..Conditions::default() },
                    action: Action::Flag,
                    reason: Some("sensitive content detected".to_owned()),
                    reroute_model: None,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: &str, count: u32, max_score: f32) -> FindingSummary {
        FindingSummary { kind: kind.to_owned(), count, max_score }
    }

    #[test]
    fn first_matching_rule_decides() {
        let set = RuleSet::parse(
            r#"{"name":"t","rules":[
                {"name":"r1","when":{"finding":"email","min_count":2},"action":"deny","reason":"too many emails"},
                {"name":"r2","when":{"finding":"email","model":"gpt-4*"},"action":"reroute","reroute_model":"local"},
                {"name":"r3","when":{"finding":"*"},"action":"flag"}]}"#,
        )
        .unwrap();
        let two = [finding("email", 2, 0.9)];
        let one = [finding("email", 1, 0.9)];
        let ctx = |findings, model| Context { model, findings, ..Context::default() };
        assert_eq!(set.evaluate(&ctx(&two, "x")).action, Action::Deny);
        let rerouted = set.evaluate(&ctx(&one, "gpt-4o"));
        assert_eq!((rerouted.action, rerouted.reroute_model.as_deref()), (Action::Reroute, Some("local")));
        assert_eq!(set.evaluate(&ctx(&one, "claude")).matched_rule.as_deref(), Some("r3"));
        assert_eq!(set.evaluate(&ctx(&[], "claude")).action, Action::Allow);
    }

    #[test]
    fn invalid_sets_are_rejected_with_the_rule_named() {
        let error = RuleSet::parse(r#"{"name":"t","rules":[{"name":"r","action":"reroute"}]}"#).unwrap_err();
        assert!(error.to_string().contains("reroute_model"), "{error}");
        let error = RuleSet::parse(r#"{"name":"t","rules":[{"name":"r","action":"explode"}]}"#).unwrap_err();
        assert!(error.to_string().contains("explode"), "{error}");
    }

    #[test]
    fn any_finding_and_per_kind_floors() {
        let set = RuleSet::parse(
            r#"{"name":"t","rules":[
                {"name":"risky","when":{"any_finding":["secret","prompt_injection"],"min_scores":{"secret":0.5,"prompt_injection":0.9}},"action":"deny"},
                {"name":"floors-only","when":{"min_scores":{"email":0.95}},"action":"redact"},
                {"name":"two-pii","when":{"any_finding":["email","phone"],"min_count":2},"action":"flag"}]}"#,
        )
        .unwrap();
        let decide = |findings: &[FindingSummary]| {
            set.evaluate(&Context { findings, ..Context::default() }).matched_rule.unwrap_or_default()
        };
        assert_eq!(decide(&[finding("secret", 1, 0.6)]), "risky");
        assert_eq!(decide(&[finding("prompt_injection", 1, 0.8)]), "");
        assert_eq!(decide(&[finding("prompt_injection", 1, 0.95)]), "risky");
        assert_eq!(decide(&[finding("email", 1, 0.99)]), "floors-only");
        assert_eq!(decide(&[finding("email", 1, 0.9), finding("phone", 1, 0.7)]), "two-pii");
        assert_eq!(decide(&[finding("phone", 1, 0.7)]), "");
        let explained =
            set.explain(&set.evaluate(&Context { findings: &[finding("secret", 1, 0.6)], ..Context::default() }));
        assert!(explained.contains("rule `risky` matched") && explained.contains("secret>=0.5"), "{explained}");
    }

    #[test]
    fn new_conditions_are_validated() {
        for (doc, needle) in [
            (
                r#"{"name":"t","rules":[{"name":"r","when":{"finding":"a","any_finding":["b"]},"action":"deny"}]}"#,
                "not both",
            ),
            (r#"{"name":"t","rules":[{"name":"r","when":{"any_finding":[]},"action":"deny"}]}"#, "must list"),
            (r#"{"name":"t","rules":[{"name":"r","when":{"min_scores":{"a":1.5}},"action":"deny"}]}"#, "min_scores.a"),
            (r#"{"name":"t","rules":[{"name":"r","when":{"min_count":2},"action":"deny"}]}"#, "need `finding`"),
        ] {
            let error = RuleSet::parse(doc).unwrap_err().to_string();
            assert!(error.contains(needle), "{doc}: {error}");
        }
    }

    #[test]
    fn builtin_default_denies_injection_and_flags_other_findings() {
        let set = RuleSet::builtin_default();
        let injection = [finding("prompt_injection", 1, 0.95)];
        assert_eq!(set.evaluate(&Context { findings: &injection, ..Context::default() }).action, Action::Deny);
        let weak = [finding("prompt_injection", 1, 0.3)];
        assert_eq!(set.evaluate(&Context { findings: &weak, ..Context::default() }).action, Action::Flag);
    }
}
