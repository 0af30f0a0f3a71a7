//! Real SSH on the simulated storage VMs: a real sshd per site (openssh-server; `.ci/run`
//! installs it), reached with drbook's own client (`drbook::ssh::run`, and `ssh()` in a
//! runbook through the written `drbook.toml`), each command answered from the storage model
//! and counted as it arrived.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use drbook::sim::Sim;
use drbook::sim::faults::Api;
use drbook::ssh::{SshError, SshOutput, SshTarget};
use serde_json::Value;

use crate::harness::{Test, sim_ssh, start_sim_ssh};

/// One command through drbook's SSH client, off the async threads that serve the simulator.
async fn ssh(target: &SshTarget, command: &str) -> Result<SshOutput, SshError> {
    let (target, command) = (target.clone(), command.to_string());
    tokio::task::spawn_blocking(move || drbook::ssh::run(&target, &command))
        .await
        .unwrap()
}

async fn ssh_ok(target: &SshTarget, command: &str) -> SshOutput {
    ssh(target, command)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"))
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

/// The names of an image's user snapshots, read from the model directly (not over SSH).
fn model_snaps(sim: &Sim, site: &str, image: &str) -> Vec<String> {
    let args: Vec<String> = ["snap", "ls", &format!("rbd/{image}"), "--format", "json"]
        .iter()
        .map(ToString::to_string)
        .collect();
    let out = sim
        .with_world(|w, now| w.storage.rbd_command(now, site, &args))
        .unwrap();
    let rows: Value = serde_json::from_str(&out).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_and_ceph_over_ssh_act_on_the_model_and_count_what_arrived() {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let a = sim_ssh(&sim, "site-a", dir.path());
    let b = sim_ssh(&sim, "site-b", dir.path());
    let image = image_of(&sim, "site-a", "dr-centos-1");
    let before = sim.mutations();

    // A user snapshot of the primary: made in the model, listed back over SSH.
    let created = ssh_ok(&a, &format!("rbd snap create rbd/{image}@drill-1")).await;
    assert_eq!(
        (
            created.status,
            created.stdout.as_str(),
            created.stderr.as_str()
        ),
        (0, "", "")
    );
    assert!(created.host.starts_with("127.0.1."), "{}", created.host);
    assert_eq!(model_snaps(&sim, "site-a", &image), ["drill-1"]);
    let listed = ssh_ok(&a, &format!("rbd snap ls rbd/{image} --format json")).await;
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    let rows: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(rows[0]["name"], "drill-1");

    // rbd's own refusal, status and text: the replica is read-only.
    let refused = ssh_ok(&b, &format!("rbd snap create rbd/{image}@on-b")).await;
    assert_eq!(refused.status, 30);
    assert_eq!(
        refused.stderr,
        "rbd: failed to create snapshot: (30) Read-only file system\n"
    );
    assert!(!model_snaps(&sim, "site-b", &image).contains(&"on-b".to_string()));

    // ceph status as JSON, compact and pretty; health in plain text.
    let status = ssh_ok(&a, "ceph -s -f json").await;
    assert_eq!(status.status, 0, "{}", status.stderr);
    let json: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["health"]["status"], "HEALTH_OK");
    let pretty = ssh_ok(&a, "ceph status --format json-pretty").await;
    assert!(pretty.stdout.contains("\n  "), "{}", pretty.stdout);
    assert_eq!(serde_json::from_str::<Value>(&pretty.stdout).unwrap(), json);
    assert_eq!(ssh_ok(&a, "ceph health").await.stdout, "HEALTH_OK\n");

    // Nothing else runs: not another program, not shell syntax.
    let missing = ssh_ok(&a, "hostname").await;
    assert_eq!(missing.status, 127);
    assert!(
        missing.stderr.contains("hostname: command not found")
            && missing.stderr.contains("only rbd and ceph"),
        "{}",
        missing.stderr
    );
    let chained = format!("rbd snap create rbd/{image}@drill-2; reboot");
    let shell = ssh_ok(&a, &chained).await;
    assert_eq!(shell.status, 2);
    assert!(shell.stderr.contains("without a shell"), "{}", shell.stderr);
    assert_eq!(
        model_snaps(&sim, "site-a", &image),
        ["drill-1"],
        "nothing of a refused line ran"
    );

    // Every line counted as it arrived; the ones that are not reads as mutations, rbd's by
    // command without names, the others as sent.
    let calls: BTreeMap<(String, String), u64> = sim.ssh_call_counts();
    let line = |site: &str, l: &str| ((site.to_string(), l.to_string()), 1);
    assert_eq!(
        calls,
        BTreeMap::from([
            line("site-a", &format!("rbd snap create rbd/{image}@drill-1")),
            line("site-a", &format!("rbd snap ls rbd/{image} --format json")),
            line("site-a", "ceph -s -f json"),
            line("site-a", "ceph status --format json-pretty"),
            line("site-a", "ceph health"),
            line("site-a", "hostname"),
            line("site-a", &chained),
            line("site-b", &format!("rbd snap create rbd/{image}@on-b")),
        ])
    );
    let since = sim.mutations().since(&before);
    let sent: Vec<(&str, Api, &str, u64)> = since.iter().collect();
    let mut expected = vec![
        ("site-a", Api::Ssh, "hostname", 1),
        ("site-a", Api::Ssh, "rbd snap create", 1),
        ("site-a", Api::Ssh, chained.as_str(), 1),
        ("site-b", Api::Ssh, "rbd snap create", 1),
    ];
    expected.sort();
    assert_eq!(sent, expected);
    assert_eq!(sim.mutation_count("site-b", Api::Ssh, "rbd snap create"), 1);
    let state = sim.state();
    assert_eq!(state["mutations"]["site-a"]["ssh"]["rbd snap create"], 1);
    assert_eq!(state["ssh_calls"]["site-a"]["ceph -s -f json"], 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_other_than_the_storage_vms_is_refused_before_anything_is_sent() {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = sim_ssh(&sim, "site-a", dir.path());
    // site-b's host key written for site-a's addresses: what a reinstalled VM looks like.
    let b_key = sim.endpoints().sites["site-b"]
        .ssh
        .as_ref()
        .unwrap()
        .host_key
        .clone();
    let port = a.port;
    let wrong = dir.path().join("wrong_known_hosts");
    let mut text = String::new();
    for h in &a.hosts {
        writeln!(text, "[{h}]:{port} {b_key}").unwrap();
    }
    std::fs::write(&wrong, text).unwrap();
    a.known_hosts = Some(wrong);
    let e = ssh(&a, "ceph -s -f json").await.unwrap_err();
    assert!(matches!(e, SshError::HostKey { .. }), "{e}");
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(sim.ssh_call_counts().is_empty(), "nothing arrived");
    assert!(sim.mutations().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disaster_makes_the_storage_vms_unreachable_and_recovery_brings_the_same_ones_back() {
    let sim = start_sim_ssh(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let a = sim_ssh(&sim, "site-a", dir.path());
    let b = sim_ssh(&sim, "site-b", dir.path());
    assert_eq!(ssh_ok(&a, "ceph health").await.status, 0);

    sim.disaster("site-a").await.unwrap();
    let e = ssh(&a, "ceph health").await.unwrap_err();
    match &e {
        SshError::Unreachable { site, tried } => {
            assert_eq!(site, "site-a");
            // Every storage VM was tried, and none answered.
            assert_eq!(tried.matches("127.0.1.").count(), 2, "{tried}");
        }
        other => panic!("not unreachable: {other}"),
    }
    assert_eq!(
        ssh_ok(&b, "ceph health").await.stdout,
        "HEALTH_OK\n",
        "the other site's storage VMs still answer"
    );

    sim.recover("site-a").await.unwrap();
    // The same port and host key: the known_hosts written before the disaster still holds.
    assert_eq!(ssh_ok(&a, "ceph health").await.stdout, "HEALTH_OK\n");
    let counted = sim.ssh_call_counts();
    assert_eq!(
        counted.get(&("site-a".to_string(), "ceph health".to_string())),
        Some(&2),
        "the command sent during the disaster never arrived"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_in_a_runbook_reaches_the_simulated_storage_vms_through_the_written_config() {
    let sim = start_sim_ssh(|_| {}).await;
    let image = image_of(&sim, "site-a", "dr-centos-1");
    let script = format!(
        r#"let s = ssh("site-a", "ceph -s -f json");
print(`status=${{s.status}} healthy=${{s.stdout.contains("HEALTH_OK")}}`);
let c = ssh("site-a", "rbd snap create rbd/{image}@from-a-runbook");
print(`created=${{c.status}}`);
let m = ssh("site-b", "uptime");
print(`missing=${{m.status}}`);
"#
    );
    let ran = Test::new()
        .sim_config(&sim)
        .file("ssh.rhai", &script)
        .args(["run", "ssh.rhai", "--yes"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("status=0 healthy=true")
        .stdout_has("created=0")
        .stdout_has("missing=127");
    assert!(
        !ran.stderr.contains("not checked"),
        "the written config checks host keys: {}",
        ran.stderr
    );
    assert_eq!(model_snaps(&sim, "site-a", &image), ["from-a-runbook"]);
    assert_eq!(sim.mutation_count("site-a", Api::Ssh, "rbd snap create"), 1);
    assert_eq!(sim.mutation_count("site-b", Api::Ssh, "uptime"), 1);
    sim.shutdown().await;
}

/// Whether anything accepts connections on a storage VM's SSH port.
fn listening(ip: &str, port: u16) -> bool {
    std::net::TcpStream::connect((ip, port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sshd_outlives_its_simulation_shut_down_or_dropped() {
    for shut_down in [true, false] {
        let sim = start_sim_ssh(|_| {}).await;
        let dir = tempfile::tempdir().unwrap();
        let mut ports = Vec::new();
        for site in ["site-a", "site-b"] {
            let target = sim_ssh(&sim, site, dir.path());
            // A whole command, not a bare connection: the child sshd forks for a connection
            // holds the listening socket for a moment, which would keep a port open an instant
            // after its server stopped.
            assert_eq!(ssh_ok(&target, "ceph health").await.status, 0);
            ports.push(target.port);
        }
        if shut_down {
            sim.shutdown().await;
        }
        drop(sim);
        for (ip, port) in [("127.0.1.1", ports[0]), ("127.0.1.2", ports[0])]
            .into_iter()
            .chain([("127.0.2.1", ports[1]), ("127.0.2.2", ports[1])])
        {
            assert!(
                !listening(ip, port),
                "{ip}:{port} still listens (shut down first: {shut_down})"
            );
        }
    }
}
