//! Where drbook keeps what outlives a run: journals and reports (the state directory) and the
//! DR cluster locks (the lock directory) — per machine by default, wherever a process runs
//! from, so that two operators, or an operator and `drbook watch`, meet the same lock.
//!
//! State: `--state-dir` (or `DRBOOK_STATE_DIR`), else `[defaults] state_dir` in drbook.toml,
//! else `/var/lib/drbook` when running as root, else `$XDG_STATE_HOME/drbook`
//! (`~/.local/state/drbook`). Locks: `DRBOOK_LOCK_DIR`, else `[defaults] lock_dir`, else
//! `/run/lock/drbook` (the machine's lock directory, writable by every user), else
//! `<state dir>/locks`.

use std::path::{Path, PathBuf};

use crate::config::Defaults;

/// The machine's directory for lock files (FHS): shared by every user, cleared at boot.
pub const MACHINE_LOCKS: &str = "/run/lock";

/// Whether this process runs as root.
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The state directory when nothing names one.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/drbook");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("drbook");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/drbook"),
        None => PathBuf::from(".drbook"),
    }
}

/// The state directory: the flag's (or `DRBOOK_STATE_DIR`'s), drbook.toml's, or the default.
pub fn state_dir(flag: Option<&Path>, defaults: &Defaults) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| defaults.state_dir.clone())
        .unwrap_or_else(default_state_dir)
}

/// The lock directory: `DRBOOK_LOCK_DIR`'s, drbook.toml's, the machine's, or the state
/// directory's `locks/`.
pub fn lock_dir(defaults: &Defaults, state_dir: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("DRBOOK_LOCK_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = &defaults.lock_dir {
        return d.clone();
    }
    if Path::new(MACHINE_LOCKS).is_dir() {
        return Path::new(MACHINE_LOCKS).join("drbook");
    }
    state_dir.join("locks")
}

/// The user this process runs as, for a lock's holder.
pub fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_beats_the_config_which_beats_the_default() {
        let mut d = Defaults::default();
        assert_eq!(default_state_dir(), state_dir(None, &d));
        d.state_dir = Some(PathBuf::from("/srv/drbook"));
        assert_eq!(state_dir(None, &d), PathBuf::from("/srv/drbook"));
        assert_eq!(
            state_dir(Some(Path::new(".drbook")), &d),
            PathBuf::from(".drbook")
        );
        d.lock_dir = Some(PathBuf::from("/srv/locks"));
        if std::env::var_os("DRBOOK_LOCK_DIR").is_none() {
            assert_eq!(lock_dir(&d, Path::new("/x")), PathBuf::from("/srv/locks"));
        }
        assert!(!user_name().is_empty());
    }
}
