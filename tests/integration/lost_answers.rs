//! The lost-answer campaign: for every mutating Mold and Glue command a shipped runbook sends,
//! its answer lost after the effect (the simulator's `lost_answer` fault: the request is
//! handled in full, then the connection drops), and, for every site whose async jobs the
//! runbook waits on, a job poll that keeps failing. The run settles what it could not hear by
//! reading (the job, the state), and where it cannot, it stops and `--resume` settles it: each
//! case ends as the clean run ends, with every mutation received and accepted exactly as often
//! as in the clean run.
//!
//! `cargo test` loses each command's answer once per runbook; `DRBOOK_CAMPAIGN=full` also
//! loses it on every time the command is sent (the n-th request).

use drbook::sim::faults::{Api, FaultKind, FaultSpec};
use drbook::sim::mutations::Mutations;
use serde_json::Value;

use crate::campaign::{
    Prepared, Runbook, accepted_since, check, counts, end_state, failure, prepare,
};

/// What a clean run ends with and what it sent.
struct Clean {
    end: Value,
    sent: Mutations,
}

async fn clean(runbook: Runbook) -> Clean {
    let p = prepare(runbook).await;
    let before = counts(&p.sim);
    let ran = p.t.run_with(runbook.args());
    assert_eq!(
        ran.code, 0,
        "the clean {runbook:?} run\n{}\n{}",
        ran.stdout, ran.stderr
    );
    let clean = Clean {
        end: end_state(&p.sim),
        sent: accepted_since(&p.sim, &before),
    };
    p.sim.shutdown().await;
    clean
}

/// A fault on one command: a Mold command's name, or a Glue mutation key's route.
fn fault(site: &str, api: Api, command: &str, kind: FaultKind, times: u32) -> FaultSpec {
    let route = match api {
        Api::Mold | Api::Ssh => command,
        // "POST /mirror/image/promote" → the route, which the fault matches as a substring.
        Api::Glue => command.split_once(' ').map_or(command, |(_, r)| r),
    };
    FaultSpec {
        site: site.into(),
        api,
        command: Some(route.into()),
        kind,
        times: Some(times),
        rate: None,
        status: None,
        latency: None,
        message: None,
    }
}

/// The run with `faults` set for its first attempt, then (if it stopped) `--resume` with
/// them gone: the clean end, the clean counts.
async fn case(runbook: Runbook, faults: Vec<FaultSpec>, what: String, clean: &Clean) {
    let p: Prepared = prepare(runbook).await;
    let before = counts(&p.sim);
    for f in faults {
        p.sim.add_fault(f).unwrap();
    }
    let ran = p.t.run_with(runbook.args());
    check(&p, &ran, &what);
    p.sim.clear_faults();
    let mut resumed = None;
    if ran.code != 0 {
        let mut args = runbook.args();
        let hint = ran.resume_hint();
        if let Some(id) = &hint {
            args.extend(["--resume", id.as_str()]);
        }
        let again = p.t.run_with(args);
        check(&p, &again, &format!("{what}, resumed"));
        assert_eq!(
            again.code, 0,
            "{what}: --resume did not complete\n--- first run\n{}\n{}\n--- resumed\n{}\n{}",
            ran.stdout, ran.stderr, again.stdout, again.stderr
        );
        resumed = Some(again);
    }
    let shown = || match &resumed {
        Some(r) => format!(
            "--- first run\n{}\n{}\n--- resumed\n{}\n{}",
            ran.stdout, ran.stderr, r.stdout, r.stderr
        ),
        None => format!("{}\n{}", ran.stdout, ran.stderr),
    };
    assert_eq!(
        end_state(&p.sim),
        clean.end,
        "{what}: the end differs from the clean run's\n{}",
        shown()
    );
    // Nothing is accepted more often than in the clean run: a lost answer is never sent
    // again. One accepted less is no duplicate: the end state above already says its effect
    // is there. (A mirror snapshot Mold turned away while a scheduled delta was copying,
    // whose refusal was the answer lost, is settled by the next snapshot arriving: the clean
    // run, timed otherwise, had it accepted.)
    let accepted = accepted_since(&p.sim, &before);
    for (site, api, command, n) in accepted.iter() {
        assert!(
            n <= clean.sent.count(site, api, command),
            "{what}: {command} on {site}'s {api:?} accepted {n} times, more than in the clean run ({})\n{}",
            clean.sent.count(site, api, command),
            shown()
        );
    }
    p.sim.shutdown().await;
}

async fn campaign(runbook: Runbook) {
    let full = std::env::var("DRBOOK_CAMPAIGN").is_ok_and(|v| v == "full");
    let clean = std::sync::Arc::new(clean(runbook).await);
    let mut cases: Vec<(Vec<FaultSpec>, String)> = Vec::new();
    for (site, api, command, n) in clean.sent.iter() {
        if api == Api::Ssh {
            // The simulator loses no answer over SSH (it injects no faults there).
            continue;
        }
        // The n-th of its requests loses its answer (each one of them with `full`).
        let nth: Vec<u32> = if full {
            (1..=u32::try_from(n).unwrap()).collect()
        } else {
            vec![1]
        };
        for k in nth {
            let mut faults = Vec::new();
            if k > 1 {
                // The requests before the k-th pass: a zero-latency fault on each.
                let mut pass = fault(site, api, command, FaultKind::Latency, k - 1);
                pass.latency = Some("0s".into());
                faults.push(pass);
            }
            faults.push(fault(site, api, command, FaultKind::LostAnswer, 1));
            cases.push((
                faults,
                format!("{runbook:?} losing the answer to {site}'s {command} (request {k})"),
            ));
        }
    }
    // A job poll that keeps failing, on each site that ran a job.
    for site in ["site-a", "site-b"] {
        if clean
            .sent
            .iter()
            .any(|(s, api, c, _)| s == site && api == Api::Mold && !c.ends_with("ClusterVm"))
        {
            cases.push((
                vec![fault(
                    site,
                    Api::Mold,
                    "queryAsyncJobResult",
                    FaultKind::Reset,
                    12,
                )],
                format!("{runbook:?} with every job poll on {site} failing"),
            ));
        }
    }
    let mut failed = Vec::new();
    for (faults, what) in cases {
        let clean = clean.clone();
        let ran = tokio::spawn(async move { case(runbook, faults, what, &clean).await }).await;
        failed.extend(failure(ran));
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_failover() {
    campaign(Runbook::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_failback() {
    campaign(Runbook::Failback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_switchover() {
    campaign(Runbook::Switchover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_drill() {
    campaign(Runbook::Drill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_decommission() {
    campaign(Runbook::Decommission).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_setup() {
    campaign(Runbook::Setup).await;
}
