//! Progress of long waits: a spinner with the time spent on a terminal; otherwise a log line
//! when what is missing changes (at most every few seconds) and at least once a minute, each
//! saying what is waited for, what is still missing and how long it has been — a run under
//! cron or CI shows it is alive, and why it waits, without flooding the log.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::duration::Human;
use crate::sync::Locked as _;

pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    timeout: Duration,
    started: Instant,
    /// When the last plain line was written, and what it said.
    last_line: Mutex<(Instant, String)>,
}

/// The shortest pause between two plain lines, when what is missing changed.
const PLAIN_CHANGED: Duration = Duration::from_secs(10);
/// The longest: the same status is repeated this often.
const PLAIN_EVERY: Duration = Duration::from_secs(60);

impl Progress {
    pub fn start(what: &str, timeout: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(what.to_string());
            bar
        });
        let p = Self {
            bar,
            what: what.to_string(),
            timeout,
            started: Instant::now(),
            last_line: Mutex::new((Instant::now(), String::new())),
        };
        if p.bar.is_none() {
            crate::term::eline(&format!(
                "{} {} (up to {})",
                stamp(),
                p.what,
                Human(timeout)
            ));
        }
        p
    }

    /// A fresh status to show next to what is being waited for: what is still missing.
    pub fn status(&self, status: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {status}", self.what));
            return;
        }
        let mut last = self.last_line.locked();
        let since = last.0.elapsed();
        let first = last.1.is_empty();
        if first || since >= PLAIN_EVERY || (since >= PLAIN_CHANGED && last.1 != status) {
            *last = (Instant::now(), status.to_string());
            crate::term::eline(&format!(
                "{} {}: {status} ({} of {})",
                stamp(),
                self.what,
                Human(round(self.started.elapsed())),
                Human(self.timeout)
            ));
        }
    }

    pub fn finish(&self, message: &str) {
        let took = Human(round(self.started.elapsed()));
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("{message} ({took})")),
            None => crate::term::eline(&format!("{} {message} ({took})", stamp())),
        }
    }
}

/// The log of the domain layer's own waits (a snapshot to arrive, images to change roles,
/// VMs to run): the same rhythm as a [`Progress`] line — the first round at once, then when
/// what is missing changes (at most every few seconds) and at least once a minute — one line
/// saying what is waited for, what is missing, and for how long.
#[derive(Default)]
pub struct WaitLog {
    /// Per wait (by what it waits for): when its last line was written, and what it said.
    last: Mutex<std::collections::HashMap<String, (Instant, String)>>,
}

/// How many pending items a line names before it says how many more.
const PENDING_SHOWN: usize = 2;

impl WaitLog {
    /// The reporter to give the DR context.
    pub fn reporter() -> crate::dr::WaitReporter {
        let log = std::sync::Arc::new(WaitLog::default());
        std::sync::Arc::new(move |r: &crate::dr::WaitReport<'_>| log.round(r))
    }

    fn round(&self, r: &crate::dr::WaitReport<'_>) {
        let mut missing = r
            .pending
            .iter()
            .take(PENDING_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if r.pending.len() > PENDING_SHOWN {
            let _ = write!(missing, " (and {} more)", r.pending.len() - PENDING_SHOWN);
        }
        let mut last = self.last.locked();
        let entry = last.entry(r.what.to_string());
        let due = match &entry {
            std::collections::hash_map::Entry::Vacant(_) => true,
            std::collections::hash_map::Entry::Occupied(o) => {
                let (at, said) = o.get();
                at.elapsed() >= PLAIN_EVERY || (at.elapsed() >= PLAIN_CHANGED && *said != missing)
            }
        };
        if due {
            crate::term::eline(&format!(
                "{} waiting for {}: still missing: {missing} ({} of {})",
                stamp(),
                r.what,
                Human(round(r.waited)),
                Human(r.limit)
            ));
            let now = (Instant::now(), missing);
            match entry {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(now);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    o.insert(now);
                }
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn stamp() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
