//! The run journal: an append-only JSONL file under `<state dir>/runs/<run id>/`, one entry per
//! step boundary, per nested `run()` and per mutating call (its intent before, its outcome
//! after), each written and synced to disk before the next call goes out. `--resume` reads it
//! back: finished steps and finished calls are answered from it instead of calling Mold
//! again. A nested run keeps its own journal under `<run id>.<n>` and resumes with its
//! parent.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    RunStart {
        at: DateTime<Utc>,
        run: String,
        script: String,
        args: BTreeMap<String, String>,
        resumed: bool,
    },
    StepStart {
        at: DateTime<Utc>,
        step: String,
    },
    /// A nested `run()` starting: its run id is this run's id and its ordinal (the n-th
    /// `run()` of this run), its journal under `runs/<run>/`. A step skipped on `--resume`
    /// skips its nested runs' ordinals too, so later `run()`s find their own journals.
    NestedRun {
        at: DateTime<Utc>,
        run: String,
        ordinal: u32,
        step: Option<String>,
    },
    /// A mutating call about to go out.
    Intent {
        at: DateTime<Utc>,
        seq: u64,
        step: Option<String>,
        primitive: String,
        args: Value,
    },
    /// What it came to.
    Outcome {
        at: DateTime<Utc>,
        seq: u64,
        ok: bool,
        result: Option<Value>,
        error: Option<String>,
    },
    StepEnd {
        at: DateTime<Utc>,
        step: String,
        ok: bool,
        result: Option<Value>,
        error: Option<String>,
    },
    RunEnd {
        at: DateTime<Utc>,
        ok: bool,
        exit: u8,
    },
}

/// A failure to keep the journal: the run must stop (a mutation that cannot be journaled is
/// not made).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the run journal {}: {reason}", .path.display())]
    Write { path: PathBuf, reason: String },
    #[error("cannot read the run journal {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("no run {run:?} to resume under {} (runs: {known})", .dir.display())]
    NoSuchRun {
        run: String,
        dir: PathBuf,
        known: String,
    },
}

/// The open journal of a run.
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
}

impl Journal {
    /// The directory of a run.
    pub fn run_dir(state_dir: &Path, run: &str) -> PathBuf {
        state_dir.join("runs").join(run)
    }

    /// Opens (creating if needed) the journal of `run`, appending after what is there.
    pub fn open(state_dir: &Path, run: &str) -> Result<Self, JournalError> {
        let dir = Self::run_dir(state_dir, run);
        let path = dir.join("journal.jsonl");
        let err = |e: std::io::Error| JournalError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let next_seq = if path.exists() {
            Replay::load(&path)?.last_seq + 1
        } else {
            1
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(err)?;
        Ok(Self {
            path,
            file,
            next_seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next intent gets.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Writes one entry and syncs it to disk.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(entry).map_err(|e| JournalError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::Write {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }
}

/// A finished mutating call, as the journal recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub step: Option<String>,
    pub primitive: String,
    pub args: Value,
    pub result: Option<Value>,
    pub ok: bool,
}

/// What a previous run got done, for `--resume`.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Finished steps and their results.
    pub finished_steps: BTreeMap<String, Value>,
    /// Mutating calls that completed, in order.
    pub calls: Vec<RecordedCall>,
    /// A call that went out and never came back: its outcome is unknown.
    pub in_doubt: Option<RecordedCall>,
    pub script: Option<String>,
    pub args: BTreeMap<String, String>,
    pub last_seq: u64,
    /// The highest ordinal of a nested `run()` made inside each step.
    pub nested_in_step: BTreeMap<String, u32>,
}

impl Replay {
    pub fn load(path: &Path) -> Result<Self, JournalError> {
        let read_err = |reason: String| JournalError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| read_err(e.to_string()))?;
        let mut replay = Replay::default();
        let mut pending: BTreeMap<u64, RecordedCall> = BTreeMap::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| read_err(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            // A torn last line (a crash mid-write) is ignored; anything else is damage.
            let entry: Entry = match serde_json::from_str(&line) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("journal line {} unreadable ({e}); ignoring it", n + 1);
                    continue;
                }
            };
            match entry {
                Entry::RunStart {
                    script,
                    args,
                    resumed,
                    ..
                } => {
                    if !resumed {
                        replay.script = Some(script);
                        replay.args = args;
                    }
                }
                Entry::Intent {
                    seq,
                    step,
                    primitive,
                    args,
                    ..
                } => {
                    replay.last_seq = replay.last_seq.max(seq);
                    pending.insert(
                        seq,
                        RecordedCall {
                            step,
                            primitive,
                            args,
                            result: None,
                            ok: false,
                        },
                    );
                }
                Entry::Outcome {
                    seq, ok, result, ..
                } => {
                    if let Some(mut call) = pending.remove(&seq) {
                        call.ok = ok;
                        call.result = result;
                        replay.calls.push(call);
                    }
                }
                Entry::NestedRun {
                    ordinal,
                    step: Some(step),
                    ..
                } => {
                    let high = replay.nested_in_step.entry(step).or_default();
                    *high = (*high).max(ordinal);
                }
                Entry::StepEnd {
                    step,
                    ok: true,
                    result,
                    ..
                } => {
                    replay
                        .finished_steps
                        .insert(step, result.unwrap_or(Value::Null));
                }
                Entry::StepStart { .. }
                | Entry::StepEnd { .. }
                | Entry::NestedRun { .. }
                | Entry::RunEnd { .. } => {}
            }
        }
        replay.in_doubt = pending.into_values().next_back();
        Ok(replay)
    }

    /// The journal of `run` under `state_dir`, or an error listing the runs there are.
    pub fn for_run(state_dir: &Path, run: &str) -> Result<Self, JournalError> {
        let path = Journal::run_dir(state_dir, run).join("journal.jsonl");
        if !path.exists() {
            let runs_dir = state_dir.join("runs");
            let mut known: Vec<String> = std::fs::read_dir(&runs_dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            return Err(JournalError::NoSuchRun {
                run: run.to_string(),
                dir: runs_dir,
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        }
        Self::load(&path)
    }
}

/// A fresh run id: sortable by time, unique enough for one operator's machine.
pub fn new_run_id() -> String {
    format!(
        "{}-{:04x}",
        Utc::now().format("%Y%m%d-%H%M%S"),
        fastrand::u16(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intents_outcomes_and_steps_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "r1").unwrap();
        let now = Utc::now();
        j.append(&Entry::RunStart {
            at: now,
            run: "r1".into(),
            script: "failover.rhai".into(),
            args: BTreeMap::from([("cluster".into(), "DR".into())]),
            resumed: false,
        })
        .unwrap();
        j.append(&Entry::StepStart {
            at: now,
            step: "promote".into(),
        })
        .unwrap();
        let s1 = j.next_seq();
        j.append(&Entry::Intent {
            at: now,
            seq: s1,
            step: Some("promote".into()),
            primitive: "promote".into(),
            args: json!(["DR"]),
        })
        .unwrap();
        j.append(&Entry::Outcome {
            at: now,
            seq: s1,
            ok: true,
            result: Some(json!({"ok": 1})),
            error: None,
        })
        .unwrap();
        // A nested run inside the step, recorded again by a resumed execution.
        for _ in 0..2 {
            j.append(&Entry::NestedRun {
                at: now,
                run: "r1.2".into(),
                ordinal: 2,
                step: Some("promote".into()),
            })
            .unwrap();
        }
        j.append(&Entry::NestedRun {
            at: now,
            run: "r1.3".into(),
            ordinal: 3,
            step: None,
        })
        .unwrap();
        j.append(&Entry::StepEnd {
            at: now,
            step: "promote".into(),
            ok: true,
            result: Some(json!(7)),
            error: None,
        })
        .unwrap();
        j.append(&Entry::StepStart {
            at: now,
            step: "start".into(),
        })
        .unwrap();
        let s2 = j.next_seq();
        j.append(&Entry::Intent {
            at: now,
            seq: s2,
            step: Some("start".into()),
            primitive: "start_vm".into(),
            args: json!(["site-b", "vm1"]),
        })
        .unwrap();
        // Crash: a torn line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(j.path())
            .unwrap()
            .write_all(b"{\"event\":\"outc")
            .unwrap();

        let r = Replay::for_run(dir.path(), "r1").unwrap();
        assert_eq!(r.finished_steps.get("promote"), Some(&json!(7)));
        assert!(!r.finished_steps.contains_key("start"));
        assert_eq!(r.calls.len(), 1);
        assert_eq!(r.calls[0].primitive, "promote");
        assert_eq!(
            r.in_doubt.as_ref().map(|c| c.primitive.as_str()),
            Some("start_vm")
        );
        assert_eq!(r.script.as_deref(), Some("failover.rhai"));
        assert_eq!(
            r.nested_in_step,
            BTreeMap::from([("promote".to_string(), 2)]),
            "the highest ordinal per step; runs outside steps are not skipped"
        );
        assert_eq!(r.last_seq, s2);
        // Reopening continues the sequence.
        let mut again = Journal::open(dir.path(), "r1").unwrap();
        assert_eq!(again.next_seq(), s2 + 1);
    }

    #[test]
    fn an_unknown_run_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        Journal::open(dir.path(), "20260101-000000-abcd").unwrap();
        let e = Replay::for_run(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("20260101-000000-abcd"), "{e}");
    }
}
