//! Turns SIGTERM / SIGINT into a cancelled [`CancellationToken`], the one shutdown signal every
//! service and background task in a process listens to.

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or SIGINT (Ctrl-C), then cancels `token`. Also returns when the token is
/// cancelled by someone else, so the task never outlives the process's shutdown.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        () = token.cancelled() => return,
    }
    token.cancel();
}
