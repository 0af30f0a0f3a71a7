//! One run lock for every operator, in a real three-member etcd on loopback (`[coordination]`):
//! operators on two state directories (two machines' lock directories) meet one lock, the
//! refusal naming the holder; a holder killed loses it when its lease expires; a holder cut off
//! its etcd member stops before its next change, and a send its guard reads delayed past the
//! lock's deadline is held back; each holder's fencing token is in its journal; etcd out of
//! reach changes nothing; etcd's authentication and TLS with client certificates. Judged by
//! what the simulator received. (A watcher meeting an operator: `watch.rs`.)

use std::path::Path;
use std::time::{Duration, Instant};

use drbook::sim::faults::Api;

use crate::harness::{EtcdCluster, Ran, Test, eventually, has, lacks, refused_addr, start_sim};

const HOLD: &str = "stop_vm(\"site-a\", \"dr-centos-1\");\nsleep(\"60s\");\n";
const OTHER: &str = "stop_vm(\"site-a\", \"dr-centos-2\");\n";

async fn etcd() -> EtcdCluster {
    tokio::task::spawn_blocking(EtcdCluster::start)
        .await
        .unwrap()
}

/// An operator of its own machine: its own directory, state and lock directory.
fn operator(sim: &drbook::sim::Sim, coordination: &str, name: &str, script: &str) -> Test {
    Test::new()
        .sim_config(sim)
        .append("drbook.toml", coordination)
        .file(name, script)
        .args(["run", name])
}

/// The fencing tokens the runs under `state_dir` journaled.
fn journal_tokens(state_dir: &Path) -> Vec<i64> {
    let mut tokens = Vec::new();
    for run in std::fs::read_dir(state_dir.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(run.path().join("journal.jsonl")).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["event"] == "lock" {
                assert_eq!(v["cluster"], "DR", "{line}");
                tokens.push(v["fencing_token"].as_i64().unwrap());
            }
        }
    }
    tokens
}

fn stops(sim: &drbook::sim::Sim) -> u64 {
    sim.mutation_count("site-a", Api::Mold, "stopVirtualMachine")
}

async fn first_stop(sim: &drbook::sim::Sim) {
    eventually("the holder's stop to arrive", || async {
        (stops(sim) >= 1).then_some(())
    })
    .await;
}

/// Runs `t` again until it exits 0, for at most `within`.
fn until_it_runs(t: &Test, within: Duration) -> Ran {
    let deadline = Instant::now() + within;
    loop {
        let ran = t.run();
        if ran.code == 0 || Instant::now() > deadline {
            return ran.expect_code(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_on_two_machines_meet_one_lock() {
    let etcd = etcd().await;
    let sim = start_sim(|_| {}).await;
    // A long lease: the lock vanishing at once when its run ends is its release, not expiry.
    let coordination = etcd.coordination(&[0, 1, 2], 10);
    let holder = operator(&sim, &coordination, "hold.rhai", HOLD);
    let mut child = holder.spawn();
    first_stop(&sim).await;
    let other = operator(&sim, &coordination, "other.rhai", OTHER);
    let before = sim.mutations();
    let ran = tokio::task::block_in_place(|| other.run()).expect_code(1);
    assert!(
        sim.mutations().since(&before).is_empty(),
        "the refused run sent nothing: {:?}",
        sim.mutations().since(&before)
    );
    let error = ran.error_lines().join("\n");
    has(&error, "DR cluster \"DR\" is locked by run");
    has(&error, "of hold.rhai");
    let user = drbook::paths::user_name();
    has(&error, &format!("(user {user}, pid {} on ", child.id()));
    has(&error, "etcd key /drbook/lock/DR-");
    // The holder's fencing token is the lock key's create revision, in its journal.
    let keys = etcd.keys(1, "/drbook/lock/");
    assert_eq!(keys.len(), 1, "{keys:?}");
    has(&keys[0].2, &format!("\"pid\":{}", child.id()));
    assert_eq!(journal_tokens(&holder.state_dir()), vec![keys[0].1]);
    // SIGTERM ends the holder's wait and its run: the lock is released, not left to expire.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    let ended = Instant::now();
    assert!(etcd.keys(2, "/drbook/").is_empty(), "the key is deleted");
    tokio::task::block_in_place(|| other.run()).expect_code(0);
    assert!(
        ended.elapsed() < Duration::from_secs(10),
        "well before its lease would end"
    );
    assert_eq!(stops(&sim), 2);
    let (first, second) = (
        journal_tokens(&holder.state_dir()),
        journal_tokens(&other.state_dir()),
    );
    assert!(second[0] > first[0], "{first:?} then {second:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_loses_the_lock_when_its_lease_ends() {
    let etcd = etcd().await;
    let sim = start_sim(|_| {}).await;
    // A lease of 5 s, renewed every 1.7 s: it outlives its killed holder by 3.3 s at least.
    let coordination = etcd.coordination(&[0, 1, 2], 5);
    let holder = operator(&sim, &coordination, "hold.rhai", HOLD);
    let mut child = holder.spawn();
    first_stop(&sim).await;
    child.kill().unwrap();
    tokio::task::block_in_place(|| child.wait()).unwrap();
    // Dead, but its lease lives on for up to its TTL: no other machine can tell a dead holder
    // from a slow one.
    let other = operator(&sim, &coordination, "other.rhai", OTHER);
    let ran = tokio::task::block_in_place(|| other.run()).expect_code(1);
    has(&ran.error_lines().join("\n"), "its lease ends within 5s");
    assert_eq!(stops(&sim), 1);
    tokio::task::block_in_place(|| until_it_runs(&other, Duration::from_secs(10)));
    assert_eq!(stops(&sim), 2);
    let (first, second) = (
        journal_tokens(&holder.state_dir()),
        journal_tokens(&other.state_dir()),
    );
    assert!(second[0] > first[0], "{first:?} then {second:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_etcd_stops_before_its_next_change() {
    let etcd = etcd().await;
    let sim = start_sim(|_| {}).await;
    // The holder talks to member 0 only; the other operator to members 1 and 2.
    let holder = operator(
        &sim,
        &etcd.coordination(&[0], 2),
        "hold.rhai",
        "stop_vm(\"site-a\", \"dr-centos-1\");\nsleep(\"3s\");\nstop_vm(\"site-a\", \"dr-centos-3\");\n",
    );
    let child = holder.spawn();
    first_stop(&sim).await;
    etcd.freeze(0);
    let out = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    has(&stderr, "the lock of DR cluster \"DR\" was lost");
    has(&stderr, "this run stops before its next change");
    assert_eq!(stops(&sim), 1, "its second stop was never sent");
    // Its lease ended in etcd too: the majority gives the lock to another operator.
    let other = operator(&sim, &etcd.coordination(&[1, 2], 2), "other.rhai", OTHER);
    tokio::task::block_in_place(|| until_it_runs(&other, Duration::from_secs(8)));
    assert_eq!(stops(&sim), 2);
    etcd.thaw(0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_nothing_is_changed() {
    let sim = start_sim(|_| {}).await;
    let coordination = format!(
        "\n[coordination]\netcd_endpoints = [\"http://{}\"]\nlease_ttl = \"2s\"\n",
        refused_addr()
    );
    let op = operator(&sim, &coordination, "other.rhai", OTHER);
    let before = sim.mutations();
    let ran = tokio::task::block_in_place(|| op.run()).expect_code(1);
    let error = ran.error_lines().join("\n");
    has(&error, "cannot take the lock of DR cluster \"DR\" in etcd");
    has(&error, "nothing was changed");
    assert!(sim.mutations().since(&before).is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_user_and_password_file_and_a_nested_run_sharing_the_lock() {
    let etcd = etcd().await;
    etcd.enable_auth("drbook", "pw-etcd-7", "/drbook/");
    let sim = start_sim(|_| {}).await;
    let auth = format!(
        "{}user = \"drbook\"\npassword_file = \"etcd.pw\"\n",
        etcd.coordination(&[0, 1, 2], 2)
    );
    // A runbook and the nested run it makes are one run: one lock, one token.
    let op = operator(
        &sim,
        &auth,
        "outer.rhai",
        "stop_vm(\"site-a\", \"dr-centos-1\");\nrun(\"inner\", #{});\n",
    )
    .file("inner.rhai", "stop_vm(\"site-a\", \"dr-centos-2\");\n")
    .file("etcd.pw", "pw-etcd-7\n");
    let ran = tokio::task::block_in_place(|| op.run()).expect_code(0);
    assert_eq!(stops(&sim), 2);
    let tokens = journal_tokens(&op.state_dir());
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_eq!(
        tokens[0], tokens[1],
        "the nested run holds its parent's lock"
    );
    for text in [&ran.stdout, &ran.stderr] {
        lacks(text, "pw-etcd-7");
    }
    // A wrong password takes no lock and changes nothing, and is not shown either.
    let wrong = operator(&sim, &auth, "other.rhai", OTHER).file("etcd.pw", "pw-wrong-3\n");
    let before = sim.mutations();
    let ran = tokio::task::block_in_place(|| wrong.run()).expect_code(1);
    has(&ran.error_lines().join("\n"), "authentication failed");
    lacks(&ran.stderr, "pw-wrong-3");
    assert!(sim.mutations().since(&before).is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_a_client_certificate() {
    let etcd = tokio::task::spawn_blocking(EtcdCluster::start_tls)
        .await
        .unwrap();
    let tls = etcd.tls.as_ref().unwrap();
    let sim = start_sim(|_| {}).await;
    let base = format!(
        "{}ca_file = \"{}\"\n",
        etcd.coordination(&[0, 1, 2], 2),
        tls.ca.display()
    );
    // etcd asks for a client certificate: without one, no lock and no change.
    let no_cert = operator(&sim, &base, "other.rhai", OTHER);
    let ran = tokio::task::block_in_place(|| no_cert.run()).expect_code(1);
    has(
        &ran.error_lines().join("\n"),
        "cannot take the lock of DR cluster \"DR\" in etcd",
    );
    assert_eq!(stops(&sim), 0);
    let with_cert = format!(
        "{base}cert_file = \"{}\"\nkey_file = \"{}\"\n",
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let op = operator(&sim, &with_cert, "other.rhai", OTHER);
    tokio::task::block_in_place(|| op.run()).expect_code(0);
    assert_eq!(stops(&sim), 1);
    assert_eq!(journal_tokens(&op.state_dir()).len(), 1);
    assert!(etcd.keys(0, "/drbook/").is_empty(), "released");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_while_a_primitive_reads_its_guards_holds_its_send_back() {
    use drbook::sim::faults::{FaultKind, FaultSpec};
    let etcd = etcd().await;
    let sim = start_sim(|_| {}).await;
    // Frozen off etcd during the pause, the holder's lock has 1.3 s to 3 s left (TTL 5 s,
    // renewed every 1.7 s, margin 1 s) when stop_vm's host-side check passes; its VM lookup
    // then takes 5 s: the client's own check, right before the stop would go out, holds it
    // back.
    let holder = operator(
        &sim,
        &etcd.coordination(&[0], 5),
        "hold.rhai",
        "set_mirror_interval(\"DR\", \"30m\");\nsleep(\"1s\");\nstop_vm(\"site-a\", \"dr-centos-3\");\n",
    );
    let child = holder.spawn();
    let updates = |sim: &drbook::sim::Sim| {
        ["site-a", "site-b"]
            .iter()
            .map(|s| sim.mutation_count(s, Api::Mold, "updateDisasterRecoveryCluster"))
            .sum::<u64>()
    };
    eventually("both sites' interval updates", || async {
        (updates(&sim) >= 2).then_some(())
    })
    .await;
    sim.add_fault(FaultSpec {
        site: "site-a".into(),
        api: Api::Mold,
        command: Some("listVirtualMachines".into()),
        kind: FaultKind::Latency,
        times: Some(5),
        rate: None,
        status: None,
        latency: Some("5s".into()),
        message: None,
    })
    .unwrap();
    etcd.freeze(0);
    let out = tokio::task::block_in_place(|| child.wait_with_output()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    has(&stderr, "the lock of DR cluster \"DR\" was lost");
    assert_eq!(stops(&sim), 0, "the stop was never sent");
    // The call was under way (journaled), and failed without sending: not in doubt.
    let journal = std::fs::read_dir(holder.state_dir().join("runs"))
        .unwrap()
        .flatten()
        .map(|r| std::fs::read_to_string(r.path().join("journal.jsonl")).unwrap())
        .collect::<String>();
    let outcome = journal
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|v| v["event"] == "outcome")
        .unwrap();
    assert_eq!(outcome["ok"], false, "{outcome}");
    has(outcome["error"].as_str().unwrap(), "not sent");
    assert!(outcome.get("unknown").is_none(), "{outcome}");
    etcd.thaw(0);
    sim.shutdown().await;
}
