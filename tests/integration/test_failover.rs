//! `drbook run test-failover`: a DR test that leaves production running, on the simulator
//! with real SSH to its storage VMs — every copy boots in the test network from a clone of
//! its replica's user snapshot, production and its ledger untouched, nothing copied in full,
//! and nothing of the test left afterwards; the storage side and the guards proven by what
//! reached the simulator.

use drbook::sim::Sim;
use drbook::sim::faults::Api;
use serde_json::Value;

use crate::harness::{Test, start_sim_ssh};

const A: &str = "site-a";
const B: &str = "site-b";

/// Every VM's name and state on a site.
fn vms(sim: &Sim, site: &str) -> Vec<(String, String)> {
    sim.with_world(|w, _| {
        w.site(site)
            .vms
            .iter()
            .map(|v| (v.name.clone(), v.state.clone()))
            .collect()
    })
}

/// The images of a site as `/state` shows them, with their data movement.
fn images(sim: &Sim) -> Value {
    sim.state()["storage"]["images"].clone()
}

fn full_copies(sim: &Sim) -> u64 {
    images(sim)
        .as_object()
        .unwrap()
        .values()
        .map(|i| i["data_movement"]["full_copies"].as_u64().unwrap_or(0))
        .sum()
}

/// The names of the images present on `site`.
fn present(sim: &Sim, site: &str) -> Vec<String> {
    images(sim)
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, i)| i["sites"][site]["present"] == true)
        .map(|(n, _)| n.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_failover_boots_every_copy_in_the_test_network_and_leaves_nothing() {
    let sim = start_sim_ssh(|_| {}).await;
    let production_a = vms(&sim, A);
    let production_b = vms(&sim, B);
    let images_a = present(&sim, A);
    let images_b = present(&sim, B);
    let copies_before = full_copies(&sim);
    let t = Test::new().sim_config(&sim);
    let ran = tokio::task::block_in_place(|| {
        t.run_with([
            "run",
            "test-failover",
            "--var",
            "vm=all",
            "--var",
            "network=DR Test Network",
            "--yes",
        ])
    });
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for vm in ["dr-centos-1", "dr-centos-2", "dr-centos-3"] {
        ran.stdout_has(&format!("copy {vm}-drtest-"));
    }
    ran.stdout_has("RTO");
    ran.stdout_has("RPO");
    ran.stdout_has("no test artifact remains on either site");
    // Production never changed state, on either site; no VM, volume or image is left over.
    assert_eq!(vms(&sim, A), production_a);
    assert_eq!(vms(&sim, B), production_b);
    assert_eq!(present(&sim, A), images_a);
    assert_eq!(present(&sim, B), images_b);
    assert_eq!(
        full_copies(&sim),
        copies_before,
        "no volume was copied in full"
    );
    // Three VMs, four images: one clone each, deployed once each, never sent twice.
    assert_eq!(sim.mutation_count(B, Api::Mold, "importVolume"), 4);
    assert_eq!(
        sim.mutation_count(B, Api::Mold, "deployVirtualMachineForVolume"),
        3
    );
    assert_eq!(sim.mutation_count(B, Api::Mold, "destroyVirtualMachine"), 3);
    assert_eq!(sim.mutation_count(A, Api::Ssh, "rbd snap create"), 4);
    assert_eq!(sim.mutation_count(B, Api::Ssh, "rbd clone"), 4);
    // Production's own Mold saw no VM command at all.
    for command in [
        "stopVirtualMachine",
        "startVirtualMachine",
        "destroyVirtualMachine",
    ] {
        assert_eq!(sim.mutation_count(A, Api::Mold, command), 0, "{command}");
    }
    sim.shutdown().await;
    the_dated_record_is_kept(&t, &run_of(&ran.stdout).unwrap());
}

/// What an auditor reads afterwards: the saved report with per-VM RTO and RPO, the HTML page
/// with a timeline bar for each copy's start, `drbook runs` and `drbook report`.
fn the_dated_record_is_kept(t: &Test, run: &str) {
    let dir = t.state_dir().join("runs").join(run);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let record = &saved["record"];
    assert_eq!(record["title"], "DR test of DR", "{saved:#}");
    assert_eq!(record["cluster"], "DR");
    let vms = record["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3, "{record:#}");
    for v in vms {
        let vm = v["vm"].as_str().unwrap();
        assert_eq!(v["copy"], format!("{vm}-drtest-{run}"), "{v}");
        assert!(v["rto_s"].as_i64().is_some_and(|s| s >= 0), "{v}");
        assert!(v["rpo_s"].as_i64().is_some_and(|s| s >= 0), "{v}");
    }
    assert!(
        record["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["label"] == "cleanup"
                && r["text"] == "no test artifact remains on either site"),
        "{record:#}"
    );
    // Each copy's start job, with its own time, on the timeline.
    let starts: Vec<&Value> = saved["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["primitive"] == "start_vms")
        .flat_map(|a| a["items"].as_array().unwrap())
        .collect();
    assert_eq!(starts.len(), 3, "{saved:#}");
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("<svg"), "{page}");
    for v in vms {
        let copy = v["copy"].as_str().unwrap();
        assert!(
            page.contains(&format!("start_vms {copy} on site-b")),
            "{copy}: {page}"
        );
    }
    assert!(
        std::fs::read_to_string(dir.join("report.txt"))
            .unwrap()
            .contains("== DR test of DR ==")
    );

    let listed = t.run_with(["runs"]).expect_code(0);
    let line = listed
        .stdout
        .lines()
        .find(|l| l.contains(run))
        .unwrap_or_else(|| panic!("{}", listed.stdout));
    for column in ["test-failover", "DR", "ok"] {
        assert!(line.contains(column), "{column} in {line}");
    }
    let shown = t.run_with(["report", run, "--json"]).expect_code(0);
    let back: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(back["record"], *record);
    let html = t.run_with(["report", "last", "--html"]).expect_code(0);
    assert!(
        html.stdout.starts_with("<!DOCTYPE html>"),
        "{}",
        html.stdout
    );
    t.run_with(["report", "last"])
        .expect_code(0)
        .stdout_has("== DR test of DR ==")
        .stdout_has("saved: ");
    let typo = &run[..run.len() - 1];
    t.run_with(["report", typo])
        .expect_code(2)
        .stderr_has(&format!("did you mean {run}?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_test_is_removed_by_cleanup_of_its_run() {
    let sim = start_sim_ssh(|_| {}).await;
    let images_b = present(&sim, B);
    let t = Test::new().sim_config(&sim);
    let ran = t.run_with([
        "run",
        "test-failover",
        "--var",
        "vm=dr-centos-1",
        "--var",
        "network=DR Test Network",
        "--var",
        "keep=until-cleanup",
        "--yes",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let run = ran.resume_hint().or_else(|| run_of(&ran.stdout)).unwrap();
    let copies: Vec<(String, String)> = vms(&sim, B)
        .into_iter()
        .filter(|(n, _)| n.contains("-drtest-"))
        .collect();
    assert_eq!(
        copies,
        [(format!("dr-centos-1-drtest-{run}"), "Running".to_string())]
    );
    let ran = t.run_with([
        "run",
        "test-failover",
        "--var",
        &format!("cleanup={run}"),
        "--yes",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    ran.stdout_has("nothing: no test artifact remains");
    assert!(vms(&sim, B).iter().all(|(n, _)| !n.contains("-drtest-")));
    assert_eq!(present(&sim, B), images_b);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sites_own_checks_run_on_each_copy_and_a_failed_one_fails_the_test_after_teardown() {
    let sim = start_sim_ssh(|_| {}).await;
    let images_b = present(&sim, B);
    let t = Test::new().sim_config(&sim).file(
        "checks.rhai",
        r#"
let copy = vm(ARGS.site, ARGS.copy);
print(`checked ${ARGS.copy} (test of ${ARGS.vm}, run ${ARGS.run}) on ${ARGS.site} in ${ARGS.network}: ${copy.state}`);
if ARGS.vm == "dr-centos-2" {
    throw "the application did not answer on :443";
}
"#,
    );
    // A check that cannot be found is refused before anything is touched.
    let refused = t.run_with([
        "run",
        "test-failover",
        "--var",
        "vm=dr-centos-1",
        "--var",
        "network=DR Test Network",
        "--var",
        "verify=chekcs.rhai",
        "--yes",
    ]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    refused.stderr_has("--var verify=chekcs.rhai: cannot read");
    assert_eq!(sim.mutation_count(A, Api::Ssh, "rbd snap create"), 0);

    let ran = tokio::task::block_in_place(|| {
        t.run_with([
            "run",
            "test-failover",
            "--var",
            "vm=dr-centos-1,dr-centos-2",
            "--var",
            "network=DR Test Network",
            "--var",
            "verify=checks.rhai",
            "--yes",
        ])
    });
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let run = run_of(&ran.stdout).unwrap();
    for vm in ["dr-centos-1", "dr-centos-2"] {
        ran.stdout_has(&format!(
            "checked {vm}-drtest-{run} (test of {vm}, run {run}) on site-b in DR Test Network: Running"
        ));
    }
    ran.stderr_has("failed on 1 copy(ies)");
    // Torn down all the same.
    ran.stdout_has("no test artifact remains on either site");
    assert!(vms(&sim, B).iter().all(|(n, _)| !n.contains("-drtest-")));
    assert_eq!(present(&sim, B), images_b);
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(t.state_dir().join("runs").join(&run).join("report.json"))
            .unwrap(),
    )
    .unwrap();
    let verified: Vec<(String, String)> = saved["record"]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["vm"].as_str().unwrap().to_string(),
                v["verified"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verified[0],
        ("dr-centos-1".to_string(), "passed".to_string())
    );
    assert_eq!(verified[1].0, "dr-centos-2");
    assert!(
        verified[1].1.starts_with("FAILED") && verified[1].1.contains("did not answer on :443"),
        "{verified:?}"
    );
    sim.shutdown().await;
}

/// The run id the report's `run` row shows.
fn run_of(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("run:").map(|r| r.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_network_is_refused_before_anything_is_touched() {
    let sim = start_sim_ssh(|_| {}).await;
    let before = sim.mutations();
    let ran = Test::new()
        .sim_config(&sim)
        .args([
            "run",
            "test-failover",
            "--var",
            "vm=all",
            "--var",
            "network=Guest Network",
            "--yes",
        ])
        .run_async()
        .await;
    assert_ne!(ran.code, 0);
    ran.stderr_has("that are no test copies");
    assert_eq!(sim.mutations(), before, "nothing was sent");
    sim.shutdown().await;
}
