//! AWS Signature Version 4 (header signing), as AWS documents it: a canonical request, a string
//! to sign over its SHA-256, and an HMAC-SHA256 chain from the secret key through date, region and
//! service. Written over `ring` (already in the tree) rather than the `aws-sigv4` crate, which
//! would bring the AWS smithy runtime crates for one function.
//!
//! Public so a fake Bedrock in the tests checks signatures with the same algorithm; the S3 client
//! ([`super::s3`]) signs with it too.

use ring::{digest, hmac};

/// What is signed: one HTTP request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as sent on the wire (already percent-encoded), e.g. `/model/x%3A0/converse`.
    pub path: &'a str,
    /// The query string as sent, without `?` (may be empty).
    pub query: &'a str,
    /// Headers to sign, names in any case; `host` and `x-amz-date` must be among them.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// Who signs, for which region and service.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// `us-east-1`, ...
    pub region: &'a str,
    /// `bedrock`, `iam`, ...
    pub service: &'a str,
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Percent-encodes `text` as SigV4 does: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The canonical query string: parameters sorted by name (then value), each already encoded as
/// sent.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// The canonical headers and the signed-headers list.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    lines.sort();
    let canonical = lines.iter().map(|(n, v)| format!("{n}:{v}\n")).collect::<String>();
    let signed = lines.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (canonical, signed)
}

/// The canonical request. Non-S3 services encode each path segment once more over the path as
/// sent.
pub fn canonical_request(request: &Request<'_>) -> String {
    canonical_request_for(request, true)
}

/// The canonical request; `encode_again` is false for S3, which signs the path as sent.
fn canonical_request_for(request: &Request<'_>, encode_again: bool) -> String {
    let path = if request.path.is_empty() { "/" } else { request.path };
    let path = if encode_again {
        path.split('/').map(|segment| uri_encode(segment, false)).collect::<Vec<_>>().join("/")
    } else {
        path.to_owned()
    };
    let (headers, signed) = canonical_headers(request.headers);
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        path,
        canonical_query(request.query),
        headers,
        signed,
        sha256_hex(request.body)
    )
}

/// The signing key for `date` (`YYYYMMDD`).
pub fn signing_key(signer: &Signer<'_>, date: &str) -> hmac::Tag {
    let date_key = hmac_sha256(format!("AWS4{}", signer.secret_access_key).as_bytes(), date.as_bytes());
    let region_key = hmac_sha256(date_key.as_ref(), signer.region.as_bytes());
    let service_key = hmac_sha256(region_key.as_ref(), signer.service.as_bytes());
    hmac_sha256(service_key.as_ref(), b"aws4_request")
}

/// The `Authorization` header for `request` at `amz_date` (`YYYYMMDD'T'HHMMSS'Z'`, the value of its
/// `x-amz-date` header), and the signature alone.
pub fn authorization(signer: &Signer<'_>, request: &Request<'_>, amz_date: &str) -> (String, String) {
    authorization_for(signer, request, amz_date, true)
}

/// [`authorization`] for S3, whose canonical path is the path as sent (not encoded again).
pub fn s3_authorization(signer: &Signer<'_>, request: &Request<'_>, amz_date: &str) -> (String, String) {
    authorization_for(signer, request, amz_date, false)
}

fn authorization_for(
    signer: &Signer<'_>,
    request: &Request<'_>,
    amz_date: &str,
    encode_again: bool,
) -> (String, String) {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{}/{}/aws4_request", signer.region, signer.service);
    let canonical = canonical_request_for(request, encode_again);
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
    let key = signing_key(signer, date);
    let signature = hex(hmac_sha256(key.as_ref(), string_to_sign.as_bytes()).as_ref());
    let (_, signed) = canonical_headers(request.headers);
    (
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            signer.access_key_id
        ),
        signature,
    )
}

/// `YYYYMMDD'T'HHMMSS'Z'` for a time in seconds since the epoch (UTC).
pub fn amz_date(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, (secs % 3600) / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (IAM `ListUsers`, "Create a signed AWS API request" in the IAM
    /// user guide's Signature Version 4 pages): the canonical request's hash, the signing key
    /// and the signature are the published values.
    #[test]
    fn the_documented_aws_example_signs_to_the_published_signature() {
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "iam",
        };
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            sha256_hex(canonical_request(&request).as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            hex(signing_key(&signer, "20150830").as_ref()),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let (header, signature) = authorization(&signer, &request, "20150830T123600Z");
        assert_eq!(signature, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        assert_eq!(
            header,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn model_ids_are_encoded_twice_in_the_canonical_path() {
        let headers = [("host", "h"), ("x-amz-date", "20240101T000000Z")];
        let request = Request {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            query: "",
            headers: &headers,
            body: b"{}",
        };
        let canonical = canonical_request(&request);
        assert!(
            canonical.starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"),
            "{canonical}"
        );
    }

    #[test]
    fn dates_are_formatted_in_utc() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
    }
}
