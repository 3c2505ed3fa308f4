use super::*;

fn kinds(text: &str) -> Vec<(&'static str, String)> {
    scan(text, &[]).into_iter().map(|f| (f.kind, text[f.start..f.end].to_owned())).collect()
}

#[test]
fn finds_emails_cards_and_ssns() {
    let found = kinds("mail jane.doe@example.com, card 4111 1111 1111 1111, ssn 123-45-6789");
    assert_eq!(
        found,
        vec![
            ("email", "jane.doe@example.com".to_owned()),
            ("payment_card", "4111 1111 1111 1111".to_owned()),
            ("ssn", "123-45-6789".to_owned()),
        ]
    );
}

#[test]
fn cards_failing_luhn_and_invalid_ssns_are_ignored() {
    assert!(kinds("order 4111 1111 1111 1112").iter().all(|(k, _)| *k != "payment_card"));
    assert!(kinds("id 000-12-3456 and 666-12-3456").iter().all(|(k, _)| *k != "ssn"));
}

#[test]
fn ibans_are_checked_with_mod_97() {
    assert_eq!(kinds("pay to DE89 3704 0044 0532 0130 00 now")[0].0, "iban");
    assert!(kinds("pay to DE00 3704 0044 0532 0130 00 now").iter().all(|(k, _)| *k != "iban"));
}

#[test]
fn finds_ip_addresses_and_secrets() {
    let found =
        kinds("host 10.1.2.3 and fe80::1ff:fe23:4567:890a key sk-proj-abcdefghijklmnopqrstuvwx AKIAABCDEFGHIJKLMNOP");
    let found: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
    assert_eq!(found, vec!["ip_address", "ip_address", "secret", "secret"]);
    assert!(kinds("version 1.2.3.400").is_empty(), "not an address");
}

#[test]
fn finds_phone_numbers_but_not_short_digit_runs() {
    assert_eq!(kinds("call +1 415 555 0100 today")[0].0, "phone");
    assert!(kinds("room 42, page 7").is_empty());
}

#[test]
fn redaction_numbers_placeholders_per_kind_and_value() {
    let text = "a@x.io b@y.io a@x.io";
    assert_eq!(redact(text, &scan(text, &[])), "<EMAIL_1> <EMAIL_2> <EMAIL_1>");
}

#[test]
fn only_the_asked_detectors_run() {
    assert!(scan("a@x.io 10.0.0.1", &["ip_address".to_owned()]).iter().all(|f| f.kind == "ip_address"));
}

/// Every finding keeps to the shape the proxy's stream guard relies on to hold back no more than
/// a finding can reach (`flowgate_contracts::guardrails::span_shape`): only the characters its
/// kind allows, and no longer than its longest. Checked on the labelled set and on values in
/// many surroundings (a PEM block spans lines and is left out).
#[test]
fn findings_keep_to_the_span_shapes_the_stream_guard_relies_on() {
    use flowgate_contracts::guardrails::span_shape;
    let mut texts: Vec<String> = include_str!("../../data/pii_test.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Labelled>(l).unwrap().text)
        .collect();
    let values = [
        "jane.doe+tag@mail.example.co.uk",
        "+1 (415) 555-0100",
        "+44 20 7946 0958",
        "+4915112345678",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "123-45-6789",
        "10.1.2.3",
        "fe80::1ff:fe23:4567:890a",
        "sk-proj-abcdefghijklmnopqrstuvwx",
        "password=hT7$kP2qWz9LmX4vRb8N",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ];
    let surroundings =
        [("", ""), ("x ", " y"), ("(", ")"), ("tel:", "."), ("\u{a0}", "\u{3000}"), ("1 ", " 2"), ("\"", "\",")];
    for value in values {
        for (before, after) in surroundings {
            texts.push(format!("{before}{value}{after}"));
        }
    }
    for text in &texts {
        for f in scan(text, &[]) {
            let Some(shape) = span_shape(f.kind) else { continue };
            let span = &text[f.start..f.end];
            if span.starts_with("-----BEGIN") {
                continue;
            }
            assert!(span.chars().all(shape.chars), "{} {span:?} in {text:?}", f.kind);
            assert!(span.len() <= shape.max_bytes, "{} {span:?} is longer than {}", f.kind, shape.max_bytes);
        }
    }
}

#[derive(serde::Deserialize)]
struct Labelled {
    text: String,
    entities: Vec<Entity>,
}

#[derive(serde::Deserialize)]
struct Entity {
    kind: String,
    value: String,
}

/// Precision and recall of the data detectors on `data/pii_test.jsonl`: hand-labelled texts with
/// personal data and secrets, and hard negatives (versions, dates, order numbers, ISBNs, UUIDs,
/// commit hashes, digests, timestamps, paths, identifiers). A finding counts as correct when a
/// labelled entity of the same kind overlaps it.
#[test]
fn labelled_pii_precision_and_recall() {
    let data: Vec<Labelled> = include_str!("../../data/pii_test.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let data_kinds: Vec<String> = KINDS.iter().filter(|k| **k != PROMPT_INJECTION).map(|k| (*k).to_owned()).collect();
    let mut per_kind: std::collections::BTreeMap<&str, (u32, u32, u32)> = std::collections::BTreeMap::new();
    let (mut tp, mut fp, mut fn_) = (0u32, 0u32, 0u32);
    for example in &data {
        let gold: Vec<(&str, usize, usize)> = example
            .entities
            .iter()
            .map(|e| {
                let start = example.text.find(&e.value).unwrap();
                (e.kind.as_str(), start, start + e.value.len())
            })
            .collect();
        let found = scan(&example.text, &data_kinds);
        let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
        for f in &found {
            let entry = per_kind.entry(f.kind).or_default();
            if gold.iter().any(|g| g.0 == f.kind && overlaps((g.1, g.2), (f.start, f.end))) {
                tp += 1;
                entry.0 += 1;
            } else {
                fp += 1;
                entry.1 += 1;
                println!("  false positive {}: {:?} in {:?}", f.kind, &example.text[f.start..f.end], example.text);
            }
        }
        for g in &gold {
            if !found.iter().any(|f| f.kind == g.0 && overlaps((g.1, g.2), (f.start, f.end))) {
                fn_ += 1;
                per_kind.entry(KINDS.iter().find(|k| **k == g.0).copied().unwrap_or("other")).or_default().2 += 1;
                println!("  missed {}: {:?}", g.0, &example.text[g.1..g.2]);
            }
        }
    }
    let ratio = |a: u32, b: u32| if a + b == 0 { 1.0 } else { f64::from(a) / f64::from(a + b) };
    for (kind, (t, f, n)) in &per_kind {
        println!("{kind:>12}: precision {:.3} recall {:.3} (tp {t} fp {f} fn {n})", ratio(*t, *f), ratio(*t, *n));
    }
    let (precision, recall) = (ratio(tp, fp), ratio(tp, fn_));
    println!(
        "PII + secrets on {} texts: precision {precision:.3} recall {recall:.3} (tp {tp} fp {fp} fn {fn_})",
        data.len()
    );
    assert!(precision >= 0.9, "precision {precision}");
    assert!(recall >= 0.85, "recall {recall}");
}
