//! Deployment `rpm` / `tpm` shared by proxy replicas through Redis.
//!
//! Without Redis (or while it is unreachable) each process counts its own traffic in the
//! deployment's `DeploymentStats`, as the router always does. With Redis, a deployment that has
//! limits is also counted per unix minute in `dl:{deployment}:{minute}:r` (requests) and `:t`
//! (tokens): an attempt claims one request there (one call of the claim script, batched with the
//! claims of concurrent requests) and reads every replica's tokens; an answer's tokens join the
//! key's settlement on its way to Redis (no call of their own). A deployment without limits
//! never touches Redis. When Redis fails the attempt goes ahead on the process's own figures: a
//! warning is logged and `flowgate_shared_state_fallbacks_total` rises (fail open).

use flowgate_db::{Adjustment, Claim, ClaimKind};

use super::Limiter;
use crate::routing::{Deployment, SHARED_WINDOW_TTL};

/// The Redis counter of `deployment`'s requests (`r`) or tokens (`t`) in unix minute `minute`.
fn counter(deployment: &str, minute: u64, what: &str) -> String {
    format!("dl:{deployment}:{minute}:{what}")
}

impl Limiter {
    /// Claims one request on `deployment`'s shared `rpm` / `tpm` window. `false` when the replicas
    /// together have reached a limit: nothing was counted, and the deployment's stats now say it is
    /// limited, so the router passes it over. `true` when admitted, and when Redis has no say (no
    /// limits, no Redis, Redis unreachable): the process's own window decides then.
    pub(crate) async fn claim_deployment(&self, deployment: &Deployment) -> bool {
        let rpm = deployment.rpm.filter(|rpm| *rpm > 0);
        let tpm = deployment.tpm.filter(|tpm| *tpm > 0);
        if (rpm.is_none() && tpm.is_none()) || self.use_local() {
            return true;
        }
        let (minute, _) = crate::routing::unix_minute();
        let mut claims = Vec::with_capacity(2);
        if let Some(rpm) = rpm {
            claims.push(Claim {
                key: counter(&deployment.id, minute, "r"),
                delta: 1,
                limit: i64::from(rpm),
                ttl: SHARED_WINDOW_TTL,
                kind: ClaimKind::Window,
            });
        }
        if let Some(tpm) = tpm {
            claims.push(Claim {
                key: counter(&deployment.id, minute, "t"),
                delta: 0,
                limit: i64::from(tpm),
                ttl: SHARED_WINDOW_TTL,
                kind: ClaimKind::TokenWindow,
            });
        }
        match self.0.shared.claim(&claims).await {
            Ok(outcome) => {
                let value = |index: usize| {
                    outcome.values.get(index).copied().and_then(|v| u64::try_from(v).ok()).unwrap_or_default()
                };
                let requests = if rpm.is_some() { value(0) } else { 0 };
                let tokens = if tpm.is_some() { value(claims.len() - 1) } else { 0 };
                deployment.stats.observe_shared(minute, requests, tokens);
                if !outcome.admitted() {
                    tracing::debug!(deployment = %deployment.id, requests, tokens, "deployment at its shared rpm / tpm");
                }
                outcome.admitted()
            }
            Err(error) => {
                self.mark_down(&error);
                true
            }
        }
    }

    /// Adds an answer's `tokens` to `deployment`'s shared token window (when it has a `tpm` and
    /// there is Redis), queued with the settlements sent to Redis.
    pub(crate) fn count_deployment_tokens(&self, deployment: &Deployment, tokens: u64) {
        if deployment.tpm.is_none_or(|tpm| tpm == 0) || tokens == 0 || !self.0.shared.is_shared() {
            return;
        }
        let (minute, _) = crate::routing::unix_minute();
        self.apply(
            vec![Adjustment {
                key: counter(&deployment.id, minute, "t"),
                delta: i64::try_from(tokens).unwrap_or(i64::MAX),
                ttl: SHARED_WINDOW_TTL,
                refresh: false,
                reservation: None,
            }],
            false,
        );
    }
}
