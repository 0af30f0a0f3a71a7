//! Progress of long waits: a spinner with the time spent on a terminal, a log line every few
//! seconds otherwise (a run under cron or CI shows it is alive without flooding the log).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::duration::Human;

pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    timeout: Duration,
    started: Instant,
    last_line: Mutex<Instant>,
}

/// How often a plain log line repeats while waiting.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

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
            last_line: Mutex::new(Instant::now()),
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

    /// Time passes; on a terminal the spinner shows it, else a line now and then.
    pub fn tick(&self, elapsed: Duration) {
        self.status(&format!(
            "{} of {} spent",
            Human(round(elapsed)),
            Human(self.timeout)
        ));
    }

    /// A fresh status to show next to what is being waited for.
    pub fn status(&self, status: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {status}", self.what));
            return;
        }
        let mut last = self
            .last_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= PLAIN_EVERY {
            *last = Instant::now();
            crate::term::eline(&format!("{} {}: {status}", stamp(), self.what));
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
