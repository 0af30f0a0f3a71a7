//! Every Glue endpoint of a site down, its storage VMs' sshd up: the status reads
//! (`mirror_status`, the `status` runbook, `health`, `image_status`) read the same `rbd` and
//! `ceph` commands over SSH, say so, and agree with what Glue said while it answered. With
//! SSH down too, each is the unknown it was, naming both. Against the simulator with real
//! sshd (openssh-server), counted in what reached it.
//!
//! Glue "down" here is Glue's port refusing on every storage VM while their sshd listens:
//! the site's `glue_urls` point at a port nothing listens on, on the same addresses. (The
//! simulator's `reset` fault drops a connection it accepted, which drbook rightly takes for
//! a lost answer, not for an unreachable Glue.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drbook::config::Config;
use drbook::dr::{Dr, DrError, MirrorStatus, Reach, Via};
use drbook::sim::Sim;

use crate::harness::{Test, has, lacks, start_sim_ssh};

/// A `drbook.toml` for `sim` at `dir/name`, with `site`'s Glue on a port nothing listens on.
fn glue_down_config(sim: &Sim, dir: &Path, name: &str, site: &str) -> PathBuf {
    let path = dir.join(name);
    sim.write_config(&path).unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut text = std::fs::read_to_string(&path).unwrap();
    for url in &sim.endpoints().sites[site].glue {
        let mut moved = url::Url::parse(url).unwrap();
        moved.set_port(Some(closed)).unwrap();
        let moved = moved.as_str().trim_end_matches('/').to_string();
        assert!(text.contains(&format!("\"{url}\"")), "{url} in {text}");
        text = text.replace(&format!("\"{url}\""), &format!("\"{moved}\""));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn dr_at(path: &Path) -> Dr {
    Dr::new(&Config::discover(Some(path)).unwrap()).unwrap()
}

/// Each VM's synced, and each volume's roles and states on both sites: what must not depend
/// on the way the storage was read.
fn seen(s: &MirrorStatus) -> Vec<String> {
    s.vms
        .iter()
        .flat_map(|vm| {
            vm.volumes.iter().map(move |v| {
                format!(
                    "{} synced={} {}: {:?}/{:?} {} / {} synced={}",
                    vm.name,
                    vm.synced,
                    v.path,
                    v.primary_role,
                    v.dr_role,
                    v.primary_state,
                    v.dr_state,
                    v.synced
                )
            })
        })
        .collect()
}

/// The first volume (RBD image) of `vm`.
fn image_of(sim: &Sim, site: &str, vm: &str) -> String {
    sim.state()["sites"][site]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == vm)
        .unwrap()["volumes"][0]["path"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A simulation with SSH, every VM synced, and Glue's scheduler quiet (no new snapshot
/// between the read through Glue and the one over SSH).
async fn synced_sim() -> Sim {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drbook.toml");
    sim.write_config(&path).unwrap();
    dr_at(&path)
        .wait_synced(
            "DR",
            Duration::from_secs(60),
            Duration::from_millis(50),
            &|_| {},
        )
        .await
        .unwrap();
    sim.with_world(|w, now| w.set_snapshot_interval(now, Duration::from_secs(3600)));
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_glue_down_the_status_reads_go_over_ssh_and_say_so() {
    // Before the SSH fallback, each of these was unknown for site-b ("no Glue endpoint could
    // be reached") with its sshd up and answering.
    let sim = synced_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.toml");
    sim.write_config(&up_path).unwrap();
    let up = dr_at(&up_path);
    let image = image_of(&sim, "site-a", "dr-centos-1");
    let via_glue = up.mirror_status("DR").await.unwrap();
    assert!(via_glue.complete(), "{via_glue}");
    assert!(via_glue.notes.is_empty());
    let (image_via_glue, from) = up.image_status_read("site-b", &image).await.unwrap();
    assert_eq!(from.via, Via::Glue);
    let health_via_glue = up.health("site-b").await;
    assert_eq!(health_via_glue.storage_read_via, Some(Via::Glue));

    let down = dr_at(&glue_down_config(&sim, dir.path(), "down.toml", "site-b"));
    let (mutations, glue_calls, ssh_calls) = (
        sim.mutations(),
        sim.glue_call_counts(),
        sim.ssh_call_counts(),
    );

    let s = down.mirror_status("DR").await.unwrap();
    assert!(s.complete(), "{s}");
    assert_eq!(
        s.storage_read_via,
        BTreeMap::from([("site-a".into(), Via::Glue), ("site-b".into(), Via::Ssh)])
    );
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(
        s.notes[0].starts_with("site-b: Glue unreachable, read over SSH from 127.0.2."),
        "{:?}",
        s.notes
    );
    has(
        &s.to_string(),
        "NOTE: site-b: Glue unreachable, read over SSH",
    );
    assert_eq!(seen(&s), seen(&via_glue));
    // The lag alone may differ: it grows with the time between the two reads.
    let counts = |s: &MirrorStatus| {
        let m = &s.summary;
        (m.vms, m.synced, m.unsynced, m.unknown)
    };
    assert_eq!(counts(&s), counts(&via_glue));
    let by_home = down.mirror_status_of("DR", "site-a").await.unwrap();
    assert_eq!(by_home.storage_read_via.get("site-b"), Some(&Via::Ssh));

    let h = down.health("site-b").await;
    assert!(h.mold, "{h}");
    assert!(!h.glue, "Glue itself did not answer: {h}");
    assert_eq!(h.glue_reach, Reach::Down);
    assert_eq!(h.glue_health.as_deref(), Some("HEALTH_OK"));
    assert_eq!(h.glue_health, health_via_glue.glue_health);
    assert_eq!(h.storage_read_via, Some(Via::Ssh));
    let note = h.note.clone().unwrap();
    assert!(
        note.starts_with("site-b: Glue unreachable, read over SSH from 127.0.2."),
        "{note}"
    );
    has(&h.to_string(), &note);

    let (st, from) = down.image_status_read("site-b", &image).await.unwrap();
    assert_eq!(from.via, Via::Ssh);
    assert!(from.host.as_deref().unwrap().starts_with("127.0.2."));
    assert_eq!(
        (&st.name, &st.state, &st.description),
        (
            &image_via_glue.name,
            &image_via_glue.state,
            &image_via_glue.description
        )
    );

    // What reached the simulator: on site-b, the reads over SSH and nothing through Glue;
    // no mutation anywhere.
    assert!(sim.mutations().since(&mutations).is_empty());
    let b_glue = |calls: &BTreeMap<(String, String), u64>| -> u64 {
        calls
            .iter()
            .filter(|((site, _), _)| site == "site-b")
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(b_glue(&sim.glue_call_counts()), b_glue(&glue_calls));
    let ssh_now: Vec<(String, u64)> = sim
        .ssh_call_counts()
        .into_iter()
        .map(|((site, line), n)| {
            let before = ssh_calls
                .get(&(site.clone(), line.clone()))
                .copied()
                .unwrap_or(0);
            (format!("{site} {line}"), n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        ssh_now,
        [
            ("site-b ceph -s -f json".to_string(), 1),
            (
                format!("site-b rbd mirror image status rbd/{image} --format json"),
                1
            ),
            (
                "site-b rbd mirror pool status rbd --verbose --format json".to_string(),
                2
            ),
        ]
    );

    // The status runbook and the primitives, through the binary: complete, and saying so.
    let t = Test::new().config(&std::fs::read_to_string(dir.path().join("down.toml")).unwrap());
    let ran = t.run_with(["run", "status"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    lacks(&ran.stdout, "UNKNOWN");
    has(
        &ran.stderr,
        "site-b: Glue unreachable, read over SSH from 127.0.2.",
    );
    let script = format!(
        r#"let s = mirror_status("DR");
print(`via=${{s.storage_read_via["site-b"]}} a=${{s.storage_read_via["site-a"]}} notes=${{s.notes.len()}}`);
let h = health("site-b");
print(`health=${{h.storage_read_via}} ${{h.glue_health}}`);
let i = image_status("site-b", "{image}");
print(`image=${{i.via}} ${{i.state}}`);"#
    );
    t.write_file("reads.rhai", &script);
    let ran = t.run_with(["run", "reads.rhai"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    has(&ran.stdout, "via=ssh a=glue notes=1");
    has(&ran.stdout, "health=ssh HEALTH_OK");
    has(&ran.stdout, &format!("image=ssh {}", image_via_glue.state));
    assert!(sim.mutations().since(&mutations).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ssh_down_too_each_read_is_unknown_naming_both() {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let image = image_of(&sim, "site-a", "dr-centos-1");

    // The storage VMs' host keys are not the ones known: SSH refuses to go on.
    let path = glue_down_config(&sim, dir.path(), "bad-keys.toml", "site-b");
    let known = drbook::sim::known_hosts_path(&path);
    let text = std::fs::read_to_string(&known).unwrap();
    let a_key = text
        .lines()
        .find(|l| l.starts_with("[127.0.1."))
        .and_then(|l| l.split_once(' '))
        .map(|(_, key)| key.to_string())
        .unwrap();
    let wrong: Vec<String> = text
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((host, _)) if host.starts_with("[127.0.2.") => format!("{host} {a_key}"),
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(&known, wrong.join("\n") + "\n").unwrap();
    let bad = dr_at(&path);
    let s = bad.mirror_status("DR").await.unwrap();
    assert!(!s.complete());
    assert_eq!(s.storage_read_via.get("site-b"), None);
    let u = s.unknown.iter().find(|u| u.site == "site-b").unwrap();
    has(&u.error, "no Glue endpoint could be reached");
    has(
        &u.error,
        "over SSH (`rbd mirror pool status rbd --verbose --format json`)",
    );
    has(&u.error, "does not match");
    assert!(s.vms.iter().all(|v| !v.synced.is_known()), "{s}");
    let e = bad.image_status_read("site-b", &image).await.unwrap_err();
    assert!(
        matches!(
            e,
            DrError::StorageUnreadable {
                ssh_dark: false,
                ..
            }
        ),
        "{e}"
    );
    has(&e.to_string(), "does not match");
    let h = bad.health("site-b").await;
    assert!(h.mold, "{h}");
    assert_eq!((h.glue_health.as_deref(), h.storage_read_via), (None, None));
    let problem = h.problem.unwrap();
    has(&problem, "no Glue endpoint could be reached");
    has(&problem, "over SSH (`ceph -s -f json`)");
    has(&problem, "does not match");

    // The whole site down (Mold, Glue, sshd): dark, and said so for both ways.
    sim.disaster("site-b").await.unwrap();
    let up_path = dir.path().join("up.toml");
    sim.write_config(&up_path).unwrap();
    let dr = dr_at(&up_path);
    let before = sim.mutations();
    let s = dr.mirror_status("DR").await.unwrap();
    let u = s
        .unknown
        .iter()
        .find(|u| u.site == "site-b" && u.api == drbook::dr::Api::Glue)
        .unwrap();
    assert!(u.dark);
    has(&u.error, "no Glue endpoint could be reached");
    has(&u.error, "cannot reach any storage VM over SSH");
    assert!(s.vms.iter().all(|v| !v.synced.is_known()), "{s}");
    let h = dr.health("site-b").await;
    assert_eq!(
        (h.glue_reach, h.glue_health.as_deref()),
        (Reach::Down, None)
    );
    assert_eq!((h.storage_read_via, h.note.as_deref()), (None, None));
    let e = dr.image_status_read("site-b", &image).await.unwrap_err();
    assert!(
        matches!(e, DrError::StorageUnreadable { ssh_dark: true, .. }),
        "{e}"
    );
    assert!(sim.mutations().since(&before).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_ssh_key_glue_down_stays_unknown() {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let path = glue_down_config(&sim, dir.path(), "no-key.toml", "site-b");
    let text = std::fs::read_to_string(&path).unwrap();
    let text: Vec<&str> = text
        .lines()
        .filter(|l| !(l.starts_with("ssh_key_file") && l.contains("site-b")))
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    let calls = sim.ssh_call_counts();
    let s = dr_at(&path).mirror_status("DR").await.unwrap();
    let u = s.unknown.iter().find(|u| u.site == "site-b").unwrap();
    assert!(u.dark);
    has(&u.error, "no Glue endpoint could be reached");
    assert!(!u.error.contains("SSH"), "{}", u.error);
    assert_eq!(sim.ssh_call_counts(), calls, "nothing went over SSH");
}
