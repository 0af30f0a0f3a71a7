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
    let ran = Test::new()
        .sim_config(&sim)
        .args([
            "run",
            "test-failover",
            "--var",
            "vm=all",
            "--var",
            "network=DR Test Network",
            "--yes",
        ])
        .run_async()
        .await;
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
