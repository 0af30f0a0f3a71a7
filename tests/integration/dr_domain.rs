//! The domain layer (`drbook::dr`) against the in-process simulator: every primitive's happy
//! path, every guard's refusal (its text, and proof that nothing was sent), the failover and
//! failback runbooks, an orderly image-level switchover, and the mirroring drill.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use drbook::config::Config;
use drbook::dr::{Dr, DrClusterSpec, DrError, Fact, MirrorVmSpec, SiteRole, Waits};
use drbook::glue::MirrorSide;
use drbook::sim::Sim;
use drbook::sim::faults::{Api, FaultKind, FaultSpec};
use serde_json::Value;

use crate::harness::{delivered, eventually, has, lacks, start_sim, written};

const GENEROUS: Duration = Duration::from_secs(30);

/// A simulation and a `Dr` built from the `drbook.toml` the simulator writes, with test
/// waits.
struct Setup {
    sim: Sim,
    dr: Dr,
    _dir: tempfile::TempDir,
}

async fn setup(adjust: impl FnOnce(&mut drbook::sim::SimConfig)) -> Setup {
    let sim = start_sim(adjust).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drbook.toml");
    // The simulator's config polls at its own pace (50 ms with test timings).
    sim.write_config(&path).unwrap();
    let config = Config::load(&path).unwrap();
    let dr = Dr::new(&config).unwrap().with_waits(Waits {
        poll: Duration::from_millis(50),
        replication: GENEROUS,
        settle: Duration::from_secs(10),
    });
    Setup { sim, dr, _dir: dir }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

fn guard_text(r: Result<impl std::fmt::Debug, DrError>) -> String {
    match r {
        Err(e @ DrError::Guard { .. }) => e.to_string(),
        other => panic!("expected a guard refusal, got {other:?}"),
    }
}

/// The writes the VM's first image holds on `site`.
fn held(sim: &Sim, vm: &str, site: &str) -> Vec<u64> {
    sim.ledger(vm).unwrap()["images"][0]["sites"][site]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn full_copies(sim: &Sim, vm: &str) -> u64 {
    sim.ledger(vm).unwrap()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["data_movement"]["full_copies"].as_u64().unwrap())
        .sum()
}

fn images_of(sim: &Sim, vm: &str) -> Vec<String> {
    sim.ledger(vm).unwrap()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap().to_string())
        .collect()
}

/// Sets a VM's state in the simulated world directly.
fn force_state(sim: &Sim, site: &str, vm: &str, state: &str) {
    sim.with_world(|w, _| {
        let s = w.site_mut(site);
        s.vms.iter_mut().find(|v| v.name == vm).unwrap().state = state.into();
    });
}

fn vm_state(sim: &Sim, site: &str, vm: &str) -> String {
    sim.with_world(|w, _| w.site(site).vm_by_name(vm).unwrap().state.clone())
}

/// A one-shot fault on one Mold command of one site.
fn mold_fault(site: &str, command: &str, kind: FaultKind, message: Option<&str>) -> FaultSpec {
    FaultSpec {
        site: site.into(),
        api: Api::Mold,
        command: Some(command.into()),
        kind,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: message.map(String::from),
    }
}

/// Waits until every volume of the cluster is synced (the scheduler keeps snapshotting, so a
/// delta may be in flight at any moment).
async fn synced(dr: &Dr) {
    dr.wait_synced("DR", GENEROUS, Duration::from_millis(50), &|_| {})
        .await
        .expect("the cluster syncs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_sites_clusters_and_status_with_one_list_call_per_site() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    assert_eq!(dr.site_names(), names(&["site-a", "site-b"]));
    let e = dr.site("mars").unwrap_err().to_string();
    assert_eq!(
        e,
        "no site in drbook.toml \"mars\"; closest: site-a, site-b"
    );
    assert_eq!(dr.site_role("site-a").await, SiteRole::Primary);
    assert_eq!(dr.site_role("site-b").await, SiteRole::Dr);

    let health = dr.health("site-a").await;
    assert!(health.mold && health.glue, "{health}");
    assert_eq!(health.glue_health.as_deref(), Some("HEALTH_OK"));
    assert_eq!(health.problem, None);

    let clusters = dr.dr_clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    let c = &clusters[0];
    assert_eq!(
        (c.name.as_str(), c.primary_site.as_str(), c.dr_site.as_str()),
        ("DR", "site-a", "site-b")
    );
    assert_eq!(c.interval.as_deref(), Some("1h"));
    assert_eq!(c.record_ids.len(), 2);
    assert!(c.unknown.is_empty());
    let e = dr.dr_cluster("DRX").await.unwrap_err();
    assert!(
        matches!(&e, DrError::NotFound { suggestions, .. } if suggestions == &names(&["DR"])),
        "{e}"
    );
    assert_eq!(dr.mirror_interval("DR").await.unwrap(), "1h");

    // Right after the initial full copy a replica has no snapshot timestamp yet (Glue spec §6.6):
    // wait for the first scheduled snapshot to arrive.
    eventually("a replicated snapshot on every volume", || async {
        let s = dr.mirror_status("DR").await.ok()?;
        let all = s.vms.iter().flat_map(|v| &v.volumes);
        (s.summary.unsynced == 0
            && all
                .clone()
                .all(|v| matches!(v.last_snapshot, Fact::Known(Some(_)))))
        .then_some(())
    })
    .await;
    let before = [
        sim.mold_calls("site-a", "getDisasterRecoveryClusterList"),
        sim.mold_calls("site-b", "getDisasterRecoveryClusterList"),
    ];
    let vm_lists = sim.mold_calls("site-a", "listVirtualMachines");
    let status = dr.mirror_status("DR").await.unwrap();
    assert_eq!(
        [
            sim.mold_calls("site-a", "getDisasterRecoveryClusterList"),
            sim.mold_calls("site-b", "getDisasterRecoveryClusterList"),
        ],
        [before[0] + 1, before[1] + 1],
        "one list call per site"
    );
    assert_eq!(sim.mold_calls("site-a", "listVirtualMachines"), vm_lists);
    assert_eq!(status.summary.vms, 3);
    let one = &status.vms[0];
    assert_eq!(one.name, "dr-centos-1");
    assert_eq!(one.primary_vm.as_ref().unwrap().state, "Running");
    assert_eq!(one.dr_vm.as_ref().unwrap().state, "Stopped");
    assert_eq!(one.dr_vm.as_ref().unwrap().site, "site-b");
    let kinds: Vec<&str> = one.volumes.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(kinds, ["ROOT", "DATADISK"]);
    for v in &one.volumes {
        assert_eq!(v.primary_description, "local image is primary");
        assert_eq!(v.dr_state, "up+replaying");
        assert!(matches!(v.lag, Fact::Known(Some(_))), "{v:?}");
    }
    let shown = status.to_string();
    has(&shown, ": 3 VMs, 3 synced, 0 not, max lag ");
    has(
        &shown,
        "\n  dr-centos-1          synced   site-a: Running  site-b: Stopped\n",
    );
    assert_eq!(
        clusters[0].to_string(),
        "DR cluster DR: protected site-a → DR site-b, snapshots every 1h, Enabled/Enabled"
    );
    // Nothing a script can see holds a key.
    let shown = format!(
        "{status} {status:?} {} {clusters:?} {}",
        serde_json::to_string(&status).unwrap(),
        serde_json::to_string(&clusters).unwrap()
    );
    for site in sim.endpoints().sites.values() {
        lacks(&shown, &site.api_key);
        lacks(&shown, &site.secret_key);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_by_name_or_id_with_close_matches() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    assert_eq!(dr.vms("site-a").await.unwrap().len(), 3);
    let vm = dr.vm("site-a", "dr-centos-1").await.unwrap();
    assert_eq!((vm.state.as_str(), vm.site.as_str()), ("Running", "site-a"));
    assert!(vm.host.is_some());
    assert_eq!(dr.vm("site-a", &vm.id).await.unwrap(), vm);
    let e = dr.vm("site-a", "dr-cento-1").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no VM on site-a \"dr-cento-1\"; closest: dr-centos-1, dr-centos-2, dr-centos-3"
    );
    let e = dr.vm("site-a", "windows").await.unwrap_err().to_string();
    assert_eq!(e, "no VM on site-a \"windows\"");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_start_and_stop_one_by_one_and_in_batches() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let results = dr
        .stop_vms(
            "site-a",
            &names(&["dr-centos-1", "nope", "dr-centos-2"]),
            true,
            2,
            GENEROUS,
        )
        .await;
    let order: Vec<&str> = results.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(order, ["dr-centos-1", "nope", "dr-centos-2"]);
    assert_eq!(results[0].1.as_ref().unwrap().state, "Stopped");
    assert!(matches!(results[1].1, Err(DrError::NotFound { .. })));
    assert_eq!(results[2].1.as_ref().unwrap().state, "Stopped");
    assert_eq!(vm_state(&sim, "site-a", "dr-centos-2"), "Stopped");

    // Already stopped: nothing is sent.
    let stops = sim.mold_calls("site-a", "stopVirtualMachine");
    dr.stop_vm("site-a", "dr-centos-1", false).await.unwrap();
    assert_eq!(sim.mold_calls("site-a", "stopVirtualMachine"), stops);

    let started = dr
        .start_vms(
            "site-a",
            &names(&["dr-centos-1", "dr-centos-2"]),
            8,
            GENEROUS,
        )
        .await;
    assert!(
        started
            .iter()
            .all(|(_, r, _)| r.as_ref().unwrap().is_running())
    );
    let running = dr
        .wait_running("site-a", &names(&["dr-centos-1", "dr-centos-2"]), GENEROUS)
        .await
        .unwrap();
    assert_eq!(running.len(), 2);

    // Mold refuses to start a mirrored VM on replica images: its text comes back, naming it.
    let e = dr.start_vm("site-b", "dr-centos-2").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("The virtual machine cannot be started because the mirroring image not ready status.")
    );
    has(&e.to_string(), "startVirtualMachine dr-centos-2");
    let e = dr
        .wait_running(
            "site-b",
            &names(&["dr-centos-2"]),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err()
        .to_string();
    has(&e, "dr-centos-2 is Stopped");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_running_vms_on_either_site_and_sends_nothing() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    // Someone started the mirrored VM by hand (Mold's own guard would not allow it).
    force_state(&sim, "site-b", "dr-centos-2", "Running");
    assert_eq!(
        guard_text(dr.promote("DR").await),
        "cannot promote DR cluster \"DR\": mirrored VM dr-centos-2 is Running on site-b — stop it first (stop_vm(\"site-b\", \"dr-centos-2\"))"
    );
    force_state(&sim, "site-b", "dr-centos-2", "Stopped");
    // The protected site answers and its VMs run: a forced promote would make two writers.
    let e = guard_text(dr.promote("DR").await);
    assert!(
        e.starts_with("cannot promote DR cluster \"DR\" while site-a still answers: mirrored VMs are not stopped: dr-centos-1 (Running), dr-centos-2 (Running), dr-centos-3 (Running) on site-a"),
        "{e}"
    );
    has(
        &e,
        "stop_vms(\"site-a\", [\"dr-centos-1\", \"dr-centos-2\", \"dr-centos-3\"])",
    );
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        0
    );
    // A lost site cannot be cleared while it answers.
    let e = guard_text(dr.clear_garbage("DR").await);
    has(&e, "site-a is not lost: its Mold and Glue still answers");
    assert_eq!(sim.mold_calls("site-b", "clearDisasterRecoveryCluster"), 0);
    // Nor may the DR site's half of a live pairing be removed.
    let e = guard_text(dr.remove_dr_cluster("DR", "site-b").await);
    has(&e, "remove_dr_cluster(\"DR\", \"site-a\")");
    assert_eq!(sim.mold_calls("site-b", "deleteDisasterRecoveryCluster"), 0);
    // Nothing to fail back.
    let e = guard_text(dr.resync("DR").await);
    has(&e, "stop_vms(\"site-a\"");
    assert_eq!(sim.mold_calls("site-b", "resyncDisasterRecoveryCluster"), 0);
    sim.shutdown().await;
}

/// Moves one VM to the DR site the orderly way and leaves it stopped there.
async fn switch_over(dr: &Dr, sim: &Sim, vm: &str) {
    dr.stop_vm("site-a", vm, false).await.unwrap();
    dr.mirror_snapshot("site-a", vm).await.unwrap();
    for image in images_of(sim, vm) {
        dr.demote_image("site-a", &image).await.unwrap();
        dr.promote_image("site-b", &image).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reports_exactly_the_vms_whose_writes_are_at_risk() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    // dr-centos-3 already moved to the DR site in an orderly way: nothing of it is at risk.
    switch_over(&dr, &sim, "dr-centos-3").await;

    let safe = written(&sim.write("dr-centos-1", "site-a", 5).unwrap());
    delivered(&sim, "dr-centos-1", "site-b", &safe).await;
    sim.set_partitioned(true).unwrap();
    let lost = written(&sim.write("dr-centos-1", "site-a", 3).unwrap());
    sim.disaster("site-a").await.unwrap();
    sim.set_partitioned(false).unwrap();

    // Reads degrade: site-a shows as unknown, and nothing counts as synced or not.
    let status = dr.mirror_status("DR").await.unwrap();
    assert!(
        status.unknown.iter().any(|u| u.site == "site-a" && u.dark),
        "{status}"
    );
    assert_eq!(status.vms[0].volumes[0].primary_state, "unknown");
    assert!(!status.vms[0].volumes[0].primary_role.is_known());
    assert_eq!(status.summary.synced, 0);
    assert_eq!(status.summary.unknown, 3, "{status}");
    assert!(
        status.dr_promoted().is_ok_and(|p| !p),
        "the DR site alone says"
    );
    assert!(
        matches!(status.primary_side(), Err(DrError::Unknown { .. })),
        "a dark side is never taken for not primary"
    );
    let clusters = dr.dr_clusters().await.unwrap();
    assert_eq!(clusters[0].primary_site, "site-a");
    assert!(clusters[0].unknown.iter().any(|u| u.site == "site-a"));
    let health = dr.health("site-a").await;
    assert!(!health.mold && !health.glue && health.problem.is_some());
    assert_eq!(dr.site_role("site-a").await, SiteRole::Unknown);

    let promoted = dr.promote("DR").await.unwrap();
    let at_risk: Vec<&str> = promoted.at_risk.iter().map(|r| r.vm.as_str()).collect();
    assert_eq!(at_risk, ["dr-centos-1", "dr-centos-2"]);
    for r in &promoted.at_risk {
        assert!(
            matches!(r.lag_secs, Fact::Known(Some(_)))
                && matches!(r.last_snapshot, Fact::Known(Some(_))),
            "{r}"
        );
        has(&r.reason, "site-a's Glue could not be read");
    }
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        1
    );
    has(&promoted.to_string(), "at risk: dr-centos-1");

    // The ledger agrees: what was delivered survived, what was at risk is gone.
    let b = held(&sim, "dr-centos-1", "site-b");
    assert!(safe.iter().all(|s| b.contains(s)));
    assert!(lost.iter().all(|s| !b.contains(s)));

    // Promoted already: a second promote is refused and sends nothing.
    let e = guard_text(dr.promote("DR").await);
    has(&e, "already primary on site-b");
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        1
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_then_failback_through_the_domain_api() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let vms = names(&["dr-centos-1", "dr-centos-2", "dr-centos-3"]);
    sim.set_partitioned(true).unwrap();
    let lost = written(&sim.write("dr-centos-1", "site-a", 3).unwrap());
    sim.disaster("site-a").await.unwrap();
    sim.set_partitioned(false).unwrap();
    dr.promote("DR").await.unwrap();
    for (name, r, _) in dr.start_vms("site-b", &vms, 4, GENEROUS).await {
        assert!(r.unwrap().is_running(), "{name}");
    }
    let dr_writes = written(&sim.write("dr-centos-1", "site-b", 4).unwrap());

    // The protected site returns with its VMs running: both sides primary.
    sim.recover("site-a").await.unwrap();
    // Removing the pairing on site-a would destroy the live VMs on site-b.
    let e = guard_text(dr.remove_dr_cluster("DR", "site-a").await);
    has(&e, "is Running on site-b");
    has(&e, "destroys the mirrored VMs");
    assert_eq!(sim.mold_calls("site-a", "deleteDisasterRecoveryCluster"), 0);

    let e = guard_text(dr.resync("DR").await);
    has(&e, "on site-a");
    has(&e, "on site-b");
    has(&e, "stop_vms(\"site-a\"");
    has(&e, "stop_vms(\"site-b\"");
    for site in ["site-a", "site-b"] {
        for (name, r, _) in dr.stop_vms(site, &vms, true, 4, GENEROUS).await {
            assert!(r.unwrap().is_stopped(), "{name} on {site}");
        }
    }
    // Demote before resync: the protected copies are still primary.
    let e = guard_text(dr.demote("DR").await);
    has(&e, "run resync(\"DR\") first");
    assert_eq!(sim.mold_calls("site-b", "demoteDisasterRecoveryCluster"), 0);

    // The return settles (orphan → primary), then resync.
    let resynced = eventually("resync to be accepted", || async {
        match dr.resync("DR").await {
            Ok(o) => Some(o),
            Err(e) if e.is_guard() && e.to_string().contains("force promoting") => None,
            Err(e) => panic!("resync: {e}"),
        }
    })
    .await;
    has(&resynced.message, "wait_synced");
    assert_eq!(sim.mold_calls("site-b", "resyncDisasterRecoveryCluster"), 1);
    let e = guard_text(dr.resync("DR").await);
    has(&e, "already replays from site-b");

    let seen = AtomicUsize::new(0);
    let status = dr
        .wait_synced("DR", GENEROUS, Duration::from_millis(50), &|_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .await
        .unwrap();
    assert!(seen.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        status.vms[0].volumes[0].dr_description,
        "local image is primary"
    );

    // Mold's pre-check may find a delta copying and ask to try again later: nothing ran, so
    // drbook waits for the copy and asks again.
    sim.add_fault(mold_fault(
        "site-b",
        "demoteDisasterRecoveryCluster",
        FaultKind::FailedJob,
        Some("Forced demote functions cannot be executed because peer state is syncing in volume path : x. Please try again later."),
    ))
    .unwrap();
    let demoted = dr.demote("DR").await.unwrap();
    has(&demoted.message, "start_vms(\"site-a\"");
    // The injected refusal, then success — or one more real "try again later" if a scheduled
    // snapshot happened to be copying: every refusal is retried, each demote sent once.
    let attempts = demoted.detail["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{demoted}");
    assert_eq!(
        sim.mold_calls("site-b", "demoteDisasterRecoveryCluster"),
        attempts
    );
    for (name, r, _) in dr.start_vms("site-a", &vms, 4, GENEROUS).await {
        assert!(r.unwrap().is_running(), "{name}");
    }
    // Every write made on the DR site came back; the divergent ones are gone.
    let a = held(&sim, "dr-centos-1", "site-a");
    assert!(
        dr_writes.iter().all(|s| a.contains(s)),
        "DR writes came back"
    );
    assert!(
        lost.iter().all(|s| !a.contains(s)),
        "divergent writes discarded"
    );
    synced(&dr).await;
    let status = dr.mirror_status("DR").await.unwrap();
    assert_eq!(
        status.vms[0].volumes[0].primary_description,
        "local image is primary"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_image_switchover_makes_no_full_copy() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let vm = "dr-centos-2";
    let image = images_of(&sim, vm).remove(0);
    synced(&dr).await;
    let writes = written(&sim.write(vm, "site-a", 6).unwrap());
    let copies = full_copies(&sim, vm);

    // Guards first: the VM runs; site-b is a replica; site-a is still primary.
    let e = guard_text(dr.demote_image("site-a", &image).await);
    has(&e, &format!("stop_vm(\"site-a\", \"{vm}\")"));
    let e = guard_text(dr.promote_image("site-b", &image).await);
    has(&e, "two primaries");
    let e = guard_text(dr.mirror_snapshot("site-b", vm).await);
    has(&e, "not primary");
    let e = guard_text(dr.resync_image("site-a", &image).await);
    has(&e, "throw this copy away");
    let a = dr.image_status("site-a", &image).await.unwrap();
    let b = dr.image_status("site-b", &image).await.unwrap();
    assert!(a.is_primary() && b.is_replaying_idle(), "nothing changed");

    dr.stop_vm("site-a", vm, false).await.unwrap();
    let snap = dr.mirror_snapshot("site-a", vm).await.unwrap();
    has(&snap.message, "reached site-b");
    assert!(writes.iter().all(|s| held(&sim, vm, "site-b").contains(s)));
    dr.demote_image("site-a", &image).await.unwrap();
    let promoted = dr.promote_image("site-b", &image).await.unwrap();
    has(&promoted.message, "no full copy");
    assert!(
        dr.image_status("site-b", &image)
            .await
            .unwrap()
            .is_primary()
    );
    eventually("site-a to replay from site-b", || async {
        let st = dr.image_status("site-a", &image).await.ok()?;
        st.is_replaying_idle().then_some(())
    })
    .await;
    assert_eq!(full_copies(&sim, vm), copies, "no full copy");
    // The VM runs on site-b now, with every write.
    assert!(dr.start_vm("site-b", vm).await.unwrap().is_running());

    // A resync of the replica is allowed, and says how much it copies.
    dr.stop_vm("site-b", vm, false).await.unwrap();
    let resync = dr.resync_image("site-a", &image).await.unwrap();
    has(
        &resync.message,
        "20.0 GiB will be copied in full from site-b",
    );
    eventually("the resync's full copy", || async {
        (full_copies(&sim, vm) > copies).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_returns_the_vm_to_where_it_was() {
    let Setup { sim, dr, _dir } = setup(|c| c.vms.truncate(1)).await;
    synced(&dr).await;
    let report = dr
        .drill("DR", "dr-centos-1", Duration::from_millis(200), false, None)
        .await
        .unwrap();
    assert!(report.ok, "{report}");
    assert_eq!(report.steps.len(), 8);
    assert!(report.steps.iter().all(|s| s.ok && s.error.is_none()));
    assert!(report.rto.is_some());
    has(&report.to_string(), "8. Start virtual machine — ok");
    assert_eq!(vm_state(&sim, "site-a", "dr-centos-1"), "Running");
    assert_eq!(vm_state(&sim, "site-b", "dr-centos-1"), "Stopped");
    for image in images_of(&sim, "dr-centos-1") {
        assert!(
            dr.image_status("site-a", &image)
                .await
                .unwrap()
                .is_primary()
        );
    }
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["rto"].as_f64().is_some() && json["steps"][0]["took"].as_f64().is_some());

    // An unknown VM is refused before anything is sent.
    let before = sim.mutations().total();
    let e = dr
        .drill("DR", "dr-centos-9", Duration::ZERO, false, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DrError::NotFound { .. }), "{e}");
    has(&e.to_string(), "closest: dr-centos-1");
    assert_eq!(sim.mutations().total(), before, "nothing was sent");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_level_commands_check_their_guards() {
    let Setup { sim, dr, _dir } = setup(|c| c.vms.truncate(1)).await;
    let vm = "dr-centos-1";
    synced(&dr).await;
    // The calls are counted: no scheduled delta may make Mold's pre-check ask to try again.
    sim.with_world(|w, now| w.set_snapshot_interval(now, Duration::from_secs(3600)));
    let e = guard_text(dr.start_mirror_vm("DR", vm).await);
    has(&e, "run demote_vm first");
    let e = guard_text(dr.demote_vm("DR", vm).await);
    has(&e, "stop_vm(\"site-a\", \"dr-centos-1\")");
    let e = guard_text(dr.promote_vm("DR", vm).await);
    has(&e, "stop_vm(\"site-a\", \"dr-centos-1\")");
    dr.stop_vm("site-a", vm, true).await.unwrap();
    let e = guard_text(dr.promote_vm("DR", vm).await);
    has(&e, "were not swapped");
    for command in [
        "startDisasterRecoveryClusterVm",
        "demoteDisasterRecoveryClusterVm",
        "promoteDisasterRecoveryClusterVm",
    ] {
        assert_eq!(sim.mold_calls("site-a", command), 0, "{command}");
    }
    let e = dr
        .snapshot_vm("DR", "dr-centos-7")
        .await
        .unwrap_err()
        .to_string();
    has(&e, "closest: dr-centos-1");
    let snap = dr.snapshot_vm("DR", vm).await.unwrap();
    has(&snap.message, "reached site-b");
    assert_eq!(
        sim.mold_calls("site-a", "takeSnapshotDisasterRecoveryClusterVm"),
        1
    );
    let stopped = dr.stop_mirror_vm("DR", vm).await.unwrap();
    assert_eq!(stopped.site, "site-a");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_protected_site_is_cleared_then_removed() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    sim.disaster("site-a").await.unwrap();
    dr.promote("DR").await.unwrap();
    let cleared = dr.clear_garbage("DR").await.unwrap();
    has(&cleared.message, "remove_dr_cluster(\"DR\", \"site-b\")");
    assert_eq!(sim.mold_calls("site-b", "clearDisasterRecoveryCluster"), 1);
    dr.remove_dr_cluster("DR", "site-b").await.unwrap();
    // Gone from site-b; site-a is dark, so drbook cannot say it is gone everywhere.
    let e = guard_text(dr.dr_cluster("DR").await);
    has(
        &e,
        "know no such DR cluster (they know: none), and the others did not answer: site-a's Mold could not be read",
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_interval_is_set_on_both_sites_and_keeps_the_keys() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let e = guard_text(dr.set_mirror_interval("DR", "90s").await);
    has(&e, "\"90s\" is not a mirror interval");
    for site in ["site-a", "site-b"] {
        assert_eq!(sim.mold_calls(site, "updateDisasterRecoveryCluster"), 0);
    }
    let keys_before = sim.with_world(|w, _| w.site("site-a").dr_records[0].details.clone());
    let set = dr.set_mirror_interval("DR", "30m").await.unwrap();
    has(&set.message, "30m on both sites");
    for site in ["site-a", "site-b"] {
        assert_eq!(sim.mold_calls(site, "updateDisasterRecoveryCluster"), 1);
        let interval = sim.with_world(|w, _| {
            w.site(site).dr_records[0].details["mirrorscheduleinterval"].clone()
        });
        assert_eq!(interval, "30m", "{site}");
    }
    // Every other stored detail — the peer's keys, the storage VM's private key — survived.
    let keys_after = sim.with_world(|w, _| w.site("site-a").dr_records[0].details.clone());
    for key in [
        "drclusterapikey",
        "drclustersecretkey",
        "drclusterprivatekey",
    ] {
        assert_eq!(keys_after.get(key), keys_before.get(key), "{key}");
    }
    assert_eq!(dr.mirror_interval("DR").await.unwrap(), "30m");
    // Already set: nothing is sent.
    dr.set_mirror_interval("DR", "30m").await.unwrap();
    assert_eq!(sim.mold_calls("site-a", "updateDisasterRecoveryCluster"), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_test_runs_with_drbooks_keys_for_the_dr_site() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let (ok, why) = dr.connectivity_test("DR").await.unwrap();
    assert!(ok, "{why}");
    assert_eq!(
        sim.mold_calls("site-a", "connectivityTestsDisasterRecovery"),
        1
    );
    sim.set_partitioned(true).unwrap();
    let (ok, why) = dr.connectivity_test("DR").await.unwrap();
    assert!(!ok);
    assert!(
        why.starts_with("Failed to connectivity tests disaster recovery cluster"),
        "{why}"
    );
    for site in sim.endpoints().sites.values() {
        lacks(&why, &site.secret_key);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_is_protected_and_unprotected() {
    let Setup { sim, dr, _dir } = setup(|c| {
        c.vms.truncate(2);
        c.vms[1].mirrored = false;
    })
    .await;
    let vm = "dr-centos-2";
    let spec = MirrorVmSpec::default();
    // Two networks on the DR site: the operator chooses.
    let e = guard_text(dr.create_mirror_vm("DR", vm, &spec).await);
    has(&e, "Guest Network, Service Network");
    // Compression/deduplication offerings are refused, as Mold's UI does.
    sim.with_world(|w, _| {
        let s = w.site_mut("site-b");
        let mut dedup = s.offerings[0].clone();
        dedup.name = "Dedup".into();
        dedup.kvdo = true;
        s.offerings.push(dedup);
    });
    let kvdo = MirrorVmSpec {
        offering: Some("Dedup".into()),
        network: Some("Guest Network".into()),
        ..MirrorVmSpec::default()
    };
    let e = guard_text(dr.create_mirror_vm("DR", vm, &kvdo).await);
    has(&e, "kvdo");
    let e = guard_text(dr.create_mirror_vm("DR", "dr-centos-1", &spec).await);
    has(&e, "already mirrored");
    assert_eq!(
        sim.mold_calls("site-a", "createDisasterRecoveryClusterVm"),
        0
    );

    let spec = MirrorVmSpec {
        network: Some("Guest Network".into()),
        ..MirrorVmSpec::default()
    };
    let created = dr.create_mirror_vm("DR", vm, &spec).await.unwrap();
    has(&created.message, "offering Medium Instance");
    synced(&dr).await;
    assert_eq!(dr.mirror_status("DR").await.unwrap().summary.vms, 2);

    dr.remove_mirror_vm("DR", vm).await.unwrap();
    let status = dr.mirror_status("DR").await.unwrap();
    assert_eq!(status.summary.vms, 1);
    assert!(sim.with_world(|w, _| w.site("site-b").vm_by_name(vm).is_none()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_hatches_wait_for_jobs_and_redact_secrets() {
    let Setup { sim, dr, _dir } = setup(|_| {}).await;
    let list = dr
        .mold_raw("site-a", "getDisasterRecoveryClusterList", &[])
        .await
        .unwrap();
    let details = &list["disasterrecoverycluster"][0]["details"];
    assert_eq!(details["drclusterapikey"], "***");
    assert_eq!(details["drclusterprivatekey"], "***");
    assert_eq!(details["mirrorscheduleinterval"], "1h");
    let shown = list.to_string();
    for site in sim.endpoints().sites.values() {
        lacks(&shown, &site.api_key);
        lacks(&shown, &site.secret_key);
    }
    let id = dr.vm("site-a", "dr-centos-3").await.unwrap().id;
    let stopped = dr
        .mold_raw(
            "site-a",
            "stopVirtualMachine",
            &[("id".into(), id), ("forced".into(), "true".into())],
        )
        .await
        .unwrap();
    assert_eq!(stopped["virtualmachine"]["state"], "Stopped");
    let pool = dr
        .glue_raw("site-b", "get", "/api/v1/mirror/image/rbd", &[])
        .await
        .unwrap();
    assert!(pool["images"].as_array().is_some_and(|i| !i.is_empty()));
    let e = dr
        .glue_raw("site-b", "PATCH", "/mirror", &[])
        .await
        .unwrap_err();
    has(&e.to_string(), "GET, POST, PUT or DELETE");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_re_read_never_re_sent() {
    let Setup { sim, dr, _dir } = setup(|c| c.vms.truncate(1)).await;
    let vm = "dr-centos-1";
    dr.stop_vm("site-a", vm, true).await.unwrap();
    // The connection drops after the start went out: drbook looks instead of sending again.
    sim.add_fault(mold_fault(
        "site-a",
        "startVirtualMachine",
        FaultKind::Reset,
        None,
    ))
    .unwrap();
    let e = dr.start_vm("site-a", vm).await.unwrap_err();
    assert!(matches!(e, DrError::OutcomeUnknown { .. }), "{e}");
    let text = e.to_string();
    has(&text, "not sent again");
    has(&text, "dr-centos-1 is Stopped");
    assert_eq!(sim.mold_calls("site-a", "startVirtualMachine"), 1);
    // A refusal that is not "try again later" is final, with Mold's text.
    sim.add_fault(mold_fault(
        "site-a",
        "startVirtualMachine",
        FaultKind::FailedJob,
        Some("Insufficient capacity"),
    ))
    .unwrap();
    let e = dr.start_vm("site-a", vm).await.unwrap_err();
    assert_eq!(e.errortext(), Some("Insufficient capacity"));
    assert_eq!(sim.mold_calls("site-a", "startVirtualMachine"), 2);
    sim.shutdown().await;
}

fn assert_no_credential(sim: &Sim, what: &str, text: &str) {
    for secret in crate::harness::sim_credentials(sim) {
        assert!(!text.contains(&secret), "a credential in {what}: {text}");
    }
}

/// The simulation unpaired, with `vms` VMs on the protected site and none mirrored.
async fn unpaired(vms: usize) -> Setup {
    setup(|c| {
        c.cluster = None;
        c.vms.truncate(vms);
        for v in &mut c.vms {
            v.mirrored = false;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unpaired_sites_are_paired_and_a_vm_protected_over_the_pairing() {
    let Setup { sim, dr, _dir } = unpaired(2).await;
    assert!(dr.dr_clusters().await.unwrap().is_empty());
    let created = dr
        .create_dr_cluster("DR2", "site-a", "site-b", &DrClusterSpec::default())
        .await
        .unwrap();
    assert_eq!(created.site, "site-a");
    has(&created.message, "Enabled on both");
    has(&created.message, "create_mirror_vm(\"DR2\", <vm>)");
    // Mold's own connection test first, then one create; the DR site's record came
    // through Mold, not from drbook.
    assert_eq!(
        sim.mold_calls("site-a", "connectivityTestsDisasterRecovery"),
        1
    );
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 1);
    assert_eq!(sim.mold_calls("site-b", "createDisasterRecoveryCluster"), 0);

    let clusters = dr.dr_clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    let c = &clusters[0];
    assert_eq!(
        (c.name.as_str(), c.primary_site.as_str(), c.dr_site.as_str()),
        ("DR2", "site-a", "site-b")
    );
    assert_eq!(c.status.as_deref(), Some("Enabled"));
    assert_eq!(c.interval.as_deref(), Some("1h"));
    assert_eq!(c.record_ids.len(), 2, "a record on each site");
    assert_eq!(dr.site_role("site-a").await, SiteRole::Primary);
    assert_eq!(dr.site_role("site-b").await, SiteRole::Dr);
    // What Mold was given: the DR site's base URL, its first storage VM, its own key.
    let b = sim.endpoints().sites["site-b"].clone();
    sim.with_world(|w, _| {
        let r = w.site("site-a").record_by_name("DR2").unwrap();
        assert_eq!(r.url, b.mold);
        assert_eq!(r.glue_ip.as_deref(), Some("127.0.2.1"));
        assert_eq!(r.description, "created by drbook");
        assert_eq!(r.details["drclusterprivatekey"], b.glue_private_key);
        assert_eq!(r.details["drclusterapikey"], b.api_key);
        let peer = w.site("site-b").record_by_name("DR2").unwrap();
        assert_eq!(
            (peer.cluster_type.as_str(), peer.status.as_str()),
            ("primary", "Enabled")
        );
    });
    // Nothing secret in what it returns.
    let shown = format!("{created} {}", serde_json::to_string(&created).unwrap());
    assert_no_credential(&sim, "the outcome", &shown);
    assert_eq!(created.detail["glue_ip"], "127.0.2.1");
    assert_eq!(created.detail["drclusterurl"], b.mold.as_str());

    // The new pairing carries mirroring: an unmirrored VM is protected over it.
    let spec = MirrorVmSpec {
        network: Some("Guest Network".into()),
        ..MirrorVmSpec::default()
    };
    dr.create_mirror_vm("DR2", "dr-centos-1", &spec)
        .await
        .unwrap();
    let status = dr
        .wait_synced("DR2", GENEROUS, Duration::from_millis(50), &|_| {})
        .await
        .unwrap();
    assert_eq!(status.summary.vms, 1);
    assert!(sim.with_world(|w, _| w.site("site-b").vm_by_name("dr-centos-1").is_some()));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_is_refused_before_anything_is_sent() {
    let Setup { sim, dr, _dir: dir } = setup(|c| c.vms.truncate(1)).await;
    let spec = DrClusterSpec::default();
    let sent = |sim: &Sim| {
        sim.mold_calls("site-a", "connectivityTestsDisasterRecovery")
            + sim.mold_calls("site-a", "createDisasterRecoveryCluster")
    };
    // The name is taken (on the protected site, or on the DR site only).
    let e = guard_text(dr.create_dr_cluster("DR", "site-a", "site-b", &spec).await);
    has(
        &e,
        "site-a already holds DR cluster \"DR\" (a secondary record, Enabled)",
    );
    sim.with_world(|w, _| {
        let mut r = w.site("site-b").record_by_name("DR").unwrap().clone();
        r.name = "ONLY-B".into();
        r.status = "Error".into();
        r.id = w.uuid();
        w.site_mut("site-b").dr_records.push(r);
    });
    let e = guard_text(
        dr.create_dr_cluster("ONLY-B", "site-a", "site-b", &spec)
            .await,
    );
    has(&e, "site-b already holds DR cluster \"ONLY-B\"");
    has(&e, "failed pairing");
    // Not a pairing: one site twice, a blank name, an unknown site.
    let e = guard_text(dr.create_dr_cluster("DR2", "site-a", "site-a", &spec).await);
    has(&e, "its own DR site");
    let e = guard_text(dr.create_dr_cluster(" ", "site-a", "site-b", &spec).await);
    has(&e, "not a DR cluster name");
    let e = dr
        .create_dr_cluster("DR2", "site-a", "site-c", &spec)
        .await
        .unwrap_err();
    assert!(matches!(e, DrError::NotFound { .. }), "{e}");
    assert_eq!(sent(&sim), 0);

    // The storage-VM key: a file that is missing or is no private key is drbook's own
    // configuration problem, named with the site and the setting, before any call.
    let lists = sim.mold_calls("site-b", "getDisasterRecoveryClusterList");
    let missing = DrClusterSpec {
        private_key_file: Some(dir.path().join("nowhere.pem")),
        ..DrClusterSpec::default()
    };
    let e = dr
        .create_dr_cluster("DR2", "site-a", "site-b", &missing)
        .await
        .unwrap_err();
    assert!(matches!(e, DrError::Config(_)), "{e}");
    let text = e.to_string();
    has(&text, "cannot read site-b's storage-VM private key");
    has(&text, "nowhere.pem");
    has(&text, "the private_key_file option");
    let public = dir.path().join("id_rsa.pub");
    std::fs::write(&public, "ssh-rsa AAAAB3NzaC1yc2E-public-half root@scvm\n").unwrap();
    let e = dr
        .create_dr_cluster(
            "DR2",
            "site-a",
            "site-b",
            &DrClusterSpec {
                private_key_file: Some(public),
                ..DrClusterSpec::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    has(&e, "not a PEM private key");
    lacks(&e, "AAAAB3");
    let mut config = Config::load(&dir.path().join("drbook.toml")).unwrap();
    for site in &mut config.sites {
        site.ssh.key_file = None;
    }
    let keyless = Dr::new(&config).unwrap();
    let e = keyless
        .create_dr_cluster("DR2", "site-a", "site-b", &spec)
        .await
        .unwrap_err();
    assert!(matches!(e, DrError::Config(_)), "{e}");
    has(&e.to_string(), "sites.site-b.ssh_key_file");
    assert_eq!(sent(&sim), 0);
    assert_eq!(
        sim.mold_calls("site-b", "getDisasterRecoveryClusterList"),
        lists,
        "a configuration problem reads nothing either"
    );

    // A dark DR site: refused as unknown (its records could not be read), naming it.
    sim.disaster("site-b").await.unwrap();
    let e = dr
        .create_dr_cluster("DR2", "site-a", "site-b", &spec)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DrError::Unknown { unreadable, .. } if unreadable.dark),
        "{e}"
    );
    has(&e.to_string(), "site-b's Mold could not be read");
    assert_eq!(sent(&sim), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_test_refuses_the_pairing_with_molds_text() {
    let Setup { sim, dr, _dir } = unpaired(1).await;
    sim.set_partitioned(true).unwrap();
    let e = guard_text(
        dr.create_dr_cluster("DR2", "site-a", "site-b", &DrClusterSpec::default())
            .await,
    );
    has(
        &e,
        "Mold's connection test from site-a to site-b failed: Failed to connectivity tests disaster recovery cluster",
    );
    assert_no_credential(&sim, "the refusal", &e);
    sim.set_partitioned(false).unwrap();
    // A Glue IP that is not one of the DR site's storage VMs.
    let wrong_ip = DrClusterSpec {
        glue_ip: Some("10.9.9.9".into()),
        ..DrClusterSpec::default()
    };
    let e = guard_text(
        dr.create_dr_cluster("DR2", "site-a", "site-b", &wrong_ip)
            .await,
    );
    has(
        &e,
        "The Glue IP was entered incorrectly. Please check again.",
    );
    assert_eq!(
        sim.mold_calls("site-a", "connectivityTestsDisasterRecovery"),
        2
    );
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 0);
    assert!(dr.dr_clusters().await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_whose_answer_is_lost_or_whose_job_fails_is_re_read_not_re_sent() {
    let Setup { sim, dr, _dir: dir } = unpaired(1).await;
    // The connection drops after the create went out: drbook reads both sites instead.
    sim.add_fault(mold_fault(
        "site-a",
        "createDisasterRecoveryCluster",
        FaultKind::Reset,
        None,
    ))
    .unwrap();
    let spec = DrClusterSpec::default();
    let e = dr
        .create_dr_cluster("DR2", "site-a", "site-b", &spec)
        .await
        .unwrap_err();
    assert!(matches!(e, DrError::OutcomeUnknown { .. }), "{e}");
    let text = e.to_string();
    has(&text, "not sent again");
    has(&text, "site-a holds none; site-b holds none");
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 1);

    // The wrong storage-VM key (the protected site's own): Mold's job fails part-way and
    // leaves both records in Error; drbook says so, with Mold's text.
    let wrong_key = DrClusterSpec {
        private_key_file: Some(dir.path().join("drbook.toml.site-a-glue-key.pem")),
        ..DrClusterSpec::default()
    };
    let e = dr
        .create_dr_cluster("DR2", "site-a", "site-b", &wrong_key)
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Failed to setup disaster recovery cluster")
    );
    let text = e.to_string();
    has(&text, "site-a holds it (secondary, Error/");
    has(&text, "site-b holds it (primary, Error/");
    has(&text, "remove what is left");
    assert_no_credential(&sim, "the failure", &text);
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 2);
    // Its leftovers now block the name, with the way out.
    let e = guard_text(dr.create_dr_cluster("DR2", "site-a", "site-b", &spec).await);
    has(&e, "failed pairing");
    sim.shutdown().await;
}

/// A job is first polled when the site's recent jobs of its kind had finished, not at a
/// fixed 0.2 s: with 1 s VM starts, one at a time, the first start is polled as before and
/// every later one about once or twice. Counted, never timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_first_polled_when_its_kind_finished_before() {
    let Setup { sim, dr, _dir } = setup(|c| {
        *c = std::mem::take(c).with_vms(6);
        c.timing.job = Duration::from_secs(1);
    })
    .await;
    let vms = names(&[
        "dr-centos-1",
        "dr-centos-2",
        "dr-centos-3",
        "dr-centos-4",
        "dr-centos-5",
        "dr-win-1",
    ]);
    let stopped = dr.stop_vms("site-a", &vms, true, 6, GENEROUS).await;
    assert!(stopped.iter().all(|(_, r, _)| r.is_ok()), "{stopped:?}");
    let before = sim.mold_calls("site-a", "queryAsyncJobResult");
    let started = dr.start_vms("site-a", &vms, 1, GENEROUS).await;
    assert!(started.iter().all(|(_, r, _)| r.is_ok()), "{started:?}");
    let polls = sim.mold_calls("site-a", "queryAsyncJobResult") - before;
    // Polled every 0.2 s, each 1 s start takes five or six polls (30 or more in all); the
    // first, which has nothing to learn from, still does, and each later one at most three.
    assert!(polls <= 6 + 5 * 3, "{polls} polls for six starts");
    sim.shutdown().await;
}
