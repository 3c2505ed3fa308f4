//! How far a finding can reach, for a reader that sees a text in pieces (the proxy's stream
//! guard): every character of a finding of one kind belongs to a known set, and a finding is at
//! most so many bytes long. The stream guard holds back the end of the text that could still be
//! the start of a finding, and releases the rest; the compliance service's tests check that its
//! detectors keep to these shapes.

/// The shape of every finding of one detector kind.
#[derive(Debug, Clone, Copy)]
pub struct SpanShape {
    /// Whether a character can be part of a finding.
    pub chars: fn(char) -> bool,
    /// The longest finding, in bytes, a reader waits for; a longer run of such characters is
    /// released in parts.
    pub max_bytes: usize,
}

/// Email addresses: ASCII letters, digits and `._%+-@` (and the two non-ASCII characters a
/// case-insensitive `[a-z]` also matches: the Kelvin sign and the long s). RFC 5321 caps an
/// address at 254 bytes.
fn email(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-' | '@' | '\u{212A}' | '\u{17F}')
}

/// Payment cards: 13 to 19 digits, with spaces or dashes between them.
fn card(c: char) -> bool {
    c.is_numeric() || matches!(c, ' ' | '-')
}

/// IBANs: upper-case letters and digits in groups separated by single spaces.
fn iban(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_numeric() || c == ' '
}

/// US social security numbers: `ddd-dd-dddd`.
fn ssn(c: char) -> bool {
    c.is_numeric() || c == '-'
}

/// Phone numbers: digits, an optional `+` and `(area)`, separated by whitespace, dots or dashes.
fn phone(c: char) -> bool {
    c.is_numeric() || c.is_whitespace() || matches!(c, '+' | '(' | ')' | '.' | '-')
}

/// IPv4 and IPv6 addresses.
fn ip_address(c: char) -> bool {
    c.is_ascii_hexdigit() || matches!(c, '.' | ':')
}

/// Secrets: keys, tokens and assigned values never contain whitespace (a PEM block does; its
/// `-----BEGIN … PRIVATE KEY-----` line is found on its own).
fn secret(c: char) -> bool {
    !c.is_whitespace()
}

/// The shape of the findings of detector `kind` (a PII entity or `secret`), if it has one.
/// Findings that classify a whole text (`prompt_injection`) have none.
pub fn span_shape(kind: &str) -> Option<SpanShape> {
    let (chars, max_bytes): (fn(char) -> bool, usize) = match kind {
        "email" => (email, 254),
        // 19 digits of up to 4 bytes (`\d` is any decimal digit), 18 separators.
        "payment_card" => (card, 19 * 4 + 18),
        // 4 + 30 × (space + character); a valid IBAN is ASCII.
        "iban" => (iban, 64),
        "ssn" => (ssn, 9 * 4 + 2),
        // `+ddd ` `(dddd) ` `dddd` and four more ` dddd`, digits of up to 4 bytes and
        // separators of up to 3 (Unicode whitespace).
        "phone" => (phone, (1 + 12 + 3) + (2 + 16 + 3) + 16 + 4 * (3 + 16)),
        "ip_address" => (ip_address, 39),
        "secret" => (secret, 256),
        _ => return None,
    };
    Some(SpanShape { chars, max_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::PII_ENTITIES;

    #[test]
    fn every_pii_entity_and_secrets_have_a_shape() {
        for kind in PII_ENTITIES.iter().chain(&["secret"]) {
            let shape = span_shape(kind).unwrap_or_else(|| panic!("{kind} has no shape"));
            assert!(shape.max_bytes >= 11, "{kind}");
        }
        assert!(span_shape("prompt_injection").is_none());
    }

    #[test]
    fn shapes_admit_their_values() {
        for (kind, value) in [
            ("email", "jane.doe+x@example.co.uk"),
            ("payment_card", "4111 1111-1111 1111"),
            ("iban", "DE89 3704 0044 0532 0130 00"),
            ("ssn", "123-45-6789"),
            ("phone", "+1 (415) 555.0100"),
            ("ip_address", "fe80::1ff:fe23:4567:890a"),
            ("secret", "sk-proj-abc_DEF-123"),
        ] {
            let shape = span_shape(kind).unwrap_or_else(|| panic!("{kind}"));
            assert!(value.chars().all(shape.chars), "{kind}: {value}");
            assert!(value.len() <= shape.max_bytes, "{kind}: {value}");
        }
        let card = span_shape("payment_card").map(|s| s.chars);
        assert_eq!(card.map(|chars| chars('x')), Some(false));
    }
}
