//! The weighted patterns: what is known about attacks, each pattern with its weight in log-odds
//! (3.5: on its own, about 30:1 that this is an attack; 0.8: a weak hint), matched on the
//! normalised text.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// Weighted patterns, matched on the normalised text (lower case, de-obfuscated).
const PATTERNS: &[(&str, f32, &str)] = &[
    (
        "override_instructions",
        3.5,
        r"\b(?:ignore|disregard|forget|skip|bypass|override|drop|cancel|set aside|throw away|discard|do not follow|don't follow|stop following)\b[^.\n]{0,40}?\b(?:all|any|previous|prior|above|earlier|preceding|original|initial|system|developer|former|existing|old|current)\b[^.\n]{0,25}?\b(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|constraints|programming|polic(?:y|ies)|guidance|orders)\b",
    ),
    (
        "ignore_your_rules",
        3.0,
        r"\b(?:ignore|disregard|forget|bypass|break|override|abandon|stop following|do not follow|don't follow)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:your|its)\s+(?:own\s+)?(?:instructions|rules|guidelines|programming|training|constraints|restrictions|safety|content polic|principles|ethic|filters?|directives)",
    ),
    (
        "reveal_prompt",
        2.5,
        r"\b(?:reveal|show|print|repeat|output|display|dump|leak|tell me|give me|share|echo|copy|translate|spell out|write out|quote|summari[sz]e|list|what (?:is|are|were))\b[^.\n]{0,40}?(?:system prompt|system message|developer message|initial prompt|initial instructions|original prompt|original instructions|hidden (?:prompt|instructions|rules|text)|secret (?:instructions|rules|prompt)|confidential (?:instructions|part)|your (?:instructions|rules|prompt|configuration))",
    ),
    (
        "text_above",
        2.0,
        r"\b(?:repeat|print|output|copy|echo|show)\b[^.\n]{0,30}?\b(?:text|everything|all|words?|content)\b[^.\n]{0,20}?\b(?:above|before (?:this|my))",
    ),
    (
        "dan_persona",
        3.5,
        r"\bdo anything now\b|\b(?:you are|you're|act as|pretend to be|become|respond as|stay in character as)\s+(?:now\s+)?(?:going to (?:act as|be|pretend to be)\s+)?(?:a\s+|an\s+)?(?:dan|stan|dude|aim|evilbot|betterdan)\b",
    ),
    (
        "unrestricted_persona",
        2.5,
        r"\b(?:you are|you're|act as|pretend to be|become|respond as|answer as|roleplay as|role-play as|play the role of)\b[^.\n]{0,30}?\b(?:jailbroken|unfiltered|uncensored|unrestricted|without (?:any )?(?:rules|restrictions|limits|filters|ethics)|no (?:rules|restrictions|limits|filters|ethics|morals|content policy)|evil|amoral)",
    ),
    (
        "special_mode",
        2.5,
        r"\b(?:jailbreak|jailbroken|god|dan|unrestricted|unfiltered|uncensored|opposite|sudo) mode\b|\bdeveloper mode (?:enabled|activated)\b|\bstay in developer mode\b",
    ),
    ("developer_mode", 0.8, r"\bdeveloper mode\b"),
    (
        "remove_restrictions",
        2.0,
        r"\b(?:no|without(?: any)?|free(?:d)? from|not bound by|no longer bound by|disable[sd]?|turn(?:ed)? off|suspend(?:ed)?|bypass|remove[sd]?|lift(?:ed)?)\s+(?:any\s+|all\s+|your\s+|the\s+|of\s+)*(?:restrictions|limitations|filters?|filtering|content polic(?:y|ies)|safety (?:rules|guidelines|filters|protocols?|checks|policies|settings)|ethical (?:guidelines|constraints)|ethics|guardrails|moderation|censorship)\b",
    ),
    (
        "never_refuse",
        1.5,
        r"\b(?:never|don't|do not|must not|without|no longer|won't|will not)\s+(?:ever\s+)?(?:refuse|decline|refusing)\b|\bno (?:refusals|disclaimers)\b",
    ),
    (
        "authority_claim",
        1.5,
        r"\b(?:i am|i'm|as)\s+(?:your|the|an?)\s+(?:developer|creator|administrator|admin|owner|openai employee|anthropic employee)\b[^.\n]{0,60}?\b(?:authori[sz]e|order|permit|command|grant)|\bpermission to (?:break|ignore|disregard|bypass)\b|\b(?:restrictions|guidelines|policies|rules|filters) (?:are|is|have been) (?:suspended|disabled|lifted|removed|turned off)\b",
    ),
    (
        "delimiter_injection",
        2.5,
        r#"<\|(?:im_start|im_end|system|endoftext|user|assistant)\|>|\[/?inst\]|<</?sys>>|</?system>|###\s*(?:system|instruction)|\bend of (?:user input|prompt|instructions)\b|\bnew (?:system )?(?:prompt|instructions|directive|rule)s?\s*:|\[system\]|\(#override\)|"role"\s*:\s*"system"|\b(?:admin|system) override\b|\bsystem note to\b"#,
    ),
    (
        "addressed_to_ai",
        2.0,
        r"\b(?:note|instruction|instructions|message|hidden instruction)s?\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai|llm|assistant|model|language model|chatbot|ai agent|ai assistant)s?\b|\bif you are an? (?:ai|llm|language model|assistant|chatbot|ai model)\b|\b(?:dear|attention|hey)\s+(?:ai|llm|language model|assistant|chatbot)\b|\b(?:ai|llm|assistant|language model|ai model|ai agent|ai assistant)s?\s*(?:reading|processing|summari[sz]ing)\s+this\b|\b(?:ai|assistant|llm|ai reviewer|ai screeners?|ai model)\s*[:,]\s*(?:please\s+)?(?:ignore|disregard|forget|stop|do not)\b",
    ),
    (
        "exfiltration",
        2.0,
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][a-z]+=|\b(?:send|forward|post|upload|exfiltrate|wire)\b[^.\n]{0,40}?\b(?:chat history|conversation|emails?|inbox|contacts|password|messages|calendar)\b[^.\n]{0,20}?\bto\s+(?:https?://|\S+@)",
    ),
    (
        "encoded_payload",
        2.0,
        r"\b(?:decode|reverse|read|unscramble)\b[^.\n]{0,50}?\b(?:and|then)\s+(?:follow|obey|execute|do what it says|do it|run it|act on)",
    ),
    (
        "multilingual_override",
        3.0,
        r"\b(?:ignorier\w*|vergiss)\s+(?:alle\s+|deine\s+|die\s+)?(?:vorherigen\s+|bisherigen\s+|obigen\s+)?(?:anweisungen|regeln|instruktionen)|\b(?:ignore|oublie)\w*\s+(?:toutes\s+)?(?:les\s+|tes\s+)?(?:instructions|consignes|règles)\s+(?:précédentes|antérieures)|\boublie\s+(?:tes|toutes les)\s+(?:règles|instructions)|\b(?:ignora|olvida)\w*\s+(?:todas\s+)?(?:las\s+|tus\s+)?(?:instrucciones|reglas)|\bignora\s+(?:tutte\s+)?(?:le\s+)?(?:istruzioni|regole)|\bignore\s+(?:todas\s+)?(?:as\s+)?(?:instruções|regras)|\bnegeer\s+(?:alle\s+)?(?:eerdere\s+|vorige\s+)?(?:instructies|regels)",
    ),
    (
        "stay_in_character",
        1.0,
        r"\bstay in character\b|\bdon't break character\b|\bdo not break (?:character|the fiction)\b",
    ),
];

/// Largest total pattern weight added to the model's logit.
const MAX_PATTERN_WEIGHT: f32 = 6.0;

/// Number of patterns.
pub(super) const COUNT: usize = PATTERNS.len();

struct Patterns {
    set: RegexSet,
    each: Vec<Regex>,
}

static COMPILED: LazyLock<Patterns> = LazyLock::new(|| {
    let sources: Vec<&str> = PATTERNS.iter().map(|(_, _, p)| *p).collect();
    let set = match RegexSet::new(&sources) {
        Ok(set) => set,
        Err(error) => panic!("invalid injection pattern: {error}"),
    };
    Patterns { set, each: sources.iter().map(|p| crate::detect::re(p)).collect() }
});

/// What the patterns found in a normalised text.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct PatternEvidence {
    /// Sum of the matched patterns' weights, capped at [`MAX_PATTERN_WEIGHT`].
    pub(super) weight: f32,
    /// Byte span, in the normalised text, of the heaviest matched pattern's first match.
    pub(super) strongest: Option<(usize, usize)>,
}

/// Matches every pattern against `normalized`.
pub(super) fn evidence(normalized: &str) -> PatternEvidence {
    let compiled = &*COMPILED;
    let (mut weight, mut strongest) = (0.0f32, None::<(f32, usize)>);
    for index in compiled.set.matches(normalized).iter() {
        let Some(&(_, pattern_weight, _)) = PATTERNS.get(index) else { continue };
        weight += pattern_weight;
        if strongest.is_none_or(|(w, _)| pattern_weight > w) {
            strongest = Some((pattern_weight, index));
        }
    }
    let span = strongest
        .and_then(|(_, index)| compiled.each.get(index))
        .and_then(|regex| regex.find(normalized))
        .map(|found| (found.start(), found.end()));
    PatternEvidence { weight: weight.min(MAX_PATTERN_WEIGHT), strongest: span }
}

/// Names of the patterns that match `normalized`.
pub(super) fn names(normalized: &str) -> Vec<&'static str> {
    COMPILED.set.matches(normalized).iter().filter_map(|i| PATTERNS.get(i)).map(|(name, _, _)| *name).collect()
}
