//! `drbook sim --storage ceph`: two real Ceph 16.2.15 clusters on loopback behind the
//! simulated Glue API. The shipped failover and failback runbooks run unchanged on them, and
//! the ledger is read back from the real bytes (`rbd export`). These tests need Debian's
//! `ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common` (`.ci/run` installs them) and take a
//! few minutes: every wait is on state, never a fixed sleep.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Test;

/// A `drbook sim --storage ceph` process and what its ready line said.
struct CephSim {
    child: Child,
    control: String,
    http: reqwest::Client,
}

impl CephSim {
    fn start(dir: &Path, workdir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drbook"))
            .args(["sim", "--storage", "ceph", "--timing", "fast", "--vms", "2"])
            .arg("--workdir")
            .arg(workdir)
            .arg("--write-config")
            .arg(dir.join("drbook.toml"))
            .current_dir(dir)
            .env_remove("DRBOOK_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("no ready line from the ceph sim ({e}): {line:?}"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            child,
            control: ready["control"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.control))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "POST {path}: {}",
            answer.status()
        );
        answer.json().await.unwrap()
    }

    /// Per image of the VM: (site → writes held, site → checksum).
    async fn ledger(&self, vm: &str) -> Vec<Value> {
        let ledger = self.get(&format!("/ledger/{vm}")).await;
        assert_eq!(ledger["storage"], "ceph");
        ledger["images"].as_array().unwrap().clone()
    }

    /// The PIDs of every Ceph daemon, from `/state`.
    async fn daemon_pids(&self) -> Vec<u32> {
        let state = self.get("/state").await;
        let mut pids = Vec::new();
        for site in state["storage"]["sites"].as_object().unwrap().values() {
            for pid in site["daemons"].as_object().unwrap().values() {
                pids.push(u32::try_from(pid.as_u64().unwrap()).unwrap());
            }
        }
        assert_eq!(
            pids.len(),
            8,
            "mon, mgr, osd and rbd-mirror per site: {state}"
        );
        pids
    }

    fn terminate(mut self) {
        let status = self.sigterm().unwrap();
        assert!(status.success(), "drbook sim exited with {status}");
    }

    fn sigterm(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok()?;
        self.child.wait().ok()
    }
}

impl Drop for CephSim {
    /// A failing test still stops the simulator, and with it its Ceph daemons.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.sigterm();
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Waits (on state) until `ready` holds for the ledger of `vm`.
async fn until_ledger(sim: &CephSim, vm: &str, what: &str, ready: impl Fn(&[Value]) -> bool) {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let images = sim.ledger(vm).await;
        if ready(&images) {
            return;
        }
        assert!(
            Instant::now() < until,
            "gave up waiting for {what}: {images:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn writes(image: &Value, site: &str) -> Vec<u64> {
    image["sites"][site]
        .as_array()
        .map(|w| w.iter().map(|n| n.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about four minutes on real Ceph; not yet run to the end in CI (run with --ignored)"]
async fn failover_and_failback_run_unchanged_on_real_ceph_and_no_write_is_lost() {
    let test = Test::new().file(
        "snapshot.rhai",
        r#"mirror_snapshot("site-a", "dr-centos-1");"#,
    );
    let workdir = test.dir().join("ceph");

    // A run that crashed: its daemons are left running in the work directory.
    let crashed = CephSim::start(test.dir(), &workdir);
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
    let sim = CephSim::start(test.dir(), &workdir);
    assert!(
        orphans.iter().all(|pid| !alive(*pid)),
        "the earlier run's daemons are stopped"
    );
    let daemons = sim.daemon_pids().await;

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

    // Every DR-site write is home, on the bytes: the copies' checksums are equal.
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
    assert!(
        ran.stderr
            .contains("apt-get install ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common"),
        "{}",
        ran.stderr
    );
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
    assert!(ran.stderr.contains("was not made by"), "{}", ran.stderr);
    assert!(test.dir().join("keep.txt").exists());
}
