//! SIGTERM stops accepting, drains, and exits 0.

use std::time::Duration;

use flowgate_test_utils::{FlowgateProcess, TempDir, base_env};

#[tokio::test]
async fn sigterm_exits_zero() {
    let dir = TempDir::new();
    let mut process =
        FlowgateProcess::spawn(&["all"], &base_env(dir.path()), &["proxy", "api-server", "compliance", "policy"]).await;
    process.sigterm();
    let code = process.wait(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "logs:\n{}", process.log_text());
    assert!(process.log_text().contains("shutdown complete"));
}
