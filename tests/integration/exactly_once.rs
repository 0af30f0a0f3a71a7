//! Every mutation exactly once, every run resumable: signals during a mutation, and a resume
//! hint that works when copied.

use drbook::sim::faults::{Api, FaultKind, FaultSpec};

use crate::campaign::{Runbook, fault, prepare};
use crate::harness::{has, vm_states};

/// The words of the resume hint `drbook run` printed, as a shell would split them.
fn hint_words(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("drbook: to continue this run after fixing the cause: "))
        .unwrap_or_else(|| panic!("no resume hint in:\n{stderr}"));
    line.split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resume_hint_is_a_command_that_works_and_only_shows_when_it_can_help() {
    // Seen: the hint named scripts/failover.rhai, which `drbook run` did not find.
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Mold,
            "startVirtualMachine",
            FaultKind::FailedJob,
            4,
        ))
        .unwrap();
    let config = p.t.dir().join("drbook.toml");
    let c = config.display().to_string();
    let ran =
        p.t.run_with(["-c", c.as_str(), "run", "failover", "--yes"])
            .expect_code(1);
    let words = hint_words(&ran.stderr);
    let id = ran.resume_id();
    // The state directory came from DRBOOK_STATE_DIR (the harness's): it is named too.
    let state = p.t.state_dir().display().to_string();
    assert_eq!(
        words,
        [
            "drbook",
            "-c",
            c.as_str(),
            "run",
            "failover",
            "--state-dir",
            state.as_str(),
            "--resume",
            id.as_str()
        ],
        "{}",
        ran.stderr
    );
    p.sim.clear_faults();
    // Copied as printed (with --yes added), it finishes the run.
    let mut again: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    again.push("--yes");
    p.t.run_with(again).expect_code(0);
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Running"));

    // The name journals and logs use for a shipped runbook resumes it too.
    p.t.write_file("fail.rhai", "step(\"one\", || 1); fail(\"stop here\");");
    let ran = p.t.run_with(["run", "fail.rhai"]).expect_code(1);
    assert!(hint_words(&ran.stderr).contains(&"fail.rhai".to_string()));
    // A script that finished nothing has nothing to resume: no hint.
    p.t.write_file("nothing.rhai", "fail(\"at once\");");
    let ran = p.t.run_with(["run", "nothing.rhai"]).expect_code(1);
    ran.stderr_lacks("--resume");
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_runbook_resumes_under_the_name_its_journal_gives() {
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Mold,
            "startVirtualMachine",
            FaultKind::FailedJob,
            4,
        ))
        .unwrap();
    let ran = p.t.run_with(["run", "failover", "--yes"]).expect_code(1);
    let id = ran.resume_id();
    p.sim.clear_faults();
    p.t.run_with(["run", "scripts/failover.rhai", "--resume", &id, "--yes"])
        .expect_code(0);
    p.sim.shutdown().await;
}

/// Sends `signal` to a failover once its promote reached the DR site (held there by a
/// latency fault shorter than the client's time-out, so its answer still comes), and returns
/// its exit code and stderr.
async fn signal_mid_promote(
    signal: nix::sys::signal::Signal,
) -> (crate::campaign::Prepared, i32, String) {
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(FaultSpec {
            latency: Some("700ms".into()),
            ..fault(
                "site-b",
                Api::Mold,
                "promoteDisasterRecoveryCluster",
                FaultKind::Latency,
                1,
            )
        })
        .unwrap();
    let child = p.t.spawn_with(&Runbook::Failover.args());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    crate::harness::eventually("the promote to reach site-b", || async {
        (p.sim
            .mutation_count("site-b", Api::Mold, "promoteDisasterRecoveryCluster")
            > 0)
        .then_some(())
    })
    .await;
    nix::sys::signal::kill(pid, signal).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (p, out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_promote_lets_it_finish_journals_it_and_exits_143() {
    // Seen: drbook died mid-promote (-15), its journal ending at the intent, its lock left.
    let (p, code, stderr) = signal_mid_promote(nix::sys::signal::Signal::SIGTERM).await;
    assert_eq!(code, 143, "{stderr}");
    let id = crate::harness::Ran {
        code,
        stdout: String::new(),
        stderr: stderr.clone(),
    }
    .resume_id();
    let journal =
        std::fs::read_to_string(p.t.state_dir().join("runs").join(&id).join("journal.jsonl"))
            .unwrap();
    has(&journal, "\"event\":\"outcome\"");
    has(&journal, "\"event\":\"run_end\"");
    // The lock is free: the resume takes it and finishes; the promote went out once.
    let mut args = Runbook::Failover.args();
    args.extend(["--resume", id.as_str()]);
    let resumed = p.t.run_with(args).expect_code(0);
    assert_eq!(
        p.sim
            .mutation_count("site-b", Api::Mold, "promoteDisasterRecoveryCluster"),
        1,
        "{stderr}\n--- resumed\n{}\n{}",
        resumed.stdout,
        resumed.stderr
    );
    assert!(vm_states(&p.sim, "site-b").values().all(|s| s == "Running"));
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ctrl_c_mid_promote_exits_130() {
    // Seen: one Ctrl-C during a promote exited 1, not the documented 130.
    let (p, code, stderr) = signal_mid_promote(nix::sys::signal::Signal::SIGINT).await;
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        p.sim
            .mutation_count("site-b", Api::Mold, "promoteDisasterRecoveryCluster"),
        1
    );
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_at_a_time_on_the_whole_machine() {
    // Seen: two runs from two working directories both sent the forced promote; the lock
    // held only within one state directory.
    let sim = crate::harness::start_sim(|_| {}).await;
    let machine = tempfile::tempdir().unwrap();
    let locks = machine.path().display().to_string();
    let holder = crate::harness::Test::new()
        .sim_config(&sim)
        .env("DRBOOK_LOCK_DIR", &locks)
        .file(
            "hold.rhai",
            "stop_vm(\"site-a\", \"dr-centos-1\");\nsleep(\"60s\");\n",
        )
        .args(["run", "hold.rhai"]);
    let mut child = holder.spawn();
    crate::harness::eventually("the lock to be taken", || async {
        std::fs::read_dir(machine.path())
            .ok()?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "lock"))
            .then_some(())
    })
    .await;
    // The holder takes the lock before it sends its stop: once that has arrived too, nothing
    // of the holder's can land among what the other run is counted for.
    crate::harness::eventually("the holder's stop to arrive", || async {
        (sim.mutation_count("site-a", Api::Mold, "stopVirtualMachine") >= 1).then_some(())
    })
    .await;
    // Another operator, elsewhere, with a state directory of its own.
    let other = crate::harness::Test::new()
        .sim_config(&sim)
        .env("DRBOOK_LOCK_DIR", &locks)
        .file("other.rhai", "stop_vm(\"site-a\", \"dr-centos-2\");\n");
    let before = sim.mutations();
    let ran = other.run_with(["run", "other.rhai"]).expect_code(1);
    assert!(
        sim.mutations().since(&before).is_empty(),
        "the second run sent nothing"
    );
    let error = ran.error_lines().join("\n");
    let user = drbook::paths::user_name();
    has(&error, "DR cluster \"DR\" is locked by run");
    has(&error, "of hold.rhai");
    has(&error, &format!("user {user}, pid {}", child.id()));
    // A second simulation with a DR cluster of the same name is another cluster.
    let sim2 = crate::harness::start_sim(|_| {}).await;
    crate::harness::Test::new()
        .sim_config(&sim2)
        .env("DRBOOK_LOCK_DIR", &locks)
        .file("other.rhai", "stop_vm(\"site-a\", \"dr-centos-2\");\n")
        .args(["run", "other.rhai"])
        .run_async()
        .await
        .expect_code(0);
    child.kill().unwrap();
    child.wait().unwrap();
    // Its holder gone (same host, PID gone), the lock is taken over.
    other.run_with(["run", "other.rhai"]).expect_code(0);
    sim.shutdown().await;
    sim2.shutdown().await;
}

/// Whether every image of the simulation is primary on `site` (the lost site's copies stay
/// primary there: it is dark).
fn primary_on(p: &crate::campaign::Prepared, site: &str) -> bool {
    let end = crate::campaign::end_state(&p.sim);
    end["images"]
        .as_object()
        .unwrap()
        .values()
        .all(|roles| roles[site] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_promote_is_settled_on_resume_by_reading_and_never_sent_again() {
    // Seen: a promote whose answer was lost after it reached Mold was sent again by
    // `--resume` (so were resync, demote, start and stop; the lost-answer campaign covers
    // each). Here its job cannot be looked up either, so the run stops in doubt; the resume
    // settles it by reading and goes on.
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Mold,
            "promoteDisasterRecoveryCluster",
            FaultKind::LostAnswer,
            1,
        ))
        .unwrap();
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Mold,
            "listAsyncJobs",
            FaultKind::Reset,
            12,
        ))
        .unwrap();
    let ran = p.t.run_with(Runbook::Failover.args()).expect_code(1);
    let error = ran.error_lines().join("\n");
    has(&error, "not sent again");
    p.sim.clear_faults();
    let id = ran.resume_hint().expect("a run in doubt can be resumed");
    let mut args = Runbook::Failover.args();
    args.extend(["--resume", id.as_str()]);
    let resumed = p.t.run_with(args).expect_code(0);
    assert_eq!(
        p.sim
            .mutation_count("site-b", Api::Mold, "promoteDisasterRecoveryCluster"),
        1,
        "{}",
        resumed.stderr
    );
    assert!(primary_on(&p, "site-b"));
    assert_eq!(vm_states(&p.sim, "site-b")["dr-centos-1"], "Running");
    p.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_whose_job_poll_failed_says_so_and_resumes_to_done() {
    // Seen: the promote was accepted, then every queryAsyncJobResult failed; the error did not
    // say the promote may have happened, and every resume failed on "already primary on
    // site-b … nothing to promote". This run's own promote having taken effect is success.
    let p = prepare(Runbook::Failover).await;
    p.sim
        .add_fault(fault(
            "site-b",
            Api::Mold,
            "queryAsyncJobResult",
            FaultKind::Reset,
            40,
        ))
        .unwrap();
    let ran = p.t.run_with(Runbook::Failover.args()).expect_code(1);
    let error = ran.error_lines().join("\n");
    has(&error, "promote DR cluster");
    has(&error, "not sent again");
    p.sim.clear_faults();
    let id = ran.resume_hint().expect("a resume hint");
    let mut args = Runbook::Failover.args();
    args.extend(["--resume", id.as_str()]);
    p.t.run_with(args).expect_code(0);
    assert_eq!(
        p.sim
            .mutation_count("site-b", Api::Mold, "promoteDisasterRecoveryCluster"),
        1
    );
    assert!(primary_on(&p, "site-b"));
    p.sim.shutdown().await;
}
