//! The crash campaign: each shipped runbook killed with SIGKILL at a boundary of its journal
//! (drbook's failpoint `DRBOOK_CRASH_AT_JOURNAL_ENTRY=k`: the process kills itself right after
//! its k-th entry is on disk) and at moments inside its long waits, then `--resume`d. Each
//! must end as the clean run ends — both sites' VM states and records, every image's roles,
//! the ledger's writes kept — with every mutation received and accepted exactly as often as
//! in the clean run: nothing sent twice, nothing left out. (A request Mold refused outright,
//! such as its "Please try again later." pre-check that drbook asks again once the copy is
//! idle, changed nothing; how often that happens follows the simulator's snapshot schedule,
//! in the clean run too, so it is not counted.)
//!
//! `cargo test` kills after every other boundary of a mutation (its intent or its outcome,
//! a drill step's start or end, in turn); `DRBOOK_CAMPAIGN=full cargo test crashes` after
//! every entry of the journal;
//! `DRBOOK_CRASH_POINTS=17,22` after those entries only (to reproduce a failure).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drbook::sim::mutations::Mutations;
use serde_json::Value;

use crate::campaign::{
    Prepared, Runbook, accepted_since, check, counts, end_state, failure, prepare,
};

/// The run directories under a state directory.
fn runs(state_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(state_dir.join("runs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The events of the runs in `dirs` (a run and its nested runs), in the order the process
/// wrote them.
fn entries(state_dir: &Path, dirs: &BTreeSet<String>) -> Vec<String> {
    let mut all: Vec<(DateTime<Utc>, String)> = Vec::new();
    for dir in dirs {
        let path = state_dir.join("runs").join(dir).join("journal.jsonl");
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            let at: DateTime<Utc> = serde_json::from_value(e["at"].clone()).unwrap();
            all.push((at, e["event"].as_str().unwrap_or_default().to_string()));
        }
    }
    all.sort_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, event)| event).collect()
}

/// What a clean run of a runbook does, from a fresh simulation.
struct Clean {
    end: Value,
    sent: Mutations,
    /// Its journal's events, in order: entry k (from 1) is `events[k - 1]`.
    events: Vec<String>,
}

async fn clean(runbook: Runbook) -> Clean {
    let p = prepare(runbook).await;
    let (before, runs_before) = (counts(&p.sim), runs(&p.t.state_dir()));
    let ran = p.t.run_with(runbook.args());
    assert_eq!(
        ran.code, 0,
        "the clean {runbook:?} run\n{}\n{}",
        ran.stdout, ran.stderr
    );
    let new: BTreeSet<String> = runs(&p.t.state_dir())
        .difference(&runs_before)
        .cloned()
        .collect();
    let clean = Clean {
        end: end_state(&p.sim),
        sent: accepted_since(&p.sim, &before),
        events: entries(&p.t.state_dir(), &new),
    };
    p.sim.shutdown().await;
    clean
}

/// The one run (not a nested one) that appeared since `before`.
fn new_run(p: &Prepared, before: &BTreeSet<String>) -> String {
    let new: Vec<String> = runs(&p.t.state_dir())
        .difference(before)
        .filter(|r| !r.contains('.'))
        .cloned()
        .collect();
    assert_eq!(new.len(), 1, "one new run, not {new:?}");
    new[0].clone()
}

/// `--resume` of `run` after the crash, then the rules and the clean end, counted.
fn resume_to_clean_end(
    p: &Prepared,
    runbook: Runbook,
    run: &str,
    before: &(Mutations, Mutations),
    clean: &Clean,
    what: &str,
) {
    let mut args = runbook.args();
    args.extend(["--resume", run]);
    let resumed = p.t.run_with(args);
    check(p, &resumed, what);
    assert_eq!(
        resumed.code, 0,
        "{what}: --resume did not complete\n{}\n{}",
        resumed.stdout, resumed.stderr
    );
    assert_eq!(
        end_state(&p.sim),
        clean.end,
        "{what}: the end differs from the clean run's\n{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    assert_eq!(
        accepted_since(&p.sim, before),
        clean.sent,
        "{what}: the mutations received differ from the clean run's\n{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
}

/// Killed right after journal entry `k`, then resumed.
async fn crash_at(runbook: Runbook, k: usize, clean: &Clean) {
    let what = format!(
        "{runbook:?} killed after entry {k} ({})",
        clean.events[k - 1]
    );
    let p = prepare(runbook).await;
    let (before, runs_before) = (counts(&p.sim), runs(&p.t.state_dir()));
    let at = k.to_string();
    let killed = p.t.run_env(
        runbook.args(),
        &[("DRBOOK_CRASH_AT_JOURNAL_ENTRY", at.as_str())],
    );
    assert_eq!(
        killed.code, -1,
        "{what}: not killed\n{}\n{}",
        killed.stdout, killed.stderr
    );
    let run = new_run(&p, &runs_before);
    resume_to_clean_end(&p, runbook, &run, &before, clean, &what);
    p.sim.shutdown().await;
}

/// Killed `after` into the step `step` (a long wait), then resumed.
async fn crash_in(runbook: Runbook, step: &str, after: Duration, clean: &Clean) {
    let what = format!("{runbook:?} killed {after:?} into step {step:?}");
    let p = prepare(runbook).await;
    let (before, runs_before) = (counts(&p.sim), runs(&p.t.state_dir()));
    let mut child = p.t.spawn_with(&runbook.args());
    let state_dir = p.t.state_dir();
    let marker = format!("\"step\":\"{step}\"");
    crate::harness::eventually(&format!("{what}: the step to begin"), || {
        let state_dir = state_dir.clone();
        let marker = marker.clone();
        async move {
            runs(&state_dir).iter().find_map(|r| {
                let text =
                    std::fs::read_to_string(state_dir.join("runs").join(r).join("journal.jsonl"))
                        .ok()?;
                text.lines()
                    .any(|l| l.contains("\"event\":\"step_start\"") && l.contains(&marker))
                    .then_some(())
            })
        }
    })
    .await;
    tokio::time::sleep(after).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let run = new_run(&p, &runs_before);
    resume_to_clean_end(&p, runbook, &run, &before, clean, &what);
    p.sim.shutdown().await;
}

/// The crash points of a runbook: every entry with `full`, else every other boundary of a
/// mutation (its intent or its outcome, and a drill step's start or end, in turn; `offset`
/// picks which half, so that runbooks meet both kinds).
fn points(clean: &Clean, full: bool, offset: usize) -> Vec<usize> {
    // `DRBOOK_CRASH_POINTS=17,22` replays only those (to reproduce a failure).
    if let Ok(only) = std::env::var("DRBOOK_CRASH_POINTS") {
        return only
            .split(',')
            .filter_map(|k| k.trim().parse().ok())
            .collect();
    }
    clean
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| full || matches!(e.as_str(), "intent" | "outcome" | "progress"))
        .map(|(i, _)| i + 1)
        // The last entry ends the run: a crash after it has nothing left to resume.
        .filter(|k| *k < clean.events.len())
        .enumerate()
        .filter(|(i, _)| full || i % 2 == offset % 2)
        .map(|(_, k)| k)
        .collect()
}

async fn campaign(runbook: Runbook, waits: &[(&str, Duration)]) {
    let full = std::env::var("DRBOOK_CAMPAIGN").is_ok_and(|v| v == "full");
    let clean = std::sync::Arc::new(clean(runbook).await);
    let mut failed = Vec::new();
    let mut record = |ran| failed.extend(failure(ran));
    for k in points(&clean, full, runbook as usize) {
        let clean = clean.clone();
        record(tokio::spawn(async move { crash_at(runbook, k, &clean).await }).await);
    }
    for (step, after) in waits {
        let (clean, step, after) = (clean.clone(), (*step).to_string(), *after);
        record(tokio::spawn(async move { crash_in(runbook, &step, after, &clean).await }).await);
    }
    assert!(
        failed.is_empty(),
        "{} crash point(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_failover() {
    campaign(Runbook::Failover, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_failback() {
    campaign(
        Runbook::Failback,
        &[("copy back", Duration::from_millis(300))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_switchover() {
    campaign(Runbook::Switchover, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_drill() {
    campaign(Runbook::Drill, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_decommission() {
    campaign(Runbook::Decommission, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_setup() {
    campaign(
        Runbook::Setup,
        &[("first sync", Duration::from_millis(300))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_failover_both_ways() {
    campaign(Runbook::FailoverBothWays, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_failback_both_ways() {
    campaign(
        Runbook::FailbackBothWays,
        &[("copy back", Duration::from_millis(300))],
    )
    .await;
}

/// `n` of `all`, spread evenly from the first to the last.
fn spread(all: &[usize], n: usize) -> Vec<usize> {
    if all.len() <= n {
        return all.to_vec();
    }
    (0..n).map(|i| all[i * (all.len() - 1) / (n - 1)]).collect()
}

/// A test failover killed at mutation boundaries spread over its steps (every one with
/// `DRBOOK_CAMPAIGN=full`: each case costs a run over real SSH), then resumed; and one killed
/// half-way and swept with `cleanup=<run>` instead, which leaves the sites as they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_test_failover() {
    let runbook = Runbook::TestFailover;
    let full = std::env::var("DRBOOK_CAMPAIGN").is_ok_and(|v| v == "full");
    let clean = std::sync::Arc::new(clean(runbook).await);
    let all = points(&clean, true, 0)
        .into_iter()
        .filter(|k| matches!(clean.events[k - 1].as_str(), "intent" | "outcome"))
        .collect::<Vec<_>>();
    let chosen = if full { all.clone() } else { spread(&all, 4) };
    let mut failed = Vec::new();
    for k in chosen {
        let clean = clean.clone();
        failed.extend(failure(
            tokio::spawn(async move { crash_at(runbook, k, &clean).await }).await,
        ));
    }
    let middle = all[all.len() / 2];
    failed.extend(failure(
        tokio::spawn(async move { crash_then_cleanup(middle).await }).await,
    ));
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// Killed after entry `k`, then swept with `cleanup=<run>`: the sites end as they began.
async fn crash_then_cleanup(k: usize) {
    let runbook = Runbook::TestFailover;
    let p = prepare(runbook).await;
    let runs_before = runs(&p.t.state_dir());
    let at = k.to_string();
    let killed = p.t.run_env(
        runbook.args(),
        &[("DRBOOK_CRASH_AT_JOURNAL_ENTRY", at.as_str())],
    );
    assert_eq!(killed.code, -1, "not killed after entry {k}");
    let run = new_run(&p, &runs_before);
    let cleanup = format!("cleanup={run}");
    let swept =
        p.t.run_with(["run", "test-failover", "--yes", "--var", cleanup.as_str()]);
    assert_eq!(
        swept.code, 0,
        "the cleanup after a crash at entry {k}\n{}\n{}",
        swept.stdout, swept.stderr
    );
    swept.stdout_has("no test artifact remains");
    assert_eq!(
        end_state(&p.sim),
        p.start,
        "killed after entry {k} and swept: the sites differ from where they began"
    );
    p.sim.shutdown().await;
}
