//! The `/api/metacache` handlers.

use axum::Json;
use axum::extract::State;
use flowgate_contracts::channels::METACACHE_DELETE;
use flowgate_contracts::metacache::{ENTRIES_STREAM, STREAM_MAX_LEN, StreamRecord};
use serde::Deserialize;

use super::model::CacheStats;
use super::store;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// `GET /api/metacache/stats`: per phase over every replica, savings, by tenant and model.
#[tracing::instrument(name = "metacache.stats", skip_all)]
pub(crate) async fn stats(State(state): State<AppState>) -> Result<Json<CacheStats>, ApiError> {
    let savings = store::savings(&state.database).await?;
    Ok(Json(CacheStats::read(&state.shared, savings).await))
}

/// Which entries a request is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scope {
    tenant_id: Option<String>,
    model: Option<String>,
    limit: Option<usize>,
}

/// `DELETE /api/metacache[?tenant_id=…&model=…]`: every replica forgets the matching entries
/// (semantic entries exactly; exact entries of their process all at once, since their keys are
/// hashes; exact entries in Redis expire with their TTL).
#[tracing::instrument(name = "metacache.delete", skip_all)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    ApiQuery(scope): ApiQuery<Scope>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = StreamRecord::Delete { tenant: scope.tenant_id.clone(), model: scope.model.clone() };
    let message = serde_json::to_string(&record).unwrap_or_default();
    // On the stream, so replicas that start later skip the deleted entries; published, so the
    // running ones act at once.
    let appended = state.shared.stream_append(ENTRIES_STREAM, message.as_bytes(), STREAM_MAX_LEN).await;
    let published = state.shared.publish(METACACHE_DELETE, &message).await;
    if let Err(error) = appended.and(published) {
        tracing::warn!(%error, "metacache delete not delivered to every replica");
        return Err(ApiError::Conflict(format!("the cache delete could not reach the proxies: {error}")));
    }
    Ok(Json(serde_json::json!({"deleted": true, "tenant_id": scope.tenant_id, "model": scope.model})))
}

/// `GET /api/metacache/entries[?tenant_id=…&model=…&limit=…]`: the live semantic entries, newest
/// first; the text only for tenants that store prompts.
#[tracing::instrument(name = "metacache.entries", skip_all)]
pub(crate) async fn entries(
    State(state): State<AppState>,
    ApiQuery(scope): ApiQuery<Scope>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = u64::try_from(flowgate_db::now_millis()).unwrap_or(0);
    let mut entries = store::entries(&state.shared, scope.tenant_id.as_deref(), scope.model.as_deref(), now)
        .await
        .map_err(|error| ApiError::Conflict(format!("the cache entries could not be read: {error}")))?;
    entries.truncate(scope.limit.unwrap_or(100).clamp(1, 1000));
    let mut shows_text = std::collections::HashMap::new();
    for entry in &mut entries {
        if !shows_text.contains_key(&entry.tenant_id) {
            let tenant = crate::tenants::store::get_tenant(&state.database, &entry.tenant_id).await?;
            shows_text.insert(entry.tenant_id.clone(), tenant.is_some_and(|t| t.store_prompts));
        }
        if shows_text.get(&entry.tenant_id) != Some(&true) {
            entry.text = None;
        }
    }
    Ok(Json(serde_json::json!({"object": "list", "data": entries})))
}
