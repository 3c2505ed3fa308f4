//! The `flowgate` binary's library: command-line parsing, settings, telemetry, and dispatch to the
//! service crates by mode. The only crate that uses `anyhow`.

pub mod admin_cli;
pub mod cli;
pub mod credentials_cli;
mod dispatch;
pub mod edge_cli;
mod secrets;

pub use dispatch::{AllAddrs, AllInOne};

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use flowgate_common::settings::{LogFormat, Sources};

/// Entry point: parse, load settings, start telemetry, run the mode, exit with its status.
pub fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let code = match error.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 2,
            };
            let _ = error.print();
            if matches!(error.kind(), ErrorKind::InvalidSubcommand | ErrorKind::UnknownArgument) {
                report(&format!("valid modes: {}", cli::VALID_MODES));
            }
            return ExitCode::from(code);
        }
    };
    let action = match cli::resolve(&cli, |name| std::env::var(name).ok()) {
        Ok(action) => action,
        Err(message) => {
            report(&message);
            return ExitCode::from(2);
        }
    };
    if let cli::Action::ConfigCheck(file) = &action {
        return config_check(file);
    }
    let settings = match flowgate_common::Settings::load(&Sources::from_process(cli.config.clone())) {
        Ok(settings) => settings,
        Err(error) => {
            report(&format!("configuration error: {error}"));
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            report(&format!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let mode = match action {
        cli::Action::Run(mode) => mode,
        cli::Action::Healthcheck(mode) => return runtime.block_on(dispatch::healthcheck(&settings, mode)),
        cli::Action::MockUpstream(args) => return runtime.block_on(dispatch::mock_upstream(args)),
        cli::Action::ConfigCheck(file) => return config_check(&file),
        cli::Action::Admin(command) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            return runtime.block_on(admin_cli::run(*command, settings));
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async move {
        let telemetry = flowgate_telemetry::Config {
            log_level: settings.telemetry.log_level.clone(),
            json: settings.telemetry.log_format == LogFormat::Json,
            otlp_endpoint: settings.telemetry.otlp_endpoint.clone(),
            sample_ratio: settings.telemetry.trace_sample_ratio,
            service_name: format!("flowgate-{}", mode.name()),
        };
        let guard = match flowgate_telemetry::init(&telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                report(&format!("configuration error: {error}"));
                return ExitCode::from(78);
            }
        };
        let code = match dispatch::run(mode, settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "flowgate stopped with an error");
                ExitCode::FAILURE
            }
        };
        guard.shutdown();
        code
    })
}

/// `flowgate config check FILE`: loads `file` with the process environment and prints what it
/// understood; exit 0 when it loads, 78 (EX_CONFIG) when it does not.
fn config_check(file: &std::path::Path) -> ExitCode {
    match flowgate_common::Settings::load(&Sources::from_process(Some(file.to_path_buf()))) {
        Ok(settings) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}: loads", file.display());
            let _ = write!(stdout, "{}", settings.describe());
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(&format!("{}: configuration error: {error}", file.display()));
            ExitCode::from(78)
        }
    }
}

/// Prints a message for the operator before logging is set up.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr(), "flowgate: {message}");
}
