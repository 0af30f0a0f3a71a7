//! Running Ceph's programs: one-shot commands with a deadline (a command against a dead
//! cluster hangs, spec §6.6), and long-running daemons tracked by PID so that exactly those
//! are stopped, now or by the next start after a crash.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt as _;

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// The exit status; `None` when the deadline killed it.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` to completion, feeding it `stdin`, and kills it at `deadline`. Output is
/// drained on threads so a large export cannot fill a pipe and stall the child.
pub fn run(
    mut command: Command,
    stdin: Option<Vec<u8>>,
    deadline: Duration,
) -> std::io::Result<Output> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let feeder = child.stdin.take().zip(stdin).map(|(mut pipe, bytes)| {
        std::thread::spawn(move || {
            // A child that exits early closes the pipe; its exit status tells the story.
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = if let Some(status) = child.wait_timeout(deadline)? {
        status.code()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// A daemon this process started, with its PID written to `pid_file` until it is stopped.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    child: Child,
    pid_file: PathBuf,
}

impl Daemon {
    /// Starts `command` in the background (its output appended to `log`), and records its
    /// PID in `pid_file`.
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        pid_file: &Path,
    ) -> std::io::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn()?;
        std::fs::write(pid_file, format!("{}\n", child.id()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            pid_file: pid_file.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (a daemon that exited on its own is reaped here).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a power loss would: bluestore on a file survives it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// Kills what an earlier run left behind: every PID in a `*.pid` file under `dir` whose
/// process still runs with `marker` (the work directory) on its command line. A PID the
/// system has since given to an unrelated process is left alone. Returns the PIDs killed.
pub fn kill_leftovers(dir: &Path, marker: &str) -> Vec<u32> {
    let mut killed = Vec::new();
    for pid_file in pid_files(dir) {
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        let ours = pid.filter(|pid| command_line(*pid).is_some_and(|c| c.contains(marker)));
        if let Some((pid, raw)) = ours.and_then(|pid| Some((pid, i32::try_from(pid).ok()?))) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
            killed.push(pid);
        }
        let _ = std::fs::remove_file(&pid_file);
    }
    // Wait (briefly) until they are gone, so their ports and files are free.
    for _ in 0..100 {
        if killed.iter().all(|pid| command_line(*pid).is_none()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    killed
}

fn pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(pid_files(&path));
        } else if path.extension().is_some_and(|e| e == "pid") {
            found.push(path);
        }
    }
    found
}

/// A live process's command line (arguments joined by spaces); `None` once it is gone (a
/// zombie has an empty one).
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_deadline_is_killed() {
        let mut c = Command::new("sleep");
        c.arg("30");
        let out = run(c, None, Duration::from_millis(100)).unwrap();
        assert_eq!(out.status, None);
    }

    #[test]
    fn stdin_goes_in_and_large_output_comes_out() {
        let input = vec![b'x'; 1 << 20];
        let out = run(
            Command::new("cat"),
            Some(input.clone()),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.ok());
        assert_eq!(out.stdout, input);
    }

    #[test]
    fn leftovers_are_killed_only_when_their_command_line_names_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker-arg");
        let marker = marker.to_str().unwrap();
        // Ours: `sleep` cannot carry an extra argument, so a shell does, naming the marker.
        let mut ours = Command::new("sh");
        ours.args(["-c", "sleep 30", marker]);
        let ours = Daemon::spawn(
            "ours",
            ours,
            &dir.path().join("ours.log"),
            &dir.path().join("ours.pid"),
        )
        .unwrap();
        let mut other = Command::new("sleep");
        other.arg("30");
        let mut other = other.spawn().unwrap();
        std::fs::write(dir.path().join("other.pid"), format!("{}\n", other.id())).unwrap();
        let ours_pid = ours.pid();
        // An earlier run's daemon has long been running; one just started may still show an
        // empty command line for a moment (the kernel sets it up after the exec is seen).
        for _ in 0..200 {
            if command_line(ours_pid).is_some_and(|c| c.contains(marker)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The earlier run "crashed": its handle is forgotten, only the PID file remains.
        std::mem::forget(ours);
        let killed = kill_leftovers(dir.path(), marker);
        assert_eq!(killed, vec![ours_pid]);
        assert!(
            matches!(other.try_wait(), Ok(None)),
            "an unrelated process survives"
        );
        let _ = other.kill();
        let _ = other.wait();
        assert!(!dir.path().join("ours.pid").exists());
    }
}
