//! Evaluation of policy rule sets: the first rule whose conditions all hold decides, otherwise
//! the set's default applies. The schema, its parse and its validation are
//! [`flowgate_contracts::rules`] (shared with the api-server, which validates on write); this
//! module adds what only the policy service does with a set: evaluate it, explain a decision,
//! and the built-in default set.

pub use flowgate_contracts::rules::{Action, Conditions, Rule, RuleSet, ValidationError};

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

fn matches_pattern(pattern: &Option<String>, value: &str) -> bool {
    match pattern.as_deref() {
        None => true,
        Some(p) => match p.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => p == value,
        },
    }
}

/// Whether a finding of `kind` is one `when` is about.
fn about(when: &Conditions, kind: &str) -> bool {
    match (&when.finding, &when.any_finding, &when.min_scores) {
        (Some(f), _, _) => f == "*" || f == kind,
        (None, Some(list), _) => list.iter().any(|k| k == "*" || k == kind),
        (None, None, Some(scores)) => scores.contains_key(kind),
        (None, None, None) => false,
    }
}

/// Whether every condition of `when` holds for `context`.
fn holds(when: &Conditions, context: &Context<'_>) -> bool {
    if !(matches_pattern(&when.key_id, context.key_id)
        && matches_pattern(&when.tenant_id, context.tenant_id)
        && matches_pattern(&when.model, context.model)
        && matches_pattern(&when.route, context.route)
        && matches_pattern(&when.stage, context.stage))
    {
        return false;
    }
    if !when.has_finding_condition() {
        return true;
    }
    let min_count = when.min_count.unwrap_or(1);
    let min_score = when.min_score.unwrap_or(0.0);
    let relevant = context.findings.iter().filter(|f| about(when, &f.kind));
    match &when.min_scores {
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
pub fn describe(when: &Conditions) -> String {
    let mut parts = Vec::new();
    for (name, value) in [
        ("key_id", &when.key_id),
        ("tenant_id", &when.tenant_id),
        ("model", &when.model),
        ("route", &when.route),
        ("stage", &when.stage),
        ("finding", &when.finding),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name}={value}"));
        }
    }
    if let Some(kinds) = &when.any_finding {
        parts.push(format!("any_finding=[{}]", kinds.join(", ")));
    }
    if let Some(n) = when.min_count {
        parts.push(format!("min_count={n}"));
    }
    if let Some(score) = when.min_score {
        parts.push(format!("min_score={score}"));
    }
    if let Some(floors) = &when.min_scores {
        let floors: Vec<String> = floors.iter().map(|(k, v)| format!("{k}>={v}")).collect();
        parts.push(format!("min_scores={{{}}}", floors.join(", ")));
    }
    if parts.is_empty() { "always".to_owned() } else { parts.join(", ") }
}

/// What the policy service does with a rule set.
pub trait Evaluate {
    /// The decision for `context`: the first matching rule, else the default.
    fn evaluate(&self, context: &Context<'_>) -> Decision;
    /// Why `decision` was reached, in words (names the rule and its conditions).
    fn explain(&self, decision: &Decision) -> String;
}

impl Evaluate for RuleSet {
    /// The decision for `context`: the first matching rule, else the default.
    fn evaluate(&self, context: &Context<'_>) -> Decision {
        for rule in &self.rules {
            if holds(&rule.when, context) {
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
    fn explain(&self, decision: &Decision) -> String {
        match decision.matched_rule.as_deref().and_then(|name| self.rules.iter().find(|r| r.name == name)) {
            Some(rule) => format!("rule `{}` matched ({}) -> {:?}", rule.name, describe(&rule.when), rule.action),
            None => format!("no rule of `{}` matched -> default {:?}", self.name, self.default),
        }
    }
}

/// The set used when a key names none: deny likely prompt injection, flag any other finding.
pub fn builtin_default() -> RuleSet {
    RuleSet {
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
        let set = builtin_default();
        let injection = [finding("prompt_injection", 1, 0.95)];
        assert_eq!(set.evaluate(&Context { findings: &injection, ..Context::default() }).action, Action::Deny);
        let weak = [finding("prompt_injection", 1, 0.3)];
        assert_eq!(set.evaluate(&Context { findings: &weak, ..Context::default() }).action, Action::Flag);
    }
}
