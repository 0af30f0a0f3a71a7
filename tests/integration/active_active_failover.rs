//! Active-Active end to end: site-a is lost, `failover` moves only the VMs at home there, site-a
//! returns, `failback` brings them home — and site-b's own VMs are never stopped, demoted or
//! resynced, which the simulator's mutation counts and the data ledger prove. Every Mold
//! cluster-level act that would have touched them is refused with the VMs named, and sends
//! nothing.

use drbook::glue::MirrorSide as _;
use drbook::sim::Sim;
use drbook::sim::faults::Api;

use crate::harness::{Test, delivered, held, sim_glue, start_sim, vm_states, written};

const AT_A: [&str; 2] = ["dr-centos-1", "dr-centos-2"];
const AT_B: [&str; 2] = ["dr-win-1", "dr-win-2"];

async fn active_active() -> Sim {
    start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = [0, 1, 5, 6].iter().map(|&i| all[i].clone()).collect();
        *c = c.clone().active_active();
    })
    .await
}

/// The Active-Active simulation with every VM's home recorded (`record_homes`), and a test
/// directory pointing at it.
async fn recorded() -> (Sim, Test) {
    let sim = active_active().await;
    let t = Test::new()
        .sim_config(&sim)
        .file("adopt.rhai", "record_homes(\"DR\");\n");
    t.run_with(["run", "adopt.rhai"]).expect_code(0);
    (sim, t)
}

/// The images of `vms`, from the simulator's ledger.
fn images(sim: &Sim, vms: &[&str]) -> Vec<String> {
    vms.iter()
        .flat_map(|vm| {
            sim.ledger(vm).unwrap()["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["image"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether every image of `vms` is primary on `site` and only there.
async fn primary_only_on(sim: &Sim, vms: &[&str], site: &str) -> bool {
    let other = if site == "site-a" { "site-b" } else { "site-a" };
    for image in images(sim, vms) {
        let here = sim_glue(sim, site).image_status(&image).await.unwrap();
        let there = sim_glue(sim, other).image_status(&image).await.unwrap();
        if !here.is_primary() || there.is_primary() {
            return false;
        }
    }
    true
}

fn states(sim: &Sim, site: &str, vms: &[&str]) -> Vec<String> {
    let all = vm_states(sim, site);
    vms.iter().map(|vm| all[*vm].clone()).collect()
}

/// A one-line script calling one cluster-level act, expected to be refused naming site-b's
/// VMs, with nothing sent.
fn refused_naming_site_b_vms(t: &Test, sim: &Sim, call: &str) {
    refused_naming(t, sim, call, "dr-win-1, dr-win-2");
}

fn refused_naming(t: &Test, sim: &Sim, call: &str, vms: &str) {
    let before = sim.mutations();
    let name = format!("act-{}.rhai", before.total());
    t.write_file(&name, &format!("{call};\n"));
    let ran = t.run_with(["run", &name, "--yes"]).expect_code(1);
    ran.stderr_has(vms);
    ran.stderr_has("at home on site-b");
    assert!(
        sim.mutations().since(&before).is_empty(),
        "{call} sent {:?}",
        sim.mutations().since(&before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_and_failback_of_site_a_never_touch_site_bs_own_vms() {
    let (sim, t) = recorded().await;

    // Both sites write; the writes reach the other site.
    let b_writes: Vec<Vec<u64>> = AT_B
        .iter()
        .map(|vm| written(&sim.write(vm, "site-b", 3).unwrap()))
        .collect();
    let a_writes = written(&sim.write("dr-centos-1", "site-a", 3).unwrap());
    delivered(&sim, "dr-centos-1", "site-b", &a_writes).await;
    for (vm, w) in AT_B.iter().zip(&b_writes) {
        delivered(&sim, vm, "site-a", w).await;
    }

    // Mold's cluster-level acts loop over every row: drbook refuses each, naming site-b's VMs.
    refused_naming_site_b_vms(&t, &sim, "demote(\"DR\")");
    refused_naming_site_b_vms(&t, &sim, "remove_dr_cluster(\"DR\", \"site-a\")");

    sim.disaster("site-a").await.unwrap();
    refused_naming_site_b_vms(&t, &sim, "promote(\"DR\")");
    let before = sim.mutations();
    let ran = t.run_with(["run", "failover", "--yes"]).expect_code(0);
    ran.stdout_has("2 VM(s) at home on site-b kept running there");
    let failover = sim.mutations().since(&before);
    let a_images = images(&sim, &AT_A).len() as u64;
    assert_eq!(
        failover.count("site-b", Api::Glue, "POST /mirror/image/promote"),
        a_images,
        "{failover:?}"
    );
    assert_eq!(
        failover.count("site-b", Api::Mold, "startVirtualMachine"),
        2,
        "{failover:?}"
    );
    assert_eq!(
        failover.total(),
        a_images + 2,
        "only site-a's VMs were promoted and started: {failover:?}"
    );
    assert_eq!(states(&sim, "site-b", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    for image in images(&sim, &AT_B) {
        let st = sim_glue(&sim, "site-b").image_status(&image).await.unwrap();
        assert!(st.is_primary(), "{image} of site-b's own VMs: {st:?}");
    }

    // Work goes on at site-b, for both directions; then site-a returns.
    let moved = written(&sim.write("dr-centos-1", "site-b", 4).unwrap());
    let b_more = written(&sim.write("dr-win-1", "site-b", 2).unwrap());
    sim.recover("site-a").await.unwrap();
    refused_naming_site_b_vms(&t, &sim, "resync(\"DR\")");
    refused_naming_site_b_vms(&t, &sim, "demote(\"DR\")");
    refused_naming(
        &t,
        &sim,
        "remove_mirror_vm(\"DR\", \"dr-win-1\")",
        "dr-win-1",
    );

    let before = sim.mutations();
    let ran = t.run_with(["run", "failback", "--yes"]).expect_code(0);
    ran.stdout_has("2 VM(s) at home on site-b kept running there");
    let failback = sim.mutations().since(&before);
    for command in [
        "promoteDisasterRecoveryCluster",
        "demoteDisasterRecoveryCluster",
        "resyncDisasterRecoveryCluster",
    ] {
        assert_eq!(
            failback.count("site-a", Api::Mold, command)
                + failback.count("site-b", Api::Mold, command),
            0,
            "{command}: {failback:?}"
        );
    }
    // site-b: only site-a's VMs stopped and their images demoted; nothing resynced there.
    assert_eq!(
        failback.count("site-b", Api::Mold, "stopVirtualMachine"),
        2,
        "{failback:?}"
    );
    assert_eq!(
        failback.count("site-b", Api::Glue, "DELETE /mirror/image/demote"),
        a_images,
        "{failback:?}"
    );
    assert_eq!(
        failback.count("site-b", Api::Glue, "PUT /mirror/image/resync"),
        0
    );
    assert_eq!(
        failback.count("site-b", Api::Mold, "startVirtualMachine"),
        0
    );
    // site-a: its copies of its own VMs demoted, resynced, promoted back; VMs started.
    assert_eq!(
        failback.count("site-a", Api::Glue, "PUT /mirror/image/resync"),
        a_images
    );
    assert_eq!(
        failback.count("site-a", Api::Glue, "POST /mirror/image/promote"),
        a_images
    );

    // Every VM at home; site-b's ran throughout and hold every write made there.
    assert_eq!(states(&sim, "site-a", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-b", &AT_A), ["Stopped", "Stopped"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-a", &AT_B), ["Stopped", "Stopped"]);
    assert!(primary_only_on(&sim, &AT_A, "site-a").await);
    assert!(primary_only_on(&sim, &AT_B, "site-b").await);
    let home = held(&sim, "dr-centos-1", "site-a");
    assert!(
        moved.iter().all(|w| home.contains(w)),
        "the writes made on site-b came home: {home:?}"
    );
    let on_b = held(&sim, "dr-win-1", "site-b");
    assert!(
        b_writes[0].iter().chain(&b_more).all(|w| on_b.contains(w)),
        "site-b's own VM kept every write: {on_b:?}"
    );
    sim.shutdown().await;
}

/// Decommissioning a lost site of a two-way pairing fails its VMs over, then stops before
/// Mold's clear (which would unprotect site-b's own VMs and remove the pool's peer): nothing
/// is cleared, removed or destroyed, and site-b's VMs run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioning_site_a_of_a_two_way_pairing_clears_and_destroys_nothing() {
    let (sim, t) = recorded().await;
    sim.disaster("site-a").await.unwrap();
    let before = sim.mutations();
    let ran = t.run_with(["run", "decommission", "--yes"]).expect_code(1);
    ran.stderr_has("dr-win-1, dr-win-2");
    ran.stderr_has("drbook does not clear an Active-Active pairing");
    let sent = sim.mutations().since(&before);
    for command in [
        "clearDisasterRecoveryCluster",
        "deleteDisasterRecoveryCluster",
        "deleteDisasterRecoveryClusterVm",
        "stopVirtualMachine",
    ] {
        assert_eq!(
            sent.count("site-b", Api::Mold, command),
            0,
            "{command}: {sent:?}"
        );
    }
    assert_eq!(states(&sim, "site-b", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    sim.shutdown().await;
}

/// The other direction: site-b is lost, and `--var lost=site-b` moves only its VMs to
/// site-a, whose own VMs run on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_site_b_moves_only_its_vms_to_site_a() {
    let (sim, t) = recorded().await;
    sim.disaster("site-b").await.unwrap();
    // Without the var, the lost site is taken to be the pairing's protected site, site-a:
    // the run stops before anything, pointing at the var.
    let before = sim.mutations();
    t.run_with(["run", "failover", "--yes"])
        .expect_code(1)
        .stderr_has("run with --var lost=site-b");
    assert!(sim.mutations().since(&before).is_empty());
    let before = sim.mutations();
    let ran = t
        .run_with(["run", "failover", "--yes", "--var", "lost=site-b"])
        .expect_code(0);
    ran.stdout_has("DR: site-b (lost) -> site-a");
    ran.stdout_has("2 VM(s) at home on site-a kept running there");
    ran.stdout_has("--var home=site-b");
    let sent = sim.mutations().since(&before);
    let b_images = images(&sim, &AT_B).len() as u64;
    assert_eq!(
        sent.count("site-a", Api::Glue, "POST /mirror/image/promote"),
        b_images,
        "{sent:?}"
    );
    assert_eq!(sent.count("site-a", Api::Mold, "startVirtualMachine"), 2);
    assert_eq!(sent.total(), b_images + 2, "{sent:?}");
    assert_eq!(states(&sim, "site-a", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-a", &AT_B), ["Running", "Running"]);
    sim.shutdown().await;
}

/// A planned move in a two-way pairing goes one direction at a time: without `--var home` it
/// stops before anything; with it only that direction's VMs move, and back again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_moves_one_direction_and_leaves_the_other_running() {
    let (sim, t) = recorded().await;
    for vm in AT_A {
        let w = written(&sim.write(vm, "site-a", 1).unwrap());
        delivered(&sim, vm, "site-b", &w).await;
    }
    let before = sim.mutations();
    t.run_with(["run", "switchover", "--yes"])
        .expect_code(1)
        .stderr_has("move one direction at a time with --var home=site-a");
    assert!(sim.mutations().since(&before).is_empty());

    let ran = t
        .run_with(["run", "switchover", "--yes", "--var", "home=site-a"])
        .expect_code(0);
    ran.stdout_has("DR: site-a -> site-b");
    assert_eq!(states(&sim, "site-b", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-a", &AT_A), ["Stopped", "Stopped"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    ran.stdout_has("--var home=site-a moves them back");

    // Back again; site-b's own VMs were never stopped on the way.
    let ran = t
        .run_with(["run", "switchover", "--yes", "--var", "home=site-a"])
        .expect_code(0);
    ran.stdout_has("DR: site-b -> site-a");
    assert_eq!(states(&sim, "site-a", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    assert_eq!(
        sim.mutation_count("site-b", Api::Mold, "stopVirtualMachine"),
        2,
        "only site-a's VMs were stopped on site-b (once, to move them back)"
    );
    assert!(primary_only_on(&sim, &AT_A, "site-a").await);
    assert!(primary_only_on(&sim, &AT_B, "site-b").await);
    sim.shutdown().await;
}

/// A drill runs from the protected site's record: in a two-way pairing `vm=all` drills the
/// VMs at home there and says which it left out; a VM at home on the DR site is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_of_all_leaves_the_dr_sites_own_vms_out() {
    let (sim, t) = recorded().await;
    for vm in AT_A {
        let w = written(&sim.write(vm, "site-a", 1).unwrap());
        delivered(&sim, vm, "site-b", &w).await;
    }
    let before = sim.mutations();
    t.run_with([
        "run",
        "drill",
        "--yes",
        "--var",
        "vm=dr-win-1",
        "--var",
        "observe=0s",
    ])
    .expect_code(1)
    .stderr_has("dr-win-1 (at home on site-b");
    assert!(sim.mutations().since(&before).is_empty());
    let ran = t
        .run_with([
            "run",
            "drill",
            "--yes",
            "--var",
            "vm=all",
            "--var",
            "observe=0s",
        ])
        .expect_code(0);
    ran.stderr_has("not drilled: [\"dr-win-1\", \"dr-win-2\"], at home on site-b");
    let sent = sim.mutations().since(&before);
    assert_eq!(
        sent.count("site-b", Api::Mold, "stopVirtualMachine"),
        0,
        "{sent:?}"
    );
    assert_eq!(states(&sim, "site-a", &AT_A), ["Running", "Running"]);
    assert_eq!(states(&sim, "site-b", &AT_B), ["Running", "Running"]);
    sim.shutdown().await;
}
