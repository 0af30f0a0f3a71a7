//! `drbook run`, `check` and `doc` end to end: the binary, a script, and an in-process
//! simulator (its drbook.toml written by the simulator itself).

use serde_json::Value;

use crate::harness::{Test, has, start_sim};

/// The parts of the simulator's state a run could change.
fn fingerprint(state: &Value) -> Value {
    let mut s = state.clone();
    s.as_object_mut().unwrap().remove("mold_calls");
    s.as_object_mut().unwrap().remove("mutations");
    s["storage"] = Value::Null;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_print_and_the_report_lists_steps() {
    let sim = start_sim(|_| {}).await;
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "status.rhai",
            r#"
let c = dr_cluster("DR");
print(`cluster ${c.name}: protected ${c.primary.name}, DR ${c.dr.name}`);
let s = step("look", || mirror_status(c));
print(`vms: ${s.vms.len()}, synced: ${s.summary.synced}`);
print(vm("site-a", "dr-centos-1").state);
print(ARGS.greeting);
"#,
        )
        .args(["run", "status.rhai", "--var", "greeting=hello"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("cluster DR: protected site-a, DR site-b");
    ran.stdout_has("vms: 3, synced: 3");
    ran.stdout_has("Running");
    ran.stdout_has("hello");
    ran.stdout_has("✓ look");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_tags_group_vms_in_a_script() {
    let sim = start_sim(|_| {}).await;
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "tags.rhai",
            r#"
print(`tier ${vm("site-b", "dr-centos-1").tags.tier}`);
let db = vms("site-b").filter(|v| v.tags.tier == "db").map(|v| v.name);
db.sort();
print(`db ${db}`);
print(`absent key ${vm("site-b", "dr-centos-3").tags.owner == ()}`);
"#,
        )
        .args(["run", "tags.rhai"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("tier db\n");
    ran.stdout_has(r#"db ["dr-centos-1", "dr-centos-2"]"#);
    ran.stdout_has("absent key true");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_gets_line_column_and_caret() {
    let ran = Test::new()
        .file("bad.rhai", "let x = 1;\nlet y = x +;\n")
        .config(&crate::harness::site_toml(
            "site-a",
            "http://127.0.0.1:9",
            crate::harness::SECRET_KEY,
            "",
        ))
        .args(["run", "bad.rhai"])
        .run_async()
        .await
        .expect_code(2);
    ran.stderr_has("--> bad.rhai:2:");
    ran.stderr_has(" 2 | let y = x +;");
    assert!(
        ran.stderr.lines().any(|l| l.trim_end().ends_with('^')),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_fail_and_confirmation_needs_a_yes() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file("err.rhai", "let v = vm(\"site-a\", \"dr-centos-9\");\n");
    let ran = t.args(["run", "err.rhai"]).run_async().await.expect_code(1);
    ran.stderr_has("--> err.rhai:1:9");
    ran.stderr_has("dr-centos-9");

    let t = Test::new().sim_config(&sim).file(
        "fail.rhai",
        "info(\"checking\");\nfail(\"the protected site still answers: use switchover\");\n",
    );
    let ran = t
        .args(["run", "fail.rhai"])
        .run_async()
        .await
        .expect_code(1);
    ran.stderr_has("error: the protected site still answers: use switchover");

    // A destructive act with no terminal and no --yes: exit 3, nothing sent.
    let before = sim.mold_calls("site-b", "promoteDisasterRecoveryCluster");
    let t = Test::new()
        .sim_config(&sim)
        .file("promote.rhai", "promote(\"DR\");\n");
    let ran = t
        .args(["run", "promote.rhai"])
        .run_async()
        .await
        .expect_code(3);
    ran.stderr_has("Promote DR cluster \"DR\" on site-b?");
    ran.stderr_has("--yes");
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        before
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_changes_nothing_and_lists_the_actions() {
    let sim = start_sim(|_| {}).await;
    let before = fingerprint(&sim.state());
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "failover.rhai",
            r#"
step("stop", || stop_vm("site-a", "dr-centos-1"));
step("promote", || promote("DR"));
let r = start_vms("site-b", ["dr-centos-1", "dr-centos-2"]);
wait_synced("DR", #{timeout: "1s"});
print(`planned: ${r.len()} starts, plan_mode=${plan_mode()}`);
"#,
        )
        .args(["run", "failover.rhai", "--plan"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("planned: 2 starts, plan_mode=true");
    ran.stdout_has("3 action(s)");
    // Promote is destructive, on the DR site.
    ran.stdout_has("! site-b");
    assert_eq!(
        fingerprint(&sim.state()),
        before,
        "plan mode changed the simulator"
    );
    for cmd in [
        "stopVirtualMachine",
        "startVirtualMachine",
        "promoteDisasterRecoveryCluster",
    ] {
        assert_eq!(
            sim.mold_calls("site-a", cmd) + sim.mold_calls("site-b", cmd),
            0,
            "{cmd}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_run_resumes_without_repeating_finished_mutations() {
    let sim = start_sim(|_| {}).await;
    let script = r#"
step("stop", || stop_vm("site-a", "dr-centos-1"));
step("hang", || { if ARGS.crash == "yes" { sleep("60s") } });
step("start", || start_vm("site-a", "dr-centos-1"));
"#;
    let t = Test::new()
        .sim_config(&sim)
        .file("resume.rhai", script)
        .args(["run", "resume.rhai", "--var", "crash=yes"]);
    let mut child = t.spawn();
    // Wait until the first step is journaled, then kill the run hard.
    let runs = t.dir().join(".drbook/runs");
    let journal = crate::harness::eventually("the first step to finish", || {
        let runs = runs.clone();
        async move {
            let dir = std::fs::read_dir(&runs).ok()?.next()?.ok()?.path();
            let text = std::fs::read_to_string(dir.join("journal.jsonl")).ok()?;
            text.contains("\"step_end\"").then_some(dir)
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(sim.mold_calls("site-a", "stopVirtualMachine"), 1);
    let run_id = journal.file_name().unwrap().to_string_lossy().into_owned();
    let ran = t
        .args(["--resume", &run_id, "--var", "crash=no"])
        .run_async()
        .await;
    let ran = ran.expect_code(0);
    assert_eq!(
        sim.mold_calls("site-a", "stopVirtualMachine"),
        1,
        "the finished stop was not sent again"
    );
    assert_eq!(sim.mold_calls("site-a", "startVirtualMachine"), 1);
    ran.stdout_has("↺ stop");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_unknown_functions_and_doc_covers_the_table() {
    let ran = Test::new()
        .file(
            "typo.rhai",
            "let s = mirror_stauts(\"DR\");\nfn helper() { 1 }\nhelper();\n",
        )
        .args(["check", "typo.rhai"])
        .run_async()
        .await
        .expect_code(0);
    ran.stderr_has("typo.rhai:1:9: warning: call to unknown function mirror_stauts() (did you mean mirror_status?)");
    Test::new()
        .file("typo.rhai", "mirror_stauts(\"DR\");\n")
        .args(["check", "--strict", "typo.rhai"])
        .run_async()
        .await
        .expect_code(2);
    let doc = Test::new().args(["doc"]).run_async().await.expect_code(0);
    for p in drbook::script::primitives::PRIMITIVES {
        assert!(
            doc.stdout.contains(&format!("`{}(", p.name)),
            "{} missing from drbook doc",
            p.name
        );
    }
    // The error kinds runbooks decide on are listed, each once.
    for (kind, _) in drbook::script::error::ErrorKind::ALL {
        assert_eq!(
            doc.stdout
                .matches(&format!("| `{}` |", kind.as_str()))
                .count(),
            1,
            "{kind} in drbook doc"
        );
    }
    let t = Test::new().args(["doc", "--definitions", "defs"]);
    let dir = t.dir().join("defs");
    t.run().expect_code(0);
    let any_defs = std::fs::read_dir(&dir).unwrap().any(|e| {
        std::fs::read_to_string(e.unwrap().path()).is_ok_and(|t| t.contains("fn promote("))
    });
    assert!(any_defs, "definitions mention promote");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_interrupts_a_wait_then_aborts_the_run() {
    use std::io::{BufRead, BufReader};
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file(
            "wait.rhai",
            r#"
try {
    wait_until(|| false, #{timeout: "60s", every: "50ms", what: "a miracle"});
} catch (e) {
    print(`caught: ${e}`);
}
sleep("60s");
print("never");
"#,
        )
        .args(["run", "wait.rhai"]);
    let mut child = t.spawn();
    let pid = child.id().to_string();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let sigint = || {
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
    };
    // Plain progress lines (no terminal): wait for the wait to start, and keep draining
    // stderr after (a closed pipe is not what this test is about).
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("waiting for a miracle") {
                let _ = started_tx.send(());
            }
            seen.push(line);
        }
        seen
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    assert!(sigint().success());
    // The script caught the first; its sleep is then aborted by the second.
    let stdout = child.stdout.take().unwrap();
    // Keep reading stdout to the end: a reader that goes away would close the pipe.
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = BufReader::new(stdout).lines();
        let first = out.next().unwrap().unwrap();
        first_tx.send(first).unwrap();
        out.map_while(Result::ok).collect::<Vec<_>>()
    });
    let caught = tokio::task::spawn_blocking(move || first_rx.recv().unwrap())
        .await
        .unwrap();
    assert!(caught.starts_with("caught: interrupted"), "{caught}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(sigint().success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130));
    let rest = reader.join().unwrap();
    assert!(!rest.iter().any(|l| l == "never"), "{rest:?}");
    let errors = drain.join().unwrap();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("aborted by a second Ctrl-C")),
        "{errors:?}"
    );
    sim.shutdown().await;
}

/// `drbook run other.rhai` in `dir`, beside a run that holds the lock there.
async fn run_other(dir: &std::path::Path) -> std::process::Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_drbook"))
            .args(["run", "other.rhai"])
            .env("DRBOOK_STATE_DIR", dir.join(".drbook"))
            .env("DRBOOK_LOCK_DIR", dir.join("locks"))
            .current_dir(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mutating_run_per_dr_cluster() {
    let sim = start_sim(|_| {}).await;
    let holder = Test::new()
        .sim_config(&sim)
        .file(
            "hold.rhai",
            "stop_vm(\"site-a\", \"dr-centos-1\");\nsleep(\"60s\");\n",
        )
        .args(["run", "hold.rhai"]);
    let mut child = holder.spawn();
    let locks = holder.lock_dir();
    crate::harness::eventually("the lock to be taken", || {
        let l = locks.clone();
        async move {
            std::fs::read_dir(&l)
                .ok()?
                .flatten()
                .any(|e| {
                    let path = e.path();
                    path.extension().is_some_and(|x| x == "lock")
                        && e.file_name().to_string_lossy().starts_with("DR-")
                })
                .then_some(())
        }
    })
    .await;
    // A second run from the same directory refuses to mutate the same DR cluster.
    std::fs::write(
        holder.dir().join("other.rhai"),
        "stop_vm(\"site-a\", \"dr-centos-2\");\n",
    )
    .unwrap();
    let second = run_other(holder.dir()).await;
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    has(&err, "DR cluster \"DR\" is locked by run");
    assert_eq!(
        sim.mold_calls("site-a", "stopVirtualMachine"),
        1,
        "the second run sent nothing"
    );
    // Once the holder is gone, its lock is stale and the next run takes it.
    child.kill().unwrap();
    child.wait().unwrap();
    let third = run_other(holder.dir()).await;
    assert_eq!(
        third.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_runs_another_as_a_nested_run() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file("inner.rhai", "step(\"stop\", || stop_vm(\"site-a\", ARGS.vm));\n")
        .file(
            "outer.rhai",
            "let r = run(\"inner\", #{vm: \"dr-centos-2\"});\nprint(`inner ok=${r.ok} steps=${r.steps.len()}`);\n",
        );
    // Plan mode lists the nested runbook's acts in the outer plan and changes nothing.
    let plan = Test::new()
        .sim_config(&sim)
        .file("inner.rhai", "stop_vm(\"site-a\", ARGS.vm);\n")
        .file("outer.rhai", "run(\"inner\", #{vm: \"dr-centos-2\"});\n")
        .args(["run", "outer.rhai", "--plan"])
        .run_async()
        .await
        .expect_code(0);
    plan.stdout_has("stop_vm(\"site-a\", \"dr-centos-2\"");
    assert_eq!(sim.mold_calls("site-a", "stopVirtualMachine"), 0);
    let t = t.args(["run", "outer.rhai"]);
    // Run in place: the test directory must outlive the run to be inspected.
    let ran = tokio::task::block_in_place(|| t.run()).expect_code(0);
    let dir = t.dir().to_path_buf();
    ran.stdout_has("inner ok=true steps=1");
    assert_eq!(sim.mold_calls("site-a", "stopVirtualMachine"), 1);
    // The nested run has its own journal beside the outer one.
    let runs: Vec<String> = std::fs::read_dir(dir.join(".drbook/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r.contains('.')), "{runs:?}");
    sim.shutdown().await;
}

/// The run ids under a test directory's `.drbook/runs`, sorted (a run before its nested ones).
fn run_ids(dir: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir.join(".drbook/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The `run_start` entries of a run's journal, in order.
fn run_starts(dir: &std::path::Path, run: &str) -> Vec<Value> {
    let path = dir.join(".drbook/runs").join(run).join("journal.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "run_start")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_run_gets_its_vars_as_values_and_functions_are_refused() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file(
            "inner.rhai",
            r#"
for k in ["n", "list", "m", "s"] { print(`${k}: ${type_of(ARGS[k])}`); }
print(`n+1=${ARGS.n + 1} list[1]=${ARGS.list[1]} m.k=${ARGS.m.k} s=${ARGS.s}`);
"#,
        )
        .file(
            "outer.rhai",
            r#"
print(`who: ${type_of(ARGS.who)} ${ARGS.who}`);
let r = run("inner", #{n: 3, list: ["a", "b"], m: #{k: true}, s: "x"});
print(`inner ok=${r.ok}`);
let pick = |g| g.name == "web";
try {
    run("inner", #{groups: [#{name: "web", pick: pick}]});
    print("no refusal");
} catch (e) {
    print(`refused: ${e}`);
}
"#,
        );
    let ran = t
        .run_with(["run", "outer.rhai", "--var", "who=7"])
        .expect_code(0);
    for line in [
        // --var still gives strings.
        "who: string 7",
        "n: i64",
        "list: array",
        "m: map",
        "s: string",
        "n+1=4 list[1]=b m.k=true s=x",
        "inner ok=true",
        "refused: run(\"inner\"): var groups holds a function; pass data, not closures",
    ] {
        ran.stdout_has(line);
    }
    ran.stdout_lacks("no refusal");
    // The refused run() made no nested run; the one that ran journaled its vars readably.
    let ids = run_ids(t.dir());
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[1], format!("{}.1", ids[0]));
    let start = &run_starts(t.dir(), &ids[1])[0];
    assert_eq!(
        start["args"],
        serde_json::json!({"n": "3", "list": "[\"a\",\"b\"]", "m": "{\"k\":true}", "s": "x"})
    );
    assert_eq!(start["resumed"], false);
    sim.shutdown().await;
}

/// A nested runbook whose first step makes real mutations (the interval there and back, so
/// repeating it would send them again) and whose second step fails until the operator says ready.
const NESTED_INNER: &str = r#"
step("one", || {
    set_mirror_interval("DR", "30m");
    set_mirror_interval("DR", "1h");
});
step("two", || {
    if ARGS.ready != true { throw "not yet: the operator has not said ready"; }
});
"#;

/// A policy wrapping it: a check first (a nested run inside a step), then the runbook.
const NESTED_OUTER: &str = r#"
step("check", || run("status", #{cluster: "DR"}).ok);
let r = run("inner", #{ready: ARGS.ready == "yes"});
for s in r.steps { print(`inner ${s.name} replayed=${s.replayed}`); }
"#;

fn interval_updates(sim: &drbook::sim::Sim) -> u64 {
    sim.mold_calls("site-a", "updateDisasterRecoveryCluster")
        + sim.mold_calls("site-b", "updateDisasterRecoveryCluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_resumes_its_nested_run_without_repeating_its_mutations() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file("inner.rhai", NESTED_INNER)
        .file("outer.rhai", NESTED_OUTER);
    let ran = t
        .run_with(["run", "outer.rhai", "--var", "ready=no"])
        .expect_code(1);
    ran.stderr_has("not yet");
    assert_eq!(interval_updates(&sim), 4, "30m then 1h, on both sites");
    // The check's nested run is .1, the runbook's .2.
    let ids = run_ids(t.dir());
    let id = ids[0].clone();
    assert_eq!(ids, [id.clone(), format!("{id}.1"), format!("{id}.2")]);

    let ran = tokio::task::block_in_place(|| {
        t.run_with(["run", "outer.rhai", "--resume", &id, "--var", "ready=yes"])
    })
    .expect_code(0);
    assert_eq!(
        interval_updates(&sim),
        4,
        "the nested run's finished step was not made again"
    );
    ran.stdout_has("↺ check");
    ran.stdout_has("inner one replayed=true");
    ran.stdout_has("inner two replayed=false");
    // The skipped check kept its number: the runbook found its own journal again, and no
    // new nested run was started.
    assert_eq!(run_ids(t.dir()).len(), 3, "{:?}", run_ids(t.dir()));
    let starts = run_starts(t.dir(), &format!("{id}.2"));
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[0]["resumed"], false);
    assert_eq!(starts[1]["resumed"], true);
    assert_eq!(starts[1]["args"]["ready"], "true");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_run_starts_its_nested_runs_fresh() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new()
        .sim_config(&sim)
        .file("inner.rhai", NESTED_INNER)
        .file("outer.rhai", NESTED_OUTER);
    t.run_with(["run", "outer.rhai", "--var", "ready=no"])
        .expect_code(1);
    assert_eq!(interval_updates(&sim), 4);
    let first = run_ids(t.dir())[0].clone();
    // Starting over instead of resuming: everything is made again, in new nested runs.
    let ran = t
        .run_with(["run", "outer.rhai", "--var", "ready=yes"])
        .expect_code(0);
    assert_eq!(
        interval_updates(&sim),
        8,
        "a new run repeats the nested step"
    );
    ran.stdout_has("inner one replayed=false");
    let ids = run_ids(t.dir());
    assert_eq!(ids.len(), 6, "{ids:?}");
    let second = ids
        .iter()
        .find(|r| !r.contains('.') && **r != first)
        .unwrap()
        .clone();
    for n in [1, 2] {
        let starts = run_starts(t.dir(), &format!("{second}.{n}"));
        assert_eq!(starts.len(), 1, "{starts:?}");
        assert_eq!(starts[0]["resumed"], false);
    }
    sim.shutdown().await;
}

/// Every primitive once, through Rhai, in plan mode: reads run for real against the
/// simulator, mutations are planned — so each registration is exercised end to end.
const TOUR: &str = r#"
import "dr" as dr;
import "helpers" as helpers;
let s = site("site-a");
print(`site ${s.name} ${s.role} ${s.mold_url.len() > 0}`);
print(`sites ${sites().len()} clusters ${dr_clusters().len()}`);
let c = dr_cluster("DR");
print(`cluster ${c.name} ${c.primary.name} ${c.dr.name} ${c.interval} ${c.status}`);
print(`health ${health("site-a").mold}`);
let m = mirror_status(c);
print(`status ${m.summary.vms} ${dr::names(m.vms)} unsynced ${dr::unsynced(m).len()}`);
for x in m.vms { print(`${x.name} ${x.synced} ${x.volumes[0].type}`); }
let v = vm("site-a", "dr-centos-1");
print(`vm ${v.name} ${v.state} ${v.site} ${vms("site-a").len()} ${helpers::shout(v.name)}`);
print(`interval ${mirror_interval(c)}`);
let img = m.vms[0].volumes[0].path;
print(`image ${image_status("site-a", img).primary} ${image_status("site-b", img).primary}`);
print(`test ${connectivity_test(c).ok}`);
print(`pair ${create_dr_cluster("DR9", "site-a", "site-b").planned}`);
create_dr_cluster("DR9", s, "site-b", #{description: "d", private_key_file: "k.pem", glue_ip: "127.0.2.1"});
promote(c); resync(c); demote(c); clear_garbage(c); remove_dr_cluster(c, "site-b");
set_mirror_interval(c, "30m");
print(`start ${start_vm("site-b", v).state}`);
stop_vm("site-a", v); stop_vm("site-a", v, #{force: true});
print(`batch ${start_vms("site-b", ["dr-centos-1"]).len()}`);
stop_vms("site-a", ["dr-centos-1"], #{concurrency: 2, force: true});
create_mirror_vm(c, v); create_mirror_vm(c, v, #{offering: "Medium Instance"});
remove_mirror_vm(c, v); snapshot_vm(c, v); promote_vm(c, v); demote_vm(c, v);
start_mirror_vm(c, v); stop_mirror_vm(c, v);
print(`drill ${drill(c, v, #{observe: "1s"}).ok}`);
mirror_snapshot("site-a", v); demote_image("site-a", img); promote_image("site-b", img);
resync_image("site-a", img);
print(`step ${step("s", || 41 + 1)} confirm ${confirm("go?")}`);
wait_until(|| false, #{timeout: "1s"}); wait_synced(c); wait_running("site-a", [v]);
sleep("5s");
let t = now();
print(`time ${elapsed(t)} ${duration("1h30m")} ${plan_mode()}`);
info("an info line"); warn("a warning"); notify("a note");
print(`zones ${mold("site-a", "listZones").count}`);
mold("site-a", "startVirtualMachine", #{id: v.id});
print(`glue ${glue("site-a", "GET", "/glue").health.status}`);
glue("site-a", "POST", "/mirror/image/snapshot/rbd/vm", #{imageList: img});
ssh("site-a", "touch /tmp/never");
print(`nested ${run("inner").ok}`);
print("tour done");
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primitive_through_rhai_in_plan_mode() {
    let sim = start_sim(|_| {}).await;
    let ran = Test::new()
        .sim_config(&sim)
        .file("tour.rhai", TOUR)
        .file("helpers.rhai", "fn shout(s) { s.to_upper() }\n")
        .file("inner.rhai", "stop_vm(\"site-a\", \"dr-centos-3\");\n")
        .args(["run", "tour.rhai", "--plan"])
        .run_async()
        .await
        .expect_code(0);
    for needle in [
        "site site-a primary true",
        "sites 2 clusters 1",
        "cluster DR site-a site-b 1h Enabled",
        "health true",
        "status 3 [\"dr-centos-1\", \"dr-centos-2\", \"dr-centos-3\"] unsynced 0",
        "dr-centos-1 true ROOT",
        "vm dr-centos-1 Running site-a 3 DR-CENTOS-1",
        "interval 1h",
        "image true false",
        "test true",
        "pair true",
        "start Running",
        "batch 1",
        "drill true",
        "step 42 confirm true",
        "time 0 5400 true",
        "zones 1",
        "glue HEALTH_OK",
        "nested true",
        "tour done",
    ] {
        ran.stdout_has(needle);
    }
    ran.stdout_has("action(s) would run");
    // The nested run's act is in the plan.
    ran.stdout_has("stop_vm(\"site-a\", \"dr-centos-3\"");
    for (site, cmd) in [
        ("site-b", "promoteDisasterRecoveryCluster"),
        ("site-a", "stopVirtualMachine"),
        ("site-b", "startVirtualMachine"),
        ("site-a", "startVirtualMachine"),
        ("site-a", "createDisasterRecoveryClusterVm"),
    ] {
        assert_eq!(
            sim.mold_calls(site, cmd),
            0,
            "{site} {cmd} was sent in plan mode"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_failover_through_rhai_with_a_guard_refusal_first() {
    let sim = start_sim(|_| {}).await;
    sim.disaster("site-a").await.unwrap();
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "failover.rhai",
            r#"
// A guard refuses before anything is sent, and the script can catch it.
try {
    demote("DR");
} catch (e) {
    print(`guard: ${e}`);
}
let out = step("promote", || promote("DR"));
print(`at risk: ${out.at_risk.len()}`);
let started = step("start", || start_vms("site-b", ["dr-centos-1", "dr-centos-2", "dr-centos-3"]));
for r in started { print(`${r.vm} ${r.ok} ${r.state}`); }
"#,
        )
        .args(["run", "failover.rhai", "--yes", "--output", "json"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("guard: cannot demote DR cluster \"DR\"");
    ran.stdout_has("dr-centos-1 true Running");
    assert_eq!(
        sim.mold_calls("site-b", "demoteDisasterRecoveryCluster"),
        0,
        "the guard sent nothing"
    );
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        1
    );
    // The JSON report follows the printed lines.
    let json_start = ran.stdout.find("{\n").unwrap();
    let report: Value = serde_json::from_str(&ran.stdout[json_start..]).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["steps"].as_array().unwrap().len(), 2);
    // The refused demote is in the report as a failed act, then the promote that ran.
    assert_eq!(report["actions"][0]["primitive"], "demote");
    assert_eq!(report["actions"][0]["ok"], false);
    assert_eq!(report["actions"][1]["primitive"], "promote");
    assert_eq!(report["actions"][1]["ok"], true);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_status_runbook_runs_by_name() {
    let sim = start_sim(|_| {}).await;
    let ran = Test::new()
        .sim_config(&sim)
        .args(["run", "status"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("DR cluster DR: site-a (protected) -> site-b (DR), a mirror snapshot every 1h");
    ran.stdout_has("ok dr-centos-1");
    ran.stdout_has("all 3 mirrored VMs synced");
    // With the DR site gone its side is unknown: every VM is shown unknown (not "not
    // synced"), the unreadable site and APIs are named, and the answer is incomplete: exit 1.
    sim.disaster("site-b").await.unwrap();
    let ran = Test::new()
        .sim_config(&sim)
        .args(["run", "status", "--var", "cluster=DR"])
        .run_async()
        .await
        .expect_code(1);
    ran.stdout_has("?? dr-centos-1");
    ran.stdout_lacks("(not synced)");
    for api in ["Mold", "Glue"] {
        ran.stdout_has(&format!("UNKNOWN: site-b's {api} could not be read"));
    }
    ran.stderr_has("error: incomplete: site-b's Mold and site-b's Glue could not be read, so whether 3 mirrored VM(s) are synced is unknown");
    // An unknown name lists the shipped ones.
    let ran = Test::new()
        .sim_config(&sim)
        .args(["run", "stauts"])
        .run_async()
        .await
        .expect_code(2);
    ran.stderr_has("shipped runbook (status");
    sim.shutdown().await;
}

/// Every file under `dir`, as text (lossy), with its path.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_pairs_two_sites_and_no_key_reaches_its_output_or_journal() {
    let sim = start_sim(|c| {
        c.cluster = None;
        c.vms.truncate(2);
        for v in &mut c.vms {
            v.mirrored = false;
        }
    })
    .await;
    let t = Test::new()
        .sim_config(&sim)
        .file(
            "setup.rhai",
            r#"
let paired = step("pair", || create_dr_cluster("DR2", "site-a", "site-b", #{description: "paired by a runbook"}));
print(`paired: ${paired.message}`);
print(`detail: ${paired.detail}`);
let c = dr_cluster("DR2");
print(`cluster ${c.name} ${c.primary.name} ${c.dr.name} ${c.status}`);
let m = step("protect", || create_mirror_vm(c, "dr-centos-1", #{network: "Guest Network"}));
print(`protected: ${m.message}`);
"#,
        )
        .args(["run", "setup.rhai", "--output", "json"]);
    // Run in place: the test directory (journal, report) is inspected afterwards.
    let ran = tokio::task::block_in_place(|| t.run()).expect_code(0);
    ran.stdout_has("paired: site-a (protected) and site-b (DR) are paired as \"DR2\"");
    ran.stdout_has("cluster DR2 site-a site-b Enabled");
    ran.stdout_has("protected: dr-centos-1 is mirrored to site-b");
    assert_eq!(sim.mold_calls("site-a", "createDisasterRecoveryCluster"), 1);
    assert_eq!(
        sim.mold_calls("site-a", "createDisasterRecoveryClusterVm"),
        1
    );
    sim.with_world(|w, _| {
        assert_eq!(
            w.site("site-b").record_by_name("DR2").unwrap().description,
            "paired by a runbook"
        );
    });

    // No key in stdout, stderr, the journal or anything else drbook wrote.
    let credentials = crate::harness::sim_credentials(&sim);
    let written: Vec<_> = files_under(&t.dir().join(".drbook"));
    let journal = written
        .iter()
        .find(|(p, _)| p.ends_with("journal.jsonl"))
        .map(|(_, text)| text.clone())
        .expect("a journal");
    has(&journal, "\"create_dr_cluster\"");
    has(&journal, "\"private_key_file\":null");
    for secret in &credentials {
        ran.stdout_lacks(secret).stderr_lacks(secret);
        for (path, text) in &written {
            assert!(!text.contains(secret), "a credential in {}", path.display());
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_lists_a_pairing_and_sends_nothing() {
    let sim = start_sim(|c| {
        c.cluster = None;
        c.vms.truncate(1);
    })
    .await;
    let ran = Test::new()
        .sim_config(&sim)
        .file(
            "setup.rhai",
            r#"
let o = create_dr_cluster("DR2", "site-a", "site-b", #{glue_ip: "127.0.2.1"});
print(`planned ${o.planned}: ${o.message}`);
create_mirror_vm(o.args[0], "dr-centos-1", #{network: "Guest Network"});
"#,
        )
        .args(["run", "setup.rhai", "--plan"])
        .run_async()
        .await
        .expect_code(0);
    ran.stdout_has("planned true: would pair site-a (protected) and site-b (DR) as \"DR2\"");
    // The act is listed.
    ran.stdout_has("create_dr_cluster(\"DR2\", \"site-a\", \"site-b\"");
    // The planned pairing's next act goes to its protected site too.
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.contains("~ site-a")
                && l.contains("create_mirror_vm(\"DR2\", \"dr-centos-1\"")),
        "{}",
        ran.stdout
    );
    for command in [
        "connectivityTestsDisasterRecovery",
        "createDisasterRecoveryCluster",
        "createDisasterRecoveryClusterVm",
    ] {
        assert_eq!(sim.mold_calls("site-a", command), 0, "{command} was sent");
    }
    assert!(sim.with_world(|w, _| w.site("site-b").dr_records.is_empty()));
    sim.shutdown().await;
}
