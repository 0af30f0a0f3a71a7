//! One mutating run per DR cluster at a time, on the whole machine: a lock file per DR
//! cluster in the machine's lock directory (see [`crate::paths`]), whatever the working
//! directory or state directory of each process. A DR cluster is known by its name and its
//! two sites' Mold URLs, so two simulations that each have a cluster named `DR` are two
//! clusters. The file holds who took it (user, host, PID, run, since when, what it runs); it
//! is taken over only when provably abandoned — on this host, its process gone.
//!
//! [`Locks`] is the seam: the lock every operator shares, in etcd
//! ([`super::lock_etcd::EtcdLocks`]), implements it too.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub run: String,
    pub host: String,
    pub since: String,
    #[serde(default)]
    pub user: String,
    /// What the run runs (its script).
    #[serde(default)]
    pub runs: String,
}

impl Holder {
    /// This process, for `run` of `runs`.
    pub fn me(run: &str, runs: &str) -> Self {
        Self {
            pid: std::process::id(),
            run: run.to_string(),
            host: hostname(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user: crate::paths::user_name(),
            runs: runs.to_string(),
        }
    }
}

/// A DR cluster as the locks know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKey {
    pub cluster: String,
    /// Its two sites' Mold URLs (any order).
    pub sites: Vec<String>,
}

impl LockKey {
    /// The lock's file name: readable, and unique to the cluster's identity.
    fn file_name(&self) -> String {
        format!("{}.lock", self.id())
    }

    /// The cluster's name made safe for a file or key name, and a digest of its identity:
    /// `DR-3f2a9c0b1d4e`.
    pub fn id(&self) -> String {
        let safe: String = self
            .cluster
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut sites = self.sites.clone();
        sites.sort();
        let mut h = Sha256::new();
        h.update(self.cluster.as_bytes());
        for s in &sites {
            h.update(b"\n");
            h.update(s.as_bytes());
        }
        let digest = h.finalize();
        let hex = digest.iter().take(6).fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        });
        format!("{safe}-{hex}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "DR cluster {cluster:?} is locked by run {} of {} (user {}, pid {} on {}, since {}): another mutating run is in progress — wait for it to end; if you are sure it is dead, remove {}",
        .holder.run, if .holder.runs.is_empty() { "a runbook" } else { .holder.runs.as_str() },
        if .holder.user.is_empty() { "?" } else { .holder.user.as_str() },
        .holder.pid, .holder.host, .holder.since, .path.display()
    )]
    Held {
        cluster: String,
        holder: Box<Holder>,
        path: PathBuf,
    },
    #[error("cannot take the lock {}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
    /// Held by another run, in etcd: that run may be on any machine.
    #[error(
        "DR cluster {cluster:?} is locked by run {} of {} (user {}, pid {} on {}, since {}): another mutating run is in progress — wait for it to end; if its holder died, its lease ends within {} and the lock is free again (etcd key {key})",
        .holder.run, if .holder.runs.is_empty() { "a runbook" } else { .holder.runs.as_str() },
        if .holder.user.is_empty() { "?" } else { .holder.user.as_str() },
        .holder.pid, .holder.host, .holder.since, crate::duration::Human(*.ttl),
    )]
    HeldElsewhere {
        cluster: String,
        holder: Box<Holder>,
        key: String,
        ttl: std::time::Duration,
    },
    /// etcd could not be asked: no lock, so no mutation.
    #[error(
        "cannot take the lock of DR cluster {cluster:?} in etcd: {reason} — nothing was changed; check [coordination] etcd_endpoints and that a majority of etcd members is up"
    )]
    Unavailable { cluster: String, reason: String },
    /// A lock this run held is no longer certain: the run must not mutate again.
    #[error(
        "the lock of DR cluster {cluster:?} was lost ({reason}): this run stops before its next change, since another run may hold the lock now (fencing token {token})"
    )]
    Lost {
        cluster: String,
        reason: String,
        token: i64,
    },
}

/// A held lock: released when dropped.
pub trait Held: Send + Sync + std::fmt::Debug {
    /// Whether the lock is still surely held, asked before each mutation: without a round
    /// trip (a lease's holder keeps its own deadline).
    fn check(&self) -> Result<(), LockError> {
        Ok(())
    }

    /// A number that grows with each new holder of the lock (etcd's create revision of the
    /// lock key), for the journal and for whoever fences a late holder; none for a file lock.
    fn fencing_token(&self) -> Option<i64> {
        None
    }
}

/// Where DR cluster locks are taken.
pub trait Locks: Send + Sync {
    /// Takes the lock of `key` for `me` (again, when `me` holds it already), or says who
    /// holds it.
    fn take(&self, key: &LockKey, me: &Holder) -> Result<Box<dyn Held>, LockError>;
}

/// Lock files in one directory of this machine.
#[derive(Debug, Clone)]
pub struct MachineLocks {
    dir: PathBuf,
}

impl MachineLocks {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Locks for MachineLocks {
    fn take(&self, key: &LockKey, me: &Holder) -> Result<Box<dyn Held>, LockError> {
        Ok(Box::new(ClusterLock::acquire(&self.dir, key, me)?))
    }
}

/// One held lock file; removed on drop.
#[derive(Debug)]
pub struct ClusterLock {
    path: PathBuf,
}

impl Held for ClusterLock {}

impl ClusterLock {
    /// Takes the lock of `key` in `dir` for `me`, or says who holds it.
    pub fn acquire(dir: &Path, key: &LockKey, me: &Holder) -> Result<Self, LockError> {
        let name = key.file_name();
        let path = dir.join(&name);
        let io = |e: std::io::Error| LockError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(io)?;
            // Every user of the machine meets the same locks in /run/lock, so the directory
            // drbook makes there is writable by all, sticky like /run/lock itself (no user
            // removes another's lock).
            if dir.starts_with(crate::paths::MACHINE_LOCKS) {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
            }
        }
        // The lock appears with its holder already written in it (a complete file linked into
        // place), so a rival never reads a half-written lock and takes it for a crashed one.
        let tmp = dir.join(format!(".{name}.{}.{:08x}.tmp", me.pid, fastrand::u32(..)));
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            let body = serde_json::to_string(me).unwrap_or_default();
            f.write_all(body.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io)?;
        }
        let taken = Self::link(&tmp, &path, &key.cluster, me, &io);
        let _ = std::fs::remove_file(&tmp);
        taken
    }

    fn link(
        tmp: &Path,
        path: &Path,
        cluster: &str,
        me: &Holder,
        io: &dyn Fn(std::io::Error) -> LockError,
    ) -> Result<Self, LockError> {
        let path = path.to_path_buf();
        for _ in 0..2 {
            match std::fs::hard_link(tmp, &path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<Holder> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                    match holder {
                        Some(h) if h.run == me.run && h.pid == me.pid => {
                            return Ok(Self { path });
                        }
                        Some(h) if h.host == me.host && !process_alive(h.pid) => {
                            tracing::warn!(
                                cluster,
                                "taking over a stale lock of run {} (pid {} is gone)",
                                h.run,
                                h.pid
                            );
                            std::fs::remove_file(&path).map_err(io)?;
                        }
                        Some(h) => {
                            return Err(LockError::Held {
                                cluster: cluster.to_string(),
                                holder: Box::new(h),
                                path,
                            });
                        }
                        None => {
                            // Unreadable: a crash while writing it. Nobody can hold it.
                            std::fs::remove_file(&path).map_err(io)?;
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Io {
            path,
            reason: "the lock changed hands while taking it".into(),
        })
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether a process with this pid exists on this machine.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // Without /proc, assume it lives: a false "held" beats two runs at once.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cluster: &str, sites: &[&str]) -> LockKey {
        LockKey {
            cluster: cluster.into(),
            sites: sites.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let dr = key("DR", &["http://a:8080", "http://b:8080"]);
        let first =
            ClusterLock::acquire(dir.path(), &dr, &Holder::me("run-1", "failover")).unwrap();
        // The same run may take it again (several primitives, one run).
        let same = ClusterLock::acquire(dir.path(), &dr, &Holder::me("run-1", "failover")).unwrap();
        std::mem::forget(same);
        // A live holder from elsewhere refuses, naming it.
        let path = dir.path().join(dr.file_name());
        let other = Holder {
            pid: 1,
            run: "run-0".into(),
            user: "ops".into(),
            runs: "scripts/failback.rhai".into(),
            ..Holder::me("x", "y")
        };
        drop(first);
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let e = ClusterLock::acquire(dir.path(), &dr, &Holder::me("run-2", "failover"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run-0 of scripts/failback.rhai (user ops, pid 1") && e.contains(".lock"),
            "{e}"
        );
        // A dead holder is stale.
        let dead = Holder {
            pid: u32::MAX - 7,
            ..other
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let taken =
            ClusterLock::acquire(dir.path(), &dr, &Holder::me("run-3", "failover")).unwrap();
        drop(taken);
        assert!(!path.exists(), "released on drop");
    }

    #[test]
    fn a_cluster_is_its_name_and_its_sites() {
        let one = key("DR", &["http://a:8080", "http://b:8080"]);
        let same = key("DR", &["http://b:8080", "http://a:8080"]);
        let elsewhere = key("DR", &["http://a:9080", "http://b:9080"]);
        assert_eq!(one.file_name(), same.file_name());
        assert_ne!(one.file_name(), elsewhere.file_name());
        assert!(one.file_name().starts_with("DR-"));
    }
}
