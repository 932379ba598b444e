//! The `ferrocable` binary: configuration, logging, signals.

use anyhow::Context;
use ferrocable::config::{LoadError, Loaded, LogFormat};
use ferrocable::server::{App, Server};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGTERM and SIGINT, caught from the moment [`Signals::install`] runs: installed
/// before the server says it is listening, so a signal sent as soon as it is up (a
/// test, a supervisor) is never left to its default action, which would kill the
/// process without a drain. A signal that arrives earlier is kept and handled once
/// the server runs.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => {
                    tracing::error!("cannot install signal handlers; stop with SIGKILL");
                    None
                }
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on the next SIGTERM or SIGINT.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let Some((term, int)) = self.streams.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loaded = match Loaded::from_env() {
        Ok(l) => l,
        // --help, --version and bad syntax: clap prints and picks the exit code.
        Err(LoadError::Usage(e)) => e.exit(),
        Err(e) => return Err(anyhow::Error::new(e).context("invalid configuration")),
    };
    if loaded.config.print_config {
        print!("{}", loaded.render());
        loaded
            .config
            .check()
            .context("invalid configuration (printed above)")?;
        return Ok(());
    }
    let raw = loaded.config;
    init_logging(raw.log_format);
    if let Some(path) = &raw.config {
        tracing::info!(file = %path.display(), "configuration file read");
    }
    if let Some(root) = &raw.rails_root {
        tracing::info!(root = %root.display(), rails_env = %raw.rails_env, "Rails app settings read");
    }
    let cfg = raw.check().context("invalid configuration")?;
    let mut signals = Signals::install();
    let app = App::from_config(&cfg).await.context("cannot start")?;
    let mode = app.mode();
    let server = Server::bind(&cfg, app).await.context("cannot start")?;
    let addr = server
        .local_addr()
        .context("cannot read the bound address")?;
    // The one line on stdout, for scripts and tests that start us on port 0.
    println!("ferrocable listening on http://{addr}{}", cfg.http.path);
    tracing::info!(%addr, path = %cfg.http.path, mode, "listening");

    let shutdown = CancellationToken::new();
    let run = tokio::spawn(server.run(shutdown.clone()));
    let sig = signals.next().await;
    tracing::info!(
        signal = sig,
        grace_secs = cfg.shutdown.timeout.as_secs_f64(),
        "shutting down"
    );
    shutdown.cancel();
    // A second signal forces the exit.
    tokio::select! {
        _ = run => {}
        sig = signals.next() => {
            tracing::warn!(signal = sig, "second signal, exiting now");
        }
    }
    Ok(())
}
