//! The shared internal token (`security.internal_token`, `FLOWGATE__SECURITY__INTERNAL_TOKEN`) that
//! every internal gRPC call carries: `authorization: Bearer <token>` in the call's metadata.
//!
//! The servers check it in [`crate::server::grpc_routes`], in front of every gRPC service but the
//! standard health service (probes and load balancers cannot send it, and it tells nothing), so a
//! service added there cannot be served without it. The comparison is constant-time. The token is a
//! [`SecretString`], never logged, never in an answer; its header value is marked sensitive so it
//! is not printed either.
//!
//! `all` mode makes one in process when none is configured (its proxy calls the other services in
//! process, without the token); every other service mode refuses to start without it.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

use crate::auth::constant_time_eq;

/// Shortest internal token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The metadata key (an HTTP/2 header) the token travels in.
pub const METADATA_KEY: &str = "authorization";

/// The path prefix of the standard gRPC health service, which needs no token.
pub const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Why a configured internal token is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Fewer than [`MIN_TOKEN_LEN`] characters.
    #[error("must be at least {MIN_TOKEN_LEN} characters long")]
    TooShort,
    /// Something other than printable ASCII (no spaces): it travels in an HTTP/2 header.
    #[error("must be printable ASCII without spaces")]
    Charset,
}

/// Checks that `token` can be used as the internal token (length and characters). The message
/// never contains the token.
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Charset);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort);
    }
    Ok(())
}

/// The shared internal token: attaches itself to outgoing calls and checks incoming ones.
#[derive(Clone)]
pub struct InternalToken {
    secret: Arc<SecretString>,
    /// `Bearer <token>`, marked sensitive.
    header: MetadataValue<Ascii>,
}

impl std::fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalToken(..)")
    }
}

impl InternalToken {
    /// The token `secret`, checked with [`check_token`].
    pub fn new(secret: SecretString) -> Result<Self, TokenError> {
        check_token(secret.expose_secret())?;
        let mut header =
            MetadataValue::try_from(format!("Bearer {}", secret.expose_secret())).map_err(|_| TokenError::Charset)?;
        header.set_sensitive(true);
        Ok(Self { secret: Arc::new(secret), header })
    }

    /// A fresh random token (43 base62 characters), for `all` mode when none is configured.
    pub fn generate() -> Result<Self, crate::keys::KeyFormatError> {
        let secret = crate::keys::random_secret("fg-internal-")?;
        Self::new(secret).map_err(|_| crate::keys::KeyFormatError::Random)
    }

    /// Puts the token into an outgoing call's metadata.
    pub fn attach(&self, metadata: &mut MetadataMap) {
        metadata.insert(METADATA_KEY, self.header.clone());
    }

    /// `message` as a call carrying the token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.attach(request.metadata_mut());
        request
    }

    /// Whether `headers` (of an incoming call) carry this token: `authorization: Bearer <token>`,
    /// compared in constant time. The error is what the caller gets (`UNAUTHENTICATED`); it never
    /// contains the token or what was presented.
    pub fn verify(&self, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
        let presented = headers
            .get(METADATA_KEY)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        if presented.is_empty() {
            return Err(tonic::Status::unauthenticated(
                "internal call without the internal token (authorization: Bearer <FLOWGATE__SECURITY__INTERNAL_TOKEN>)",
            ));
        }
        if !constant_time_eq(presented.as_bytes(), self.secret.expose_secret().as_bytes()) {
            return Err(tonic::Status::unauthenticated("the internal token is not valid"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> InternalToken {
        InternalToken::new(SecretString::from(text.to_owned())).unwrap()
    }

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = value {
            headers.insert(METADATA_KEY, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn only_the_right_token_passes() {
        let expected = token("right-token-0123456789");
        assert!(expected.verify(&headers(Some("Bearer right-token-0123456789"))).is_ok());
        assert!(expected.verify(&headers(Some("bearer  right-token-0123456789 "))).is_ok());
        for wrong in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic right-token-0123456789"),
            Some("right-token-0123456789"),
            Some("Bearer right-token-012345678"),
            Some("Bearer right-token-01234567890"),
            Some("Bearer wrong-token-0123456789"),
        ] {
            let status = expected.verify(&headers(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
            assert!(!status.message().contains("right-token"), "{wrong:?}");
        }
    }

    #[test]
    fn attached_metadata_verifies_and_is_not_printed() {
        let expected = token("right-token-0123456789");
        let request = expected.request(());
        let headers = request.metadata().clone().into_headers();
        assert!(expected.verify(&headers).is_ok());
        assert!(!format!("{:?} {expected:?}", request.metadata()).contains("right-token"));
    }

    #[test]
    fn weak_or_unusable_tokens_are_refused() {
        assert_eq!(check_token("short"), Err(TokenError::TooShort));
        assert_eq!(check_token("has a space in the middle"), Err(TokenError::Charset));
        assert_eq!(check_token("non-ascii-ÄÄÄÄÄÄÄÄÄÄÄÄÄÄ"), Err(TokenError::Charset));
        assert_eq!(check_token("line\nbreak-0123456789"), Err(TokenError::Charset));
        assert!(check_token("abcdefghijklmnop").is_ok());
        let generated = InternalToken::generate().unwrap();
        assert!(check_token(generated.secret.expose_secret()).is_ok());
    }
}
