//! `drbook sim`: two simulated ABLESTACK sites on loopback, until Ctrl-C; and `drbook sim
//! exec`, hidden, which the simulated storage VMs' sshd runs for each command.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::Error;
use crate::mold::SignatureAlgorithm;
use crate::sim::config::SshServe;
use crate::sim::{Sim, SimConfig};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The global --config names a simulation file (sim.toml) here, not a drbook.toml:

  cluster = \"DR\"                  # the DR cluster paired at start (\"\" for none)
  vms = 4                         # or [[vm]] tables: name, datadisks, mirrored, running,
                                  #   tags = { tier = \"db\" } (on the mirrored VM too),
                                  #   home = \"busan\" (where it runs; the protected site by
                                  #   default: VMs at home on both sites are Active-Active)
  [[sites]]                       # exactly two: protected first, then DR
  name = \"seoul\"
  glue_endpoints = 2
  [[sites]]
  name = \"busan\"
  [timing]
  preset = \"fast\"                 # fast | demo (default) | realistic
  job = \"50ms\"                    # also dr_job, dr_vm_command, snapshot_interval, bandwidth, …

When ready it prints one JSON line with every endpoint, then logs to stderr.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimArgs {
    /// How many VMs the protected site runs (dr-centos-N, dr-win-N), all mirrored and synced
    #[arg(long, value_name = "N")]
    pub vms: Option<usize>,

    /// Active-Active: the dr-win-N VMs run at home on the DR site, protected towards the
    /// protected site over the same pairing (the dr-centos-N stay on the protected site)
    #[arg(long)]
    pub active_active: bool,

    /// The signature algorithm both simulated Molds verify
    #[arg(long, value_name = "ALGORITHM", value_parser = ["sha256", "sha1"])]
    pub signature: Option<String>,

    /// Durations: fast (tests), demo (default), realistic
    #[arg(long, value_name = "PRESET", value_parser = ["fast", "demo", "realistic"])]
    pub timing: Option<String>,

    /// Also write a drbook.toml pointing at this simulator (keys included; Glue's
    /// certificate and each site's storage-VM private key written beside it, the key as
    /// that site's ssh_key_file, and with SSH the storage VMs' host keys as ssh_known_hosts)
    #[arg(long, value_name = "PATH")]
    pub write_config: Option<PathBuf>,

    /// The address every server listens on (ports are ephemeral)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub listen: IpAddr,

    /// Serve Glue over plain HTTP instead of HTTPS
    #[arg(long)]
    pub plain_glue: bool,

    /// Do not serve SSH on the storage VMs. By default each site runs a real OpenSSH
    /// server (/usr/sbin/sshd, from openssh-server) on its storage VMs' addresses, taking
    /// the site's storage-VM key, so ssh() runs rbd and ceph commands against the simulated
    /// storage
    #[arg(long)]
    pub no_ssh: bool,

    /// What holds the RBD images: the in-process model of Ceph's mirroring (fast,
    /// deterministic), or two real single-node Ceph clusters with rbd-mirror on loopback
    /// (needs Debian's ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common; ~40 s to come up,
    /// ~1.2 GiB of memory)
    #[arg(long, value_name = "BACKEND", value_parser = ["model", "ceph"], default_value = "model")]
    pub storage: String,

    /// Where --storage ceph keeps its clusters: data, logs, PID files [default:
    /// .drbook/sim-ceph]. What an earlier run left there is cleared at start, its daemons
    /// stopped; any other non-empty directory is refused
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<SimCommand>,
}

/// `drbook sim`'s hidden subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// What a simulated storage VM's sshd runs for every command (its ForceCommand): the
    /// command in SSH_ORIGINAL_COMMAND, answered by the simulator's control API
    #[command(hide = true)]
    Exec(ExecArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The simulator's control API
    #[arg(long, value_name = "URL")]
    pub control: String,

    /// The site whose storage VM this is
    #[arg(long, value_name = "NAME")]
    pub site: String,
}

/// Builds the simulation's configuration from the file (if any) and the flags.
pub fn config(sim_file: Option<&Path>, args: &SimArgs) -> Result<SimConfig, Error> {
    let mut config = match sim_file {
        Some(path) => SimConfig::load(path).map_err(Error::Usage)?,
        None => SimConfig::default(),
    };
    if let Some(n) = args.vms {
        config = config.with_vms(n);
    }
    if args.active_active {
        config = config.active_active();
    }
    if let Some(s) = &args.signature {
        let algorithm: SignatureAlgorithm = s.parse().map_err(Error::Usage)?;
        config = config.with_signature(algorithm);
    }
    if let Some(t) = &args.timing {
        config.timing = match t.as_str() {
            "fast" => crate::sim::config::SimTiming::fast(),
            "realistic" => crate::sim::config::SimTiming::realistic(),
            _ => crate::sim::config::SimTiming::demo(),
        };
    }
    config.listen = args.listen;
    match (args.storage.as_str(), &args.workdir) {
        ("ceph", workdir) => {
            config.storage = crate::sim::config::StorageBackend::Ceph {
                workdir: workdir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(".drbook/sim-ceph")),
            };
        }
        (_, Some(_)) => {
            return Err(Error::Usage(
                "--workdir is where --storage ceph keeps its clusters; add --storage ceph".into(),
            ));
        }
        _ => {}
    }
    if args.plain_glue {
        config.glue_tls = false;
    }
    Ok(config)
}

pub async fn run(sim_file: Option<&Path>, args: &SimArgs) -> Result<ExitCode, Error> {
    if let Some(SimCommand::Exec(exec)) = &args.command {
        return Ok(crate::sim::ssh::exec::run(&exec.control, &exec.site).await);
    }
    let mut config = config(sim_file, args)?;
    if !args.no_ssh {
        if Path::new(SshServe::SSHD).exists() {
            let drbook = std::env::current_exe().map_err(|e| {
                Error::Failed(format!(
                    "cannot find this drbook binary, which the storage VMs' sshd runs: {e} (--no-ssh starts without SSH)"
                ))
            })?;
            config.ssh = Some(SshServe::new(drbook));
        } else {
            eprintln!(
                "drbook sim: SSH to the storage VMs is off: {} is not installed (apt-get install openssh-server to get it; --no-ssh says this is meant)",
                SshServe::SSHD
            );
        }
    }
    let ssh = config.ssh.is_some();
    let sim = Sim::start(config).await.map_err(|e| {
        Error::Failed(if ssh {
            format!("{e} (--no-ssh starts without SSH)")
        } else {
            e.to_string()
        })
    })?;
    if let Some(path) = &args.write_config {
        sim.write_config(path)
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let stop = StopSignals::listen();
    crate::term::line(&sim.ready_line());
    if let Some(path) = &args.write_config {
        eprintln!(
            "drbook sim: ready; wrote {} — try `drbook -c {} sites`",
            path.display(),
            path.display()
        );
    } else {
        eprintln!("drbook sim: ready (Ctrl-C stops it)");
    }
    stop.wait().await;
    eprintln!("drbook sim: stopping");
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C and SIGTERM, listened for from before the ready line: a stop sent as soon as the
/// line is read must not find the default action (death, the storage VMs' sshd and real
/// Ceph's daemons left to their watchdogs and the next start).
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
                match signal {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            if self.interrupt.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                () = recv(self.interrupt.as_mut()) => {}
                () = recv(self.terminate.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
