//! Command-line definitions only; behaviour lives in `dispatch`.
//!
//! The mode comes from the first argument, else `SERVICE_TYPE`, else its alias `SCAIGRID_MODE`.

use std::path::PathBuf;

use crate::admin_cli::AdminCommand;

/// Environment variable selecting the mode.
pub const ENV_SERVICE_TYPE: &str = "SERVICE_TYPE";
/// The seeds' alias for [`ENV_SERVICE_TYPE`].
pub const ENV_SCAIGRID_MODE: &str = "SCAIGRID_MODE";

/// Flowgate: a self-hostable LLM gateway. One binary, every service.
#[derive(Debug, clap::Parser)]
#[command(
    name = "flowgate",
    version,
    about,
    long_about = "Flowgate: a self-hostable LLM gateway. One binary, every service.\n\n\
The mode is the first argument, or SERVICE_TYPE (alias SCAIGRID_MODE).\n\
Configuration precedence, lowest to highest: built-in defaults < YAML file (--config or \
FLOWGATE_CONFIG) < FLOWGATE__SECTION__KEY environment variables < DATABASE_URL, REDIS_URL, \
ADMIN_API_KEY and the other documented environment names."
)]
pub struct Cli {
    /// YAML configuration file (also `FLOWGATE_CONFIG`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to run. Without one, `SERVICE_TYPE` or `SCAIGRID_MODE` decides.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Modes and one-shot commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// The data plane: OpenAI/Anthropic-compatible API (port 7775).
    Proxy,
    /// The management plane (port 7778).
    ApiServer,
    /// Content scanning (port 7777).
    Compliance,
    /// Guardrail rule-set evaluation (port 7782).
    #[command(alias = "policy-perfect")]
    Policy,
    /// Background jobs: budget rollover and reconciliation, alerts, spend rollups (health on
    /// port 7779).
    Worker,
    /// Apply database migrations, then exit.
    Migrate,
    /// Every service in one process (the embedded default).
    All,
    /// Exit 0 when this container's service answers GET /health (for Docker HEALTHCHECK).
    Healthcheck,
    /// Serve the `mock` provider over HTTP, in both the OpenAI and the Anthropic format: a fake
    /// upstream for demos, tests and benchmarks.
    MockUpstream(MockUpstreamArgs),
    /// Manage virtual keys through the api-server (`FLOWGATE_API_URL`, admin key from
    /// `ADMIN_API_KEY` or the data directory).
    Keys(crate::admin_cli::KeysArgs),
    /// Manage tenants through the api-server.
    Tenants(crate::admin_cli::TenantsArgs),
    /// Bootstrap: migrate, create the `default` tenant and print a first virtual key (once).
    Init,
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The edge pre-filter (edge/): `sync` writes revoked key ids to its KV namespace.
    Edge(crate::edge_cli::EdgeArgs),
    /// Provider credentials sealed at rest: `rewrap` after a key-encryption key rotation.
    #[command(subcommand)]
    Credentials(crate::credentials_cli::CredentialsCommand),
}

/// `flowgate config ...`
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ConfigCommand {
    /// Load a config file (a Flowgate or LiteLLM proxy config) with this environment, print what
    /// it understood (models, deployments, limits, routing) and every ignored field; exit
    /// non-zero when it does not load.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
}

/// Options of `flowgate mock-upstream`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct MockUpstreamArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the chosen port is logged).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Milliseconds before the first byte of every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Milliseconds between streamed chunks.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
    /// Number of streamed content chunks (default: one per word).
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Fixed answer text (default: echoes the last user message).
    #[arg(long)]
    pub response: Option<String>,
}

/// The long-running modes and `migrate`, as named in `SERVICE_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `proxy`
    Proxy,
    /// `api-server`
    ApiServer,
    /// `compliance`
    Compliance,
    /// `policy` or `policy-perfect`
    Policy,
    /// `worker`
    Worker,
    /// `migrate`
    Migrate,
    /// `all`
    All,
    /// `http` (ScaiGrid's name): the HTTP-facing services, proxy and api-server, in one process.
    Http,
    /// `grpc` (ScaiGrid's name): the gRPC services, compliance and policy, in one process.
    Grpc,
}

/// Valid values of `SERVICE_TYPE`, for error messages.
pub const VALID_MODES: &str =
    "proxy, api-server, compliance, policy (alias policy-perfect), worker, migrate, all; ScaiGrid's http, grpc";

/// ScaiGrid's mode that has no counterpart here.
const BUNKER_PROXY: &str = "bunker_proxy";

impl Mode {
    /// Parses a `SERVICE_TYPE` value.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "proxy" => Ok(Self::Proxy),
            "api-server" | "api_server" => Ok(Self::ApiServer),
            "compliance" => Ok(Self::Compliance),
            "policy" | "policy-perfect" => Ok(Self::Policy),
            "worker" => Ok(Self::Worker),
            "migrate" => Ok(Self::Migrate),
            "all" => Ok(Self::All),
            "http" => Ok(Self::Http),
            "grpc" => Ok(Self::Grpc),
            BUNKER_PROXY => Err(format!(
                "mode `{BUNKER_PROXY}` is ScaiGrid's bunker proxy, which is not part of Flowgate; valid modes: {VALID_MODES}"
            )),
            other => Err(format!("unknown mode `{other}`; valid modes: {VALID_MODES}")),
        }
    }

    /// The name used in logs and `service.name`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::ApiServer => "api-server",
            Self::Compliance => "compliance",
            Self::Policy => "policy",
            Self::Worker => "worker",
            Self::Migrate => "migrate",
            Self::All => "all",
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// What the process will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a mode.
    Run(Mode),
    /// Probe the local service's `/health`.
    Healthcheck(Option<Mode>),
    /// Serve the mock provider over HTTP.
    MockUpstream(MockUpstreamArgs),
    /// A management command (`keys`, `tenants`, `init`, `edge`).
    Admin(Box<crate::admin_cli::AdminCommand>),
    /// `config check FILE`.
    ConfigCheck(PathBuf),
}

/// Picks the action from the command line, then `SERVICE_TYPE`, then `SCAIGRID_MODE` (values read
/// through `env` so tests need not touch the process environment).
pub fn resolve(cli: &Cli, env: impl Fn(&str) -> Option<String>) -> Result<Action, String> {
    let from_env = || -> Result<Option<Mode>, String> {
        for name in [ENV_SERVICE_TYPE, ENV_SCAIGRID_MODE] {
            if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
                return Mode::parse(&value).map(Some).map_err(|e| format!("{name}: {e}"));
            }
        }
        Ok(None)
    };
    let mode = match &cli.command {
        Some(Command::Proxy) => Mode::Proxy,
        Some(Command::ApiServer) => Mode::ApiServer,
        Some(Command::Compliance) => Mode::Compliance,
        Some(Command::Policy) => Mode::Policy,
        Some(Command::Worker) => Mode::Worker,
        Some(Command::Migrate) => Mode::Migrate,
        Some(Command::All) => Mode::All,
        Some(Command::Healthcheck) => return Ok(Action::Healthcheck(from_env()?)),
        Some(Command::MockUpstream(args)) => return Ok(Action::MockUpstream(args.clone())),
        Some(Command::Keys(args)) => return Ok(Action::Admin(Box::new(AdminCommand::Keys(args.clone())))),
        Some(Command::Tenants(args)) => return Ok(Action::Admin(Box::new(AdminCommand::Tenants(args.clone())))),
        Some(Command::Init) => return Ok(Action::Admin(Box::new(AdminCommand::Init))),
        Some(Command::Edge(args)) => return Ok(Action::Admin(Box::new(AdminCommand::Edge(args.clone())))),
        Some(Command::Credentials(command)) => {
            return Ok(Action::Admin(Box::new(AdminCommand::Credentials(command.clone()))));
        }
        Some(Command::Config(ConfigCommand::Check { file })) => return Ok(Action::ConfigCheck(file.clone())),
        None => from_env()?.ok_or_else(|| {
            format!("no mode given: pass one as the first argument or set SERVICE_TYPE; valid modes: {VALID_MODES}")
        })?,
    };
    Ok(Action::Run(mode))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn action(args: &[&str], env: &[(&str, &str)]) -> Result<Action, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("flowgate").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        resolve(&cli, |name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn argument_beats_env() {
        assert_eq!(action(&["proxy"], &[("SERVICE_TYPE", "all")]), Ok(Action::Run(Mode::Proxy)));
    }

    #[test]
    fn service_type_beats_scaigrid_mode() {
        assert_eq!(
            action(&[], &[("SERVICE_TYPE", "api-server"), ("SCAIGRID_MODE", "proxy")]),
            Ok(Action::Run(Mode::ApiServer))
        );
        assert_eq!(action(&[], &[("SCAIGRID_MODE", "policy-perfect")]), Ok(Action::Run(Mode::Policy)));
        assert_eq!(action(&["policy-perfect"], &[]), Ok(Action::Run(Mode::Policy)));
        assert_eq!(action(&[], &[("SCAIGRID_MODE", "worker")]), Ok(Action::Run(Mode::Worker)));
        assert_eq!(action(&["worker"], &[]), Ok(Action::Run(Mode::Worker)));
    }

    #[test]
    fn scaigrid_mode_names_run_the_services_they_name() {
        assert_eq!(action(&[], &[("SCAIGRID_MODE", "http")]), Ok(Action::Run(Mode::Http)));
        assert_eq!(action(&[], &[("SCAIGRID_MODE", "grpc")]), Ok(Action::Run(Mode::Grpc)));
        assert_eq!(action(&[], &[("SCAIGRID_MODE", "migrate")]), Ok(Action::Run(Mode::Migrate)));
        let error = action(&[], &[("SCAIGRID_MODE", "bunker_proxy")]).unwrap_err();
        assert!(error.starts_with("SCAIGRID_MODE: ") && error.contains("not part of Flowgate"), "{error}");
    }

    #[test]
    fn unknown_or_missing_mode_lists_valid_ones() {
        let error = action(&[], &[("SERVICE_TYPE", "gateway")]).unwrap_err();
        assert!(error.contains("gateway") && error.contains(VALID_MODES), "{error}");
        let error = action(&[], &[]).unwrap_err();
        assert!(error.contains(VALID_MODES), "{error}");
    }

    #[test]
    fn config_check_takes_a_file_whatever_the_mode_in_the_environment() {
        assert_eq!(
            action(&["config", "check", "litellm.yaml"], &[("SERVICE_TYPE", "proxy")]),
            Ok(Action::ConfigCheck(PathBuf::from("litellm.yaml")))
        );
        assert!(action(&["config", "check"], &[]).is_err(), "the file is required");
    }

    #[test]
    fn config_flag_is_global() {
        let cli = Cli::try_parse_from(["flowgate", "all", "--config", "x.yaml"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x.yaml")));
    }
}
