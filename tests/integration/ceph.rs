//! `drbook sim --storage ceph`: two real Ceph 16.2.15 clusters on loopback behind the
//! simulated Glue API. The shipped failover and failback runbooks run unchanged on them, and
//! the ledger is read back from the real bytes (`rbd export`). These tests need Debian's
//! `ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common` (`.ci/run` installs them) and take a
//! few minutes: every wait is on state, never a fixed sleep.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Test;
use crate::sim_process::{SimProcess, until, writes};

/// `drbook sim --storage ceph` with its clusters in `workdir` and a drbook.toml in `dir`.
fn start_ceph_sim(dir: &Path, workdir: &Path) -> SimProcess {
    SimProcess::start(
        dir,
        [
            "--storage".as_ref(),
            "ceph".as_ref(),
            "--timing".as_ref(),
            "fast".as_ref(),
            "--vms".as_ref(),
            "2".as_ref(),
            "--workdir".as_ref(),
            workdir.as_os_str(),
            "--write-config".as_ref(),
            dir.join("drbook.toml").as_os_str(),
        ],
    )
}

fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Waits (on state) until `ready` holds for the ledger of `vm`.
async fn until_ledger(sim: &SimProcess, vm: &str, what: &str, ready: impl Fn(&Vec<Value>) -> bool) {
    until(what, Duration::from_secs(180), || sim.ledger(vm), ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_failback_run_unchanged_on_real_ceph_and_no_write_is_lost() {
    let test = Test::new().file(
        "snapshot.rhai",
        r#"mirror_snapshot("site-a", "dr-centos-1");"#,
    );
    let workdir = test.dir().join("ceph");

    // A run that crashed: its daemons are left running in the work directory.
    let crashed = start_ceph_sim(test.dir(), &workdir);
    let orphans = crashed.daemon_pids().await;
    let mut crashed = crashed;
    crashed.child.kill().unwrap();
    crashed.child.wait().unwrap();
    drop(crashed);
    assert!(
        orphans.iter().all(|pid| alive(*pid)),
        "SIGKILL leaves the daemons behind"
    );

    // The next start finds and stops exactly those, and brings up fresh clusters.
    let sim = start_ceph_sim(test.dir(), &workdir);
    assert!(
        orphans.iter().all(|pid| !alive(*pid)),
        "the earlier run's daemons are stopped"
    );
    let daemons = sim.daemon_pids().await;
    assert_eq!(sim.get("/ledger/dr-centos-1").await["storage"], "ceph");

    // Writes reach the DR site with a real mirror snapshot; later ones are at risk.
    sim.post(
        "/write",
        json!({"vm": "dr-centos-1", "site": "site-a", "count": 3}),
    )
    .await;
    test.run_with(["-c", "drbook.toml", "run", "snapshot.rhai"])
        .expect_code(0);
    until_ledger(
        &sim,
        "dr-centos-1",
        "the snapshot's writes on site-b",
        |images| {
            images.iter().all(|i| {
                !writes(i, "site-b").is_empty() && writes(i, "site-b") == writes(i, "site-a")
            })
        },
    )
    .await;
    let replicated: Vec<Vec<u64>> = sim
        .ledger("dr-centos-1")
        .await
        .iter()
        .map(|i| writes(i, "site-b"))
        .collect();
    sim.post(
        "/write",
        json!({"vm": "dr-centos-1", "site": "site-a", "count": 2}),
    )
    .await;

    // Disaster: site-a's Ceph daemons are killed.
    sim.post("/disaster", json!({"site": "site-a"})).await;
    test.run_with(["-c", "drbook.toml", "run", "failover", "--yes"])
        .expect_code(0);
    let after_failover = sim.ledger("dr-centos-1").await;
    for (image, kept) in after_failover.iter().zip(&replicated) {
        assert_eq!(
            &writes(image, "site-b"),
            kept,
            "site-b keeps exactly the replicated writes"
        );
    }

    // Work goes on at the DR site; site-a comes back over its old data, then fails back.
    sim.post(
        "/write",
        json!({"vm": "dr-centos-1", "site": "site-b", "count": 4}),
    )
    .await;
    let at_dr: Vec<Vec<u64>> = sim
        .ledger("dr-centos-1")
        .await
        .iter()
        .map(|i| writes(i, "site-b"))
        .collect();
    sim.post("/recover", json!({"site": "site-a"})).await;
    test.run_with(["-c", "drbook.toml", "run", "failback", "--yes"])
        .expect_code(0);

    // Every DR-site write is home, on the bytes; once the DR copies are copied again in full
    // from home (the failback's last resync), the copies' checksums are equal.
    until_ledger(
        &sim,
        "dr-centos-1",
        "the DR copies resynced from home",
        |images| {
            images.iter().all(|i| {
                writes(i, "site-b") == writes(i, "site-a")
                    && i["checksums"]["site-a"] == i["checksums"]["site-b"]
            })
        },
    )
    .await;
    let home = sim.ledger("dr-centos-1").await;
    for (image, expected) in home.iter().zip(&at_dr) {
        assert_eq!(&writes(image, "site-a"), expected, "{image}");
        assert_eq!(writes(image, "site-a"), writes(image, "site-b"), "{image}");
        let sums = &image["checksums"];
        assert_eq!(sums["site-a"], sums["site-b"], "{image}");
        assert!(
            sums["site-a"].as_str().is_some_and(|s| s.len() == 64),
            "{image}"
        );
    }
    let state = sim.get("/state").await;
    let vms = state["sites"]["site-a"]["vms"].as_array().unwrap();
    assert!(vms.iter().all(|v| v["state"] == "Running"), "{vms:?}");

    // SIGTERM stops exactly the daemons this run started.
    let now_running = sim.daemon_pids().await;
    sim.terminate();
    assert!(
        daemons.iter().chain(&now_running).all(|pid| !alive(*pid)),
        "no Ceph daemon outlives drbook sim"
    );
}

#[test]
fn without_ceph_installed_the_error_says_what_to_install() {
    let ran = Test::new()
        .env("PATH", "/nonexistent")
        .args(["sim", "--storage", "ceph", "--workdir", "ceph"])
        .run()
        .expect_code(1);
    ran.stderr_has("apt-get install ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common");
}

#[test]
fn a_workdir_drbook_did_not_make_is_refused_untouched() {
    let test = Test::new().file("keep.txt", "operator data").args([
        "sim",
        "--storage",
        "ceph",
        "--workdir",
        ".",
    ]);
    let ran = test.run().expect_code(1);
    ran.stderr_has("was not made by");
    assert!(test.dir().join("keep.txt").exists());
}

/// `test-failover` on real Ceph, the rbd part real over SSH: the user snapshot travels with a
/// real mirror snapshot, the clone is a real format-2 clone of the replica's snapshot, the
/// copy boots from it, and afterwards no clone, user snapshot or trashed image is left; the
/// production VM keeps running and its replica keeps every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_failover_runs_unchanged_on_real_ceph_and_leaves_no_image() {
    let test = Test::new().file(
        "snapshot.rhai",
        r#"mirror_snapshot("site-a", "dr-centos-1");"#,
    );
    let workdir = test.dir().join("ceph");
    let sim = start_ceph_sim(test.dir(), &workdir);
    sim.post(
        "/write",
        json!({"vm": "dr-centos-1", "site": "site-a", "count": 3}),
    )
    .await;
    test.run_with(["-c", "drbook.toml", "run", "snapshot.rhai"])
        .expect_code(0);
    until_ledger(&sim, "dr-centos-1", "the writes on site-b", |images| {
        images
            .iter()
            .all(|i| !writes(i, "site-b").is_empty() && writes(i, "site-b") == writes(i, "site-a"))
    })
    .await;
    let before = sim.ledger("dr-centos-1").await;
    let ran = test.run_with([
        "-c",
        "drbook.toml",
        "run",
        "test-failover",
        "--yes",
        "--var",
        "vm=dr-centos-1",
        "--var",
        "network=DR Test Network",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    ran.stdout_has("copy dr-centos-1-drtest-");
    ran.stdout_has("no test artifact remains on either site");
    // Real rbd on the DR site: no clone, no trashed image.
    let ceph = |args: &[&str]| {
        let out = std::process::Command::new("rbd")
            .arg("-c")
            .arg(workdir.join("site-b").join("ceph.conf"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "rbd {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Vec<String> =
        serde_json::from_str(&ceph(&["ls", "rbd", "--format", "json"])).unwrap();
    assert!(
        listed.iter().all(|i| !i.contains("-drtest-")),
        "a clone is left: {listed:?}"
    );
    let trash: Vec<Value> =
        serde_json::from_str(&ceph(&["trash", "ls", "--all", "rbd", "--format", "json"])).unwrap();
    assert!(trash.is_empty(), "the trash holds {trash:?}");
    assert_eq!(
        sim.ledger("dr-centos-1").await,
        before,
        "production and its replica kept every write"
    );
}
