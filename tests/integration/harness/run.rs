//! The fluent runner for the `drbook` binary: `Test` builds a run over a fresh temporary
//! directory, `Ran` is what it printed and how it ended. Assertions on a `Ran` live in
//! [`super::assert`].

use std::process::{Command, Output};

/// Runs `drbook` in a fresh temporary directory: `Test::new().config(..).args(..).run()`.
pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Variables taken out of its runs' environment, after everything else is set.
    removed: Vec<String>,
}

/// What a run printed and how it ended.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Writes `drbook.toml` (mode 600) in the test directory.
    pub fn config(self, text: &str) -> Self {
        self.file("drbook.toml", text)
    }

    /// Writes `drbook.toml` for a running simulator (its keys, Glue's certificate pinned).
    pub fn sim_config(self, sim: &drbook::sim::Sim) -> Self {
        sim.write_config(&self.dir.path().join("drbook.toml"))
            .expect("write sim config");
        self
    }

    /// The test directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Where its runs keep their journals (`DRBOOK_STATE_DIR`): `.drbook/` in the test
    /// directory, so that a test never writes the machine's state directory.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join(".drbook")
    }

    /// Where its runs take DR cluster locks (`DRBOOK_LOCK_DIR`), for the same reason; two
    /// tests that share one stand for two operators of one machine.
    pub fn lock_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("locks")
    }

    /// Runs drbook in the background (for signals); stdout and stderr are piped.
    pub fn spawn(&self) -> std::process::Child {
        self.spawn_with(&self.args)
    }

    /// Like [`Test::spawn`], with `args` instead of the builder's.
    pub fn spawn_with<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn drbook")
    }

    /// Runs drbook off the async runtime that serves an in-process simulator.
    pub async fn run_async(self) -> Ran {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap()
    }

    pub fn file(self, name: &str, text: &str) -> Self {
        self.write_file(name, text);
        self
    }

    /// Writes a file (mode 600) in the test directory of a test already built.
    pub fn write_file(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    /// Adds `text` at the end of a file of the test directory (a section of drbook.toml).
    pub fn append(self, name: &str, text: &str) -> Self {
        let path = self.dir.path().join(name);
        let mut all = std::fs::read_to_string(&path).unwrap_or_default();
        all.push_str(text);
        self.write_file(name, &all);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Takes `key` out of its runs' environment, even one the harness sets (the state and
    /// lock directories): for output that would show it, as `--help` shows `[env: …]`.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.removed.push(key.into());
        self
    }

    pub fn run(&self) -> Ran {
        self.exec(&self.args)
    }

    /// Runs drbook with `args` (instead of the builder's) in the same directory, so runs can
    /// share a journal; blocks in place on a multi-threaded runtime serving a simulator.
    pub fn run_with<I: IntoIterator<Item = S>, S: Into<String>>(&self, args: I) -> Ran {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        tokio::task::block_in_place(|| self.exec(&args))
    }

    /// Like [`Test::run_with`], with `extra` environment variables for this run only.
    pub fn run_env<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        args: I,
        extra: &[(&str, &str)],
    ) -> Ran {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        tokio::task::block_in_place(|| self.exec_env(&args, extra))
    }

    fn exec(&self, args: &[String]) -> Ran {
        self.exec_env(args, &[])
    }

    fn exec_env(&self, args: &[String], extra: &[(&str, &str)]) -> Ran {
        let output: Output = self
            .command(args)
            .envs(extra.iter().copied())
            .output()
            .expect("run drbook");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// drbook with `args` in the test directory: no stdin; no configuration, log level, state
    /// or lock directory from the machine; the builder's environment.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_drbook"));
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .current_dir(self.dir.path())
            .env_remove("DRBOOK_CONFIG")
            .env_remove("DRBOOK_LOG")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("DRBOOK_STATE_DIR", self.state_dir())
            .env("DRBOOK_LOCK_DIR", self.lock_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for key in &self.removed {
            command.env_remove(key);
        }
        command
    }
}

impl Ran {
    /// The `error:` lines on stderr.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }

    /// The run id `drbook run` names for `--resume` after a failed run that got something
    /// done; `None` when it names none (nothing to resume: run it again).
    pub fn resume_hint(&self) -> Option<String> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("drbook: to continue this run"))
            .find_map(|l| l.split("--resume ").nth(1))
            .map(|id| id.trim().to_string())
    }

    /// The run id `drbook run` names for `--resume` after a failed run.
    pub fn resume_id(&self) -> String {
        self.resume_hint()
            .unwrap_or_else(|| panic!("no --resume hint in:\n{}", self.stderr))
            .trim()
            .to_string()
    }
}
