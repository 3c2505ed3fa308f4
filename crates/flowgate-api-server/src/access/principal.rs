//! Who is calling ([`Principal`], put in the request's extensions by the gate) and the tenant
//! scope handlers apply ([`Scope`]).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::roles::Role;
use crate::error::ApiError;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// `Authorization: Bearer $ADMIN_API_KEY`.
    AdminKey,
    /// The portal's session cookie (with a CSRF token on every change).
    Session,
    /// A user's management API token (`fgm-…`).
    Token,
    /// A bearer JWT from the OpenID Connect provider.
    Jwt,
    /// The gate itself, reading a resource for the admin audit log.
    Internal,
}

impl AuthMethod {
    /// The name the admin audit log records.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthMethod::AdminKey => "admin_key",
            AuthMethod::Session => "session",
            AuthMethod::Token => "token",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Internal => "internal",
        }
    }
}

/// The authenticated caller of a management request.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// `admin-key`, or `user:<id>`.
    pub(crate) actor: String,
    /// The user, when the caller is one.
    pub(crate) user_id: Option<String>,
    pub(crate) role: Role,
    /// The one tenant a `tenant-admin` may act in.
    pub(crate) tenant_id: Option<String>,
    pub(crate) method: AuthMethod,
    /// The keyed hash of the browser session, when signed in by cookie (sign-out revokes it).
    pub(crate) session_hash: Option<String>,
}

impl Principal {
    /// The holder of the admin key: full access.
    pub(crate) fn admin_key() -> Self {
        Self {
            actor: "admin-key".to_owned(),
            user_id: None,
            role: Role::Admin,
            tenant_id: None,
            method: AuthMethod::AdminKey,
            session_hash: None,
        }
    }

    /// The gate reading a resource's state for the admin audit log.
    pub(crate) fn internal() -> Self {
        Self { actor: "internal".to_owned(), method: AuthMethod::Internal, ..Self::admin_key() }
    }

    /// The tenant this caller is confined to, if any. A `tenant-admin` without a tenant is
    /// confined to none at all (an empty id matches no tenant): it fails closed.
    pub(crate) fn tenant_restriction(&self) -> Option<String> {
        (self.role == Role::TenantAdmin).then(|| self.tenant_id.clone().unwrap_or_default())
    }
}

/// The tenant scope of the caller, for handlers of tenant-owned resources. Refuses the request
/// when no principal was attached (a route mounted outside the gate), so it fails closed.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    tenant: Option<String>,
}

impl Scope {
    /// A scope confined to `tenant` (or unrestricted with `None`).
    #[cfg(test)]
    pub(crate) fn new(tenant: Option<&str>) -> Self {
        Self { tenant: tenant.map(str::to_owned) }
    }

    /// The tenant filter of a list, or the tenant of a new resource: what was asked, which a
    /// confined caller may only ask for its own tenant (and gets when it asks none).
    pub(crate) fn tenant_filter(&self, asked: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.tenant, asked) {
            (None, asked) => Ok(asked.map(str::to_owned)),
            (Some(own), None) => Ok(Some(own.clone())),
            (Some(own), Some(asked)) if asked.trim() == own => Ok(Some(own.clone())),
            (Some(_), Some(asked)) => Err(ApiError::Forbidden {
                code: "out_of_tenant",
                message: format!("your role is limited to one tenant; `{}` is not it", asked.trim()),
            }),
        }
    }

    /// Whether a resource of `tenant_id` is visible. A confined caller sees another tenant's
    /// resource as missing (`not_found`), so ids of other tenants are not confirmed.
    pub(crate) fn sees(&self, tenant_id: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant_id)
    }

    /// True when confined to one tenant.
    pub(crate) fn is_confined(&self) -> bool {
        self.tenant.is_some()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(principal) => Ok(Self { tenant: principal.tenant_restriction() }),
            None => Err(ApiError::Unauthorized {
                code: "missing_admin_key",
                message: "send Authorization: Bearer <ADMIN_API_KEY>".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_scope_admits_only_its_tenant() {
        let scope = Scope::new(Some("t1"));
        assert_eq!(scope.tenant_filter(None).unwrap().as_deref(), Some("t1"));
        assert_eq!(scope.tenant_filter(Some("t1")).unwrap().as_deref(), Some("t1"));
        assert!(matches!(scope.tenant_filter(Some("t2")), Err(ApiError::Forbidden { code: "out_of_tenant", .. })));
        assert!(scope.sees("t1") && !scope.sees("t2"));
        let open = Scope::new(None);
        assert_eq!(open.tenant_filter(Some("t2")).unwrap().as_deref(), Some("t2"));
        assert!(open.sees("anything"));
    }

    #[test]
    fn a_tenant_admin_without_a_tenant_sees_nothing() {
        let principal = Principal { role: Role::TenantAdmin, tenant_id: None, ..Principal::admin_key() };
        let scope = Scope { tenant: principal.tenant_restriction() };
        assert!(!scope.sees("default"));
    }
}
