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
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// A mutating call about to go out. `resolves`: the earlier call (by `seq`) this one
    /// finishes — a resumed run sending again what failed, or settling what was in doubt.
    Intent {
        at: DateTime<Utc>,
        seq: u64,
        step: Option<String>,
        primitive: String,
        args: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolves: Option<u64>,
    },
    /// What it came to. `unknown`: the answer was lost, so whether it took effect is not
    /// known (a resumed run finds out by reading, never by sending it blindly).
    Outcome {
        at: DateTime<Utc>,
        seq: u64,
        ok: bool,
        result: Option<Value>,
        error: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unknown: bool,
    },
    /// A part of a long mutation (a drill's steps) begun (`ok` absent) or ended: a resumed
    /// run continues it from there instead of starting it over.
    Progress {
        at: DateTime<Utc>,
        seq: u64,
        part: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<bool>,
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
    /// A DR cluster's lock taken in etcd, before the first mutation it covers: its fencing
    /// token (the lock key's create revision, greater for each new holder), so what this run
    /// did can be told from what a later holder did.
    Lock {
        at: DateTime<Utc>,
        cluster: String,
        fencing_token: i64,
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
            })?;
        crash_point();
        Ok(())
    }
}

/// The crash campaign's failpoint (as etcd's `GOFAIL_FAILPOINTS`): with
/// `DRBOOK_CRASH_AT_JOURNAL_ENTRY=k`, the process kills itself with SIGKILL — what `kill -9`
/// or a power cut does — right after its k-th journal entry (counted over every journal it
/// writes, nested runs' too) is on disk. No outside timing hits a journal boundary exactly;
/// this does, so each boundary's resume is tested.
fn crash_point() {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var("DRBOOK_CRASH_AT_JOURNAL_ENTRY")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    });
    if let Some(at) = *at
        && WRITTEN.fetch_add(1, Ordering::SeqCst) + 1 == at
    {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// A mutating call, as the journal recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub seq: u64,
    /// When its intent was written: a job Mold lists from before then is not its job.
    pub at: DateTime<Utc>,
    pub step: Option<String>,
    pub primitive: String,
    pub args: Value,
    pub result: Option<Value>,
    pub ok: bool,
    /// Whether it took effect is not known: its intent has no outcome (the run died while
    /// it was out) or its answer was lost.
    pub in_doubt: bool,
    /// Its parts begun and ended, over every attempt, in order (a drill's steps).
    pub progress: Vec<Progress>,
}

/// One part of a long mutation begun (`ok: None`) or ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub at: DateTime<Utc>,
    pub part: u32,
    pub ok: Option<bool>,
}

impl RecordedCall {
    /// How far earlier attempts got: the parts finished in a row from the first, and when the
    /// next one was begun (`None`: not begun). `None` when no part was recorded, or one failed
    /// (what a failure left is undone first, then the act starts over).
    pub fn resume_point(&self) -> Option<(u32, Option<DateTime<Utc>>)> {
        if self.progress.is_empty() || self.progress.iter().any(|p| p.ok == Some(false)) {
            return None;
        }
        let mut finished = 0;
        let mut begun = None;
        for p in &self.progress {
            match p.ok {
                Some(true) if p.part == finished => {
                    finished += 1;
                    begun = None;
                }
                None if p.part == finished => begun = Some(p.at),
                _ => {}
            }
        }
        Some((finished, begun))
    }
}

/// What a previous run got done, for `--resume`.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Finished steps and their results.
    pub finished_steps: BTreeMap<String, Value>,
    /// Every mutating call, in the order the script made them; a call a later attempt
    /// resolved stands where the first attempt was, with the later outcome.
    pub calls: Vec<RecordedCall>,
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
        // Where each seq's call stands in `calls`.
        let mut slot: BTreeMap<u64, usize> = BTreeMap::new();
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
                    at,
                    seq,
                    step,
                    primitive,
                    args,
                    resolves,
                } => {
                    replay.last_seq = replay.last_seq.max(seq);
                    let call = RecordedCall {
                        seq,
                        at,
                        step,
                        primitive,
                        args,
                        result: None,
                        ok: false,
                        in_doubt: true,
                        progress: Vec::new(),
                    };
                    if let Some(i) = resolves.and_then(|r| slot.get(&r).copied()) {
                        // The earlier call keeps its place; one in doubt keeps its intent
                        // time too (a job it may have started counts as this one's), one
                        // that failed does not (its failed job is not this one's).
                        let earlier = &replay.calls[i];
                        let at = if earlier.in_doubt {
                            earlier.at
                        } else {
                            call.at
                        };
                        let progress = earlier.progress.clone();
                        replay.calls[i] = RecordedCall {
                            at,
                            progress,
                            ..call
                        };
                        slot.insert(seq, i);
                    } else {
                        slot.insert(seq, replay.calls.len());
                        replay.calls.push(call);
                    }
                }
                Entry::Outcome {
                    seq,
                    ok,
                    result,
                    unknown,
                    ..
                } => {
                    if let Some(call) = slot.get(&seq).and_then(|&i| replay.calls.get_mut(i)) {
                        call.ok = ok;
                        call.result = result;
                        call.in_doubt = unknown;
                    }
                }
                Entry::Progress { at, seq, part, ok } => {
                    if let Some(call) = slot.get(&seq).and_then(|&i| replay.calls.get_mut(i)) {
                        call.progress.push(Progress { at, part, ok });
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
                | Entry::RunEnd { .. }
                | Entry::Lock { .. } => {}
            }
        }
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
            resolves: None,
        })
        .unwrap();
        j.append(&Entry::Outcome {
            at: now,
            seq: s1,
            ok: true,
            result: Some(json!({"ok": 1})),
            error: None,
            unknown: false,
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
            resolves: None,
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
        assert_eq!(r.calls[0].primitive, "promote");
        assert_eq!(r.calls.len(), 2);
        assert!(!r.calls[0].in_doubt && r.calls[0].ok);
        assert_eq!(r.calls[1].primitive, "start_vm");
        assert!(r.calls[1].in_doubt, "an intent without outcome is in doubt");
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
    fn a_later_attempt_resolves_a_call_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "r2").unwrap();
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(30);
        let intent = |seq, at, resolves, primitive: &str| Entry::Intent {
            at,
            seq,
            step: None,
            primitive: primitive.into(),
            args: json!(["DR"]),
            resolves,
        };
        let outcome = |seq, ok, unknown| Entry::Outcome {
            at: t0,
            seq,
            ok,
            result: ok.then(|| json!({"done": seq})),
            error: (!ok).then(|| "lost".to_string()),
            unknown,
        };
        // 1 lost its answer, 2 failed for good, 3 never came back.
        for e in [
            intent(1, t0, None, "promote"),
            outcome(1, false, true),
            intent(2, t0, None, "demote"),
            outcome(2, false, false),
            intent(3, t0, None, "resync"),
        ] {
            j.append(&e).unwrap();
        }
        let r = Replay::for_run(dir.path(), "r2").unwrap();
        let doubt: Vec<bool> = r.calls.iter().map(|c| c.in_doubt).collect();
        assert_eq!(doubt, [true, false, true]);
        // A resumed attempt: 1 found done by reading (its own seq's outcome), 2 sent again,
        // 3 settled by a later attempt.
        for e in [
            outcome(1, true, false),
            intent(4, t1, Some(2), "demote"),
            outcome(4, true, false),
            intent(5, t1, Some(3), "resync"),
            outcome(5, true, false),
        ] {
            j.append(&e).unwrap();
        }
        let r = Replay::for_run(dir.path(), "r2").unwrap();
        let calls: Vec<(&str, u64, bool, bool)> = r
            .calls
            .iter()
            .map(|c| (c.primitive.as_str(), c.seq, c.ok, c.in_doubt))
            .collect();
        assert_eq!(
            calls,
            [
                ("promote", 1, true, false),
                ("demote", 4, true, false),
                ("resync", 5, true, false)
            ]
        );
        assert_eq!(r.calls[1].at, t1, "a failed call's job is not the retry's");
        assert_eq!(r.calls[2].at, t0, "a call in doubt keeps its intent time");
    }

    #[test]
    fn an_unknown_run_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        Journal::open(dir.path(), "20260101-000000-abcd").unwrap();
        let e = Replay::for_run(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("20260101-000000-abcd"), "{e}");
    }
}
