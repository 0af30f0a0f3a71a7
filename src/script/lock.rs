//! One mutating run per DR cluster at a time: a lock file per cluster under
//! `.drbook/locks/`, holding who took it. A lock whose process is gone is stale and is taken
//! over, with a warning.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub run: String,
    pub host: String,
    pub since: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "DR cluster {cluster:?} is locked by run {} (pid {} on {}, since {}): another mutating run is in progress — wait for it, or if you are sure it is dead, remove {}",
        .holder.run, .holder.pid, .holder.host, .holder.since, .path.display()
    )]
    Held {
        cluster: String,
        holder: Box<Holder>,
        path: PathBuf,
    },
    #[error("cannot take the lock {}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    path: PathBuf,
}

impl ClusterLock {
    /// Takes the lock of `cluster` for `run`, or says who holds it.
    pub fn acquire(state_dir: &Path, cluster: &str, run: &str) -> Result<Self, LockError> {
        let dir = state_dir.join("locks");
        let safe: String = cluster
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{safe}.lock"));
        let io = |e: std::io::Error| LockError::Io {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let me = Holder {
            pid: std::process::id(),
            run: run.to_string(),
            host: hostname(),
            since: chrono::Utc::now().to_rfc3339(),
        };
        // The lock appears with its holder already written in it (a complete file linked into
        // place), so a rival never reads a half-written lock and takes it for a crashed one.
        let tmp = dir.join(format!(".{safe}.{}.{:08x}.tmp", me.pid, fastrand::u32(..)));
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            let body = serde_json::to_string(&me).unwrap_or_default();
            f.write_all(body.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io)?;
        }
        let taken = Self::link(&tmp, &path, cluster, run, &me, &io);
        let _ = std::fs::remove_file(&tmp);
        taken
    }

    fn link(
        tmp: &Path,
        path: &Path,
        cluster: &str,
        run: &str,
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
                        Some(h) if h.run == run && h.pid == me.pid => return Ok(Self { path }),
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

    #[test]
    fn one_holder_at_a_time_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterLock::acquire(dir.path(), "DR", "run-1").unwrap();
        // The same run may take it again (several primitives, one run).
        let same = ClusterLock::acquire(dir.path(), "DR", "run-1").unwrap();
        std::mem::forget(same);
        // A live holder from elsewhere refuses.
        let path = dir.path().join("locks/DR.lock");
        let other = Holder {
            pid: 1,
            run: "run-0".into(),
            host: hostname(),
            since: "then".into(),
        };
        drop(first);
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let e = ClusterLock::acquire(dir.path(), "DR", "run-2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("run-0") && e.contains("DR.lock"), "{e}");
        // A dead holder is stale.
        let dead = Holder {
            pid: u32::MAX - 7,
            ..other
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let taken = ClusterLock::acquire(dir.path(), "DR", "run-3").unwrap();
        drop(taken);
        assert!(!path.exists(), "released on drop");
    }
}
