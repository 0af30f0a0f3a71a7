//! Real SSH on the simulated storage VMs: per site, one OpenSSH server (`/usr/sbin/sshd`)
//! listening at one port on the address of every storage VM of the site, so that drbook's
//! own SSH client (`ssh()`, [`crate::ssh`]) reaches them as it reaches a real site's.
//!
//! - **Keys.** Each site's host key is an ed25519 key made with `ssh-keygen` at start, kept
//!   for the life of the simulation (a recovery brings the same one back). The one key the
//!   server takes is the site's storage-VM key — the PEM the written `drbook.toml` names as
//!   `ssh_key_file`, and the one pairing sends to Mold — for the user running the simulator
//!   only (`AllowUsers`).
//! - **No shell.** `ForceCommand` runs `drbook sim exec --control URL --site NAME`
//!   ([`exec`]) for every command, which hands `SSH_ORIGINAL_COMMAND` to the control API's
//!   `POST /ssh/{site}`; [`shell`] answers it from the storage model. No login shell, TTY,
//!   forwarding, user `rc` or environment.
//! - **Nothing outlives the simulation.** Each sshd runs under a small `sh` watchdog whose
//!   standard input is a pipe this process holds: when the pipe closes — [`SshSites::stop`], a
//!   drop, or this process dying however it dies, `SIGKILL` included — the watchdog stops sshd
//!   and waits for it. Keys, configuration, PID file and log live in one temporary directory
//!   (mode 700), removed with the [`SshSites`], or by the watchdogs when this process died.
//! - **Disasters.** A site in disaster has no sshd (connections are refused, and drbook's
//!   client reports the storage VMs unreachable); a command of a session opened just before
//!   is answered as the dark site's. Recovery starts sshd again on the same port.
//!
//! The servers read their configuration only from the files written here (no
//! `/etc/ssh/sshd_config`), and log at `ERROR` into the work directory.

pub mod exec;
pub mod shell;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::SshServe;
use crate::sync::Locked as _;

/// What a site's storage VMs offer over SSH, for its endpoints and the written `drbook.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct SiteSsh {
    pub port: u16,
    /// The one user they let in: whoever runs the simulator.
    pub user: String,
    /// Their host key's public half (`ssh-ed25519 AAAA…`).
    pub host_key: String,
}

/// One site's storage VMs, as [`SshSites::start`] needs them.
pub struct SiteKeys<'a> {
    pub site: &'a str,
    /// The storage VMs' addresses (`glue_ips`).
    pub addresses: &'a [IpAddr],
    /// The storage-VM private key (PEM) whose public half the server takes.
    pub private_key: &'a str,
}

/// The sshd of every site of a simulation; see the module documentation.
pub struct SshSites {
    user: String,
    sites: Mutex<Vec<SiteSshd>>,
    /// Removed (after every sshd has stopped) by [`SshSites::stop_all`].
    dir: Mutex<Option<tempfile::TempDir>>,
}

/// One site's server: its files, its addresses and port, and the watchdog while it runs.
struct SiteSshd {
    site: String,
    dir: PathBuf,
    sshd: PathBuf,
    addresses: Vec<IpAddr>,
    /// Fixed by the first start; kept across disasters.
    port: u16,
    host_key: String,
    force_command: String,
    user: String,
    running: Option<Watchdog>,
}

/// How often a start attempt picks another port after one was taken under it.
const PORT_ATTEMPTS: usize = 5;

/// How long sshd gets to write its PID file (it does once it listens).
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The watchdog (`sh -c WATCHDOG sh <work dir> <sshd> <args>…`): sshd in the background,
/// then a read of standard input, which returns only when the pipe closes; then sshd is
/// stopped and waited for. [`Watchdog`]'s drop writes `keep` first: without it the
/// simulator died, and nobody else will remove the work directory, so the watchdog does.
/// Signals that would end the watchdog before it stops sshd (a terminal's Ctrl-C or
/// hang-up, a stray `SIGTERM`) are ignored once sshd runs; sshd keeps the default `SIGTERM`.
const WATCHDOG: &str = r#"dir=$1
shift
"$@" </dev/null >/dev/null &
pid=$!
trap '' INT HUP TERM
read -r why
kill "$pid" 2>/dev/null
wait "$pid"
if [ "$why" != keep ]; then
    case "$dir" in
        */drbook-sim-ssh-*) rm -rf -- "$dir" ;;
    esac
fi
"#;

impl SshSites {
    /// Makes every site's keys and configuration and starts its sshd, each command answered
    /// through the control API at `control`. Blocking.
    pub fn start(serve: &SshServe, sites: &[SiteKeys<'_>], control: &str) -> Result<Self, String> {
        if !serve.sshd.exists() {
            return Err(format!(
                "{} is not installed (apt-get install openssh-server)",
                serve.sshd.display()
            ));
        }
        let user = current_user()?;
        let dir = tempfile::Builder::new()
            .prefix("drbook-sim-ssh-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| format!("cannot make a directory for sshd's files: {e}"))?;
        plain_path(dir.path())?;
        if nix::unistd::Uid::effective().is_root() {
            // sshd run by root wants its privilege-separation directory, which Debian's
            // package makes at boot (not in a fresh container).
            std::fs::create_dir_all("/run/sshd")
                .map_err(|e| format!("cannot make /run/sshd, which sshd needs: {e}"))?;
        }
        let this = Self {
            user: user.clone(),
            sites: Mutex::new(Vec::new()),
            dir: Mutex::new(None),
        };
        for keys in sites {
            let site_dir = dir.path().join(keys.site);
            std::fs::create_dir(&site_dir)
                .map_err(|e| format!("cannot make {}: {e}", site_dir.display()))?;
            let host_key = make_host_key(&site_dir, keys.site)?;
            let public = public_key_line(keys.private_key)?;
            std::fs::write(
                site_dir.join("authorized_keys"),
                format!("{public} {}-storage-vm-key\n", keys.site),
            )
            .map_err(|e| format!("cannot write {}'s authorized_keys: {e}", keys.site))?;
            let mut addresses: Vec<IpAddr> = Vec::new();
            for ip in keys.addresses {
                if !addresses.contains(ip) {
                    addresses.push(*ip);
                }
            }
            let mut sshd = SiteSshd {
                site: keys.site.to_string(),
                dir: site_dir,
                sshd: serve.sshd.clone(),
                addresses,
                port: 0,
                host_key,
                force_command: force_command(&serve.drbook, control, keys.site)?,
                user: user.clone(),
                running: None,
            };
            sshd.first_start()?;
            this.sites.locked().push(sshd);
        }
        *this.dir.locked() = Some(dir);
        Ok(this)
    }

    /// What `site`'s storage VMs offer, if this serves it.
    pub fn site(&self, site: &str) -> Option<SiteSsh> {
        self.sites
            .locked()
            .iter()
            .find(|s| s.site == site)
            .map(|s| SiteSsh {
                port: s.port,
                user: self.user.clone(),
                host_key: s.host_key.clone(),
            })
    }

    /// An OpenSSH `known_hosts` for every storage VM of every site: `[127.0.1.1]:PORT
    /// ssh-ed25519 AAAA…`, one line per address.
    pub fn known_hosts(&self) -> String {
        let mut out = String::new();
        for s in self.sites.locked().iter() {
            for ip in &s.addresses {
                let _ = writeln!(out, "[{ip}]:{} {} {}", s.port, s.host_key, s.site);
            }
        }
        out
    }

    /// Stops `site`'s sshd (a disaster): its addresses refuse SSH until [`SshSites::resume`].
    /// Blocking.
    pub fn stop(&self, site: &str) {
        let stopped = self
            .sites
            .locked()
            .iter_mut()
            .find(|s| s.site == site)
            .and_then(|s| s.running.take());
        // The watchdog stops sshd when dropped; waited for outside the lock.
        drop(stopped);
    }

    /// Starts `site`'s sshd again on its port, with its host key (a recovery). Blocking.
    pub fn resume(&self, site: &str) -> Result<(), String> {
        let mut sites = self.sites.locked();
        match sites.iter_mut().find(|s| s.site == site) {
            Some(s) if s.running.is_none() => s.spawn(),
            _ => Ok(()),
        }
    }

    /// Stops every sshd and removes their files. Blocking; a second call does nothing.
    pub fn stop_all(&self) {
        let running: Vec<Watchdog> = self
            .sites
            .locked()
            .iter_mut()
            .filter_map(|s| s.running.take())
            .collect();
        drop(running);
        if let Some(dir) = self.dir.locked().take()
            && let Err(e) = dir.close()
        {
            tracing::warn!("cannot remove sshd's work directory: {e}");
        }
    }
}

impl Drop for SshSites {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl SiteSshd {
    /// The first start: a port free on every address, again if one was taken before sshd
    /// bound it.
    fn first_start(&mut self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port(&self.addresses)?;
            self.write_config()?;
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("sshd.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// `sshd_config` for the current port, checked with `sshd -t`. `PerSourcePenalties`
    /// (OpenSSH 9.8 and later) is turned off where the server knows it: a test's refused
    /// host key or closed connection must not lock loopback out.
    fn write_config(&self) -> Result<(), String> {
        let mut text = format!(
            "# drbook sim: {}'s storage VMs. Written for one simulation; removed with it.\n",
            self.site
        );
        for ip in &self.addresses {
            let _ = writeln!(text, "ListenAddress {}", SocketAddr::new(*ip, self.port));
        }
        let d = &self.dir;
        let _ = write!(
            text,
            "HostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nAllowUsers {}\nForceCommand {}\n",
            d.join("host_key").display(),
            self.pid_path().display(),
            d.join("authorized_keys").display(),
            self.user,
            self.force_command,
        );
        text.push_str(
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPermitUserEnvironment no\n\
             PermitUserRC no\nPermitTTY no\nDisableForwarding yes\nUseDNS no\nPrintMotd no\n\
             PrintLastLog no\nLogLevel ERROR\n",
        );
        let optional = "PerSourcePenalties no\n";
        self.write_and_check(&format!("{text}{optional}"))
            .or_else(|e| {
                if e.contains("PerSourcePenalties") {
                    self.write_and_check(&text)
                } else {
                    Err(e)
                }
            })
    }

    fn write_and_check(&self, text: &str) -> Result<(), String> {
        let path = self.config_path();
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let out = Command::new(&self.sshd)
            .arg("-t")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.sshd.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} refused the configuration for {}: {}",
                self.sshd.display(),
                self.site,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Starts sshd under its watchdog and waits until it listens on every address.
    fn spawn(&mut self) -> Result<(), String> {
        let pid_path = self.pid_path();
        let _ = std::fs::remove_file(&pid_path);
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(self.dir.parent().unwrap_or(&self.dir))
            .arg(&self.sshd)
            .args(["-D", "-e", "-f"])
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.sshd.display()))?;
        let watchdog = Watchdog::new(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let listening = std::fs::read_to_string(&pid_path)
                .is_ok_and(|pid| pid.trim().parse::<u32>().is_ok());
            // At LogLevel ERROR a starting sshd writes only what went wrong: a port it could
            // not bind, or why it gave up.
            if !log.trim().is_empty() {
                drop(watchdog);
                return Err(format!(
                    "sshd for {}'s storage VMs on port {} did not start: {}",
                    self.site,
                    self.port,
                    log.trim()
                ));
            }
            if listening {
                tracing::debug!(site = self.site, port = self.port, "sshd listens");
                self.running = Some(watchdog);
                return Ok(());
            }
            if Instant::now() >= deadline {
                drop(watchdog);
                return Err(format!(
                    "sshd for {}'s storage VMs on port {} did not start within {}s",
                    self.site,
                    self.port,
                    START_DEADLINE.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The `sh` running one sshd; dropping it closes the pipe, which stops sshd, and waits.
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    fn new(mut child: Child) -> Self {
        let stdin = child.stdin.take();
        Self { child, stdin }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // The simulator stops it and keeps (or removes) the files itself.
            let _ = stdin.write_all(b"keep\n");
        }
        if let Err(e) = self.child.wait() {
            tracing::warn!("sshd's watchdog: {e}");
        }
    }
}

/// A port free on every one of `addresses` just now (sshd binds it next).
fn free_port(addresses: &[IpAddr]) -> Result<u16, String> {
    let first = addresses
        .first()
        .ok_or("a site without storage VMs has nothing to serve SSH on")?;
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let probe = TcpListener::bind(SocketAddr::new(*first, 0))
            .map_err(|e| format!("cannot listen on {first}: {e}"))?;
        let port = probe
            .local_addr()
            .map_err(|e| format!("cannot listen on {first}: {e}"))?
            .port();
        let rest: Result<Vec<TcpListener>, String> = addresses[1..]
            .iter()
            .map(|ip| {
                TcpListener::bind(SocketAddr::new(*ip, port))
                    .map_err(|e| format!("port {port} on {ip}: {e}"))
            })
            .collect();
        match rest {
            Ok(_) => return Ok(port),
            Err(e) => last = e,
        }
    }
    Err(format!("no port free on every storage VM address: {last}"))
}

/// Makes `dir/host_key` (ed25519, no passphrase) and returns its public half, without the
/// comment.
fn make_host_key(dir: &Path, site: &str) -> Result<String, String> {
    let path = dir.join("host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{site} storage VMs (drbook sim)"))
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen (apt-get install openssh-client): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen could not make {site}'s host key: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .map_err(|e| format!("cannot read {site}'s host key: {e}"))?;
    let mut fields = public.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => Ok(format!("{kind} {blob}")),
        _ => Err(format!("ssh-keygen wrote no public key for {site}")),
    }
}

/// The OpenSSH public key (`ecdsa-sha2-nistp256 AAAA…`) of a storage-VM private key as the
/// simulator makes them: ECDSA P-256 in PKCS#8 PEM, which libssh2 and OpenSSH both read.
/// An error never quotes the key.
pub fn public_key_line(private_pem: &str) -> Result<String, String> {
    use base64::Engine as _;
    let key = rcgen::KeyPair::from_pem(private_pem)
        .map_err(|e| format!("the storage-VM key is not a PEM private key rcgen reads: {e}"))?;
    if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err("the storage-VM key is not an ECDSA P-256 key".into());
    }
    // RFC 5656 §3.1: string "ecdsa-sha2-nistp256", string "nistp256", string Q (uncompressed).
    let mut blob = Vec::new();
    for part in [
        b"ecdsa-sha2-nistp256".as_slice(),
        b"nistp256",
        key.public_key_raw(),
    ] {
        let len = u32::try_from(part.len()).map_err(|_| "a key part too long".to_string())?;
        blob.extend(len.to_be_bytes());
        blob.extend(part);
    }
    Ok(format!(
        "ecdsa-sha2-nistp256 {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

/// `'<drbook>' sim exec --control '<url>' --site '<site>'`, quoted for the user's shell,
/// which sshd runs it with.
fn force_command(drbook: &Path, control: &str, site: &str) -> Result<String, String> {
    let drbook = drbook.to_str().ok_or_else(|| {
        format!(
            "the drbook binary's path {} is not UTF-8: sshd_config cannot name it",
            drbook.display()
        )
    })?;
    let words = [drbook, "sim", "exec", "--control", control, "--site", site];
    if words.iter().any(|w| w.contains(['\n', '\r'])) {
        return Err("a line break in sshd's ForceCommand".into());
    }
    Ok(words
        .iter()
        .map(|w| {
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
            {
                (*w).to_string()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" "))
}

/// sshd_config takes paths as words, expands `%` in some: the work directory must be plain.
fn plain_path(dir: &Path) -> Result<(), String> {
    let plain = dir.to_str().is_some_and(|d| {
        d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    });
    if plain {
        Ok(())
    } else {
        Err(format!(
            "sshd_config cannot name files under {}: set TMPDIR to a plain path",
            dir.display()
        ))
    }
}

/// Who runs the simulator: the one user its storage VMs let in.
fn current_user() -> Result<String, String> {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        Ok(None) => Err(format!("user id {uid} has no name, which sshd needs")),
        Err(e) => Err(format!("cannot look up user id {uid}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_rfc_5656_of_the_private_one() {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().unwrap();
        let line = public_key_line(&key.serialize_pem()).unwrap();
        let (kind, blob) = line.split_once(' ').unwrap();
        assert_eq!(kind, "ecdsa-sha2-nistp256");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .unwrap();
        let mut parts = Vec::new();
        let mut rest = blob.as_slice();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            parts.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        assert_eq!(
            parts,
            [
                b"ecdsa-sha2-nistp256".to_vec(),
                b"nistp256".to_vec(),
                key.public_key_raw().to_vec()
            ]
        );
        assert_eq!(parts[2].len(), 65, "an uncompressed P-256 point");
        assert_eq!(parts[2][0], 4);
    }

    #[test]
    fn a_key_that_is_not_one_is_refused_without_being_quoted() {
        let e =
            public_key_line("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
                .unwrap_err();
        assert!(!e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn the_forced_command_is_quoted_for_the_shell() {
        assert_eq!(
            force_command(
                Path::new("/opt/my drbook/drbook"),
                "http://127.0.0.1:4000",
                "site-a"
            )
            .unwrap(),
            "'/opt/my drbook/drbook' sim exec --control http://127.0.0.1:4000 --site site-a"
        );
        assert_eq!(
            force_command(Path::new("/x/it's"), "http://h", "a").unwrap(),
            r"'/x/it'\''s' sim exec --control http://h --site a"
        );
        assert!(force_command(Path::new("/x\ny"), "http://h", "a").is_err());
    }
}
