//! SSH to a site's storage VMs (the `ssh()` escape hatch): key authentication with the
//! site's configured key, the host key checked against `ssh_known_hosts` when configured,
//! a deadline on everything. The storage VMs are tried in `glue_urls` order until one
//! accepts the connection; a command is never run twice.

use std::io::Read as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub site: String,
    /// The storage VMs' addresses, in order of preference.
    pub hosts: Vec<String>,
    pub port: u16,
    pub user: String,
    pub key_file: Option<PathBuf>,
    /// An OpenSSH `known_hosts` file; without one the host key is not checked.
    pub known_hosts: Option<PathBuf>,
    pub timeout: Duration,
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshOutput {
    pub host: String,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "site {site}: no ssh_key_file in drbook.toml: set ssh_key_file (and ssh_user) to reach the storage VMs"
    )]
    NoKey { site: String },
    #[error("site {site}: no storage VM to connect to: add glue_urls for the site")]
    NoHosts { site: String },
    /// Held back before it started: the run's DR cluster lock is no longer certain.
    #[error("site {site}: not run: {reason}")]
    Fenced { site: String, reason: String },
    #[error("site {site}: cannot reach any storage VM over SSH ({tried})")]
    Unreachable { site: String, tried: String },
    #[error(
        "site {site}: the host key of {host} does not match {}: refusing to connect (if the storage VM was reinstalled, update the file)",
        .known_hosts.display()
    )]
    HostKey {
        site: String,
        host: String,
        known_hosts: PathBuf,
    },
    #[error("site {site}: {host} refused the key {} for user {user}: {reason}", .key.display())]
    Auth {
        site: String,
        host: String,
        user: String,
        key: PathBuf,
        reason: String,
    },
    #[error(
        "site {site}: the command on {host} failed or timed out after it started ({reason}); it may have run: check before running it again"
    )]
    Exec {
        site: String,
        host: String,
        reason: String,
    },
}

/// Runs `command` on the first storage VM that accepts the connection. Blocking.
pub fn run(target: &SshTarget, command: &str) -> Result<SshOutput, SshError> {
    run_fenced(target, command, None)
}

/// [`run`], asking `fence` ([`crate::fence`]) once connected, right before a command that is
/// not a known read is started: one it refuses is not run.
pub fn run_fenced(
    target: &SshTarget,
    command: &str,
    fence: Option<&crate::fence::Check>,
) -> Result<SshOutput, SshError> {
    let key = target.key_file.clone().ok_or_else(|| SshError::NoKey {
        site: target.site.clone(),
    })?;
    if target.hosts.is_empty() {
        return Err(SshError::NoHosts {
            site: target.site.clone(),
        });
    }
    let mut tried = Vec::new();
    for host in &target.hosts {
        match connect(target, host, &key) {
            Ok(session) => {
                if let Some(fence) = fence
                    && !is_known_read(command)
                    && let Err(reason) = fence()
                {
                    return Err(SshError::Fenced {
                        site: target.site.clone(),
                        reason,
                    });
                }
                return exec(target, host, &session, command);
            }
            Err(Attempt::Unreachable(reason)) => tried.push(format!("{host}: {reason}")),
            Err(Attempt::Fatal(e)) => return Err(e),
        }
    }
    Err(SshError::Unreachable {
        site: target.site.clone(),
        tried: tried.join("; "),
    })
}

enum Attempt {
    /// Nothing happened on that host: try the next.
    Unreachable(String),
    /// A host answered and refused: do not go on to others with the same credentials.
    Fatal(SshError),
}

fn connect(
    target: &SshTarget,
    host: &str,
    key: &std::path::Path,
) -> Result<ssh2::Session, Attempt> {
    let addr = (host, target.port)
        .to_socket_addrs()
        .map_err(|e| Attempt::Unreachable(e.to_string()))?
        .next()
        .ok_or_else(|| Attempt::Unreachable("no address".into()))?;
    let tcp = TcpStream::connect_timeout(&addr, target.timeout)
        .map_err(|e| Attempt::Unreachable(e.to_string()))?;
    let _ = tcp.set_read_timeout(Some(target.timeout));
    let _ = tcp.set_write_timeout(Some(target.timeout));
    let mut session = ssh2::Session::new().map_err(|e| Attempt::Unreachable(e.to_string()))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(u32::try_from(target.timeout.as_millis()).unwrap_or(u32::MAX));
    session
        .handshake()
        .map_err(|e| Attempt::Unreachable(format!("SSH handshake: {e}")))?;
    if let Some(known) = &target.known_hosts {
        check_host_key(target, host, known, &session)?;
    }
    session
        .userauth_pubkey_file(&target.user, None, key, None)
        .map_err(|e| {
            Attempt::Fatal(SshError::Auth {
                site: target.site.clone(),
                host: host.to_string(),
                user: target.user.clone(),
                key: key.to_path_buf(),
                reason: e.message().to_string(),
            })
        })?;
    Ok(session)
}

fn check_host_key(
    target: &SshTarget,
    host: &str,
    known: &std::path::Path,
    session: &ssh2::Session,
) -> Result<(), Attempt> {
    let mismatch = || {
        Attempt::Fatal(SshError::HostKey {
            site: target.site.clone(),
            host: host.to_string(),
            known_hosts: known.to_path_buf(),
        })
    };
    let mut hosts = session.known_hosts().map_err(|_| mismatch())?;
    hosts
        .read_file(known, ssh2::KnownHostFileKind::OpenSSH)
        .map_err(|_| mismatch())?;
    let (key, _) = session.host_key().ok_or_else(mismatch)?;
    match hosts.check_port(host, target.port, key) {
        ssh2::CheckResult::Match => Ok(()),
        _ => Err(mismatch()),
    }
}

fn exec(
    target: &SshTarget,
    host: &str,
    session: &ssh2::Session,
    command: &str,
) -> Result<SshOutput, SshError> {
    let fail = |reason: String| SshError::Exec {
        site: target.site.clone(),
        host: host.to_string(),
        reason,
    };
    let mut channel = session.channel_session().map_err(|e| fail(e.to_string()))?;
    channel.exec(command).map_err(|e| fail(e.to_string()))?;
    let mut stdout = String::new();
    channel
        .read_to_string(&mut stdout)
        .map_err(|e| fail(e.to_string()))?;
    let mut stderr = String::new();
    channel
        .stderr()
        .read_to_string(&mut stderr)
        .map_err(|e| fail(e.to_string()))?;
    channel.wait_close().map_err(|e| fail(e.to_string()))?;
    let status = channel.exit_status().map_err(|e| fail(e.to_string()))?;
    Ok(SshOutput {
        host: host.to_string(),
        status,
        stdout,
        stderr,
    })
}

/// Whether a command only reads (so `ssh()` runs it without a confirmation): Ceph's status
/// commands and rbd's status/info/list.
pub fn is_known_read(command: &str) -> bool {
    let c = command.trim();
    if c.contains(|ch: char| ";|&><`$\n".contains(ch)) {
        return false;
    }
    let words: Vec<&str> = c.split_whitespace().collect();
    matches!(
        words.as_slice(),
        ["ceph", "-s" | "status" | "health", ..]
            | ["rbd", "mirror", "image" | "pool", "status", ..]
            | ["rbd", "mirror", "pool", "info", ..]
            | ["rbd", "info" | "ls" | "list", ..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_reads() {
        for read in [
            "ceph -s",
            "ceph -s -f json",
            "rbd mirror image status --pool rbd --image x",
            "rbd mirror pool status rbd --verbose",
            "rbd info rbd/x",
        ] {
            assert!(is_known_read(read), "{read}");
        }
        for write in [
            "rbd mirror image promote --pool rbd --image x --force",
            "ceph -s; rm -rf /",
            "rbd mirror image status x && reboot",
            "systemctl restart ceph",
        ] {
            assert!(!is_known_read(write), "{write}");
        }
    }
}
