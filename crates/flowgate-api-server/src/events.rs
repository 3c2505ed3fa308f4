//! Events the api-server publishes after a committed change, so proxies and policy services
//! drop or reload what they hold (channels: `flowgate_contracts::channels`).

use flowgate_contracts::channels::KEYS_INVALIDATE;

use crate::state::AppState;

/// Publishes `key_id` (or `tenant:{id}` for every key of a tenant) on `keys:invalidate` so every
/// proxy drops its cached copy. A failure is
/// logged, not returned: the change is already committed, and proxies resync when Redis returns.
pub(crate) async fn invalidate(state: &AppState, key_id: &str) {
    if let Err(error) = state.shared.publish(KEYS_INVALIDATE, key_id).await {
        tracing::warn!(%error, key_id, "cannot publish the key invalidation; proxies will see the change when their cache entry expires");
    }
}

/// Publishes `name` on `channel` (`guardrails:changed`, `policies:changed`) after a committed
/// change. A failure is logged, not returned, like [`invalidate`].
pub(crate) async fn publish(state: &AppState, channel: &'static str, name: &str) {
    if let Err(error) = state.shared.publish(channel, name).await {
        tracing::warn!(%error, channel, name, "cannot publish the change; subscribers see it when they next reload");
    }
}
