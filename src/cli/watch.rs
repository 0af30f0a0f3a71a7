//! `drbook watch DIR`: the policy daemon, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::Error;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
A policy is a .rhai file that defines any of these functions, each called with a context map
(ctx.time, ctx.sites[NAME].{mold, glue, down, failed_probes, mold_ms, glue_ms},
ctx.status[CLUSTER] — a MirrorStatus — and ctx.policy):

  fn on_tick(ctx)       every TICK
  fn on_site_down(ctx)  ctx.site: after DOWN_AFTER probes in a row where neither its Mold nor its Glue answered
  fn on_site_up(ctx)    ctx.site: when a site that was down answers again
  fn on_lag(ctx)        ctx.cluster, ctx.vm, ctx.lag, ctx.max_lag: a mirrored VM lags more than MAX_LAG
  fn on_alert(ctx)      ctx.alert: an Alertmanager webhook payload POSTed to /alerts

and may set, at its top:

  const TICK = \"30s\";      const DOWN_AFTER = 3;      const MAX_LAG = \"2h\";
  const AUTO = true;       // without it, destructive acts are not taken: the watcher logs and
                           // notifies what the policy would have done

A policy may call any primitive, run a shipped runbook (run(\"failover\", #{cluster: \"DR\"})),
and its mutations are journaled under --state-dir. Its top level runs before each call (keep it
to constants and imports; functions read the constants as global::NAME). Files are reloaded when they change; one
that does not compile is reported with its line and column and its last good version keeps
running. Example policies: examples/policies/.")]
pub struct WatchArgs {
    /// The directory of policy files (.rhai), watched recursively
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Serve GET /metrics (Prometheus text format) and POST /alerts (Alertmanager webhook)
    /// on this address, e.g. 127.0.0.1:9899
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// How often every site and every DR cluster's mirroring is probed
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub probe_every: std::time::Duration,

    /// The longest one policy call may take before it is stopped
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
    pub call_timeout: std::time::Duration,

    #[command(flatten)]
    pub state: super::StateDir,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(text).map_err(|e| e.to_string())
}

pub async fn run(config: Config, args: &WatchArgs) -> Result<ExitCode, Error> {
    let options = crate::watch::Options {
        dir: args.dir.clone(),
        listen: args.listen,
        probe_every: args.probe_every,
        timeout: args.call_timeout,
        state_dir: args.state.resolve(&config),
        locks: args.state.locks(&config)?,
    };
    crate::watch::run(config, options, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd's stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
