//! The shipped runbooks end to end: `drbook run <name>` against the in-process simulator,
//! judged by the final state of both sites and by the data ledger (which writes each image
//! holds on each site).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use drbook::sim::Sim;
use drbook::sim::faults::{Api, FaultKind, FaultSpec};
use serde_json::Value;

use crate::harness::{Ran, Test, delivered, held, start_sim, vm_states, written};

fn all_in(sim: &Sim, site: &str, state: &str) -> bool {
    vm_states(sim, site).values().all(|s| s == state)
}

/// Whether every mirrored image's copy on `site` is primary (`true`) or a replica (`false`).
fn every_image(sim: &Sim, site: &str, primary: bool) -> bool {
    let state = sim.state();
    let images = state["storage"]["images"].as_object().unwrap();
    !images.is_empty()
        && images
            .values()
            .all(|i| i["sites"][site]["primary"].as_bool() == Some(primary))
}

/// Every image primary on `site` and a replica on the other one.
fn primary_only_on(sim: &Sim, site: &str) -> bool {
    let other = if site == "site-a" { "site-b" } else { "site-a" };
    every_image(sim, site, true) && every_image(sim, other, false)
}

fn full_copies(sim: &Sim) -> u64 {
    sim.state()["storage"]["data_movement"]["full_copies"]
        .as_u64()
        .unwrap()
}

/// What a run could change: VMs, DR records and image roles (not counters, ledgers, or the
/// mirroring agent status Mold recomputes on every read of its DR records).
fn fingerprint(sim: &Sim) -> Value {
    let mut s = sim.state();
    s.as_object_mut().unwrap().remove("mold_calls");
    s.as_object_mut().unwrap().remove("mutations");
    for site in s["sites"].as_object_mut().unwrap().values_mut() {
        for record in site["dr_clusters"].as_array_mut().unwrap() {
            record.as_object_mut().unwrap().remove("agent_status");
        }
    }
    let images: BTreeMap<String, Value> = s["storage"]["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, i)| {
            let roles: BTreeMap<String, Value> = i["sites"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(site, v)| (site.clone(), v["primary"].clone()))
                .collect();
            (k.clone(), serde_json::to_value(roles).unwrap())
        })
        .collect();
    s["storage"] = serde_json::to_value(images).unwrap();
    s
}

/// The number of state-changing requests a site received, Mold's and Glue's, as the
/// simulator counts them on arrival.
fn mutating_calls(sim: &Sim, site: &str) -> u64 {
    sim.mutations().on(site).total()
}

/// Runs `--plan` and asserts it changed nothing and sent no mutation.
fn plan_changes_nothing(t: &Test, sim: &Sim, args: &[&str]) -> Ran {
    let before = fingerprint(sim);
    let calls = (mutating_calls(sim, "site-a"), mutating_calls(sim, "site-b"));
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--plan");
    let ran = t.run_with(all).expect_code(0);
    assert_eq!(fingerprint(sim), before, "--plan changed the sites");
    assert_eq!(
        (mutating_calls(sim, "site-a"), mutating_calls(sim, "site-b")),
        calls,
        "--plan sent a mutation"
    );
    ran.stdout_has("plan: ");
    ran
}

/// Waits until the DR site holds every write of `vm` made on the protected site.
fn mold_fault(site: &str, command: &str) -> FaultSpec {
    FaultSpec {
        site: site.into(),
        api: Api::Mold,
        command: Some(command.into()),
        kind: FaultKind::FailedJob,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: None,
    }
}

/// The snapshot time the failover printed for a VM ("  vm: writes after <time> (…").
fn reported_at_risk(stdout: &str) -> BTreeMap<String, Option<DateTime<Utc>>> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            let (vm, rest) = l.split_once(": ")?;
            if let Some(t) = rest.strip_prefix("writes after ") {
                let t = t.split_whitespace().next()?;
                Some((vm.to_string(), Some(t.parse().ok()?)))
            } else if rest.starts_with("no snapshot has reached") {
                Some((vm.to_string(), None))
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_then_failback_keep_every_write_they_promise() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);

    // Writes that reach the DR site, then writes that cannot (the link is cut first).
    let t0 = Utc::now();
    let safe = written(&sim.write("dr-centos-1", "site-a", 5).unwrap());
    delivered(&sim, "dr-centos-1", "site-b", &safe).await;
    sim.set_partitioned(true).unwrap();
    let cut = Utc::now();
    let lost = written(&sim.write("dr-centos-1", "site-a", 3).unwrap());
    sim.disaster("site-a").await.unwrap();
    sim.set_partitioned(false).unwrap();

    // The plan first: it reads the dark site's absence and changes nothing.
    plan_changes_nothing(&t, &sim, &["failover"]);
    let ran = t.run_with(["run", "failover", "--yes"]).expect_code(0);

    // Every VM is reported at risk (site-a cannot be read); dr-centos-1's snapshot time
    // splits its writes exactly: the lost ones came after it, the safe ones before.
    let risk = reported_at_risk(&ran.stdout);
    assert_eq!(
        risk.keys().collect::<Vec<_>>(),
        ["dr-centos-1", "dr-centos-2", "dr-centos-3"],
        "{}",
        ran.stdout
    );
    let snapshot = risk["dr-centos-1"].expect("a replicated snapshot");
    assert!(
        snapshot.timestamp() >= t0.timestamp() && snapshot <= cut,
        "{snapshot} not between {t0} and {cut}"
    );
    let on_dr = held(&sim, "dr-centos-1", "site-b");
    assert!(safe.iter().all(|w| on_dr.contains(w)), "safe writes kept");
    assert!(
        lost.iter().all(|w| !on_dr.contains(w)),
        "at-risk writes lost"
    );
    assert!(every_image(&sim, "site-b", true));
    assert!(
        all_in(&sim, "site-b", "Running"),
        "{:?}",
        vm_states(&sim, "site-b")
    );
    ran.stdout_has("== failover of DR to site-b ==");

    // Work continues on the DR site; then the protected site returns with its VMs running.
    let dr_writes = written(&sim.write("dr-centos-1", "site-b", 4).unwrap());
    sim.recover("site-a").await.unwrap();
    assert!(all_in(&sim, "site-a", "Running"));

    plan_changes_nothing(&t, &sim, &["failback"]);
    let copies = full_copies(&sim);
    let ran = t.run_with(["run", "failback", "--yes"]).expect_code(0);
    ran.stderr_has("came back running on site-a");
    let home = held(&sim, "dr-centos-1", "site-a");
    assert!(
        dr_writes.iter().all(|w| home.contains(w)),
        "every write made on the DR site is home: {home:?}"
    );
    assert!(
        lost.iter().all(|w| !home.contains(w)),
        "the divergent writes were discarded"
    );
    assert!(
        full_copies(&sim) > copies,
        "a failback resync copies in full"
    );
    assert!(primary_only_on(&sim, "site-a"));
    assert!(all_in(&sim, "site-a", "Running"));
    assert!(all_in(&sim, "site-b", "Stopped"));

    // Run again, it finds nothing to do and changes nothing.
    let before = fingerprint(&sim);
    let ran = t.run_with(["run", "failback", "--yes"]).expect_code(0);
    ran.stdout_has("already back before this run");
    assert_eq!(fingerprint(&sim), before);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_refuses_while_the_protected_site_answers() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let before = fingerprint(&sim);
    let ran = t.run_with(["run", "failover", "--yes"]).expect_code(1);
    ran.stderr_has("site-a still answers")
        .stderr_has("drbook run switchover");
    assert_eq!(fingerprint(&sim), before);
    assert_eq!(mutating_calls(&sim, "site-b"), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_and_back_lose_nothing_and_copy_nothing_in_full() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let a_writes: Vec<(String, Vec<u64>)> = ["dr-centos-1", "dr-centos-2", "dr-centos-3"]
        .iter()
        .map(|vm| {
            (
                (*vm).to_string(),
                written(&sim.write(vm, "site-a", 3).unwrap()),
            )
        })
        .collect();
    let copies = full_copies(&sim);
    plan_changes_nothing(&t, &sim, &["switchover"]);

    // The writes just made have not necessarily reached site-b: the final snapshot carries them.
    let ran = t.run_with(["run", "switchover", "--yes"]).expect_code(0);
    for (vm, writes) in &a_writes {
        let b = held(&sim, vm, "site-b");
        assert!(
            writes.iter().all(|w| b.contains(w)),
            "{vm} lost writes: {b:?}"
        );
    }
    assert_eq!(full_copies(&sim), copies, "no full copy");
    assert!(primary_only_on(&sim, "site-b"));
    assert!(all_in(&sim, "site-b", "Running") && all_in(&sim, "site-a", "Stopped"));
    ran.stdout_has("no full copy");

    // And back, with what was written on site-b meanwhile.
    let b_writes = written(&sim.write("dr-centos-2", "site-b", 2).unwrap());
    t.run_with(["run", "switchover", "--yes"]).expect_code(0);
    let a = held(&sim, "dr-centos-2", "site-a");
    assert!(b_writes.iter().all(|w| a.contains(w)), "{a:?}");
    assert_eq!(
        full_copies(&sim),
        copies,
        "no full copy on the way back either"
    );
    assert!(primary_only_on(&sim, "site-a"));
    assert!(all_in(&sim, "site-a", "Running") && all_in(&sim, "site-b", "Stopped"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommission_fails_over_and_leaves_no_record_behind() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    // Refused while the protected site answers.
    t.run_with(["run", "decommission", "--yes"]).expect_code(1);
    assert_eq!(mutating_calls(&sim, "site-b"), 0);

    sim.disaster("site-a").await.unwrap();
    plan_changes_nothing(&t, &sim, &["decommission"]);
    let ran = t.run_with(["run", "decommission", "--yes"]).expect_code(0);
    let state = sim.state();
    assert_eq!(
        state["sites"]["site-b"]["dr_clusters"],
        serde_json::json!([]),
        "no DR record left on the DR site"
    );
    let images = state["storage"]["images"].as_object().unwrap();
    assert!(
        images
            .values()
            .all(|i| i["sites"]["site-b"]["mirrored"] == false),
        "mirroring cleared on every image"
    );
    assert!(all_in(&sim, "site-b", "Running"));
    ran.stdout_has("remove [sites.site-a]");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_of_every_vm_returns_each_to_where_it_was() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let before = fingerprint(&sim);
    plan_changes_nothing(&t, &sim, &["drill", "--var", "vm=all"]);
    // A VM that is not mirrored is refused before anything happens.
    let ran = t
        .run_with(["run", "drill", "--var", "vm=nope", "--yes"])
        .expect_code(1);
    ran.stderr_has("not mirrored in DR cluster DR");

    let ran = t
        .run_with([
            "run",
            "drill",
            "--var",
            "vm=all",
            "--var",
            "observe=100ms",
            "--yes",
        ])
        .expect_code(0);
    ran.stdout_has("3 of 3 drill(s) passed");
    // One demote per VM — and another when Mold's pre-check found a scheduled snapshot
    // copying and asked to try again later (drbook waits it out and asks again).
    assert!(
        sim.mold_calls("site-a", "demoteDisasterRecoveryClusterVm") >= 3,
        "one drill per VM"
    );
    assert_eq!(fingerprint(&sim), before, "every VM is back where it was");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_failover_and_failback_resume_to_the_same_end() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    sim.disaster("site-a").await.unwrap();

    // One failure at each mutating step: the promote's job, then one VM's start.
    sim.add_fault(mold_fault("site-b", "promoteDisasterRecoveryCluster"))
        .unwrap();
    sim.add_fault(mold_fault("site-b", "startVirtualMachine"))
        .unwrap();
    let ran = t.run_with(["run", "failover", "--yes"]).expect_code(1);
    ran.stdout_has("✗ promote");
    let id = ran.resume_id();
    let ran = t
        .run_with(["run", "failover", "--yes", "--resume", &id])
        .expect_code(1);
    ran.stdout_has("↺ check the sites");
    ran.stdout_has("✗ start group 1");
    t.run_with(["run", "failover", "--yes", "--resume", &id])
        .expect_code(0);
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        2,
        "the failed promote once, the good one once"
    );
    assert!(every_image(&sim, "site-b", true));
    assert!(all_in(&sim, "site-b", "Running"));

    // Failback, with one failure at each of its mutating steps.
    sim.recover("site-a").await.unwrap();
    for (site, command) in [
        ("site-b", "stopVirtualMachine"),
        ("site-b", "resyncDisasterRecoveryCluster"),
        ("site-b", "demoteDisasterRecoveryCluster"),
        ("site-a", "startVirtualMachine"),
    ] {
        sim.add_fault(mold_fault(site, command)).unwrap();
    }
    let mut ran = t.run_with(["run", "failback", "--yes"]);
    let id = if ran.code == 0 {
        String::new()
    } else {
        ran.resume_id()
    };
    let mut runs = 1;
    while ran.code != 0 {
        assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
        assert!(runs < 8, "failback did not converge:\n{}", ran.stderr);
        ran = t.run_with(["run", "failback", "--yes", "--resume", &id]);
        runs += 1;
    }
    assert!(
        runs >= 4,
        "each injected failure stopped the run once ({runs} runs)"
    );
    assert_eq!(
        sim.mold_calls("site-b", "resyncDisasterRecoveryCluster"),
        2,
        "the failed resync, then one sent again on resume"
    );
    // The failed demote, then one on resume — and, when a scheduled snapshot happened to be
    // copying, Mold's own "try again later" that drbook waits out and asks again.
    assert!(
        sim.mold_calls("site-b", "demoteDisasterRecoveryCluster") >= 2,
        "the failed demote was sent again on resume"
    );
    assert!(primary_only_on(&sim, "site-a"));
    assert!(all_in(&sim, "site-a", "Running") && all_in(&sim, "site-b", "Stopped"));
    sim.shutdown().await;
}

#[test]
fn the_shipped_runbooks_the_library_and_the_examples_check_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("stdlib/dr.rhai")];
    for dir in ["scripts", "examples", "examples/policies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rhai") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 14, "{files:?}");
    let mut args = vec!["check".to_string(), "--strict".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let ran = Test::new().run_with(args).expect_code(0);
    ran.stderr_lacks("warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_that_fails_while_swapping_resumes_without_a_full_copy() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let writes = written(&sim.write("dr-centos-3", "site-a", 4).unwrap());
    let copies = full_copies(&sim);
    // Glue refuses an image demote: the VMs are stopped and snapshotted, the roles not swapped.
    sim.add_fault(FaultSpec {
        site: "site-a".into(),
        api: Api::Glue,
        command: Some("/mirror/image/demote".into()),
        kind: FaultKind::ServerError,
        times: Some(1),
        rate: None,
        status: Some(500),
        latency: None,
        message: None,
    })
    .unwrap();
    let ran = t.run_with(["run", "switchover", "--yes"]).expect_code(1);
    ran.stdout_has("✗ swap roles");
    let id = ran.resume_id();
    let ran = t
        .run_with(["run", "switchover", "--yes", "--resume", &id])
        .expect_code(0);
    ran.stdout_has("↺ final snapshot");
    assert!(primary_only_on(&sim, "site-b"));
    assert!(all_in(&sim, "site-b", "Running") && all_in(&sim, "site-a", "Stopped"));
    let b = held(&sim, "dr-centos-3", "site-b");
    assert!(writes.iter().all(|w| b.contains(w)), "{b:?}");
    assert_eq!(full_copies(&sim), copies, "no full copy");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_pairs_the_sites_protects_vms_and_waits_for_the_first_copy() {
    let sim = start_sim(|c| {
        c.cluster = None;
        for vm in &mut c.vms {
            vm.mirrored = false;
        }
    })
    .await;
    let t = Test::new().sim_config(&sim);
    let protect = [
        "run",
        "setup",
        "--yes",
        "--var",
        "vms=dr-centos-1,dr-centos-2",
        "--var",
        "offering=Medium Instance",
        "--var",
        "network=Guest Network",
    ];
    // Protecting VMs needs the DR site's offering and network.
    let ran = t
        .run_with(["run", "setup", "--yes", "--var", "vms=dr-centos-1"])
        .expect_code(1);
    ran.stderr_has("--var offering=NAME");
    plan_changes_nothing(&t, &sim, &protect[1..]);

    let ran = t.run_with(protect).expect_code(0);
    ran.stdout_has("created by this run");
    let state = sim.state();
    for site in ["site-a", "site-b"] {
        let records = state["sites"][site]["dr_clusters"].as_array().unwrap();
        assert_eq!(records.len(), 1, "{site}: {records:?}");
        assert_eq!(records[0]["name"], "DR");
        assert_eq!(records[0]["status"], "Enabled");
    }
    let b = vm_states(&sim, "site-b");
    assert_eq!(
        b.keys().collect::<Vec<_>>(),
        ["dr-centos-1", "dr-centos-2"],
        "one mirrored VM per protected VM"
    );
    assert!(b.values().all(|s| s == "Stopped"));
    // The first copy is done: the replicas hold what the protected VM wrote before.
    let status = t.run_with(["run", "status"]).expect_code(0);
    status.stdout_has("all 2 mirrored VMs synced");

    // Again with one more VM: the pairing and the protected ones are left as they are.
    let ran = t
        .run_with([
            "run",
            "setup",
            "--yes",
            "--var",
            "vms=dr-centos-1,dr-centos-3",
            "--var",
            "offering=Medium Instance",
            "--var",
            "network=Guest Network",
        ])
        .expect_code(0);
    ran.stdout_has("already there");
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 1);
    assert_eq!(
        sim.mold_calls("site-a", "createDisasterRecoveryClusterVm"),
        3
    );
    sim.shutdown().await;
}

/// The Glue reads a switchover of `vms` mirrored VMs made: pool statuses and per-image
/// statuses, summed over both sites.
async fn switchover_glue_reads(vms: usize) -> (u64, u64, usize) {
    let sim = start_sim(|c| *c = c.clone().with_vms(vms)).await;
    let t = Test::new().sim_config(&sim);
    let images = sim.state()["storage"]["images"].as_object().unwrap().len();
    let before = sim.glue_call_counts();
    t.run_with(["run", "switchover", "--yes"]).expect_code(0);
    let (mut pools, mut per_image) = (0, 0);
    for ((site, route), n) in sim.glue_call_counts() {
        let n = n - before.get(&(site, route.clone())).copied().unwrap_or(0);
        if route.starts_with("GET ") && route.ends_with("/mirror/image/rbd") {
            pools += n;
        } else if route.starts_with("GET ") && route.contains("/mirror/image/status/") {
            per_image += n;
        }
    }
    assert!(primary_only_on(&sim, "site-b"));
    sim.shutdown().await;
    (pools, per_image, images)
}

/// A switchover's final snapshots and role swaps go as batches: each site's pool is read
/// once per batch and per poll round, not several times per image (a read of a 1,000-VM
/// site's pool is itself large, and the per-image acts made four per image: minutes of
/// downtime at that size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_reads_each_pool_per_batch_not_per_image() {
    let (pools, per_image, images) = switchover_glue_reads(24).await;
    assert!(images >= 24);
    assert!(
        pools < images as u64 / 2,
        "{pools} pool status reads for {images} images"
    );
    assert_eq!(per_image, 0, "no per-image status read");
}

/// The Mold requests `site` received since `before`, reads included.
fn mold_calls_since(sim: &Sim, site: &str, before: &BTreeMap<(String, String), u64>) -> u64 {
    sim.mold_call_counts()
        .into_iter()
        .filter(|((s, _), _)| s == site)
        .map(|(key, n)| n - before.get(&key).copied().unwrap_or(0))
        .sum()
}

/// A failover's cost to the DR site's Mold, counted (never timed): at most four requests per
/// VM it starts, reads and job polls included — one poll loop learning each kind's job time,
/// one VM list per group boundary, the dark site probed once. (Six or seven polls per start
/// and three VM lists per group boundary made it 7–8 per VM before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_asks_the_dr_site_at_most_four_requests_per_vm_started() {
    let vms = 60;
    let sim = start_sim(|c| *c = c.clone().with_vms(vms)).await;
    let t = Test::new().sim_config(&sim);
    sim.disaster("site-a").await.unwrap();
    let before = sim.mold_call_counts();
    t.run_with([
        "run",
        "failover",
        "--yes",
        "--var",
        "groups=tier=db,tier=app,tier=web",
        "--var",
        "concurrency=16",
    ])
    .expect_code(0);
    assert!(all_in(&sim, "site-b", "Running"));
    let calls = mold_calls_since(&sim, "site-b", &before);
    assert!(
        calls <= 4 * vms as u64,
        "{calls} Mold requests to the DR site for {vms} VMs started"
    );
    sim.shutdown().await;
}
