//! `/api/admin/audit`: the admin audit log, one record per management action (who, what, the
//! resource before and after, from where) and per sign-in attempt. Written by the access gate
//! (`crate::access::gate`) and the sign-in handler; read here, newest first, with cursor paging.

pub(crate) mod handlers;
pub(crate) mod model;
pub(crate) mod store;
