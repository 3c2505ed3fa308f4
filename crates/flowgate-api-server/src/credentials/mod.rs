//! `/api/credentials`: provider keys (and other provider secrets), write-only and sealed at rest
//! by envelope encryption (`flowgate_db::credentials`). Deployments refer to them as
//! `credential/NAME`; a write moves the routing revision and is published on `routing:changed`,
//! so the proxies pick up a rotated key.
//!
//! - `handlers`: the HTTP handlers; `model`: request and response documents.

pub(crate) mod handlers;
pub(crate) mod model;
