//! Pairing and unpairing through the simulator's Mold API, as the operator guide's "setup"
//! and "primary not recoverable" runbooks do them: connection test, create the DR cluster,
//! protect a VM, unprotect it, disable/enable, clear and delete.

use drbook::mold::MoldClient;
use drbook::mold::types::DrClusterType;

use crate::harness::{has, sim_mold, start_sim};

async fn vm_id(c: &MoldClient, name: &str) -> String {
    c.virtual_machines(&[("name", name)]).await.unwrap()[0]
        .id
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_protect_unprotect_disable_enable_delete() {
    let sim = start_sim(|c| {
        c.cluster = None;
        c.vms.truncate(2);
    })
    .await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let peer = sim.endpoints().sites["site-b"].clone();
    assert!(a.dr_clusters(&[]).await.unwrap().is_empty());

    // The connection test checks the peer's keys and its Glue address.
    let test = |glue_ip: &'static str| {
        let (a, peer) = (&a, &peer);
        async move {
            a.call(
                "connectivityTestsDisasterRecovery",
                &[
                    ("drclusterurl", &peer.mold),
                    ("drclusterapikey", &peer.api_key),
                    ("drclustersecretkey", &peer.secret_key),
                    ("drclusterglueipaddress", glue_ip),
                ],
            )
            .await
        }
    };
    let e = test("10.9.9.9").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("The Glue IP was entered incorrectly. Please check again.")
    );
    let ok = test("127.0.2.1").await.unwrap();
    assert_eq!(ok["success"], true);

    // Create: the protected site's record (secondary) and, through the peer, the DR site's.
    let create = |name: &'static str, key: &'static str| {
        let (a, peer) = (&a, &peer);
        async move {
            let key = if key.is_empty() {
                peer.glue_private_key.as_str()
            } else {
                key
            };
            a.call_async(
                "createDisasterRecoveryCluster",
                &[
                    ("name", name),
                    ("description", "disaster-recovery"),
                    ("drclusterurl", &peer.mold),
                    ("drclustertype", "secondary"),
                    ("drclusterapikey", &peer.api_key),
                    ("drclustersecretkey", &peer.secret_key),
                    ("drclusterprivatekey", key),
                    ("drclusterglueipaddress", "127.0.2.1"),
                ],
            )
            .await
        }
    };
    let created = create("DR", "").await.unwrap();
    assert_eq!(
        created["disasterrecoverycluster"]["drclusterstatus"],
        "Enabled"
    );
    let ra = a.dr_clusters(&[]).await.unwrap().remove(0);
    let rb = b.dr_clusters(&[]).await.unwrap().remove(0);
    assert_eq!(
        (ra.cluster_type, rb.cluster_type),
        (DrClusterType::Secondary, DrClusterType::Primary)
    );
    assert_eq!(rb.status.as_deref(), Some("Enabled"));
    assert_eq!(ra.mirror_schedule_interval.as_deref(), Some("1h"));
    // A second pairing by the same name: refused at once, before any job.
    let e = create("DR", "").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("A disaster recovery cluster with the same name exists:DR")
    );

    // Protect a VM: a stopped mirrored VM on the DR site, one row per volume on both sites.
    let vm = vm_id(&a, "dr-centos-1").await;
    let protect = |vm: String| {
        let a = &a;
        async move {
            a.call_async(
                "createDisasterRecoveryClusterVm",
                &[
                    ("virtualmachineid", &vm),
                    ("drclustername", "DR"),
                    ("serviceofferingname", "Medium Instance"),
                    ("networkname", "Guest Network"),
                ],
            )
            .await
        }
    };
    protect(vm.clone()).await.unwrap();
    let mirrored = b
        .virtual_machines(&[("name", "dr-centos-1")])
        .await
        .unwrap();
    assert_eq!(mirrored[0].state, "Stopped");
    // Mold does not copy tags: the protected VM keeps tier=db, its new mirrored VM has none.
    assert!(mirrored[0].tags.is_empty(), "{:?}", mirrored[0].tags);
    let protected = a
        .virtual_machines(&[("name", "dr-centos-1")])
        .await
        .unwrap();
    assert_eq!(protected[0].tag_map()["tier"], "db");
    let rows = a.dr_clusters(&[]).await.unwrap().remove(0).vm_map;
    assert_eq!(rows.len(), 2, "ROOT and one DATADISK");
    assert_eq!(b.dr_clusters(&[]).await.unwrap().remove(0).vm_map.len(), 2);
    let e = protect(vm.clone()).await.unwrap_err();
    assert!(
        e.errortext()
            .unwrap()
            .starts_with("A disaster recovery cluster with the same virtual machine id exists:"),
        "{e}"
    );
    // A VM whose name the DR site already uses (in any case) cannot be protected.
    sim.with_world(|w, _| w.add_vm("site-b", "DR-CENTOS-2", false, &[], 1 << 30));
    let e = protect(vm_id(&a, "dr-centos-2").await).await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some(
            "A mirroring virtual machine cannot be added because a virtual machine with the same name as the corresponding virtual machine exists in the disaster recovery cluster."
        )
    );
    sim.with_world(|w, _| w.site_mut("site-b").vms.retain(|v| v.name != "DR-CENTOS-2"));
    protect(vm_id(&a, "dr-centos-2").await).await.unwrap();

    // Unprotect: rows go on both sites, the mirrored VM is destroyed on the DR site.
    a.call_async(
        "deleteDisasterRecoveryClusterVm",
        &[("virtualmachineid", &vm), ("drclustername", "DR")],
    )
    .await
    .unwrap();
    assert!(
        b.virtual_machines(&[("name", "dr-centos-1")])
            .await
            .unwrap()
            .is_empty()
    );
    let rows = a.dr_clusters(&[]).await.unwrap().remove(0).vm_map;
    assert!(rows.iter().all(|r| r.vm_id != vm));

    // Disable: both records Disabled, every row gone and the mirrored VMs destroyed.
    a.call_async("disableDisasterRecoveryCluster", &[("id", &ra.id)])
        .await
        .unwrap();
    let ra2 = a.dr_clusters(&[]).await.unwrap().remove(0);
    let rb2 = b.dr_clusters(&[]).await.unwrap().remove(0);
    assert_eq!(ra2.status.as_deref(), Some("Disabled"));
    assert_eq!(rb2.status.as_deref(), Some("Disabled"));
    assert!(ra2.vm_map.is_empty() && rb2.vm_map.is_empty());
    assert!(
        b.virtual_machines(&[("name", "dr-centos-2")])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ra2.agent_status.as_deref(),
        Some("Disabled"),
        "pool mirroring is off"
    );
    a.call_async("enableDisasterRecoveryCluster", &[("id", &ra.id)])
        .await
        .unwrap();
    assert_eq!(
        b.dr_clusters(&[]).await.unwrap()[0].status.as_deref(),
        Some("Enabled")
    );

    // Delete on the protected site removes both records.
    a.call_async("deleteDisasterRecoveryCluster", &[("id", &ra.id)])
        .await
        .unwrap();
    assert!(a.dr_clusters(&[]).await.unwrap().is_empty());
    assert!(b.dr_clusters(&[]).await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protected_site_lost_for_good() {
    let sim = start_sim(|c| c.vms.truncate(2)).await;
    let b = sim_mold(&sim, "site-b");
    sim.disaster("site-a").await.unwrap();
    let rec = b.dr_clusters(&[]).await.unwrap().remove(0);
    b.call_async("promoteDisasterRecoveryCluster", &[("id", &rec.id)])
        .await
        .unwrap();
    // Clear the lost site's garbage: mirroring off here, the record and rows stay.
    let cleared = b
        .call_async("clearDisasterRecoveryCluster", &[("id", &rec.id)])
        .await
        .unwrap();
    assert!(
        cleared.is_string(),
        "the job result is Glue's answer, a JSON string: {cleared}"
    );
    let after = b.dr_clusters(&[]).await.unwrap().remove(0);
    assert_eq!(after.vm_map.len(), rec.vm_map.len());
    assert_eq!(after.agent_status.as_deref(), Some("Disabled"));
    // Then delete the record on the same site.
    b.call_async("deleteDisasterRecoveryCluster", &[("id", &rec.id)])
        .await
        .unwrap();
    assert!(b.dr_clusters(&[]).await.unwrap().is_empty());
    // The promoted VMs are ordinary VMs now and start.
    let id = b
        .virtual_machines(&[("name", "dr-centos-1")])
        .await
        .unwrap()[0]
        .id
        .clone();
    b.call_async("startVirtualMachine", &[("id", &id)])
        .await
        .unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_dr_service_registers_no_dr_command() {
    let sim = start_sim(|c| c.sites[1].dr_enabled = false).await;
    let b = sim_mold(&sim, "site-b");
    assert_eq!(b.capabilities().await.unwrap().dr_enabled, Some(false));
    let e = b.dr_clusters(&[]).await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("The given command does not exist or it is not available for user")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_fails_in_its_job_without_the_peers_key_or_with_a_peer_record() {
    let sim = start_sim(|c| {
        c.cluster = None;
        c.vms.truncate(1);
    })
    .await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let peer = sim.endpoints().sites["site-b"].clone();
    has(&peer.glue_private_key, "PRIVATE KEY");
    assert_ne!(
        peer.glue_private_key,
        sim.endpoints().sites["site-a"].glue_private_key
    );
    let create = |name: &'static str, key: String, glue_ip: &'static str| {
        let (a, peer) = (&a, &peer);
        async move {
            a.call_async(
                "createDisasterRecoveryCluster",
                &[
                    ("name", name),
                    ("description", "d"),
                    ("drclusterurl", &peer.mold),
                    ("drclustertype", "secondary"),
                    ("drclusterapikey", &peer.api_key),
                    ("drclustersecretkey", &peer.secret_key),
                    ("drclusterprivatekey", &key),
                    ("drclusterglueipaddress", glue_ip),
                ],
            )
            .await
        }
    };
    // Phase 1 validates at once: an empty key is an immediate 530, nothing is stored.
    let e = create("P0", String::new(), "127.0.2.1").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Invalid private key for the disaster recovery cluster private key:")
    );
    assert!(a.dr_clusters(&[]).await.unwrap().is_empty());

    // Another key than the DR site's storage VMs' own: Glue cannot log in there, both
    // records end Error/Error and the job fails.
    let other = sim.endpoints().sites["site-a"].glue_private_key.clone();
    let e = create("P1", other, "127.0.2.1").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Failed to setup disaster recovery cluster")
    );
    // (The list recomputes mirroringagentstatus from Glue on every read; the status stays.)
    let status = |c: &drbook::mold::MoldClient, name: &'static str| {
        let c = c.clone();
        async move {
            c.dr_clusters(&[("name", name)]).await.unwrap()[0]
                .status
                .clone()
                .unwrap()
        }
    };
    assert_eq!(status(&a, "P1").await, "Error");
    assert_eq!(status(&b, "P1").await, "Error");

    // A Glue IP that is not one of the DR site's storage VMs fails the same way.
    let e = create("P2", peer.glue_private_key.clone(), "127.0.1.1")
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Failed to setup disaster recovery cluster")
    );

    // A record of that name already on the DR site only: its Mold refuses the peer create
    // at once, which the plugin reports as no answer; only the local record is left, Error.
    sim.with_world(|w, _| {
        let mut r = w.site("site-b").record_by_name("P1").unwrap().clone();
        r.name = "P3".into();
        r.id = w.uuid();
        w.site_mut("site-b").dr_records.push(r);
    });
    let e = create("P3", peer.glue_private_key.clone(), "127.0.2.1")
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Failed to request createDisasterRecoveryCluster Mold-API.")
    );
    assert_eq!(status(&a, "P3").await, "Error");
    sim.shutdown().await;
}
