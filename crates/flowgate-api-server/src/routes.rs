//! The management HTTP routes: one table that both registers the handlers and lists the routes
//! the OpenAPI document must describe (checked by a test). A leaf: it maps paths to handlers and
//! nothing imports from it but `lib.rs`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, get, on};

use crate::access::gate::{self, Gate};
use crate::state::AppState;
use crate::{
    a2a, access, admin_audit, alerts, analytics, audit, credentials, guardrails, health, keys, mcp_servers, metacache,
    policies, routing, tenants,
};

/// Declares the admin routes once: `ADMIN_ROUTES` (method, path) and `admin_router`.
macro_rules! admin_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route behind the admin key, as (method, path) in OpenAPI's path syntax.
        pub const ADMIN_ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn admin_router() -> Router<AppState> {
            Router::new()$(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

admin_routes! {
    POST "/api/enterprise/tenants" => tenants::handlers::create,
    GET "/api/enterprise/tenants" => tenants::handlers::list,
    GET "/api/enterprise/tenants/{id}" => tenants::handlers::get,
    PATCH "/api/enterprise/tenants/{id}" => tenants::handlers::patch,
    POST "/api/enterprise/vkeys" => keys::handlers::create,
    GET "/api/enterprise/vkeys" => keys::handlers::list,
    GET "/api/enterprise/vkeys/{id}" => keys::handlers::get,
    PATCH "/api/enterprise/vkeys/{id}" => keys::handlers::patch,
    DELETE "/api/enterprise/vkeys/{id}" => keys::handlers::delete,
    POST "/api/enterprise/vkeys/{id}/revoke" => keys::handlers::revoke,
    POST "/api/enterprise/vkeys/{id}/rotate" => keys::handlers::rotate,
    GET "/api/enterprise/vkeys/{id}/budget" => keys::handlers::budget,
    GET "/api/audit" => audit::handlers::list,
    GET "/api/audit/export" => audit::handlers::export,
    GET "/api/analytics/spend" => analytics::handlers::spend,
    GET "/api/alerts" => alerts::handlers::list,
    GET "/api/providers/perf" => analytics::handlers::perf,
    GET "/api/health/comprehensive" => health::comprehensive,
    GET "/api/metacache/stats" => metacache::handlers::stats,
    GET "/api/metacache/entries" => metacache::handlers::entries,
    DELETE "/api/metacache" => metacache::handlers::delete,
    POST "/api/guardrails" => guardrails::handlers::create,
    GET "/api/guardrails" => guardrails::handlers::list,
    GET "/api/guardrails/{name}" => guardrails::handlers::get,
    PATCH "/api/guardrails/{name}" => guardrails::handlers::patch,
    DELETE "/api/guardrails/{name}" => guardrails::handlers::delete,
    POST "/api/policies" => policies::handlers::create,
    GET "/api/policies" => policies::handlers::list,
    GET "/api/policies/{name}" => policies::handlers::get,
    PATCH "/api/policies/{name}" => policies::handlers::patch,
    DELETE "/api/policies/{name}" => policies::handlers::delete,
    GET "/api/routing" => routing::handlers::list,
    POST "/api/routing/deployments" => routing::handlers::create,
    GET "/api/routing/deployments/{id}" => routing::handlers::get,
    PUT "/api/routing/deployments/{id}" => routing::handlers::replace,
    DELETE "/api/routing/deployments/{id}" => routing::handlers::delete,
    DELETE "/api/routing/models/{name}" => routing::handlers::delete_model,
    POST "/api/credentials" => credentials::handlers::create,
    GET "/api/credentials" => credentials::handlers::list,
    GET "/api/credentials/{name}" => credentials::handlers::get,
    PUT "/api/credentials/{name}" => credentials::handlers::replace,
    DELETE "/api/credentials/{name}" => credentials::handlers::delete,
    POST "/api/admin/a2a/agents" => a2a::handlers::create,
    GET "/api/admin/a2a/agents" => a2a::handlers::list,
    GET "/api/admin/a2a/agents/{name}" => a2a::handlers::get,
    PATCH "/api/admin/a2a/agents/{name}" => a2a::handlers::patch,
    DELETE "/api/admin/a2a/agents/{name}" => a2a::handlers::delete,
    POST "/api/admin/mcp/servers" => mcp_servers::handlers::create,
    GET "/api/admin/mcp/servers" => mcp_servers::handlers::list,
    GET "/api/admin/mcp/servers/{name}" => mcp_servers::handlers::get,
    PATCH "/api/admin/mcp/servers/{name}" => mcp_servers::handlers::patch,
    DELETE "/api/admin/mcp/servers/{name}" => mcp_servers::handlers::delete,
    GET "/api/mcp/tools" => mcp_servers::catalog::list,
    POST "/api/admin/session" => access::handlers::sign_in,
    GET "/api/admin/session" => access::handlers::whoami,
    DELETE "/api/admin/session" => access::handlers::sign_out,
    POST "/api/admin/users" => access::handlers::create_user,
    GET "/api/admin/users" => access::handlers::list_users,
    GET "/api/admin/users/{id}" => access::handlers::get_user,
    PATCH "/api/admin/users/{id}" => access::handlers::patch_user,
    DELETE "/api/admin/users/{id}" => access::handlers::delete_user,
    POST "/api/admin/users/{id}/tokens" => access::handlers::create_token,
    GET "/api/admin/audit" => admin_audit::handlers::list,
    GET "/api/admin/oidc/login" => access::sso::login,
    GET "/api/admin/oidc/callback" => access::sso::callback,
}

/// Routes that take the admin key or a virtual key (each handler checks which), as (method,
/// path): a key's holder manages its own upstream credentials.
pub const KEY_OR_ADMIN_ROUTES: &[(&str, &str)] =
    &[("PUT", "/api/mcp/auth/{server}"), ("GET", "/api/mcp/auth/{server}"), ("DELETE", "/api/mcp/auth/{server}")];

fn key_or_admin_router() -> Router<AppState> {
    Router::new().route(
        "/api/mcp/auth/{server}",
        axum::routing::put(mcp_servers::auth::put).get(mcp_servers::auth::list).delete(mcp_servers::auth::delete),
    )
}

/// Routes of the table that need no credential: signing in is how one gets one.
pub const PUBLIC_ADMIN_ROUTES: &[(&str, &str)] =
    &[("POST", "/api/admin/session"), ("GET", "/api/admin/oidc/login"), ("GET", "/api/admin/oidc/callback")];

/// Where the OpenAPI document is served (without authentication: it holds no secrets).
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// Routes every service gets from `flowgate_common::server` (no authentication).
pub const SERVICE_ROUTES: &[(&str, &str)] = &[("GET", "/health"), ("GET", "/readyz"), ("GET", "/metrics")];

/// The OpenAPI 3.1 document of this API, as checked in at `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

/// The management API: the admin routes behind the access gate (authentication, role, tenant
/// scope, admin audit; see `access::gate`), and the OpenAPI document.
pub(crate) fn router(state: AppState) -> Router {
    let readable: Arc<[&'static str]> =
        ADMIN_ROUTES.iter().filter(|(method, _)| *method == "GET").map(|(_, path)| *path).collect();
    let gate = Gate {
        state: state.clone(),
        admin_key: state.admin_key.clone(),
        inner: admin_router().with_state(state.clone()),
        readable,
        public: PUBLIC_ADMIN_ROUTES,
    };
    let admin =
        admin_router().route_layer(axum::middleware::from_fn_with_state(gate, gate::run)).with_state(state.clone());
    let portal = crate::portal::router(admin.clone());
    // Outside the gate: each of these handlers takes the admin key or a virtual key itself.
    let own = key_or_admin_router().with_state(state);
    Router::new()
        .route(OPENAPI_PATH, get(openapi))
        .merge(admin)
        .merge(own)
        .merge(portal)
        .method_not_allowed_fallback(method_not_allowed)
}

/// A known path with the wrong method: a JSON 405 like every other error.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    flowgate_common::auth::json_error(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (METHOD, path) of every operation in the checked-in OpenAPI document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_served_routes() {
        let served: BTreeSet<(String, String)> = ADMIN_ROUTES
            .iter()
            .chain(KEY_OR_ADMIN_ROUTES)
            .chain(SERVICE_ROUTES)
            .chain(&[("GET", OPENAPI_PATH)])
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(undocumented.is_empty(), "served but not in docs/openapi.json: {undocumented:?}");
        assert!(unserved.is_empty(), "in docs/openapi.json but not served: {unserved:?}");
    }

    #[test]
    fn admin_operations_require_the_bearer_scheme_and_public_ones_do_not() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["components"]["securitySchemes"]["adminKey"]["scheme"], "bearer");
        assert!(doc["security"].as_array().is_some_and(|s| !s.is_empty()), "bearer is the default");
        for (method, path) in SERVICE_ROUTES.iter().chain(&[("GET", OPENAPI_PATH)]).chain(PUBLIC_ADMIN_ROUTES) {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert_eq!(op["security"], serde_json::json!([]), "{method} {path} is public");
        }
        for (method, path) in KEY_OR_ADMIN_ROUTES {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert_eq!(op["security"], serde_json::json!([{"adminKey": []}, {"virtualKey": []}]), "{method} {path}");
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents 401");
        }
        for (method, path) in ADMIN_ROUTES.iter().filter(|route| !PUBLIC_ADMIN_ROUTES.contains(route)) {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(op["security"].is_null(), "{method} {path} inherits the bearer requirement");
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents 401");
            assert!(op["operationId"].is_string(), "{method} {path} has an operationId");
        }
    }

    #[test]
    fn every_gated_route_has_an_area_in_the_role_table() {
        // A route under no area is admin-only (closed); the table should still name it.
        for (method, path) in ADMIN_ROUTES.iter().filter(|route| !PUBLIC_ADMIN_ROUTES.contains(route)) {
            assert!(crate::access::roles::area_of(path).is_some(), "{method} {path} has no area in access::roles");
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        fn walk(value: &serde_json::Value, doc: &serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(reference) = map.get("$ref").and_then(|r| r.as_str()) {
                        let pointer = reference.trim_start_matches('#');
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
                    }
                    map.values().for_each(|v| walk(v, doc));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }
}
