//! One real single-node Ceph cluster (mon, mgr, one bluestore OSD on a sparse file, and
//! rbd-mirror) under its own directory, on its own loopback ports: the recipe of the Glue
//! spec §6.6.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::process::{self, Daemon, Output};

/// How long one rbd/ceph command may run. A forced promote with the peer dead takes 5–9 s
/// (§6.6); a command against a dead cluster hangs, and is killed here.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(45);

/// The daemons of one site, in start order.
const DAEMONS: [&str; 4] = ["mon", "mgr", "osd", "rbd-mirror"];

/// One site's cluster.
#[derive(Debug)]
pub struct CephSite {
    /// The simulated site's name (`site-a`).
    pub name: String,
    /// The mirroring site name Glue gives it (`local` where setup ran, `remote` on the peer).
    pub glue_name: String,
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<Daemon>,
}

impl CephSite {
    /// Creates the cluster's files under `dir` (which must not exist yet) and starts its
    /// daemons; returns once pool `rbd` exists with image-mode mirroring.
    pub fn create(dir: &Path, name: &str, glue_name: &str) -> Result<Self, String> {
        for sub in ["run", "log", "mon", "mgr", "osd", "pids"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
        }
        let (v2, v1) = (free_port()?, free_port()?);
        let mon_addr = format!("[v2:127.0.0.1:{v2},v1:127.0.0.1:{v1}]");
        let conf = dir.join("ceph.conf");
        std::fs::write(&conf, conf_text(dir, &mon_addr))
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut site = Self {
            name: name.to_string(),
            glue_name: glue_name.to_string(),
            dir: dir.to_path_buf(),
            conf,
            daemons: Vec::new(),
        };
        let fsid = uuid();
        let monmap = dir.join("monmap");
        site.setup_step(
            "monmaptool",
            &[
                "--create",
                "--fsid",
                &fsid,
                "--addv",
                "a",
                &mon_addr,
                path_str(&monmap)?,
            ],
        )?;
        site.setup_step(
            "ceph-mon",
            &["--mkfs", "-i", "a", "--monmap", path_str(&monmap)?],
        )?;
        site.start("mon")?;
        site.start("mgr")?;
        site.wait_for("the monitor to answer", Duration::from_secs(60), |s| {
            s.ceph(&["mon", "stat"], Duration::from_secs(5))
                .is_ok_and(|o| o.ok())
        })?;
        let osd_uuid = uuid();
        site.setup_step("ceph", &["osd", "new", &osd_uuid])?;
        site.setup_step("ceph-osd", &["-i", "0", "--mkfs", "--osd-uuid", &osd_uuid])?;
        site.start("osd")?;
        site.wait_for("the OSD to come up", Duration::from_secs(90), Self::osd_up)?;
        site.setup_step("ceph", &["osd", "pool", "create", "rbd", "8", "8"])?;
        site.setup_step("rbd", &["pool", "init", "rbd"])?;
        site.setup_step(
            "rbd",
            &[
                "mirror",
                "pool",
                "enable",
                "--site-name",
                glue_name,
                "rbd",
                "image",
            ],
        )?;
        Ok(site)
    }

    /// Starts one of the site's daemons (`mon`, `mgr`, `osd`, `rbd-mirror`) in the foreground
    /// of a child process, tracked by PID.
    pub fn start(&mut self, daemon: &str) -> Result<(), String> {
        let conf = path_str(&self.conf)?.to_string();
        let mut command = match daemon {
            "mon" => tool("ceph-mon", &conf, &["-f", "-i", "a"]),
            "mgr" => tool("ceph-mgr", &conf, &["-f", "-i", "x"]),
            "osd" => tool("ceph-osd", &conf, &["-f", "-i", "0"]),
            "rbd-mirror" => {
                let mut c = tool(
                    "rbd-mirror",
                    &conf,
                    &[
                        "-f",
                        "--id",
                        "mirror",
                        // The fast intervals of Ceph's own mirroring tests (§5.6).
                        "--rbd_mirror_pool_replayers_refresh_interval=5",
                        "--rbd_mirror_image_state_check_interval=5",
                        "--rbd_mirror_delete_retry_interval=5",
                    ],
                );
                // rbd-mirror opens the peer's cluster from the default configuration with the
                // peer's mon_host and key on top: it must find this site's file there.
                c.env("CEPH_CONF", &conf);
                c
            }
            other => return Err(format!("no Ceph daemon {other:?}")),
        };
        command.env_remove("CEPH_ARGS");
        let daemon = Daemon::spawn(
            daemon,
            command,
            &self.dir.join("log").join(format!("{daemon}.out")),
            &self.dir.join("pids").join(format!("{daemon}.pid")),
        )
        .map_err(|e| format!("cannot start {daemon} on {}: {e}", self.name))?;
        self.daemons.push(daemon);
        Ok(())
    }

    /// Whether the monitor answers and counts the site's one OSD up.
    pub fn osd_up(&self) -> bool {
        self.ceph(&["osd", "stat", "--format", "json"], Duration::from_secs(5))
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v.get("num_up_osds").and_then(serde_json::Value::as_u64))
            == Some(1)
    }

    /// Starts every daemon that is not running (a recovery over the same data).
    pub fn start_all(&mut self) -> Result<(), String> {
        for daemon in DAEMONS {
            if !self.is_running(daemon) {
                self.start(daemon)?;
            }
        }
        Ok(())
    }

    /// Kills one daemon (SIGKILL); `false` if it was not running.
    pub fn kill(&mut self, daemon: &str) -> bool {
        let Some(ix) = self.daemons.iter().position(|d| d.name == daemon) else {
            return false;
        };
        self.daemons.remove(ix).kill();
        true
    }

    /// Kills every daemon of the site, the way a power loss stops them.
    pub fn kill_all(&mut self) {
        for daemon in self.daemons.drain(..).rev() {
            daemon.kill();
        }
    }

    pub fn is_running(&mut self, daemon: &str) -> bool {
        self.daemons
            .iter_mut()
            .any(|d| d.name == daemon && d.running())
    }

    /// Daemon name → PID, for `/state`.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.daemons
            .iter()
            .map(|d| (d.name.clone(), d.pid()))
            .collect()
    }

    /// Runs `rbd <args>` against this cluster.
    pub fn rbd(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Output, String> {
        self.run("rbd", args, stdin, COMMAND_DEADLINE)
    }

    /// Runs `ceph <args>` against this cluster.
    pub fn ceph(&self, args: &[&str], deadline: Duration) -> Result<Output, String> {
        self.run("ceph", args, None, deadline)
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<Output, String> {
        let mut command = if program == "monmaptool" {
            let mut c = Command::new(program);
            c.args(args);
            c
        } else {
            tool(program, path_str(&self.conf)?, args)
        };
        // A client gives up on an unreachable monitor well before the deadline kills it.
        command.env("CEPH_ARGS", "--client_mount_timeout=15");
        process::run(command, stdin, deadline).map_err(|e| missing_hint(program, &e))
    }

    /// One bring-up command that must succeed.
    fn setup_step(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self.run(program, args, None, Duration::from_secs(120))?;
        if out.ok() {
            Ok(())
        } else {
            Err(format!(
                "{program} {} failed on {} ({}): {}",
                args.join(" "),
                self.name,
                out.status
                    .map_or_else(|| "timed out".to_string(), |s| format!("exit status {s}")),
                out.stderr.trim()
            ))
        }
    }

    /// Polls `ready` until it holds; says what did not happen, and where to look.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Self) -> bool,
    ) -> Result<(), String> {
        let until = Instant::now() + limit;
        loop {
            if ready(self) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!(
                    "{}: gave up waiting for {what} after {}s (logs in {})",
                    self.name,
                    limit.as_secs(),
                    self.dir.join("log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for CephSite {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A Ceph program with this site's configuration file.
fn tool(program: &str, conf: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.arg("-c").arg(conf).args(args);
    command
}

/// The Debian packages that carry the programs the real backend runs.
pub const PACKAGES: &str = "ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common";

/// Every program the backend starts must be installed; says which package set to install.
pub fn check_installed() -> Result<(), String> {
    let programs = [
        "ceph-mon",
        "ceph-mgr",
        "ceph-osd",
        "rbd-mirror",
        "rbd",
        "ceph",
        "monmaptool",
    ];
    let missing: Vec<&str> = programs.into_iter().filter(|p| !on_path(p)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--storage ceph needs Ceph's programs, and {} not found on PATH; install them with `apt-get install {PACKAGES}` (Debian 12 ships Ceph 16.2.15)",
            if missing.len() == 1 {
                format!("{} was", missing[0])
            } else {
                format!("{} were", missing.join(", "))
            }
        ))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn missing_hint(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("{program} is not installed: apt-get install {PACKAGES}")
    } else {
        format!("cannot run {program}: {e}")
    }
}

/// The site's `ceph.conf`. No `fsid` line: rbd-mirror reads this file for the peer's
/// connection too (with the peer's mon_host on top), and a local fsid would not match it.
fn conf_text(dir: &Path, mon_addr: &str) -> String {
    let d = dir.display();
    format!(
        "[global]
mon host = {mon_addr}
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
run dir = {d}/run
log file = {d}/log/$name.log
mon data = {d}/mon
mgr data = {d}/mgr
osd data = {d}/osd
osd objectstore = bluestore
bluestore block create = true
bluestore block path = {d}/osd-block
bluestore block size = 2147483648
osd max object name len = 460
osd max object namespace len = 64
[mon]
admin socket = {d}/run/$name.asok
[mgr]
admin socket = {d}/run/$name.asok
[osd]
admin socket = {d}/run/$name.asok
[client]
admin socket =
log file = {d}/log/client.log
"
    )
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))
}

/// An ephemeral loopback port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// A random UUID (v4 layout) for fsids and OSD ids.
fn uuid() -> String {
    let hex: String = (0..32)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
