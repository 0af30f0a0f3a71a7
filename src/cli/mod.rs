//! The command line: argument definitions (clap), logging set-up, dispatch, exit codes.
//! One file per subcommand.

mod check;
mod completions;
mod demo;
mod doc;
mod man;
mod output;
mod repl;
mod report;
mod run;
mod runs;
mod sim;
mod sites;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::Error;
pub use output::OutputFormat;

/// Disaster-recovery runbooks for ABLESTACK HCI.
///
/// drbook drives the DR acts of two ABLESTACK sites (Mold for VMs, Glue/Ceph for mirrored
/// storage) — promote, demote, resync, start mirrored VMs — from scripts, so a failover or a
/// failback is one reviewed command instead of a hundred clicks.
#[derive(Debug, Parser)]
#[command(name = "drbook", version, max_term_width = 100)]
#[command(after_help = "Configuration: drbook.toml (see README.md). Start with `drbook sites`.")]
pub struct Cli {
    /// Configuration file [default: ./drbook.toml, then $XDG_CONFIG_HOME/drbook/config.toml]
    #[arg(short, long, global = true, value_name = "PATH", env = "DRBOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// More log output on stderr: -v info, -vv debug, -vvv trace (or set DRBOOK_LOG)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How results are printed
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the configured sites and check each one's Mold and Glue endpoints
    ///
    /// For every site: a signed listCapabilities call (proving the URL, the keys and the
    /// signature algorithm), whether Mold's DR service is enabled, the storage VMs Mold knows
    /// (listScvmIpAddress), and each configured Glue endpoint's Ceph health, with latencies.
    /// Exits 0 when everything answers and is usable, 1 otherwise.
    Sites(sites::SitesArgs),

    /// Run a runbook (a Rhai script) against the configured sites
    ///
    /// Reads run at once; every mutation is journaled under <state dir>/runs/<run id>/, where the
    /// run's report is saved as JSON, text and HTML (`drbook runs`, `drbook report`); destructive
    /// acts need a yes. --plan lists what would change without changing it; --resume RUN
    /// continues an interrupted run without repeating what it finished. Exit codes: 0 done,
    /// 1 runbook failure, 2 usage/config/parse error, 3 confirmation refused, 130 interrupted
    /// (Ctrl-C), 143 stopped by SIGTERM. A first Ctrl-C or SIGTERM cancels the current wait
    /// and stops the run once the act under way (if any) is answered and journaled; a second
    /// aborts. A failed run that made progress prints the command that resumes it.
    ///
    /// Shipped runbooks run by name: status, failover, failback, switchover, drill,
    /// test-failover, decommission, setup. Their --var values are checked before anything is done. What
    /// drbook could not read is unknown, never a default: a runbook stops before acting on it,
    /// and `drbook run status` shows it and exits 1 (its answer is incomplete).
    Run(run::RunArgs),

    /// The incident REPL: look, then act one step at a time, over the runbooks' primitives
    ///
    /// An interactive Rhai session against the configured sites. Variables, functions and
    /// `import "dr" as dr;` stay for the session; `:load FILE` runs a script into it. Tab
    /// completes function names, `:commands`, and inside quotes site, DR cluster and VM names
    /// (read live); the hint shows the signature of the call being typed. An open { ( or [
    /// or an unfinished expression (`let x = 40 +`) continues on the next line; a blank line
    /// abandons it. The prompt shows each site's role and health.
    ///
    /// Every destructive call asks y/N first (there is no --yes here); every mutation is
    /// journaled under <state dir>/runs/<session>/ like a run; `:plan on` lists mutations instead
    /// of sending them. Ctrl-C cancels the running wait (again: the command) and the session
    /// goes on; Ctrl-C at the prompt clears the line; Ctrl-D leaves. History is kept in
    /// $XDG_STATE_HOME/drbook/history (~/.local/state/drbook/history). `:help` inside.
    #[command(after_long_help = REPL_EXAMPLE)]
    Repl(repl::ReplArgs),

    /// List past runs: when, which runbook, which DR cluster, how each ended, its RTO
    ///
    /// Every run's journal and report live under <state dir>/runs/<run id>/. A run killed
    /// before its end shows as "not ended": `drbook run --resume RUN` finishes it.
    Runs(runs::RunsArgs),

    /// Show one past run's report: the dated record of a failover or a DR test
    ///
    /// The runbook's result (per-VM RTO and RPO, what a DR test left or proved gone), its
    /// steps and actions with their times, and its errors. --html prints the self-contained
    /// page saved as report.html (a timeline of the steps and of each VM's start job; opens
    /// without a network), --json the saved record itself.
    Report(report::ReportArgs),

    /// Check scripts without running them: parse errors with positions, unknown functions
    Check(check::CheckArgs),

    /// Print the shell completion script: source <(drbook completions bash)
    ///
    /// The script calls drbook back while completing, so runbook names (shipped ones and the
    /// .rhai files here) and run ids (for --resume and drbook report) are read live. For
    /// bash: add `source <(drbook completions bash)` to ~/.bashrc; zsh, fish, elvish and
    /// powershell likewise.
    Completions(completions::CompletionsArgs),

    /// Write the man pages (drbook.1 and drbook-COMMAND.1) into a directory
    Man(man::ManArgs),

    /// Print the script reference (Markdown), or write editor definitions with --definitions
    Doc(doc::DocArgs),

    /// Run two simulated ABLESTACK sites on loopback (Mold + Glue APIs, Ceph mirroring)
    ///
    /// The default pair: site-a (protected) and site-b (DR), DR cluster "DR", ten mirrored
    /// VMs running on site-a and synced. Use --write-config to get a drbook.toml for it.
    Sim(sim::SimArgs),

    /// Watch a disaster and a recovery happen, end to end, in under a minute — start here
    ///
    /// Starts two simulated sites in-process, writes data on the protected one, declares a
    /// disaster, runs the shipped failover runbook, works on the DR site, repairs the
    /// protected site, runs the shipped failback runbook, and shows from the data ledger
    /// that no write made on the DR site was lost.
    Demo(demo::DemoArgs),

    /// Run site policies continuously: probe the sites, call the policies, reload them on change
    ///
    /// Every .rhai file under DIR is a policy. One probe loop checks each site's Mold and Glue
    /// and each DR cluster's mirroring; policies are called on their ticks, when a site goes
    /// down or comes back, when a VM lags too much, and for Alertmanager alerts. With
    /// --listen, Prometheus can scrape /metrics.
    Watch(watch::WatchArgs),
}

const REPL_EXAMPLE: &str = "\
Example — one VM moved to the DR site by hand, against `drbook sim --write-config /tmp/dr.toml`:
  drbook -c /tmp/dr.toml repl
  > mirror_status(\"DR\")                 every volume on both sites: synced? lag?
  > stop_vm(\"site-a\", \"dr-w<Tab>        VM names complete, read live
  > demote_vm(\"DR\", \"dr-win-1\")         its images become primary on the DR site
  > start_mirror_vm(\"DR\", \"dr-win-1\")   the mirrored VM runs on site-b
  > promote(\"DR\")                       a whole-cluster failover asks:
                                        Promote DR cluster \"DR\" on site-b? [y/N]
  > :journal                            what this session did; Ctrl-D leaves";

/// `--state-dir`, shared by every mode that journals (run, repl, watch): defined once.
#[derive(Debug, Clone, clap::Args)]
pub struct StateDir {
    /// Where journals and reports live [default: [defaults] state_dir of drbook.toml, else
    /// /var/lib/drbook as root, else $XDG_STATE_HOME/drbook, i.e. ~/.local/state/drbook].
    /// An existing .drbook/ can be named. DR cluster locks are per machine whatever this is:
    /// DRBOOK_LOCK_DIR, else [defaults] lock_dir, else /run/lock/drbook
    #[arg(long = "state-dir", value_name = "DIR", env = "DRBOOK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDir {
    /// The state directory this invocation uses.
    pub fn resolve(&self, config: &Config) -> PathBuf {
        crate::paths::state_dir(self.state_dir.as_deref(), &config.defaults)
    }

    /// The DR cluster locks this invocation takes: in etcd with `[coordination]`, shared by
    /// every operator; else per machine. Called on the shared runtime.
    pub fn locks(
        &self,
        config: &Config,
    ) -> Result<std::sync::Arc<dyn crate::script::lock::Locks>, Error> {
        if let Some(settings) = &config.coordination {
            let locks = crate::script::lock_etcd::EtcdLocks::new(
                settings.clone(),
                tokio::runtime::Handle::current(),
            )
            .map_err(|e| Error::Usage(format!("{}: [coordination]: {e}", config.path.display())))?;
            return Ok(std::sync::Arc::new(locks));
        }
        let dir = crate::paths::lock_dir(&config.defaults, &self.resolve(config));
        Ok(std::sync::Arc::new(crate::script::lock::MachineLocks::new(
            dir,
        )))
    }
}

/// `--stdlib`, shared by the modes that run scripts interactively or once.
#[derive(Debug, Clone, clap::Args)]
pub struct StdlibDir {
    /// Load `import`ed standard modules from this directory instead of the built-in ones
    #[arg(long, value_name = "DIR", env = "DRBOOK_STDLIB")]
    pub stdlib: Option<PathBuf>,
}

/// Runs drbook with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // A shell asking for completions is answered before anything else is printed.
    completions::answer_if_asked();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The simulator is a server: what happens to it (disasters, faults) is its output.
    // Not its storage VMs' `drbook sim exec`, whose stderr is an SSH command's.
    let baseline = u8::from(matches!(&cli.command, Command::Sim(a) if a.command.is_none()));
    // `drbook sim` reads --config as its sim.toml, but only when given on the command line:
    // a DRBOOK_CONFIG meant for drbook.toml must not be read as a simulation.
    let config_from_flag =
        matches.value_source("config") == Some(clap::parser::ValueSource::CommandLine);
    init_logging(cli.verbose.max(baseline));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config_from_flag)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli, config_from_flag: bool) -> Result<ExitCode, Error> {
    match &cli.command {
        Command::Sites(args) => {
            let config = load_config(&cli)?;
            sites::run(&config, args, cli.output).await
        }
        Command::Run(args) => {
            let config = load_config(&cli)?;
            run::run(&config, args, cli.output, cli.config.as_deref()).await
        }
        Command::Watch(args) => {
            let config = load_config(&cli)?;
            watch::run(config, args).await
        }
        Command::Repl(args) => {
            let config = load_config(&cli)?;
            repl::run(&config, args).await
        }
        Command::Runs(args) => runs::run(args, cli.output, || load_config(&cli)),
        Command::Report(args) => report::run(args, cli.output, || load_config(&cli)),
        Command::Check(args) => check::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Doc(args) => doc::run(args),
        Command::Sim(args) => {
            let sim_file = cli.config.as_deref().filter(|_| config_from_flag);
            sim::run(sim_file, args).await
        }
        Command::Demo(args) => demo::run(args).await,
    }
}

/// Loads the configuration and shows its warnings once.
fn load_config(cli: &Cli) -> Result<Config, Error> {
    let config = Config::discover(cli.config.as_deref())?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "drbook=info",
        2 => "drbook=debug",
        _ => "drbook=trace",
    };
    let mut filter = std::env::var("DRBOOK_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // The HTTP stack's own debug output can show request lines, and Mold's carry the API
    // key in the query string: keep it quiet whatever DRBOOK_LOG asks for.
    for quiet in [
        "reqwest=warn",
        "hyper=warn",
        "hyper_util=warn",
        "rustls=warn",
    ] {
        filter = filter.add_directive(quiet.parse().expect("valid directive"));
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// An engine with every primitive registered but no site behind it: for `check` and `doc`.
fn offline_engine(script: &std::path::Path) -> Result<rhai::Engine, Error> {
    Ok(crate::script::engine::offline(
        script,
        tokio::runtime::Handle::current(),
    )?)
}
