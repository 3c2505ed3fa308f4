//! `/api/routing`: models and deployments at run time. A deployment is a `model_list` entry
//! (LiteLLM's shape), read and validated by the same code as the config file's
//! (`flowgate_common::settings::model_entry_from_json`, `ModelEntry::validate`); provider keys in
//! it are references (`credential/NAME`, `os.environ/NAME`), never values. Written deployments
//! are stored (`flowgate_db::routing`), each write moves the routing revision and is published
//! on `routing:changed`, so every proxy rebuilds its table.
//!
//! The config file's deployments are listed too, marked `source: file` and read-only: the file
//! stays their source of truth (its keys are never copied into the database).
//!
//! - `handlers`: the HTTP handlers;
//! - `model`: the entry's checks and the views (with each deployment's live state as the
//!   proxies report it, `flowgate_contracts::routing`).

pub(crate) mod handlers;
pub(crate) mod model;

pub(crate) use model::FileDeployments;
