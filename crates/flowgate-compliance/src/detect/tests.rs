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
