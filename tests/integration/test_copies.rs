//! The Mold side of a DR test without an outage, through scripts against the simulator: a
//! test clone imported, made ROOT, deployed in the isolated test network, a data disk
//! attached, everything expunged again — and the guards that keep production out of it,
//! each proven by what reached the simulator.

use drbook::sim::Sim;
use drbook::sim::faults::Api;

use crate::harness::{Test, start_sim};

const B: &str = "site-b";
const GIB: u64 = 1 << 30;

/// A plain RBD image on site-b, standing in for a clone of a replica's user snapshot.
fn make_image(sim: &Sim, name: &str) {
    sim.with_world(|w, _| w.storage.create_image(B, name, 2 * GIB))
        .unwrap();
}

fn image_present(sim: &Sim, name: &str) -> bool {
    sim.state()["storage"]["images"][name]["sites"][B]["present"] == true
}

/// site-b's mutating Mold requests so far, for counting what a refused call sent.
fn mold_mutations(sim: &Sim) -> u64 {
    sim.mutations()
        .iter()
        .filter(|(site, api, _, _)| *site == B && *api == Api::Mold)
        .map(|(_, _, _, n)| n)
        .sum()
}

/// The production VMs of site-b and their states, which no test step may change.
fn production(sim: &Sim) -> Vec<(String, String)> {
    sim.with_world(|w, _| {
        w.site(B)
            .vms
            .iter()
            .filter(|v| !v.name.contains("-drtest-"))
            .map(|v| (v.name.clone(), v.state.clone()))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_copy_is_imported_deployed_in_the_test_network_and_expunged_without_a_trace() {
    let sim = start_sim(|_| {}).await;
    make_image(&sim, "vol-root-drtest-t1");
    make_image(&sim, "vol-data-drtest-t1");
    let before = production(&sim);
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "copy.rhai",
            r#"
let name = test_name("dr-centos-1", "t1");
let root = import_test_volume("site-b", "rbd/vol-root-drtest-t1", test_name("ROOT-dr-centos-1", "t1"));
let data = import_test_volume("site-b", "vol-data-drtest-t1", test_name("DATA-dr-centos-1", "t1"));
print(`imported ${root.kind} ${data.kind}`);
let again = import_test_volume("site-b", "vol-root-drtest-t1", test_name("ROOT-dr-centos-1", "t1"));
print(`again the same: ${again.id == root.id}`);
make_test_root("site-b", root.id);
let vm = deploy_test_vm("site-b", root.id, name,
    #{network: "DR Test Network", offering: "Medium Instance"});
print(`deployed ${vm.name} ${vm.state}`);
attach_test_volume("site-b", vm.name, data.name);
print(`test VMs ${test_vms("site-b").len()}, test volumes ${test_volumes("site-b").len()}`);
print(`destroyed ${destroy_test_vm("site-b", name)}`);
print(`again ${destroy_test_vm("site-b", name)}`);
print(`left: ${test_vms("site-b").len()} VMs, ${test_volumes("site-b").len()} volumes`);
"#,
        )
        .args(["run", "copy.rhai"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("imported DATADISK DATADISK");
    ran.stdout_has("again the same: true");
    ran.stdout_has("deployed dr-centos-1-drtest-t1 Running");
    ran.stdout_has("test VMs 1, test volumes 2");
    ran.stdout_has("destroyed true");
    ran.stdout_has("again false");
    ran.stdout_has("left: 0 VMs, 0 volumes");
    // Once each: the repeated import and destroy found their work done and sent nothing.
    for (command, n) in [
        ("importVolume", 2),
        ("updateVolume", 1),
        ("deployVirtualMachineForVolume", 1),
        ("attachVolume", 1),
        ("destroyVirtualMachine", 1),
    ] {
        assert_eq!(sim.mutation_count(B, Api::Mold, command), n, "{command}");
    }
    assert!(
        !image_present(&sim, "vol-root-drtest-t1"),
        "expunged with its VM: {}",
        sim.state()["storage"]["images"]["vol-root-drtest-t1"]
    );
    assert!(
        !image_present(&sim, "vol-data-drtest-t1"),
        "expunged with its VM"
    );
    assert_eq!(production(&sim), before, "no production VM changed");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_names_images_and_networks_are_refused_before_anything_is_sent() {
    let sim = start_sim(|_| {}).await;
    make_image(&sim, "vol-root-drtest-t1");
    let production_image =
        sim.with_world(|w, _| w.site(B).volumes.first().map(|v| v.path.clone()).unwrap());
    let t = Test::new().sim_config(&sim);
    // A test volume to deploy for, made by the primitives themselves.
    t.write_file(
        "setup.rhai",
        r#"
let root = import_test_volume("site-b", "vol-root-drtest-t1", "ROOT-drtest-t1");
make_test_root("site-b", root.id);
"#,
    );
    t.run_with(["run", "setup.rhai"]).expect_code(0);
    let cases = [
        (
            format!(r#"import_test_volume("site-b", "{production_image}", "x-drtest-t1")"#),
            "is not a test copy's",
        ),
        (
            r#"import_test_volume("site-b", "vol-root-drtest-t1", "ROOT-1")"#.to_string(),
            "is not a test copy's",
        ),
        (
            r#"deploy_test_vm("site-b", "ROOT-drtest-t1", "dr-centos-1", #{network: "DR Test Network", offering: "Medium Instance"})"#.to_string(),
            "is not a test VM's name",
        ),
        (
            r#"deploy_test_vm("site-b", "ROOT-drtest-t1", "x-drtest-t1", #{network: "Guest Network", offering: "Medium Instance"})"#.to_string(),
            "that are no test copies",
        ),
        (
            r#"deploy_test_vm("site-b", "ROOT-drtest-t1", "x-drtest-t1", #{network: "Nowhere", offering: "Medium Instance"})"#.to_string(),
            "no network on site-b \"Nowhere\"",
        ),
        (
            r#"destroy_test_vm("site-b", "dr-centos-1")"#.to_string(),
            "is not a test VM's name",
        ),
        (
            r#"attach_test_volume("site-b", "dr-centos-1", "ROOT-drtest-t1")"#.to_string(),
            "is not a test VM",
        ),
        (
            r#"test_name("dr-centos-1", "Bad Run")"#.to_string(),
            "is not a run id",
        ),
    ];
    let sent = mold_mutations(&sim);
    let before = production(&sim);
    for (call, refusal) in cases {
        t.write_file("refused.rhai", &format!("{call};\n"));
        let ran = t.run_with(["run", "refused.rhai"]);
        assert_ne!(ran.code, 0, "{call} was not refused:\n{}", ran.stdout);
        ran.stderr_has(refusal);
        assert_eq!(mold_mutations(&sim), sent, "{call} sent a mutation");
    }
    assert_eq!(production(&sim), before);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_deploy_is_settled_by_reading_not_by_deploying_again() {
    use drbook::sim::faults::{FaultKind, FaultSpec};
    let sim = start_sim(|_| {}).await;
    make_image(&sim, "vol-root-drtest-t1");
    let t = Test::new().sim_config(&sim);
    t.write_file(
        "setup.rhai",
        r#"
let root = import_test_volume("site-b", "vol-root-drtest-t1", "ROOT-drtest-t1");
make_test_root("site-b", root.id);
"#,
    );
    t.run_with(["run", "setup.rhai"]).expect_code(0);
    sim.add_fault(FaultSpec {
        site: B.into(),
        api: Api::Mold,
        command: Some("deployVirtualMachineForVolume".into()),
        kind: FaultKind::LostAnswer,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: None,
    })
    .unwrap();
    t.write_file(
        "deploy.rhai",
        r#"
let vm = step("deploy", || deploy_test_vm("site-b", "ROOT-drtest-t1", "x-drtest-t1",
    #{network: "DR Test Network", offering: "Medium Instance", start: false}));
print(`deployed ${vm.name} ${vm.state}`);
"#,
    );
    let ran = t.run_with(["run", "deploy.rhai"]).expect_code(0);
    ran.stdout_has("deployed x-drtest-t1 Stopped");
    assert_eq!(
        sim.mutation_count(B, Api::Mold, "deployVirtualMachineForVolume"),
        1,
        "the lost answer was read, not sent again"
    );
    let copies = sim.with_world(|w, _| {
        w.site(B)
            .vms
            .iter()
            .filter(|v| v.name == "x-drtest-t1")
            .count()
    });
    assert_eq!(copies, 1);
    sim.shutdown().await;
}
