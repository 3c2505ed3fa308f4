//! Shared setup for data-plane tests. Most tests start the gateway in process with
//! `flowgate_test_utils::spawn_app`; the few that are about the process itself (SIGTERM and the
//! drain) start the real binary here with [`BinaryGateway`].

use std::path::PathBuf;

use flowgate_test_utils::{FlowgateProcess, TempDir, base_env, http_client};
use serde_json::{Value, json};

/// A running `flowgate all` process, for tests about signals and the drain.
pub(crate) struct BinaryGateway {
    pub(crate) process: FlowgateProcess,
    dir: TempDir,
    env: Vec<(String, String)>,
    pub(crate) admin_key: String,
}

impl BinaryGateway {
    /// Starts `flowgate all` with `config` (YAML) and extra env.
    pub(crate) async fn start(config: &str, extra_env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let path: PathBuf = dir.path().join("flowgate.yaml");
        std::fs::write(&path, config).unwrap();
        let mut env = base_env(dir.path());
        env.push(("FLOWGATE_CONFIG".into(), path.display().to_string()));
        env.push(("ADMIN_API_KEY".into(), "test-admin-key".into()));
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let process = FlowgateProcess::spawn(&["all"], &env, &["proxy", "api-server", "compliance", "policy"]).await;
        Self { process, dir, env, admin_key: "test-admin-key".into() }
    }

    /// Stops the gateway with SIGTERM (waiting for a clean exit) and starts it again on the same
    /// data directory and configuration.
    pub(crate) async fn restart(mut self) -> Self {
        self.process.sigterm();
        assert_eq!(self.process.wait(std::time::Duration::from_secs(20)).await, Some(0));
        let process =
            FlowgateProcess::spawn(&["all"], &self.env, &["proxy", "api-server", "compliance", "policy"]).await;
        Self { process, ..self }
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub(crate) fn proxy(&self) -> String {
        self.process.url("proxy")
    }

    pub(crate) fn api(&self) -> String {
        self.process.url("api-server")
    }

    /// Creates a virtual key with `fields` and returns (id, plaintext key).
    pub(crate) async fn create_key(&self, fields: Value) -> (String, String) {
        let mut body = json!({"name": "test"});
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            body.extend(fields.clone());
        }
        flowgate_test_utils::create_key(&self.api(), &self.admin_key, &body).await
    }

    /// POSTs `body` to the proxy at `path` with `key`.
    pub(crate) async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        http_client().post(format!("{}{path}", self.proxy())).bearer_auth(key).json(body).send().await.unwrap()
    }
}

/// Starts an in-process mock upstream (OpenAI and Anthropic formats) and returns its base URL.
pub(crate) async fn mock_upstream(params: flowgate_proxy::mock::MockParams) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, flowgate_proxy::mock_server::router(params)).await.unwrap();
    });
    format!("http://{addr}")
}

pub(crate) use flowgate_test_utils::sse_events;
