//! The operator runbooks of the Mold spec (§7), issued as raw API calls with drbook's own
//! clients against the simulator: the states, the error texts and the data ledger.

use drbook::glue::MirrorSide;
use drbook::mold::MoldClient;
use drbook::mold::types::{DrClusterRecord, DrClusterType};
use serde_json::Value;

use crate::harness::{eventually, has, sim_glue, sim_mold, start_sim, written};

async fn record(c: &MoldClient) -> DrClusterRecord {
    c.dr_clusters(&[("name", "DR")]).await.unwrap().remove(0)
}

async fn vm_id(c: &MoldClient, name: &str) -> String {
    c.virtual_machines(&[("name", name)]).await.unwrap()[0]
        .id
        .clone()
}

async fn vm_state(c: &MoldClient, name: &str) -> String {
    c.virtual_machines(&[("name", name)]).await.unwrap()[0]
        .state
        .clone()
}

/// Every VM of the map, started or stopped through Mold's async API.
async fn power_all(c: &MoldClient, names: &[&str], start: bool) {
    let command = if start {
        "startVirtualMachine"
    } else {
        "stopVirtualMachine"
    };
    for n in names {
        let id = vm_id(c, n).await;
        let mut params = vec![("id", id.as_str())];
        if !start {
            params.push(("forced", "true"));
        }
        c.call_async(command, &params)
            .await
            .unwrap_or_else(|e| panic!("{command} {n}: {e}"));
    }
}

fn seqs(ledger: &Value, site: &str) -> Vec<u64> {
    ledger["images"][0]["sites"][site]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Mold's demote, retried on the one refusal that says to try again later.
async fn demote_when_idle(b: &MoldClient, id: &str) {
    eventually("demote to be accepted", || async {
        match b
            .call_async("demoteDisasterRecoveryCluster", &[("id", id)])
            .await
        {
            Ok(_) => Some(()),
            Err(e)
                if e.errortext()
                    .is_some_and(|t| t.ends_with("Please try again later.")) =>
            {
                None
            }
            Err(e) => panic!("demote: {e}"),
        }
    })
    .await;
}

async fn job_error(c: &MoldClient, command: &str, id: &str) -> String {
    let e = c.call_async(command, &[("id", id)]).await.unwrap_err();
    e.errortext().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_then_failback() {
    let sim = start_sim(|_| {}).await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let names = ["dr-centos-1", "dr-centos-2", "dr-centos-3"];

    // Steady state: writes on the protected site reach the DR site with the next snapshot.
    let delivered = written(&sim.write("dr-centos-1", "site-a", 5).unwrap());
    eventually("the DR site to hold the first writes", || async {
        let l = sim.ledger("dr-centos-1").unwrap();
        delivered
            .iter()
            .all(|s| seqs(&l, "site-b").contains(s))
            .then_some(())
    })
    .await;

    // Writes that never leave: the link is cut, then the protected site is lost.
    sim.set_partitioned(true).unwrap();
    let at_risk = written(&sim.write("dr-centos-1", "site-a", 3).unwrap());
    sim.disaster("site-a").await.unwrap();
    sim.set_partitioned(false).unwrap();

    // Failover on the DR site (record type `primary`).
    let dr = record(&b).await;
    assert_eq!(dr.cluster_type, DrClusterType::Primary);
    assert!(
        dr.vm_map
            .iter()
            .all(|m| m.mirror_vm_state.as_deref() == Some("unknown"))
    );
    b.call_async("promoteDisasterRecoveryCluster", &[("id", &dr.id)])
        .await
        .unwrap();
    assert_eq!(
        job_error(&b, "promoteDisasterRecoveryCluster", &dr.id).await,
        "Promote cannot be executed because the current image is in ready or force promote."
    );
    power_all(&b, &names, true).await;
    for n in names {
        assert_eq!(vm_state(&b, n).await, "Running");
    }
    let after = sim.ledger("dr-centos-1").unwrap();
    for s in &delivered {
        assert!(
            seqs(&after, "site-b").contains(s),
            "delivered write {s} survived"
        );
    }
    for s in &at_risk {
        assert!(
            !seqs(&after, "site-b").contains(s),
            "write {s} after the last snapshot is lost"
        );
    }
    let dr_writes = written(&sim.write("dr-centos-1", "site-b", 4).unwrap());

    // The protected site returns with its VMs as they were: both sides primary.
    sim.recover("site-a").await.unwrap();
    assert_eq!(vm_state(&a, "dr-centos-1").await, "Running");
    let ga = sim_glue(&sim, "site-a");
    let image = dr.vm_map[0].volume_path.clone();
    eventually("both sides primary", || async {
        let st = ga.image_status(&image).await.ok()?;
        st.is_both_primary().then_some(())
    })
    .await;

    // Resync refuses while VMs run on either site, with Mold's texts.
    let e = job_error(&b, "resyncDisasterRecoveryCluster", &dr.id).await;
    assert!(
        e.starts_with("Resync functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : dr-centos-"),
        "{e}"
    );
    power_all(&b, &names, false).await;
    let e = job_error(&b, "resyncDisasterRecoveryCluster", &dr.id).await;
    assert!(
        e.starts_with("Resync functions cannot be executed because there is a running disaster recovery primary cluster virtual machine : dr-centos-"),
        "{e}"
    );
    power_all(&a, &names, false).await;
    b.call_async("resyncDisasterRecoveryCluster", &[("id", &dr.id)])
        .await
        .unwrap();

    // The protected site's images become replicas of the DR site's: wait until idle.
    eventually("site-a replicas replaying and idle", || async {
        let st = ga.image_status(&image).await.ok()?;
        st.is_replaying_idle().then_some(())
    })
    .await;
    // Glue's schedule keeps snapshotting; Mold refuses while a delta copies ("try again").
    demote_when_idle(&b, &dr.id).await;

    // The protected site starts again; every write made on the DR site is there.
    power_all(&a, &names, true).await;
    let back = sim.ledger("dr-centos-1").unwrap();
    for s in &dr_writes {
        assert!(seqs(&back, "site-a").contains(s), "DR write {s} came back");
    }
    for s in &at_risk {
        assert!(
            !seqs(&back, "site-a").contains(s),
            "divergent write {s} was discarded by the resync"
        );
    }
    // And the DR site's copies are replicas again: Mold refuses to start them.
    let id = vm_id(&b, "dr-centos-1").await;
    let e = b
        .call_async("startVirtualMachine", &[("id", &id)])
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("The virtual machine cannot be started because the mirroring image not ready status.")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_running_mirrored_vms_and_start_refuses_replicas() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, "site-b");
    let dr = record(&b).await;
    // A mirrored VM cannot start while its images are replicas.
    let id = vm_id(&b, "dr-centos-2").await;
    let e = b
        .call_async("startVirtualMachine", &[("id", &id)])
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("The virtual machine cannot be started because the mirroring image not ready status.")
    );
    assert_eq!(vm_state(&b, "dr-centos-2").await, "Stopped");
    // Force one to Running on the DR side to hit promote's guard.
    sim.with_world(|w, _| {
        let s = w.site_mut("site-b");
        let vm = s.vms.iter_mut().find(|v| v.name == "dr-centos-2").unwrap();
        vm.state = "Running".into();
    });
    assert_eq!(
        job_error(&b, "promoteDisasterRecoveryCluster", &dr.id).await,
        "Forced promote functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : dr-centos-2"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirroring_simulation_test_returns_the_vm_to_where_it_was() {
    let sim = start_sim(|c| c.vms.truncate(1)).await;
    let a = sim_mold(&sim, "site-a");
    let b = sim_mold(&sim, "site-b");
    let vm = vm_id(&a, "dr-centos-1").await;
    let p = [("virtualmachineid", vm.as_str()), ("drclustername", "DR")];
    // 1. Stop the VM and its mirrored VM.
    a.call_async("stopVirtualMachine", &[("id", &vm), ("forced", "true")])
        .await
        .unwrap();
    a.call("stopDisasterRecoveryClusterVm", &p).await.unwrap();
    // 2. A mirroring snapshot.
    a.call(
        "takeSnapshotDisasterRecoveryClusterVm",
        &[("virtualmachineid", &vm)],
    )
    .await
    .unwrap();
    // 3. Demote here, promote there; wait until this VM's first row shows SYNCING.
    a.call("demoteDisasterRecoveryClusterVm", &p).await.unwrap();
    eventually("the local volume status to be SYNCING", || async {
        let r = a
            .dr_clusters(&[("drclustertype", "secondary")])
            .await
            .ok()?;
        let row = r[0].vm_map.iter().find(|m| m.vm_id == vm)?.clone();
        (row.volume_status.as_deref() == Some("SYNCING")).then_some(())
    })
    .await;
    // 4. Start the mirrored VM (on the DR site).
    a.call("startDisasterRecoveryClusterVm", &p).await.unwrap();
    assert_eq!(vm_state(&b, "dr-centos-1").await, "Running");
    // 6. Stop it; 7. roles swap back; 8. start the VM here.
    a.call("stopDisasterRecoveryClusterVm", &p).await.unwrap();
    assert_eq!(vm_state(&b, "dr-centos-1").await, "Stopped");
    a.call("promoteDisasterRecoveryClusterVm", &p)
        .await
        .unwrap();
    let ga = sim_glue(&sim, "site-a");
    let image = record(&a).await.vm_map[0].volume_path.clone();
    eventually("the image to be primary here again", || async {
        ga.image_status(&image)
            .await
            .ok()?
            .is_primary()
            .then_some(())
    })
    .await;
    a.call_async(
        "startVirtualMachine",
        &[("id", &vm), ("considerlasthost", "true")],
    )
    .await
    .unwrap();
    assert_eq!(vm_state(&a, "dr-centos-1").await, "Running");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_demoted_image_is_refused_with_molds_text() {
    let sim = start_sim(|c| c.vms.truncate(1)).await;
    let a = sim_mold(&sim, "site-a");
    let vm = vm_id(&a, "dr-centos-1").await;
    let p = [("virtualmachineid", vm.as_str()), ("drclustername", "DR")];
    a.call_async("stopVirtualMachine", &[("id", &vm), ("forced", "true")])
        .await
        .unwrap();
    a.call("demoteDisasterRecoveryClusterVm", &p).await.unwrap();
    // The local image is now a replica: the pre-check names the peer's state.
    let e = a
        .call(
            "takeSnapshotDisasterRecoveryClusterVm",
            &[("virtualmachineid", &vm)],
        )
        .await
        .unwrap_err();
    let text = e.errortext().unwrap_or_default().to_string();
    assert!(
        text.starts_with("Simulation test functions cannot be executed because peer state is"),
        "{text}"
    );
    has(&text, "in volume path : ");
    sim.shutdown().await;
}
