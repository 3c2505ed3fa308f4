//! The management API's errors and their one mapping to HTTP.
//!
//! Every error leaves as `{"error": {"code", "message"}}`. Database failures are logged with
//! their detail and answered with a generic message: SQL text and driver messages never reach the
//! client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flowgate_common::auth::json_error;
use flowgate_common::keys::KeyFormatError;
use flowgate_common::secretbox::SealError;
use flowgate_db::sqlx;

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, truncated, empty when one is required).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// The body or query is JSON but not the expected shape: a wrong type, an unknown or missing
    /// field, an unknown enum value.
    #[error("{0}")]
    InvalidRequest(String),
    /// A field has the right type but an unacceptable value.
    #[error("`{field}` {message}")]
    InvalidField {
        /// The field, e.g. `ip_allowlist[1]`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The body exceeds the size limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// No such resource.
    #[error("{kind} `{id}` not found")]
    NotFound {
        /// `virtual key`, `tenant`, `guardrail` or `policy`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The caller is not signed in, or its credential is not valid.
    #[error("{message}")]
    Unauthorized {
        /// `missing_admin_key`, `invalid_admin_key`, `invalid_session`, `invalid_token`.
        code: &'static str,
        /// What to do about it.
        message: String,
    },
    /// The caller is known but may not do this (its role, its tenant, or a missing CSRF token).
    #[error("{message}")]
    Forbidden {
        /// `forbidden`, `out_of_tenant`, `csrf_failed`.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The identity provider could not be reached or answered something unreadable.
    #[error("{0}")]
    IdentityProvider(String),
    /// The request conflicts with the resource's state (a duplicate name, a revoked key).
    #[error("{0}")]
    Conflict(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The OS random source failed while generating a key.
    #[error("cannot generate a key: {0}")]
    KeyGeneration(#[from] KeyFormatError),
    /// A secret (an HTTP guardrail's bearer token) could not be sealed.
    #[error("cannot seal a secret: {0}")]
    Seal(SealError),
    /// Credentials cannot be written: no key-encryption key is configured.
    #[error("no key-encryption key is configured (FLOWGATE_KEK, credentials.kek_file or Vault Transit)")]
    NoKek,
    /// A provider credential could not be sealed (the KEK provider failed).
    #[error("cannot seal the credential: {0}")]
    Credential(String),
    /// The audit archive (object storage) could not be read, or holds what it should not.
    #[error("the audit archive cannot be read: {0}")]
    ArchiveUnavailable(String),
}

impl ApiError {
    /// An [`ApiError::InvalidField`].
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField { field: field.into(), message: message.into() }
    }

    /// A credential failure (its message never holds key material or values).
    pub(crate) fn credential(error: flowgate_db::credentials::CredentialError) -> Self {
        match error {
            flowgate_db::credentials::CredentialError::Database(error) => Self::Database(error),
            flowgate_db::credentials::CredentialError::NoKek => Self::NoKek,
            other => Self::Credential(other.to_string()),
        }
    }

    /// Status, code and client-facing message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", self.to_string()),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", self.to_string()),
            Self::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field", self.to_string()),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", self.to_string()),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", self.to_string()),
            Self::IdentityProvider(_) => (
                StatusCode::BAD_GATEWAY,
                "identity_provider_unavailable",
                "the identity provider is unavailable".to_owned(),
            ),
            Self::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message.clone()),
            Self::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_),
            ) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable".to_owned()),
            Self::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error".to_owned()),
            Self::KeyGeneration(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "cannot generate a key".to_owned())
            }
            Self::Seal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "cannot seal the secret".to_owned()),
            Self::NoKek => (StatusCode::SERVICE_UNAVAILABLE, "kek_not_configured", self.to_string()),
            Self::Credential(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "kek_unavailable", "the key-encryption key cannot be used".to_owned())
            }
            Self::ArchiveUnavailable(_) => (StatusCode::BAD_GATEWAY, "archive_unavailable", self.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "management request failed");
        } else {
            tracing::debug!(error = %self, code, "management request rejected");
        }
        json_error(status, code, &message)
    }
}

/// True when `error` is a unique-constraint violation (a duplicate name or id).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_detail_never_reaches_the_client() {
        let error = ApiError::Database(sqlx::Error::Protocol("SELECT secret FROM x".into()));
        let (status, code, message) = error.parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "internal_error");
        assert!(!message.contains("SELECT"));
        let (status, code, _) = ApiError::Database(sqlx::Error::PoolTimedOut).parts();
        assert_eq!((status, code), (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"));
    }

    #[test]
    fn client_errors_name_what_is_wrong() {
        let (status, code, message) = ApiError::field("ip_allowlist[0]", "is not a CIDR").parts();
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, "invalid_field"));
        assert_eq!(message, "`ip_allowlist[0]` is not a CIDR");
        let (status, _, message) = ApiError::NotFound { kind: "tenant", id: "t1".into() }.parts();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(message, "tenant `t1` not found");
    }
}
