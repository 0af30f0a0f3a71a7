//! How long a site's recent async jobs took, per command: a job is first polled when the ones
//! of its kind before it had finished (`jobs.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::Locked as _;

/// How many recent job times are kept per command.
const KEPT: usize = 16;

/// How long recent jobs of each command took on one site, from submit to the poll that saw
/// them end. A job is first polled at the shortest of these (a job is rarely quicker than
/// the quickest of the last few of its kind), instead of at 0.2 s, 0.5 s, 0.95 s, … — one
/// or two polls per job instead of six or seven for a VM start of two seconds.
#[derive(Debug, Default)]
pub struct JobTimes {
    by_command: Mutex<BTreeMap<String, VecDeque<Duration>>>,
}

impl JobTimes {
    /// The shortest recent time of `command`'s jobs, if any finished yet.
    pub fn expected(&self, command: &str) -> Option<Duration> {
        self.by_command
            .locked()
            .get(command)
            .and_then(|times| times.iter().min().copied())
    }

    /// One more finished job of `command`, seen `took` after its submit.
    pub fn record(&self, command: &str, took: Duration) {
        let mut all = self.by_command.locked();
        let times = all.entry(command.to_string()).or_default();
        if times.len() == KEPT {
            times.pop_front();
        }
        times.push_back(took);
    }
}
