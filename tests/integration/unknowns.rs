//! What drbook could not read is never taken for a fact: one test per case seen from outside
//! with one fault at a time, each judged by what reached the simulator and where the VMs,
//! images and writes ended (the fault campaign in `campaign.rs` covers the rest).

use std::io::{BufRead as _, BufReader};

use drbook::sim::faults::{Api, FaultKind};
use serde_json::Value;

use crate::campaign::{Prepared, Runbook, end_state, fault, prepare};
use crate::harness::{Ran, has, held, vm_states};

/// Every image's role on `site`.
fn primary_on(state: &Value, site: &str) -> Vec<bool> {
    state["images"]
        .as_object()
        .unwrap()
        .values()
        .map(|roles| roles[site] == true)
        .collect()
}

/// Runs `args`, asserting nothing that could change a site reached either.
fn refused_untouched(p: &Prepared, args: &[&str]) -> Ran {
    let before = p.sim.mutations();
    let ran = p.t.run_with(args.iter().copied());
    assert_ne!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let sent = p.sim.mutations().since(&before);
    assert!(
        sent.is_empty(),
        "sent {sent:?}\n{}\n{}",
        ran.stdout,
        ran.stderr
    );
    ran
}

/// `--resume` of a run that stopped, with the same arguments (or the same run again when it
/// got nothing done and so names nothing to resume).
fn resume(p: &Prepared, args: &[&str], stopped: &Ran) -> Ran {
    let hint = stopped.resume_hint();
    let mut all: Vec<&str> = args.to_vec();
    if let Some(id) = &hint {
        all.extend(["--resume", id.as_str()]);
    }
    p.t.run_with(all)
}

/// A finished failback: images primary on site-a alone, the VMs there, every write made on
/// the DR site at home.
fn failed_back(p: &Prepared) {
    let end = end_state(&p.sim);
    assert!(primary_on(&end, "site-a").iter().all(|p| *p), "{end}");
    assert!(primary_on(&end, "site-b").iter().all(|p| !*p), "{end}");
    assert!(vm_states(&p.sim, "site-a").values().all(|s| s == "Running"));
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Stopped"));
    let home = held(&p.sim, "dr-centos-1", "site-a");
    assert!(p.on_dr.iter().all(|w| home.contains(w)), "{home:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_never_takes_an_unread_dr_site_for_already_back() {
    // Seen: one malformed answer (or six failures) from the DR site's pool status, and
    // failback printed "data: already back before this run", exit 0, split-brain left.
    let p = prepare(Runbook::Failback).await;
    let args = Runbook::Failback.args();
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Glue,
            "/mirror/image/rbd",
            FaultKind::MalformedJson,
            12,
        ))
        .unwrap();
    let ran = refused_untouched(&p, &args);
    ran.stdout_lacks("already back");
    let error = ran.error_lines().join("\n");
    has(&error, "site-b's Glue could not be read");
    p.sim.clear_faults();
    resume(&p, &args, &ran).expect_code(0);
    failed_back(&p);
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_never_takes_an_unread_protected_site_for_resynced() {
    // Seen: one bad answer from the protected site's Glue, and failback decided "the resync
    // is done", stopped every VM, then waited hours for a copy that never started.
    let p = prepare(Runbook::Failback).await;
    let args = Runbook::Failback.args();
    p.sim
        .add_fault(fault(
            "site-a",
            Api::Glue,
            "/mirror/image/rbd",
            FaultKind::HtmlPage,
            12,
        ))
        .unwrap();
    let ran = refused_untouched(&p, &args);
    ran.stderr_lacks("the resync is done");
    let error = ran.error_lines().join("\n");
    has(&error, "site-a's Glue could not be read");
    let copies = p.sim.state()["storage"]["data_movement"]["full_copies"].clone();
    p.sim.clear_faults();
    resume(&p, &args, &ran).expect_code(0);
    assert_ne!(
        p.sim.state()["storage"]["data_movement"]["full_copies"],
        copies,
        "the resumed failback resynced"
    );
    failed_back(&p);
    p.sim.shutdown().await;
}

fn drill_args() -> Vec<&'static str> {
    Runbook::Drill.args()
}

/// The VM where a drill starts and must end: running on site-a, its images primary there.
fn drill_home(p: &Prepared) {
    assert_eq!(vm_states(&p.sim, "site-a")["dr-centos-1"], "Running");
    assert_eq!(vm_states(&p.sim, "site-b")["dr-centos-1"], "Stopped");
    let end = end_state(&p.sim);
    assert_eq!(end["images"], p.start["images"], "every image where it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_drill_returns_the_vm_and_its_resume_drills_it_again() {
    // Seen: a fault on a drill's mutation after its first step left the production VM
    // stopped, its resume replayed the failure, and a fresh drill then "passed".
    for (command, kind) in [
        ("demoteDisasterRecoveryClusterVm", FaultKind::ServerError),
        ("startDisasterRecoveryClusterVm", FaultKind::Reset),
        ("promoteDisasterRecoveryClusterVm", FaultKind::HtmlPage),
    ] {
        let p = prepare(Runbook::Drill).await;
        p.sim
            .add_fault(fault("site-a", Api::Mold, command, kind, 1))
            .unwrap();
        let ran = p.t.run_with(drill_args()).expect_code(1);
        assert!(
            ran.stderr.contains("dr-centos-1 is back where it started"),
            "{command}: {}",
            ran.stderr
        );
        drill_home(&p);
        let resumed = resume(&p, &drill_args(), &ran).expect_code(0);
        resumed.stdout_has("1 of 1 drill(s) passed");
        drill_home(&p);
        p.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_touches_nothing_unless_the_vm_runs_at_home() {
    // Seen: after a switchover a drill stopped the production VM on the DR site, failed, and
    // left it stopped.
    let p = prepare(Runbook::Switchover).await;
    p.t.run_with(Runbook::Switchover.args()).expect_code(0);
    let ran = refused_untouched(&p, &drill_args());
    ran.stderr_has("a drill starts from site-a");
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Running"));
    p.sim.shutdown().await;

    // A VM that is down at home is not drilled (a drill would end with it running).
    let p = prepare(Runbook::Drill).await;
    p.t.write_file(
        "stop.rhai",
        "stop_vm(\"site-a\", \"dr-centos-1\", #{force: true});",
    );
    p.t.run_with(["run", "stop.rhai", "--yes"]).expect_code(0);
    let ran = refused_untouched(&p, &drill_args());
    ran.stderr_has("dr-centos-1 (Stopped on site-a)");
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_is_retried_and_never_taken_for_molds_pre_check() {
    // Seen: six 429s on a drill's VM-level command made drbook wait, silently, for replicas
    // to go idle that had just been promoted.
    let p = prepare(Runbook::Drill).await;
    p.sim
        .add_fault(fault(
            "site-a",
            Api::Mold,
            "startDisasterRecoveryClusterVm",
            FaultKind::RateLimit,
            6,
        ))
        .unwrap();
    let ran = p.t.run_with(drill_args());
    // Taken for the pre-check, it waited for copies that were primary (30 minutes), then
    // failed with the wait's time-out; the rate limiter's turn-aways were not sent again.
    ran.stderr_lacks("gave up waiting");
    assert!(
        p.sim
            .mutation_count("site-a", Api::Mold, "startDisasterRecoveryClusterVm")
            <= 6,
        "sent only as often as the client retries a 429"
    );
    if ran.code != 0 {
        ran.stdout_has("rate limit");
        ran.stderr_has("back where it started");
    }
    drill_home(&p);
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_what_it_could_not_read_and_exits_1() {
    let p = prepare(Runbook::Status).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Glue,
            "/mirror/image/rbd",
            FaultKind::ServerError,
            12,
        ))
        .unwrap();
    let ran = p.t.run_with(["run", "status"]).expect_code(1);
    ran.stdout_has("UNKNOWN: site-b's Glue could not be read");
    ran.stdout_lacks("(not synced)");
    ran.stderr_has("error: incomplete: site-b's Glue could not be read");
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_does_not_promote_on_a_loss_it_could_not_read() {
    // Seen: with the DR site's Glue unreadable, failover reported every write at risk
    // ("never synced"; the real lag was seconds) and promoted.
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Glue,
            "/mirror/image/rbd",
            FaultKind::MalformedJson,
            12,
        ))
        .unwrap();
    let ran = refused_untouched(&p, &Runbook::Failover.args());
    ran.stdout_lacks("never synced");
    let error = ran.error_lines().join("\n");
    has(&error, "site-b's Glue could not be read");
    p.sim.clear_faults();
    resume(&p, &Runbook::Failover.args(), &ran).expect_code(0);
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Running"));
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_refuses_a_protected_site_that_answers_badly() {
    // A protected site whose Mold answers with errors may still run its VMs: not "down".
    let p = prepare(Runbook::Switchover).await;
    p.sim
        .add_fault(fault(
            "site-a",
            Api::Mold,
            "listCapabilities",
            FaultKind::HtmlPage,
            12,
        ))
        .unwrap();
    p.sim
        .add_fault(fault(
            "site-a",
            Api::Glue,
            "GET /api/v1/glue",
            FaultKind::Timeout,
            12,
        ))
        .unwrap();
    let ran = refused_untouched(&p, &Runbook::Failover.args());
    let error = ran.error_lines().join("\n");
    has(&error, "site-a answers, but not usably");
    has(&error, "--var force=true");
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_says_what_it_waits_for_and_which_site_does_not_answer() {
    // Seen: "0 of 10 VMs synced" every 10 s for hours, never saying the DR site was dark.
    let p = prepare(Runbook::Status).await;
    p.sim.disaster("site-b").await.unwrap();
    p.t.write_file("wait.rhai", "wait_synced(\"DR\", #{timeout: \"3s\"});");
    let ran = p.t.run_with(["run", "wait.rhai"]).expect_code(1);
    ran.stderr_has(
        "waiting for DR cluster DR to sync: 0 of 2 VMs synced; site-b's Mold accepts no connection",
    );
    let error = ran.error_lines().join("\n");
    has(&error, "gave up waiting for DR cluster \"DR\" to be synced");
    has(&error, "site-b's Mold could not be read");
    p.sim.shutdown().await;

    // Seen: a partition during a switchover's final snapshot printed nothing for minutes.
    let p = prepare(Runbook::Switchover).await;
    p.sim.set_partitioned(true).unwrap();
    p.t.write_file(
        "snap.rhai",
        "mirror_snapshot(\"site-a\", \"dr-centos-1\"); print(\"arrived\");",
    );
    let mut child = p.t.spawn_with(&["run", "snap.rhai", "--yes"]);
    let stderr = child.stderr.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("waiting for") && l.contains("still missing"))
    })
    .await
    .unwrap()
    .expect("a line saying what the wait misses");
    has(&line, "on site-b");
    p.sim.set_partitioned(false).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_are_parsed_and_checked_before_anything_is_done() {
    // Seen: --var concurrency=16 promoted, then failed (the string was never converted);
    // timeout=banana and groups=,,, failed only after the mutations.
    for (var, says) in [
        ("timeout=banana", "--var timeout=banana is not a duration"),
        (
            "groups=,,,",
            "--var groups=,,, is not a comma-separated list with no empty item",
        ),
        (
            "concurrency=0",
            "--var concurrency=0 is not a whole number from 1 to 256",
        ),
        (
            "concurency=16",
            "this runbook takes no such var; did you mean concurrency?",
        ),
        ("stop_on_failure=perhaps", "is not true or false"),
    ] {
        let p = prepare(Runbook::Failover).await;
        let mut args = Runbook::Failover.args();
        args.extend(["--var", var]);
        let ran = refused_untouched(&p, &args);
        let error = ran.error_lines().join("\n");
        assert!(error.contains(says), "{var}: {error}");
        p.sim.shutdown().await;
    }
    let p = prepare(Runbook::Failover).await;
    let mut args = Runbook::Failover.args();
    args.extend(["--var", "concurrency=16", "--var", "timeout=5m"]);
    p.t.run_with(args).expect_code(0);
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Running"));

    // sleep and wait_until reject what cannot be meant.
    for (script, says) in [
        ("sleep(-5);", "a duration cannot be negative"),
        ("sleep(\"-5s\");", "duration"),
        (
            "wait_until(|| 42, #{timeout: \"1s\"});",
            "the condition must return true or false, and it returned 42",
        ),
    ] {
        p.t.write_file("bad.rhai", script);
        let ran = p.t.run_with(["run", "bad.rhai"]).expect_code(1);
        let error = ran.error_lines().join("\n");
        assert!(error.contains(says), "{script}: {error}");
    }
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_said_once_in_one_short_line() {
    // Seen: unknown-outcome errors of 2,500 characters (every image listed), printed three
    // times over.
    let sim = crate::harness::start_sim(|c| c.vms.truncate(5)).await;
    let t = crate::harness::Test::new().sim_config(&sim);
    sim.disaster("site-a").await.unwrap();
    sim.add_fault(fault(
        "site-b",
        Api::Mold,
        "promoteDisasterRecoveryCluster",
        FaultKind::Reset,
        1,
    ))
    .unwrap();
    let ran = t.run_with(["run", "failover", "--yes"]).expect_code(1);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    let line = errors[0];
    assert!(
        line.chars().count() <= 300,
        "{} characters: {line}",
        line.chars().count()
    );
    has(line, "not sent again");
    has(line, "site-b");
    // The report (stdout) says it once too: on its step, not again on the act or at the end.
    let words = line.split(": ").last().unwrap();
    assert_eq!(ran.stdout.matches(words).count(), 1, "{}", ran.stdout);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_plan_does_not_say_images_moved() {
    // Seen: --plan printed "<vm>: primary on site-b" as if the swap had happened.
    let p = prepare(Runbook::Switchover).await;
    let ran = p.t.run_with(["run", "switchover", "--plan"]).expect_code(0);
    ran.stderr_lacks(": primary on site-b");
    ran.stderr_has("would be primary on site-b");
    p.sim.shutdown().await;
}

#[test]
fn the_shipped_runbooks_decide_on_kinds_never_on_words() {
    // Seen: failback decided on `${e}`.contains("not flagged for the copy"): a rewording in
    // Rust would have changed what it does.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["scripts", "stdlib", "examples", "examples/policies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rhai") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                assert!(
                    !(line.contains("${e}`.contains") || line.contains("e.to_string().contains")),
                    "{}:{}: decides on an error's words: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}
