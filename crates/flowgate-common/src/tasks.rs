//! Background tasks under supervision. Library code never detaches a `tokio::spawn` on its own:
//! it starts work through [`Tasks`], which logs a panic, restarts the tasks that can be restarted,
//! and reports the ones that died in `/readyz` (as the `tasks` check).
//!
//! - [`Tasks::spawn`]: a long-lived task that cannot be restarted (it owns a channel's receiver);
//!   if it panics, the service is unready.
//! - [`Tasks::supervise`]: a long-lived task made again by a factory after a panic, with a pause
//!   that grows to 30 s.
//! - [`Tasks::job`]: a short job (one per request, say); a panic is logged and counted.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;

use crate::server::ReadinessCheck;

/// Longest pause before a supervised task is started again.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone)]
struct TaskState {
    /// A long-lived task that cannot be restarted has died.
    dead: bool,
    /// Panics seen.
    panics: u64,
    /// The last panic's message.
    last_panic: Option<String>,
}

/// The tasks of one process (cheap to clone; clones share the registry).
#[derive(Debug, Clone, Default)]
pub struct Tasks(Arc<Mutex<BTreeMap<&'static str, TaskState>>>);

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

impl Tasks {
    fn panicked(&self, name: &'static str, message: String, dead: bool) {
        tracing::error!(task = name, panic = %message, dead, "background task panicked");
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let state = tasks.entry(name).or_default();
        state.panics += 1;
        state.last_panic = Some(message);
        state.dead |= dead;
    }

    #[expect(clippy::disallowed_methods, reason = "the one place background work is spawned, under supervision")]
    fn detach(future: impl Future<Output = ()> + Send + 'static) {
        drop(tokio::spawn(future));
    }

    /// Starts a long-lived task. A panic marks the service unready (the task cannot be made
    /// again).
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(name).or_default();
        let tasks = self.clone();
        Self::detach(async move {
            if let Err(payload) = AssertUnwindSafe(task).catch_unwind().await {
                tasks.panicked(name, panic_message(payload.as_ref()), true);
            }
        });
    }

    /// Starts a long-lived task made by `make`, and makes it again after a panic. A task that
    /// returns is done.
    pub fn supervise<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(name).or_default();
        let tasks = self.clone();
        Self::detach(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                match AssertUnwindSafe(make()).catch_unwind().await {
                    Ok(()) => return,
                    Err(payload) => tasks.panicked(name, panic_message(payload.as_ref()), false),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RESTART_PAUSE);
            }
        });
    }

    /// Starts a short job; a panic is logged and counted under `name`.
    pub fn job(&self, name: &'static str, job: impl Future<Output = ()> + Send + 'static) {
        let tasks = self.clone();
        Self::detach(async move {
            if let Err(payload) = AssertUnwindSafe(job).catch_unwind().await {
                tasks.panicked(name, panic_message(payload.as_ref()), false);
            }
        });
    }

    /// Panics seen under `name` so far.
    pub fn panics(&self, name: &str) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(name).map_or(0, |s| s.panics)
    }
}

#[async_trait::async_trait]
impl ReadinessCheck for Tasks {
    fn name(&self) -> &str {
        "tasks"
    }

    async fn check(&self) -> Result<(), String> {
        let tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let dead: Vec<String> = tasks
            .iter()
            .filter(|(_, s)| s.dead)
            .map(|(name, s)| format!("{name} died: {}", s.last_panic.as_deref().unwrap_or("panic")))
            .collect();
        if dead.is_empty() { Ok(()) } else { Err(dead.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_dead_long_lived_task_makes_the_service_unready() {
        let tasks = Tasks::default();
        tasks.spawn("writer", async { panic!("disk on fire") });
        settle().await;
        let error = tasks.check().await.unwrap_err();
        assert!(error.contains("writer died: disk on fire"), "{error}");
        assert_eq!(tasks.panics("writer"), 1);
    }

    #[tokio::test]
    async fn a_supervised_task_is_made_again_after_a_panic() {
        let tasks = Tasks::default();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = runs.clone();
        tasks.supervise("listener", move || {
            let run = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                assert!(run >= 2, "run {run} fails");
            }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(tasks.panics("listener"), 2);
        assert!(tasks.check().await.is_ok(), "restarted tasks keep the service ready");
    }

    #[tokio::test]
    async fn a_failed_job_is_counted_and_the_service_stays_ready() {
        let tasks = Tasks::default();
        tasks.job("redact", async { panic!("bad input") });
        tasks.job("redact", async {});
        settle().await;
        assert_eq!(tasks.panics("redact"), 1);
        assert!(tasks.check().await.is_ok());
    }
}
