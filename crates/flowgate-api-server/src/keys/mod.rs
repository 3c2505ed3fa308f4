//! Virtual keys: `/api/enterprise/vkeys` (create, list, get, patch, delete, revoke, rotate,
//! budget) and the first key `flowgate init` creates.
//!
//! - `handlers`: the HTTP handlers and [`bootstrap`];
//! - `model`: request and response documents and their validation;
//! - `store`: the SQL.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;

pub use handlers::{Bootstrap, bootstrap};
pub use model::KeyWithSecret;
