//! Who may use the management plane, and what each may do.
//!
//! - `roles`: the five roles and the one table of route area × read/write → allowed.
//! - `principal`: the authenticated caller the gate attaches to a request, and [`Scope`], the
//!   tenant confinement handlers of tenant-owned resources apply.
//! - `gate`: the middleware on every management route (authentication, CSRF, role, admin audit).
//! - `handlers`: sign-in with the admin key, who-am-I, sign-out; users, roles and API tokens.
//! - `oidc`: the OpenID Connect provider (discovery, JWKS cache, JWT checks, role mapping);
//!   `sso`: the browser's sign-in through it.
//! - `store`: the SQL of sessions, tokens and users (secrets stored only as keyed hashes).

pub(crate) mod gate;
pub(crate) mod handlers;
pub(crate) mod oidc;
pub(crate) mod principal;
pub(crate) mod roles;
pub(crate) mod sso;
pub(crate) mod store;

pub(crate) use principal::Scope;
