//! The site policies in `examples/` run as they are against the simulator, each wrapping the
//! shipped `failover` runbook.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::harness::{Ran, Test, has, start_sim, vm_states};

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Six VMs: dr-centos-1..2 tagged tier=db, dr-centos-3..5 tier=app, dr-win-1 tier=web.
async fn six_vms_after_a_disaster() -> drbook::sim::Sim {
    let sim = start_sim(|c| c.vms = drbook::sim::SimConfig::default().with_vms(6).vms).await;
    sim.disaster("site-a").await.unwrap();
    sim
}

/// The JSON report `--output json` prints after the script's own lines.
fn report(ran: &Ran) -> Value {
    let start = ran.stdout.rfind("\n{\n").map_or(0, |i| i + 1);
    serde_json::from_str(&ran.stdout[start..]).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_failover_starts_databases_then_apps_then_web() {
    let sim = six_vms_after_a_disaster().await;
    let ran = Test::new()
        .sim_config(&sim)
        .run_with([
            "run",
            &example("tiered-failover.rhai"),
            "--yes",
            "--output",
            "json",
        ])
        .expect_code(0);
    let report = report(&ran);
    let starts: Vec<String> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["primitive"] == "start_vms")
        .map(|a| a["args"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(starts.len(), 3, "{starts:?}");
    has(&starts[0], "[\"dr-centos-1\",\"dr-centos-2\"]");
    has(
        &starts[1],
        "[\"dr-centos-3\",\"dr-centos-4\",\"dr-centos-5\"]",
    );
    has(&starts[2], "[\"dr-win-1\"]");
    // The nested failover's steps show in the policy's report, under its name.
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"failover › start group 1: databases"),
        "{steps:?}"
    );
    assert!(vm_states(&sim, "site-b").values().all(|s| s == "Running"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_only_failover_leaves_the_rest_stopped() {
    let sim = six_vms_after_a_disaster().await;
    Test::new()
        .sim_config(&sim)
        .run_with(["run", &example("critical-only-failover.rhai"), "--yes"])
        .expect_code(0);
    for (vm, state) in vm_states(&sim, "site-b") {
        let critical = vm == "dr-centos-1" || vm == "dr-centos-2";
        assert_eq!(state, if critical { "Running" } else { "Stopped" }, "{vm}");
    }
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        1
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_tell_the_webhook_before_and_after() {
    let sim = start_sim(|_| {}).await;
    sim.disaster("site-a").await.unwrap();
    let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    Test::new()
        .sim_config(&sim)
        .run_with([
            "run",
            &example("failover-with-hooks.rhai"),
            "--yes",
            "--var",
            &format!("webhook={url}"),
        ])
        .expect_code(0);
    let texts: Vec<String> = posts
        .lock()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    has(&texts[0], "failover of DR cluster DR to site-b is starting");
    has(&texts[1], "done in");
    has(&texts[1], "run on site-b");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_guard_refuses_unless_the_loss_is_accepted() {
    let sim = start_sim(|_| {}).await;
    sim.disaster("site-a").await.unwrap();
    // The lag grows from the last snapshot that reached site-b: let it pass a second.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let t = Test::new().sim_config(&sim);
    let script = example("lag-guarded-failover.rhai");
    let ran = t
        .run_with(["run", &script, "--yes", "--var", "max_lag=1s"])
        .expect_code(1);
    ran.stderr_has("refusing to fail over DR");
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        0
    );

    t.run_with([
        "run",
        &script,
        "--yes",
        "--var",
        "max_lag=1s",
        "--var",
        "accept_loss=true",
    ])
    .expect_code(0);
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        1
    );
    sim.shutdown().await;
}
