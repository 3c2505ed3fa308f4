//! Roles and the one table of what each may do: every management route belongs to an [`Area`]
//! (by its path), a `GET` reads it and any other method writes it, and [`Role::allows`] is the
//! whole matrix. A route under no area is refused to every role but `admin`, so a route added
//! without a decision here is closed, not open.

use serde::{Deserialize, Serialize};

/// Who someone is on the management plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Role {
    /// Everything, including users, roles, credentials and the admin audit log.
    Admin,
    /// Keys, tenants, guardrails, policies, routing, alerts, agents and MCP servers; reads the
    /// audit trail and analytics; no admin settings (users, credentials' secrets, admin audit).
    Operator,
    /// The keys (and their budgets) of one tenant, and that tenant's record, read only.
    TenantAdmin,
    /// Reads: the audit trails, analytics, health and the configuration (never a secret).
    Auditor,
    /// Dashboards: analytics and health.
    Viewer,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub(crate) const ALL: [Role; 5] = [Role::Admin, Role::Operator, Role::TenantAdmin, Role::Auditor, Role::Viewer];

    /// The name the API and config use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::TenantAdmin => "tenant-admin",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }

    /// A role from its name.
    pub(crate) fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Whether this role may do `access` in `area` (tenant scope is checked apart, by the handlers).
    pub(crate) fn allows(self, area: Area, access: Access) -> bool {
        use Access::Read;
        use Area::*;
        match (self, area, access) {
            (Role::Admin, _, _) | (_, Session, _) => true,
            (Role::Operator, Keys | Tenants | Guardrails | Policies | Routing | Alerts | Agents, _) => true,
            (Role::Operator, Credentials | Audit | Analytics | Health, Read) => true,
            (Role::TenantAdmin, Keys, _) | (Role::TenantAdmin, Tenants, Read) => true,
            (
                Role::Auditor,
                Keys | Tenants | Guardrails | Policies | Routing | Alerts | Agents | Audit | AdminAudit | Analytics
                | Health,
                Read,
            ) => true,
            (Role::Viewer, Analytics | Health, Read) => true,
            (Role::Operator | Role::TenantAdmin | Role::Auditor | Role::Viewer, _, _) => false,
        }
    }
}

/// What a management route is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Area {
    /// `/api/enterprise/vkeys`.
    Keys,
    /// `/api/enterprise/tenants`.
    Tenants,
    /// `/api/guardrails`.
    Guardrails,
    /// `/api/policies`.
    Policies,
    /// `/api/routing`.
    Routing,
    /// `/api/credentials` (provider keys).
    Credentials,
    /// `/api/alerts`.
    Alerts,
    /// `/api/admin/a2a`, `/api/admin/mcp`, `/api/mcp/tools`: agents, MCP servers and their tools.
    Agents,
    /// `/api/audit`: the request audit trail.
    Audit,
    /// `/api/admin/audit`: the admin audit log.
    AdminAudit,
    /// `/api/admin/users`: users, roles and their API tokens.
    Users,
    /// `/api/analytics`, `/api/providers`.
    Analytics,
    /// `/api/health`, `/api/metacache`.
    Health,
    /// `/api/admin/session`: one's own sign-in (every signed-in caller).
    Session,
}

/// Reading or changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    /// `GET` (and `HEAD`).
    Read,
    /// Every other method.
    Write,
}

/// Path prefixes (whole segments) and their areas; the longest match wins.
const AREAS: &[(&str, Area)] = &[
    ("/api/enterprise/vkeys", Area::Keys),
    ("/api/enterprise/tenants", Area::Tenants),
    ("/api/guardrails", Area::Guardrails),
    ("/api/policies", Area::Policies),
    ("/api/routing", Area::Routing),
    ("/api/credentials", Area::Credentials),
    ("/api/alerts", Area::Alerts),
    ("/api/admin/a2a", Area::Agents),
    ("/api/admin/mcp", Area::Agents),
    ("/api/mcp/tools", Area::Agents),
    ("/api/admin/audit", Area::AdminAudit),
    ("/api/admin/users", Area::Users),
    ("/api/admin/session", Area::Session),
    ("/api/audit", Area::Audit),
    ("/api/analytics", Area::Analytics),
    ("/api/providers", Area::Analytics),
    ("/api/health", Area::Health),
    ("/api/metacache", Area::Health),
];

/// The area of a route (its template or a concrete path), if any.
pub(crate) fn area_of(path: &str) -> Option<Area> {
    AREAS
        .iter()
        .filter(|(prefix, _)| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, area)| *area)
}

/// What a method does.
pub(crate) fn access_of(method: &axum::http::Method) -> Access {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD { Access::Read } else { Access::Write }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_match_whole_segments_and_the_longest_prefix() {
        assert_eq!(area_of("/api/enterprise/vkeys/{id}/revoke"), Some(Area::Keys));
        assert_eq!(area_of("/api/audit/export"), Some(Area::Audit));
        assert_eq!(area_of("/api/admin/audit"), Some(Area::AdminAudit));
        assert_eq!(area_of("/api/auditx"), None);
        assert_eq!(area_of("/api/admin/mcp/servers/{name}"), Some(Area::Agents));
        assert_eq!(area_of("/api/unknown"), None);
    }

    #[test]
    fn every_role_has_a_name_that_parses_back() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
