//! Active-Active on the simulator: production VMs at home on both sites, each protected to the
//! other over one pairing, as Mold's API allows it (the DR site's record protects a VM running
//! there). These tests read the seeded world through the real APIs.

use std::collections::BTreeMap;

use drbook::glue::MirrorSide as _;

use drbook::sim::faults::{Api, FaultKind};

use crate::campaign::fault;
use crate::harness::{sim_glue, sim_mold, start_sim, vm_states};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pairing_protects_vms_at_home_on_both_sites() {
    let sim = start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = [0, 1, 5, 6].iter().map(|&i| all[i].clone()).collect();
        *c = c.clone().active_active();
    })
    .await;
    // dr-centos-1..2 at home on site-a, dr-win-1..2 on site-b, each running at home and
    // stopped as a mirrored VM on the other site.
    let (a, b) = (vm_states(&sim, "site-a"), vm_states(&sim, "site-b"));
    for (name, home, away) in [
        ("dr-centos-1", &a, &b),
        ("dr-centos-2", &a, &b),
        ("dr-win-1", &b, &a),
        ("dr-win-2", &b, &a),
    ] {
        assert_eq!(
            home.get(name).map(String::as_str),
            Some("Running"),
            "{name} at home"
        );
        assert_eq!(
            away.get(name).map(String::as_str),
            Some("Stopped"),
            "{name} away"
        );
    }
    // Both records map every mirrored VM, in the same shape both ways: nothing records the
    // direction.
    let mut rows: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for site in ["site-a", "site-b"] {
        let records = sim_mold(&sim, site).dr_clusters(&[]).await.unwrap();
        assert_eq!(records.len(), 1, "{site}: one pairing");
        let mut names: Vec<(String, String)> = records[0]
            .vm_map
            .iter()
            .map(|r| {
                (
                    r.vm_name.clone().unwrap_or_default(),
                    r.volume_type.clone().unwrap_or_default(),
                )
            })
            .collect();
        names.sort();
        names.dedup();
        rows.insert(site, names);
    }
    assert_eq!(rows["site-a"].len(), rows["site-b"].len());
    let local: Vec<&str> = rows["site-b"].iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        local.contains(&"dr-win-1") && local.contains(&"dr-centos-1"),
        "{local:?}"
    );
    // Each image is primary where its VM is at home.
    let records = sim_mold(&sim, "site-a").dr_clusters(&[]).await.unwrap();
    for row in &records[0].vm_map {
        let home = if row
            .vm_name
            .as_deref()
            .is_some_and(|n| n.starts_with("dr-win-"))
        {
            "site-b"
        } else {
            "site-a"
        };
        let st = sim_glue(&sim, home)
            .image_status(&row.volume_path)
            .await
            .unwrap();
        assert!(
            st.is_primary(),
            "{} primary on {home}: {st:?}",
            row.volume_path
        );
    }
    sim.shutdown().await;
}

/// Mold's cluster-level promote acts on every row of the DR site's record: after a disaster
/// at site-a, site-b's own production VM (at home there, running) blocks the failover of
/// site-a's VMs, named in Mold's refusal — stopping it to get past the check would take
/// production down for a failover that does not concern it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_promote_checks_the_other_directions_vms_too() {
    let sim = start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = vec![all[0].clone(), all[5].clone()];
        *c = c.clone().active_active();
    })
    .await;
    sim.disaster("site-a").await.unwrap();
    let b = sim_mold(&sim, "site-b");
    let record = b.dr_clusters(&[]).await.unwrap().remove(0);
    let e = b
        .call_async("promoteDisasterRecoveryCluster", &[("id", &record.id)])
        .await
        .unwrap_err();
    assert_eq!(
        e.errortext(),
        Some(
            "Forced promote functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : dr-win-1"
        )
    );
    assert_eq!(vm_states(&sim, "site-b")["dr-win-1"], "Running");
    sim.shutdown().await;
}

#[test]
fn a_home_must_be_one_of_the_sites() {
    let text = "[[vm]]\nname = \"db-1\"\nhome = \"site-c\"\n";
    let e = drbook::sim::SimConfig::parse(text).unwrap_err();
    assert!(
        e.contains("home \"site-c\" is not one of the sites (site-a, site-b)"),
        "{e}"
    );
    let c = drbook::sim::SimConfig::parse("[[vm]]\nname = \"db-1\"\nhome = \"site-b\"\n").unwrap();
    assert_eq!(c.vms[0].home.as_deref(), Some("site-b"));
}

/// Tags `vm` (by name) on `site` with `drbook.dr=<value>`, through Mold's createTags.
async fn tag(sim: &drbook::sim::Sim, site: &str, vm: &str, value: &str) {
    let mold = sim_mold(sim, site);
    let id = mold.virtual_machines(&[("name", vm)]).await.unwrap()[0]
        .id
        .clone();
    mold.call_async(
        "createTags",
        &[
            ("resourcetype", "UserVm"),
            ("resourceids", &id),
            ("tags[0].key", drbook::dr::direction::TAG),
            ("tags[0].value", value),
        ],
    )
    .await
    .unwrap();
}

/// What mirror_status says of each VM's home.
fn homes(status: &drbook::dr::MirrorStatus) -> BTreeMap<String, String> {
    status
        .vms
        .iter()
        .map(|v| {
            let home = match &v.home {
                drbook::dr::Fact::Known(Some(h)) => h.clone(),
                drbook::dr::Fact::Known(None) => "not recorded".into(),
                drbook::dr::Fact::Unknown(u) => format!("unknown: {}", u.error),
            };
            (v.name.clone(), home)
        })
        .collect()
}

/// The direction is read from the tags on both sites' copies: either copy's tag says it, a
/// VM never tagged says "not recorded", contradicting tags and a site whose tags cannot be
/// read leave it unknown — and nothing else of the status changes for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_status_reads_each_vms_home_from_its_tags() {
    use drbook::dr::direction::{HOME, MIRROR};
    let sim = start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = [0, 1, 5, 6].iter().map(|&i| all[i].clone()).collect();
        *c = c.clone().active_active();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dr = dr_of(&sim, &dir);
    tag(&sim, "site-a", "dr-centos-1", HOME).await;
    tag(&sim, "site-b", "dr-centos-1", MIRROR).await;
    tag(&sim, "site-b", "dr-win-1", HOME).await; // its mirrored VM's tag never written
    tag(&sim, "site-a", "dr-win-2", HOME).await; // contradicts the next
    tag(&sim, "site-b", "dr-win-2", HOME).await;
    let status = dr.mirror_status("DR").await.unwrap();
    let got = homes(&status);
    assert_eq!(got["dr-centos-1"], "site-a");
    assert_eq!(got["dr-win-1"], "site-b");
    assert_eq!(got["dr-centos-2"], "not recorded");
    assert!(
        got["dr-win-2"].starts_with("unknown: the copies' drbook.dr tags contradict"),
        "{got:?}"
    );
    assert!(
        status.complete(),
        "a VM's home is not part of what the status must read"
    );

    // A garbled answer is not retried: site-b's tags are unreadable at once (on every
    // read). One readable tag still tells a home (a dark site must not hide the direction
    // the survivor's copy records); a VM whose only tags are on site-b is unknown.
    sim.add_fault(fault(
        "site-b",
        Api::Mold,
        "listTags",
        FaultKind::MalformedJson,
        100,
    ))
    .unwrap();
    let status = dr.mirror_status("DR").await.unwrap();
    let got = homes(&status);
    assert_eq!(got["dr-centos-1"], "site-a", "{got:?}");
    assert_eq!(got["dr-win-2"], "site-a", "{got:?}");
    for vm in ["dr-win-1", "dr-centos-2"] {
        assert!(got[vm].starts_with("unknown"), "{vm}: {got:?}");
    }
    assert_eq!(status.summary.vms, 4);
    sim.shutdown().await;
}

/// A `Dr` over the simulator's own `drbook.toml`.
fn dr_of(sim: &drbook::sim::Sim, dir: &tempfile::TempDir) -> drbook::dr::Dr {
    let path = dir.path().join("drbook.toml");
    sim.write_config(&path).unwrap();
    drbook::dr::Dr::new(&drbook::config::Config::load(&path).unwrap()).unwrap()
}

fn tags_written(sim: &drbook::sim::Sim) -> u64 {
    let m = sim.mutations();
    m.count("site-a", Api::Mold, "createTags") + m.count("site-b", Api::Mold, "createTags")
}

/// Existing protections get their direction from steady state: each VM's home is where it
/// runs over primary images. Every VM is judged before any tag is written: one that cannot
/// be judged refuses the act, naming it, with nothing written; a second run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_homes_infers_each_direction_at_steady_state_or_writes_nothing() {
    let sim = start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = [0, 1, 5, 6].iter().map(|&i| all[i].clone()).collect();
        c.vms[1].running = false; // dr-centos-2 runs nowhere: its home cannot be told
        *c = c.clone().active_active();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dr = dr_of(&sim, &dir);
    let e = dr.record_homes("DR", None).await.unwrap_err().to_string();
    assert!(
        e.contains("dr-centos-2: it is Stopped on site-a and Stopped on site-b"),
        "{e}"
    );
    assert!(e.contains("nothing was recorded"), "{e}");
    assert_eq!(tags_written(&sim), 0, "a refusal writes no tag");

    sim_mold(&sim, "site-a")
        .call_async(
            "startVirtualMachine",
            &[(
                "id",
                &sim_mold(&sim, "site-a")
                    .virtual_machines(&[("name", "dr-centos-2")])
                    .await
                    .unwrap()[0]
                    .id,
            )],
        )
        .await
        .unwrap();
    let done = dr.record_homes("DR", None).await.unwrap();
    assert_eq!(done.detail["tags_written"], 8, "{:?}", done.detail);
    assert_eq!(tags_written(&sim), 8);
    let status = dr.mirror_status("DR").await.unwrap();
    let got = homes(&status);
    for (vm, home) in [
        ("dr-centos-1", "site-a"),
        ("dr-centos-2", "site-a"),
        ("dr-win-1", "site-b"),
        ("dr-win-2", "site-b"),
    ] {
        assert_eq!(got[vm], home, "{got:?}");
    }
    let again = dr.record_homes("DR", None).await.unwrap();
    assert_eq!(again.detail["tags_written"], 0);
    assert_eq!(tags_written(&sim), 8, "nothing sent the second time");
    sim.shutdown().await;
}

/// Protecting a VM records its home on both copies; a createTags whose answer is lost is
/// settled by reading the tags, not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protecting_a_vm_records_its_home_and_a_lost_answer_is_not_sent_again() {
    let sim = start_sim(|c| {
        c.vms.truncate(1);
        c.vms[0].mirrored = false;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dr = dr_of(&sim, &dir);
    sim.add_fault(fault(
        "site-b",
        Api::Mold,
        "createTags",
        FaultKind::LostAnswer,
        1,
    ))
    .unwrap();
    let spec = drbook::dr::MirrorVmSpec {
        network: Some("Guest Network".into()),
        ..drbook::dr::MirrorVmSpec::default()
    };
    dr.create_mirror_vm("DR", "dr-centos-1", &spec)
        .await
        .unwrap();
    let got = homes(&dr.mirror_status("DR").await.unwrap());
    assert_eq!(got["dr-centos-1"], "site-a");
    assert_eq!(
        tags_written(&sim),
        2,
        "one tag per copy, the lost one not sent twice"
    );
    sim.shutdown().await;
}

/// From a runbook: `record_homes` adopts the existing protections, and `status` then shows
/// the VMs by direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_groups_the_vms_by_direction_once_recorded() {
    let sim = start_sim(|c| {
        let all = drbook::sim::SimConfig::default().vms;
        c.vms = [0, 5].iter().map(|&i| all[i].clone()).collect();
        *c = c.clone().active_active();
    })
    .await;
    let t = crate::harness::Test::new().sim_config(&sim).file(
        "adopt.rhai",
        "let r = record_homes(\"DR\");\nprint(r.message);\n",
    );
    let before = t.run_with(["run", "status"]).expect_code(0);
    before.stdout_has("home not recorded (record it with record_homes(\"DR\")):");
    let adopted = t.run_with(["run", "adopt.rhai"]).expect_code(0);
    adopted
        .stdout_has("recorded the home of 2 mirrored VM(s) (0 already recorded; 4 tag(s) written)");
    let after = t.run_with(["run", "status"]).expect_code(0);
    let out = &after.stdout;
    let a = out
        .find("at home on site-a, protected to site-b:")
        .expect(out);
    let b = out
        .find("at home on site-b, protected to site-a:")
        .expect(out);
    // Found by name, not by "ok": a scheduled snapshot may be copying as status reads.
    let centos = out.find(" dr-centos-1  site-a:").expect(out);
    let win = out.find(" dr-win-1  site-a:").expect(out);
    assert!(a < centos && centos < b && b < win, "{out}");
    after.stdout_lacks("home not recorded");
    sim.shutdown().await;
}
