//! The service bootstrap both binaries share: logs, the command line, the configuration, the
//! open-file limit, the listeners (API and operations), and a graceful stop on Ctrl-C or
//! SIGTERM. A service's `main` is one call.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::ServiceConfig;
use crate::server::{open_files, ConnectionLimits, Listeners};

/// Completes when the service should stop: it then finishes in-flight requests and exits.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A deployable service: its name, its configuration, and how it serves on a listener.
pub trait Service {
    type Config: ServiceConfig;
    /// The binary's name, for usage messages.
    const NAME: &'static str;

    fn serve(
        config: Self::Config,
        listeners: Listeners,
        shutdown: Shutdown,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole of a service binary's `main`: `NAME [--config FILE]`.
pub fn main<S: Service>() -> anyhow::Result<()> {
    init_tracing();
    let file = config_file_from_args(S::NAME, std::env::args().skip(1))?;
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(serve_from_file::<S>(file.as_deref()))
}

/// Loads the configuration (defaults < `file` < environment), raises the open-file limit,
/// binds the API and operations addresses and serves until Ctrl-C or SIGTERM. devcluster runs
/// its children through this too.
pub async fn serve_from_file<S: Service>(file: Option<&Path>) -> anyhow::Result<()> {
    let config = S::Config::load(file)?;
    raise_open_file_limit(config.connections());
    let listeners = Listeners::bind(config.listen(), config.ops_listen()).await?;
    S::serve(config, listeners, Box::pin(stop_requested())).await
}

/// Raises the open-file limit as far as allowed (`open_files::raise`) and says what it is,
/// warning when the connection caps leave too little room for everything else a service opens.
fn raise_open_file_limit(limits: &ConnectionLimits) {
    let connections = limits.max + limits.max_ops;
    match open_files::raise(limits.max_open_files) {
        Ok((soft, hard)) => {
            tracing::info!(soft, hard, "open-file limit");
            // Upstream, database and log files need descriptors beside the clients'.
            if (connections as libc::rlim_t).saturating_add(256) > soft {
                tracing::warn!(
                    soft,
                    connections,
                    "the connection caps are near the open-file limit; lower connections.max"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "could not read or raise the open-file limit"),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (a test that already set a subscriber) keeps the first.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn stop_requested() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// `[--config FILE]`, nothing else.
fn config_file_from_args(
    name: &str,
    mut args: impl Iterator<Item = String>,
) -> anyhow::Result<Option<PathBuf>> {
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--config"), Some(file), None) => Ok(Some(file.into())),
        _ => anyhow::bail!("usage: {name} [--config FILE]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_command_line_takes_only_a_config_file() {
        assert_eq!(config_file_from_args("svc", args(&[])).unwrap(), None);
        assert_eq!(
            config_file_from_args("svc", args(&["--config", "a.toml"])).unwrap(),
            Some(PathBuf::from("a.toml"))
        );
        for bad in [&["--config"][..], &["a.toml"], &["--config", "a", "b"]] {
            let error = config_file_from_args("svc", args(bad)).unwrap_err();
            assert_eq!(error.to_string(), "usage: svc [--config FILE]");
        }
    }
}
