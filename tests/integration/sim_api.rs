//! The simulator's Mold API, through drbook's own client: every envelope shape, the
//! framework's and the DR service's validation errors, signatures, and the control API.

use drbook::glue::GlueErrorKind;
use drbook::mold::{MoldErrorKind, SignatureAlgorithm};
use drbook::sim::faults::{Api, FaultKind, FaultSpec};
use serde_json::json;

use crate::harness::{eventually, has, sim_glue, sim_mold, start_sim, vm_states};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_shapes() {
    let sim = start_sim(|_| {}).await;
    let a = sim_mold(&sim, "site-a");
    // Single object.
    assert_eq!(a.capabilities().await.unwrap().dr_enabled, Some(true));
    // A list with items, and the empty `{}` list.
    assert_eq!(a.virtual_machines(&[]).await.unwrap().len(), 3);
    assert!(
        a.virtual_machines(&[("name", "nope")])
            .await
            .unwrap()
            .is_empty()
    );
    let raw = a
        .call("listVirtualMachines", &[("name", "nope")])
        .await
        .unwrap();
    assert!(raw.is_empty(), "an empty list is {{}}: {raw:?}");
    // Paging: count is the page size.
    let page = a
        .call("listVirtualMachines", &[("page", "1"), ("pagesize", "2")])
        .await
        .unwrap();
    assert_eq!(page["count"], 2);
    // Storage VMs, comma-joined.
    assert_eq!(
        a.scvm_ip_addresses().await.unwrap(),
        ["127.0.1.1", "127.0.1.2"]
    );
    // Async submit and job polling.
    let id = a
        .virtual_machines(&[("name", "dr-centos-1")])
        .await
        .unwrap()[0]
        .id
        .clone();
    let submitted = a
        .submit("stopVirtualMachine", &[("id", &id)])
        .await
        .unwrap();
    let result = a
        .wait_for_job("stopVirtualMachine", &submitted.jobid)
        .await
        .unwrap();
    assert_eq!(result["virtualmachine"]["state"], "Stopped");
    // A create answers with the new entity's id and a job.
    let created = a
        .submit(
            "createDisasterRecoveryCluster",
            &[
                ("name", "DR-2"),
                ("description", "second"),
                ("drclusterurl", "http://127.0.0.1:9"),
                ("drclustertype", "secondary"),
                ("drclusterapikey", "k"),
                ("drclustersecretkey", "s"),
                ("drclusterprivatekey", "key"),
                ("drclusterglueipaddress", "127.0.2.1"),
            ],
        )
        .await
        .unwrap();
    assert!(created.id.is_some());
    let e = a
        .wait_for_job("createDisasterRecoveryCluster", &created.jobid)
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Failed to request createDisasterRecoveryCluster Mold-API.")
    );
    let failed = a.dr_clusters(&[("name", "DR-2")]).await.unwrap();
    assert_eq!(failed[0].status.as_deref(), Some("Error"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_and_service_errors() {
    let sim = start_sim(|_| {}).await;
    let a = sim_mold(&sim, "site-a");
    let api = |e: &drbook::mold::MoldError| match &e.kind {
        MoldErrorKind::Api {
            errorcode,
            http_status,
            ..
        } => (*errorcode, *http_status),
        other => panic!("{other:?}"),
    };
    let e = a
        .call("promoteDisasterRecoveryCluster", &[])
        .await
        .unwrap_err();
    assert_eq!(api(&e), (431, 431));
    assert_eq!(
        e.errortext(),
        Some(
            "Unable to execute API command promotedisasterrecoverycluster due to missing parameter id"
        )
    );
    let e = a
        .call(
            "promoteDisasterRecoveryCluster",
            &[("id", "00000000-0000-0000-0000-000000000000")],
        )
        .await
        .unwrap_err();
    assert_eq!(api(&e).0, 431);
    assert!(e.errortext().unwrap().starts_with("Invalid parameter id value=00000000-0000-0000-0000-000000000000 due to incorrect long value format"));
    let e = a.call("frobnicate", &[]).await.unwrap_err();
    assert_eq!(api(&e).0, 432);
    // A synchronous DR validation: 530 with Mold's text in X-Description.
    let e = a
        .call(
            "createDisasterRecoveryCluster",
            &[
                ("name", "DR"),
                ("description", "d"),
                ("drclusterurl", "http://x"),
                ("drclustertype", "secondary"),
                ("drclusterapikey", "k"),
                ("drclustersecretkey", "s"),
                ("drclusterprivatekey", "p"),
                ("drclusterglueipaddress", "127.0.2.1"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(api(&e), (530, 530));
    assert_eq!(
        e.errortext(),
        Some("A disaster recovery cluster with the same name exists:DR")
    );
    let e = a
        .call(
            "createDisasterRecoveryCluster",
            &[
                ("name", "X"),
                ("description", "d"),
                ("drclusterurl", "http://x"),
                ("drclustertype", "secondary"),
                ("drclusterapikey", "k"),
                ("drclustersecretkey", "s"),
                ("drclusterprivatekey", ""),
                ("drclusterglueipaddress", "127.0.2.1"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Invalid private key for the disaster recovery cluster private key:")
    );
    // The interval's grammar.
    let rec = a.dr_clusters(&[("name", "DR")]).await.unwrap().remove(0);
    let e = a
        .call(
            "updateDisasterRecoveryCluster",
            &[
                ("id", &rec.id),
                ("details[0].mirrorscheduleinterval", "30s"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some(
            "The mirror schedule interval can be specified in days, hours, or minutes using d, h, m suffix respectively"
        )
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_update_replaces_details_and_reaches_the_peer() {
    let sim = start_sim(|_| {}).await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let rec = a.dr_clusters(&[("name", "DR")]).await.unwrap().remove(0);
    let e = &sim.endpoints().sites["site-b"];
    let answer = a
        .call(
            "updateDisasterRecoveryCluster",
            &[
                ("id", &rec.id),
                ("details[0].mirrorscheduleinterval", "30m"),
                ("details[0].drclusterapikey", &e.api_key),
                ("details[0].drclustersecretkey", &e.secret_key),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        answer["disasterrecoverycluster"]["details"]["mirrorscheduleinterval"],
        "30m"
    );
    let peer = b.dr_clusters(&[("name", "DR")]).await.unwrap().remove(0);
    assert_eq!(peer.mirror_schedule_interval.as_deref(), Some("30m"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dr_list_shows_both_sides_statuses() {
    let sim = start_sim(|_| {}).await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let ra = a.dr_clusters(&[]).await.unwrap().remove(0);
    let rb = b.dr_clusters(&[]).await.unwrap().remove(0);
    assert_eq!(ra.status.as_deref(), Some("Enabled"));
    assert_eq!(ra.agent_status.as_deref(), Some("Enabled"));
    assert_eq!(rb.status.as_deref(), Some("Enabled"));
    assert!(ra.peer_glue_ip.is_some() && rb.peer_glue_ip.is_none());
    assert_eq!(ra.mirror_schedule_interval.as_deref(), Some("1h"));
    // Normal operation: the protected site READY/SYNCING, the DR site SYNCING/READY (§5.3).
    for row in &ra.vm_map {
        assert_eq!(row.volume_status.as_deref(), Some("READY"));
        assert_eq!(row.mirror_volume_status.as_deref(), Some("SYNCING"));
        assert_eq!(row.mirror_vm_state.as_deref(), Some("Stopped"));
    }
    for row in &rb.vm_map {
        assert_eq!(row.volume_status.as_deref(), Some("SYNCING"));
        assert_eq!(row.mirror_volume_status.as_deref(), Some("READY"));
        assert_eq!(row.mirror_vm_state.as_deref(), Some("Running"));
    }
    assert_eq!(ra.vm_map.len(), rb.vm_map.len());
    assert!(!ra.peer_service_offerings.is_empty() && !ra.peer_networks.is_empty());
    // The Glue side agrees.
    let g = sim_glue(&sim, "site-b");
    let st = g.image_status(&rb.vm_map[0].volume_path).await.unwrap();
    assert!(drbook::glue::MirrorSide::is_replaying_idle(&st), "{st:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_carry_their_tags_on_both_sites() {
    // The default topology: ten VMs tagged by tier, their mirrored VMs tagged the same.
    let sim = start_sim(|c| c.vms = drbook::sim::SimConfig::default().vms).await;
    let expected = |name: &str| match name {
        "dr-centos-1" | "dr-centos-2" => "db",
        n if n.starts_with("dr-centos-") => "app",
        _ => "web",
    };
    for site in ["site-a", "site-b"] {
        let m = sim_mold(&sim, site);
        let vms = m.virtual_machines(&[]).await.unwrap();
        assert_eq!(vms.len(), 10, "{site}");
        for vm in &vms {
            let tags = vm.tag_map();
            assert_eq!(tags.len(), 1, "{site} {}: {tags:?}", vm.name);
            assert_eq!(tags["tier"], expected(&vm.name), "{site} {}", vm.name);
        }
        // CloudStack's shape: a list of ResourceTagResponse.
        let raw = m
            .call("listVirtualMachines", &[("name", "dr-centos-1")])
            .await
            .unwrap();
        let vm = &raw["virtualmachine"][0];
        let tag = &vm["tags"][0];
        assert_eq!(tag["key"], "tier");
        assert_eq!(tag["value"], "db");
        assert_eq!(tag["resourcetype"], "UserVm");
        assert_eq!(tag["resourceid"], vm["id"]);
        assert_eq!(tag["account"], vm["account"]);
        assert_eq!(tag["domainid"], vm["domainid"]);
        assert_eq!(tag["domain"], vm["domain"]);
    }
    // An untagged VM lists `"tags": []`.
    sim.with_world(|w, _| {
        let id = w.site("site-a").vm_by_name("dr-win-1").unwrap().id.clone();
        w.site_mut("site-a").vm_mut(&id).unwrap().tags.clear();
    });
    let raw = sim_mold(&sim, "site-a")
        .call("listVirtualMachines", &[("name", "dr-win-1")])
        .await
        .unwrap();
    assert_eq!(raw["virtualmachine"][0]["tags"], json!([]));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_sha1_v3_expiry_and_post_enforcement() {
    let sim = start_sim(|c| {
        c.sites[0].algorithm = SignatureAlgorithm::Sha1;
        c.sites[1].enforce_post = true;
    })
    .await;
    let a = sim_mold(&sim, "site-a");
    assert!(a.capabilities().await.is_ok(), "sha1 site accepts sha1");
    let b = sim_mold(&sim, "site-b");
    // Enforcement makes signature v3 mandatory.
    let e = b.capabilities().await.unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::Unauthorized { .. }), "{e}");
    let mut s = b.settings().clone();
    s.signature_v3_expiry = Some(std::time::Duration::from_secs(300));
    let b3 = drbook::mold::MoldClient::new(s.clone()).unwrap();
    assert!(b3.capabilities().await.is_ok());
    // An expiry too far ahead is refused under enforcement.
    s.signature_v3_expiry = Some(std::time::Duration::from_secs(3600));
    let far = drbook::mold::MoldClient::new(s).unwrap();
    assert!(far.capabilities().await.is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_disasters_are_seen_by_the_client() {
    let sim = start_sim(|_| {}).await;
    let a = sim_mold(&sim, "site-a");
    let fault = |kind, times| FaultSpec {
        site: "site-a".into(),
        api: Api::Mold,
        command: Some("listVirtualMachines".into()),
        kind,
        times,
        rate: None,
        status: None,
        latency: None,
        message: None,
    };
    // Two 503 pages then success: the read is retried (3 attempts).
    sim.add_fault(fault(FaultKind::HtmlPage, Some(2))).unwrap();
    assert!(a.virtual_machines(&[]).await.is_ok());
    assert_eq!(sim.mold_calls("site-a", "listVirtualMachines"), 3);
    // A garbled 200 is Mold's answer, not a transient failure: a decode error at once.
    sim.add_fault(fault(FaultKind::MalformedJson, Some(1)))
        .unwrap();
    let e = a.virtual_machines(&[]).await.unwrap_err();
    has(&e.to_string(), "not JSON");
    // A job can be made to fail.
    sim.add_fault(FaultSpec {
        command: Some("stopVirtualMachine".into()),
        message: Some("Simulated host failure".into()),
        ..fault(FaultKind::FailedJob, None)
    })
    .unwrap();
    let id = a
        .virtual_machines(&[("name", "dr-centos-1")])
        .await
        .unwrap()[0]
        .id
        .clone();
    let e = a
        .call_async("stopVirtualMachine", &[("id", &id)])
        .await
        .unwrap_err();
    assert_eq!(e.errortext(), Some("Simulated host failure"));
    // A mutation whose connection is reset is not sent again.
    sim.add_fault(FaultSpec {
        command: Some("startVirtualMachine".into()),
        ..fault(FaultKind::Reset, None)
    })
    .unwrap();
    let before = sim.mold_calls("site-a", "startVirtualMachine");
    let e = a
        .submit("startVirtualMachine", &[("id", &id)])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );
    assert_eq!(
        sim.mold_calls("site-a", "startVirtualMachine"),
        before + 1,
        "sent exactly once"
    );
    sim.clear_faults();
    // A site in disaster refuses connections; after recovery it answers again.
    sim.disaster("site-a").await.unwrap();
    let e = a.capabilities().await.unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::Unreachable { .. }), "{e}");
    sim.recover("site-a").await.unwrap();
    assert!(a.capabilities().await.is_ok());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_counted_on_arrival_faults_included() {
    let sim = start_sim(|_| {}).await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let (a_glue, b_glue) = (sim_glue(&sim, "site-a"), sim_glue(&sim, "site-b"));
    let fault = |site: &str, api, command: &str, kind| FaultSpec {
        site: site.into(),
        api,
        command: Some(command.into()),
        kind,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: None,
    };
    let image = sim.state()["sites"]["site-a"]["vms"][0]["volumes"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sim.mutations().is_empty(), "{:?}", sim.mutations());

    // Reads reach the sites and are not mutations.
    let vms = a.virtual_machines(&[]).await.unwrap();
    b.call("getDisasterRecoveryClusterList", &[]).await.unwrap();
    a_glue.pool_status().await.unwrap();
    b_glue.image_status(&image).await.unwrap();
    assert!(sim.mold_calls("site-a", "listVirtualMachines") >= 1);
    assert!(sim.mutations().is_empty(), "{:?}", sim.mutations());

    // A Mold mutation that runs, one whose job is made to fail, one whose connection is
    // reset: each reached site-a once.
    let submitted = a
        .submit("stopVirtualMachine", &[("id", &vms[1].id)])
        .await
        .unwrap();
    a.wait_for_job("stopVirtualMachine", &submitted.jobid)
        .await
        .unwrap();
    sim.add_fault(fault(
        "site-a",
        Api::Mold,
        "stopVirtualMachine",
        FaultKind::FailedJob,
    ))
    .unwrap();
    a.call_async("stopVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap_err();
    sim.add_fault(fault(
        "site-a",
        Api::Mold,
        "startVirtualMachine",
        FaultKind::Reset,
    ))
    .unwrap();
    let e = a
        .submit("startVirtualMachine", &[("id", &vms[1].id)])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );

    // A Glue mutation that runs on site-a, and a promote a 503 spoils on site-b: counted
    // under the route without the pool and image names.
    a_glue.mirror_snapshot("i-2-1-VM", &[&image]).await.unwrap();
    sim.add_fault(fault(
        "site-b",
        Api::Glue,
        "/mirror/image/promote",
        FaultKind::ServerError,
    ))
    .unwrap();
    let e = b_glue.promote(&image).await.unwrap_err();
    assert!(
        matches!(*e.kind, GlueErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );
    assert_eq!(
        sim.state()["storage"]["images"][&image]["sites"]["site-b"]["primary"],
        false,
        "the fault spoiled the promote"
    );

    let expected = json!({
        "site-a": {
            "mold": {"stopVirtualMachine": 2, "startVirtualMachine": 1},
            "glue": {"POST /mirror/image/snapshot": 1},
            "ssh": {}
        },
        "site-b": {"mold": {}, "glue": {"POST /mirror/image/promote": 1}, "ssh": {}}
    });
    assert_eq!(sim.state()["mutations"], expected);
    assert_eq!(
        sim.mutation_count("site-b", Api::Glue, "POST /mirror/image/promote"),
        1
    );
    assert_eq!(
        sim.mutation_count("site-a", Api::Mold, "startVirtualMachine"),
        1
    );
    assert_eq!(
        sim.mutation_count("site-a", Api::Mold, "listVirtualMachines"),
        0
    );
    let on_b = sim.mutations().on("site-b");
    let b_only: Vec<_> = on_b.iter().collect();
    assert_eq!(
        b_only,
        [("site-b", Api::Glue, "POST /mirror/image/promote", 1)]
    );

    // A dark site refuses the connection: nothing arrives, nothing counts.
    let before = sim.mutations();
    sim.disaster("site-b").await.unwrap();
    b.submit("startVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap_err();
    b_glue.promote(&image).await.unwrap_err();
    sim.recover("site-b").await.unwrap();
    let since = sim.mutations().since(&before);
    assert!(since.is_empty(), "{since:?}");
    assert_eq!(sim.state()["mutations"], expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_over_http() {
    let sim = start_sim(|_| {}).await;
    let control = sim.endpoints().control.clone();
    let http = drbook::http::client(
        &drbook::http::TlsTrust::System,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let state: serde_json::Value = http
        .get(format!("{control}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["sites"]["site-a"]["up"], true);
    assert_eq!(state["sites"]["site-a"]["vms"].as_array().unwrap().len(), 3);
    let w: serde_json::Value = http
        .post(format!("{control}/write"))
        .json(&json!({"vm": "dr-centos-1", "site": "site-a", "count": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(w["vm"], "dr-centos-1");
    let refused = http
        .post(format!("{control}/write"))
        .json(&json!({"vm": "dr-centos-1", "site": "site-b", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409, "the DR copy is stopped on replicas");
    let ledger: serde_json::Value = http
        .get(format!("{control}/ledger/dr-centos-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ledger["images"][0]["sites"]["site-a"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    // A storage VM's command line, as its sshd hands it over: answered, counted.
    let ssh = |site: &str, command: &str| {
        http.post(format!("{control}/ssh/{site}"))
            .json(&json!({ "command": command }))
            .send()
    };
    let health: serde_json::Value = ssh("site-a", "ceph health -f json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], 0);
    let parsed: serde_json::Value =
        serde_json::from_str(health["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(parsed["status"], "HEALTH_OK");
    let missing: serde_json::Value = ssh("site-a", "reboot").await.unwrap().json().await.unwrap();
    assert_eq!(missing["status"], 127);
    assert_eq!(ssh("site-z", "rbd ls").await.unwrap().status(), 409);
    let r = http
        .post(format!("{control}/fault"))
        .json(&json!({"site": "site-a", "api": "ssh", "kind": "reset"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "no faults over SSH");
    let r = http
        .post(format!("{control}/fault"))
        .json(&json!({"site": "site-a", "api": "glue", "kind": "server_error", "command": "/glue"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g = sim_glue(&sim, "site-a");
    assert!(g.health().await.is_ok(), "a 503 on a read is retried");
    let r = http
        .post(format!("{control}/disaster"))
        .json(&json!({"site": "site-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state: serde_json::Value = http
        .get(format!("{control}/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["sites"]["site-b"]["up"], false);
    let r = http
        .post(format!("{control}/recover"))
        .json(&json!({"site": "site-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        http.delete(format!("{control}/faults"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    sim.shutdown().await;
}

/// A fault on `site`'s `api` for `command`, once.
fn once(site: &str, api: Api, command: &str, kind: FaultKind) -> FaultSpec {
    FaultSpec {
        site: site.into(),
        api,
        command: Some(command.into()),
        kind,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_a_mold_mutation_comes_after_the_work() {
    let sim = start_sim(|_| {}).await;
    let a = sim_mold(&sim, "site-a");
    let vms = a.virtual_machines(&[]).await.unwrap();
    let before = sim.mutations();

    // The stop is handled and its job runs; only its answer (the job id) is lost.
    sim.add_fault(once(
        "site-a",
        Api::Mold,
        "stopVirtualMachine",
        FaultKind::LostAnswer,
    ))
    .unwrap();
    let e = a
        .submit("stopVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );
    eventually("the stop whose answer was lost to finish", || async {
        (vm_states(&sim, "site-a")[&vms[0].name] == "Stopped").then_some(())
    })
    .await;
    let since = sim.mutations().since(&before);
    assert_eq!(
        since.iter().collect::<Vec<_>>(),
        [("site-a", Api::Mold, "stopVirtualMachine", 1)],
        "counted once, like any stop"
    );
    assert_eq!(sim.mold_calls("site-a", "stopVirtualMachine"), 1);

    // With a latency the answer is held, then dropped: a shorter client timeout ends the
    // call first, and the work was done all the same.
    sim.add_fault(FaultSpec {
        latency: Some("5s".into()),
        ..once(
            "site-a",
            Api::Mold,
            "stopVirtualMachine",
            FaultKind::LostAnswer,
        )
    })
    .unwrap();
    let mut settings = a.settings().clone();
    settings.timeout = std::time::Duration::from_millis(300);
    let impatient = drbook::mold::MoldClient::new(settings).unwrap();
    let e = impatient
        .submit("stopVirtualMachine", &[("id", &vms[1].id)])
        .await
        .unwrap_err();
    assert!(
        matches!(&e.kind, MoldErrorKind::OutcomeUnknown { reason } if reason.contains("timeout = 300ms")),
        "{e}"
    );
    eventually("the held stop to finish", || async {
        (vm_states(&sim, "site-a")[&vms[1].name] == "Stopped").then_some(())
    })
    .await;
    assert_eq!(
        sim.mutation_count("site-a", Api::Mold, "stopVirtualMachine"),
        2
    );

    // A lost answer on a job poll is a read's lost answer: the poll is asked again.
    let started = a
        .submit("startVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap();
    sim.add_fault(once(
        "site-a",
        Api::Mold,
        "queryAsyncJobResult",
        FaultKind::LostAnswer,
    ))
    .unwrap();
    let polls = sim.mold_calls("site-a", "queryAsyncJobResult");
    let job = a.query_job(&started.jobid).await.unwrap();
    assert_eq!(job.jobid, started.jobid);
    assert_eq!(
        sim.mold_calls("site-a", "queryAsyncJobResult"),
        polls + 2,
        "lost once, asked again"
    );
    // Lost on every try, the read fails, and still counts as no mutation.
    sim.add_fault(FaultSpec {
        times: Some(3),
        ..once(
            "site-a",
            Api::Mold,
            "queryAsyncJobResult",
            FaultKind::LostAnswer,
        )
    })
    .unwrap();
    let e = a.query_job(&started.jobid).await.unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::Unreachable { .. }), "{e}");
    assert_eq!(
        sim.mutation_count("site-a", Api::Mold, "queryAsyncJobResult"),
        0
    );
    // The start whose polls were lost ran to its end.
    a.wait_for_job("startVirtualMachine", &started.jobid)
        .await
        .unwrap();
    assert_eq!(vm_states(&sim, "site-a")[&vms[0].name], "Running");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_on_a_glue_mutation_comes_after_the_work() {
    let sim = start_sim(|_| {}).await;
    let b_glue = sim_glue(&sim, "site-b");
    let image = sim.state()["sites"]["site-a"]["vms"][0]["volumes"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let primary_on_b =
        || sim.state()["storage"]["images"][&image]["sites"]["site-b"]["primary"].clone();
    assert_eq!(primary_on_b(), false);
    sim.add_fault(once(
        "site-b",
        Api::Glue,
        "/mirror/image/promote",
        FaultKind::LostAnswer,
    ))
    .unwrap();
    let e = b_glue.promote(&image).await.unwrap_err();
    assert!(e.is_outcome_unknown(), "{e}");
    assert_eq!(
        primary_on_b(),
        true,
        "promoted although the answer was lost"
    );
    assert_eq!(
        sim.mutations().iter().collect::<Vec<_>>(),
        [("site-b", Api::Glue, "POST /mirror/image/promote", 1)]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answer_faults_over_the_control_api() {
    let sim = start_sim(|_| {}).await;
    let control = sim.endpoints().control.clone();
    let http = drbook::http::client(
        &drbook::http::TlsTrust::System,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let post = |body: serde_json::Value| {
        let request = http.post(format!("{control}/fault")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    for api in ["mold", "glue"] {
        assert_eq!(
            post(json!({"site": "site-a", "api": api, "kind": "lost_answer"})).await,
            200
        );
        assert_eq!(
            post(json!({"site": "site-a", "api": api, "kind": "lost_answer", "latency": "2s"}))
                .await,
            200
        );
    }
    assert_ne!(
        post(json!({"site": "site-a", "api": "mold", "kind": "lost_answer", "latency": "soon"}))
            .await,
        200,
        "a latency that is no duration is refused"
    );
    sim.clear_faults();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_async_jobs_answers_like_cloudstack() {
    let sim = start_sim(|_| {}).await;
    let (a, b) = (sim_mold(&sim, "site-a"), sim_mold(&sim, "site-b"));
    let none = a
        .call("listAsyncJobs", &[("listall", "true")])
        .await
        .unwrap();
    assert!(none.is_empty(), "no jobs is {{}}: {none:?}");

    let vms = a.virtual_machines(&[]).await.unwrap();
    let stop = a
        .submit("stopVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap();
    a.wait_for_job("stopVirtualMachine", &stop.jobid)
        .await
        .unwrap();
    let start = a
        .submit("startVirtualMachine", &[("id", &vms[0].id)])
        .await
        .unwrap();

    let listed = a
        .call("listAsyncJobs", &[("listall", "true")])
        .await
        .unwrap();
    assert_eq!(listed["count"], 2, "{listed:?}");
    let jobs = listed["asyncjobs"].as_array().unwrap();
    assert_eq!(
        jobs[0]["jobid"],
        stop.jobid.as_str(),
        "in the order created"
    );
    assert_eq!(jobs[1]["jobid"], start.jobid.as_str());
    let first = &jobs[0];
    assert_eq!(
        first["cmd"],
        "org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin"
    );
    assert_eq!(first["jobinstancetype"], "VirtualMachine");
    assert_eq!(first["jobinstanceid"], vms[0].id.as_str());
    assert_eq!(first["jobstatus"], 1);
    assert_eq!(first["jobresult"]["virtualmachine"]["state"], "Stopped");
    for field in [
        "accountid",
        "account",
        "domainid",
        "userid",
        "jobprocstatus",
        "jobresultcode",
        "created",
        "completed",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    // Each item is what queryAsyncJobResult says of that job.
    let queried = a
        .call("queryAsyncJobResult", &[("jobid", &stop.jobid)])
        .await
        .unwrap();
    assert_eq!(*first, serde_json::Value::Object(queried));

    // startdate: both of Mold's forms; a job created at or after it is listed.
    for (since, n) in [
        ("2000-01-01", 2),
        ("2000-01-01T00:00:00+0000", 2),
        ("2000-01-01 00:00:00", 2),
        ("2999-01-01", 0),
        ("2999-01-01T00:00:00+0900", 0),
    ] {
        let body = a
            .call("listAsyncJobs", &[("startdate", since)])
            .await
            .unwrap();
        assert_eq!(
            body.get("asyncjobs")
                .and_then(|j| j.as_array())
                .map_or(0, Vec::len),
            n,
            "{since}: {body:?}"
        );
        if n == 0 {
            assert!(body.is_empty(), "{since}: {body:?}");
        }
    }
    let e = a
        .call("listAsyncJobs", &[("startdate", "yesterday")])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::Api { errorcode: 431, .. }),
        "{e}"
    );
    assert_eq!(
        e.errortext(),
        Some(
            "Unable to parse date yesterday for command listasyncjobs, please pass dates in the format mentioned in the api documentation"
        )
    );

    // Only the site's own jobs; and listing is no mutation.
    assert!(b.call("listAsyncJobs", &[]).await.unwrap().is_empty());
    assert_eq!(sim.mutation_count("site-a", Api::Mold, "listAsyncJobs"), 0);
    assert!(sim.mold_calls("site-a", "listAsyncJobs") >= 1);
    sim.shutdown().await;
}

/// Resource tags as Mold keeps them: one key per VM, a value required, all or nothing,
/// deleted by key or by key and value, and shown on the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_tags_on_vms() {
    let sim = start_sim(|c| c.vms.truncate(2)).await;
    let a = sim_mold(&sim, "site-a");
    let vms = a.virtual_machines(&[]).await.unwrap();
    let (one, two) = (vms[0].id.clone(), vms[1].id.clone());
    let both = format!("{one},{two}");
    let create = |ids: String, key: &'static str, value: &'static str| {
        let a = &a;
        async move {
            a.call_async(
                "createTags",
                &[
                    ("resourcetype", "UserVm"),
                    ("resourceids", &ids),
                    ("tags[0].key", key),
                    ("tags[0].value", value),
                ],
            )
            .await
        }
    };
    assert_eq!(
        create(both.clone(), "drbook.home", "yes").await.unwrap()["success"],
        true
    );
    let e = create(one.clone(), "drbook.home", "no").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some(format!("tag drbook.home already on UserVm with id {one}").as_str())
    );
    let e = create(one.clone(), "other", "").await.unwrap_err();
    assert_eq!(
        e.errortext(),
        Some("Value for the key other is either null or empty")
    );
    let tagged = a.virtual_machines(&[("id", &two)]).await.unwrap();
    assert_eq!(
        tagged[0].tag_map().get("drbook.home").map(String::as_str),
        Some("yes")
    );
    let listed = a
        .call(
            "listTags",
            &[("resourcetype", "UserVm"), ("key", "drbook.home")],
        )
        .await
        .unwrap();
    assert_eq!(
        listed.get("count"),
        Some(&serde_json::json!(2)),
        "{listed:?}"
    );

    let delete = |ids: String, value: &'static str| {
        let a = &a;
        async move {
            let mut params = vec![
                ("resourcetype", "UserVm"),
                ("resourceids", ids.as_str()),
                ("tags[0].key", "drbook.home"),
            ];
            if !value.is_empty() {
                params.push(("tags[0].value", value));
            }
            a.call_async("deleteTags", &params).await
        }
    };
    let e = delete(one.clone(), "no").await.unwrap_err();
    assert_eq!(e.errortext(), Some("Failed to delete tags"));
    delete(one.clone(), "YES").await.unwrap();
    delete(two.clone(), "").await.unwrap();
    let after = a.virtual_machines(&[]).await.unwrap();
    assert!(
        after
            .iter()
            .all(|v| !v.tag_map().contains_key("drbook.home"))
    );
    sim.shutdown().await;
}
