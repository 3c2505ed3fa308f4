//! Where the other services answer HTTP, for the comprehensive health check: read from this
//! process's settings. A leaf.

use flowgate_common::Settings;
use flowgate_common::settings::ProxySettings;

/// Where the other services answer HTTP, as far as this process's settings tell.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthTargets {
    /// `(service, base URL)`; `None` when the address is not known (an ephemeral port 0).
    pub(crate) services: Vec<(&'static str, Option<String>)>,
}

/// The host to reach a service bound by this configuration on the same machine.
fn local_host(bind: &str) -> String {
    match bind.trim() {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    }
}

impl HealthTargets {
    /// The compliance and policy services at `proxy.compliance_url` / `proxy.policy_url` (one
    /// port serves their gRPC and HTTP) when those are configured; left at their defaults, at
    /// this host and the configured `compliance.port` / `policy.port` (what `all` runs).
    ///
    /// The proxy at this host and `proxy.port`, but only while `proxy.api_server_url` is left at
    /// its default: a deployment that tells its proxies where the api-server is (Compose, Helm)
    /// runs them elsewhere, usually as many replicas, and has no single proxy address to check.
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        let host = local_host(&settings.server.host);
        let defaults = ProxySettings::default();
        let configured = |url: &str, default: &str| {
            let url = url.trim().trim_end_matches('/');
            (url != default.trim_end_matches('/')).then(|| url.to_owned())
        };
        let local = |port: u16| (port != 0).then(|| format!("http://{host}:{port}"));
        let proxy = if configured(&settings.proxy.api_server_url, &defaults.api_server_url).is_some() {
            None
        } else {
            local(settings.proxy.port)
        };
        Self {
            services: vec![
                ("proxy", proxy),
                (
                    "compliance",
                    configured(&settings.proxy.compliance_url, &defaults.compliance_url)
                        .or_else(|| local(settings.compliance.port)),
                ),
                (
                    "policy",
                    configured(&settings.proxy.policy_url, &defaults.policy_url)
                        .or_else(|| local(settings.policy.port)),
                ),
            ],
        }
    }
}
