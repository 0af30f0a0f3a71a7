//! `drbook watch` against the in-process simulator and a temporary policy directory: reloads,
//! site events, the guarded auto-failover example, `/metrics` and `/alerts`.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};

use crate::harness::{Test, eventually, has, lacks, start_sim};

/// A running `drbook watch` with its output collected as it comes.
struct Watcher {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(t: &Test, extra: &[&str]) -> Self {
        let mut args = vec!["watch", "policies", "--probe-every", "100ms"];
        args.extend_from_slice(extra);
        let mut child = t.spawn_with(&args);
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        for (stream, buf) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                out.clone(),
            ),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ] {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut b = buf.lock().unwrap();
                    b.push_str(&line);
                    b.push('\n');
                }
            });
        }
        Self { child, out, err }
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until stdout holds `needle` `times` times.
    async fn wait_out(&self, needle: &str, times: usize) {
        self.wait(&format!("{times} × {needle:?} on stdout"), || {
            self.stdout().matches(needle).count() >= times
        })
        .await;
    }

    async fn wait_err(&self, needle: &str) {
        self.wait(&format!("{needle:?} on stderr"), || {
            self.stderr().contains(needle)
        })
        .await;
    }

    /// Polls `done`; gives up after a generous bound with everything the watcher printed.
    async fn wait(&self, what: &str, done: impl Fn() -> bool) {
        for _ in 0..600 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "gave up waiting for {what}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// The metrics address it logged.
    async fn listen_addr(&self) -> String {
        eventually("the metrics address", || async {
            let err = self.stderr();
            let line = err.lines().find(|l| l.contains("serving http://"))?;
            let rest = line.split("serving http://").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        })
        .await
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), self.stderr())
    }
}

fn write(t: &Test, name: &str, text: &str) {
    let dir = t.dir().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    // Written whole under another name, then renamed in, as editors do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_picked_up_a_broken_edit_keeps_the_last_good_one_and_a_fix_replaces_it() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    write(
        &t,
        "p.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { print(\"tick v1\"); }\n",
    );
    let w = Watcher::start(&t, &[]);
    w.wait_out("tick v1", 2).await;

    write(
        &t,
        "p.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { print(\"tick v2\" }\n",
    );
    w.wait_err("not loaded (its last good version keeps running)")
        .await;
    let err = w.stderr();
    has(&err, "p.rhai:2:");
    // A caret under the spot.
    has(&err, "^");
    let before = w.stdout().matches("tick v1").count();
    w.wait_out("tick v1", before + 2).await;
    lacks(&w.stdout(), "tick v2");

    write(
        &t,
        "p.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { print(\"tick v3\"); }\n",
    );
    w.wait_out("tick v3", 2).await;

    // A new file is a new policy; a deleted one stops.
    write(
        &t,
        "q.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { print(`q sees ${ctx.sites.keys()}`); }\n",
    );
    w.wait_out("q sees [\"site-a\", \"site-b\"]", 1).await;
    std::fs::remove_file(t.dir().join("policies/p.rhai")).unwrap();
    w.wait_err("p.rhai removed: its policy stops").await;
    let (code, err) = w.stop();
    assert_eq!(code, 0, "{err}");
    has(&err, "stopped");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_is_down_once_after_its_probes_fail_and_up_when_it_answers() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    write(
        &t,
        "events.rhai",
        "const DOWN_AFTER = 2;\n\
         fn on_site_down(ctx) { print(`down ${ctx.site} after ${ctx.sites[ctx.site].failed_probes}`); }\n\
         fn on_site_up(ctx) { print(`up ${ctx.site}`); }\n",
    );
    let w = Watcher::start(&t, &[]);
    w.wait_err("events.rhai loaded").await;
    sim.disaster("site-a").await.unwrap();
    w.wait_out("down site-a after 2", 1).await;
    // More failed probes do not say it again.
    w.wait_err("(5 probe(s) in a row)").await;
    assert_eq!(
        w.stdout().matches("down site-a").count(),
        1,
        "{}\n{}",
        w.stdout(),
        w.stderr()
    );
    sim.recover("site-a").await.unwrap();
    w.wait_out("up site-a", 1).await;
    lacks(&w.stdout(), "site-b");
    w.stop();
    sim.shutdown().await;
}

fn auto_failover(auto: bool) -> String {
    let text = std::fs::read_to_string(format!(
        "{}/examples/policies/auto-failover.rhai",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    has(&text, "const AUTO = false;");
    text.replace("const AUTO = false;", &format!("const AUTO = {auto};"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_auto_failover_acts_only_after_its_probes_and_only_with_auto() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    write(&t, "auto-failover.rhai", &auto_failover(false));
    let w = Watcher::start(&t, &[]);
    w.wait_err("auto-failover.rhai loaded").await;

    // Without AUTO: reported, not done.
    sim.disaster("site-a").await.unwrap();
    w.wait_err("would have acted but AUTO is not set").await;
    let err = w.stderr();
    has(&err, "Promote DR cluster");
    let third = err
        .find("(3 probe(s) in a row)")
        .expect("three failed probes");
    let acted = err.find("failing over DR cluster DR").unwrap();
    assert!(
        third < acted,
        "acted only after the third failed probe:\n{err}"
    );
    assert_eq!(
        sim.mold_calls("site-b", "promoteDisasterRecoveryCluster"),
        0
    );

    // With AUTO (an edit, picked up live), the next disaster fails over.
    sim.recover("site-a").await.unwrap();
    w.wait_err("site-a: answers again").await;
    write(&t, "auto-failover.rhai", &auto_failover(true));
    w.wait_err("AUTO: it may take destructive acts").await;
    let mark = w.stderr().len();
    sim.disaster("site-a").await.unwrap();
    eventually("the failover to finish", || async {
        (sim.mold_calls("site-b", "promoteDisasterRecoveryCluster") == 1
            && sim.state()["sites"]["site-b"]["vms"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["state"] == "Running"))
        .then_some(())
    })
    .await;
    let err = w.stderr()[mark..].to_string();
    let third = err
        .find("(3 probe(s) in a row)")
        .expect("three failed probes");
    let acted = err.find("failing over DR cluster DR").unwrap();
    assert!(third < acted, "{err}");
    w.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_alerts_reach_the_policies() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    write(
        &t,
        "alerts.rhai",
        "fn on_alert(ctx) { for a in ctx.alert.alerts { print(`alert ${a.labels.alertname} ${a.status}`); } }\n",
    );
    let w = Watcher::start(&t, &["--listen", "127.0.0.1:0"]);
    let addr = w.listen_addr().await;
    let client = drbook::http::client(
        &drbook::http::TlsTrust::System,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let scrape = |client: reqwest::Client, addr: String| async move {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).ok()
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, label: (&str, &str)| {
        s.samples
            .iter()
            .find(|x| x.metric == name && x.labels.get(label.0) == Some(label.1))
            .map(|x| match x.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let first = eventually("a scrape with lag series", || {
        let (http, at) = (client.clone(), addr.clone());
        async move {
            let s = scrape(http, at).await?;
            value(&s, "drbook_volume_lag_seconds", ("vm", "dr-centos-1"))?;
            Some(s)
        }
    })
    .await;
    assert_eq!(
        value(&first, "drbook_site_up", ("site", "site-a")),
        Some(1.0)
    );
    assert_eq!(
        value(&first, "drbook_vm_synced", ("vm", "dr-centos-2")),
        Some(1.0)
    );
    let lag = value(&first, "drbook_volume_lag_seconds", ("vm", "dr-centos-1")).unwrap();

    // site-a goes dark: it is down in the metrics and the replicas' lag only grows.
    sim.disaster("site-a").await.unwrap();
    eventually("site-a down and a larger lag", || {
        let (http, at) = (client.clone(), addr.clone());
        async move {
            let s = scrape(http, at).await?;
            let down = value(&s, "drbook_site_up", ("site", "site-a")) == Some(0.0);
            let later = value(&s, "drbook_volume_lag_seconds", ("vm", "dr-centos-1"))?;
            (down && later > lag + 1.0).then_some(())
        }
    })
    .await;

    // An Alertmanager webhook payload reaches on_alert; anything else is refused.
    let payload = serde_json::json!({
        "version": "4", "status": "firing", "receiver": "drbook",
        "groupLabels": {"alertname": "CephHealthError"},
        "commonLabels": {"alertname": "CephHealthError"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "groupKey": "{}:{}", "truncatedAlerts": 0,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "CephHealthError", "site": "site-a"},
            "annotations": {"summary": "Ceph is in HEALTH_ERR"},
            "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "1a2b3c"
        }]
    });
    let sent = client
        .post(format!("http://{addr}/alerts"))
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    w.wait_out("alert CephHealthError firing", 1).await;
    let bad = client
        .post(format!("http://{addr}/alerts"))
        .json(&serde_json::json!({"hello": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let policy_calls = eventually("the policy's call counted", || {
        let (http, at) = (client.clone(), addr.clone());
        async move {
            let s = scrape(http, at).await?;
            value(&s, "drbook_policy_calls_total", ("policy", "alerts.rhai")).filter(|v| *v >= 1.0)
        }
    })
    .await;
    assert!(policy_calls >= 1.0);
    w.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_slow_policy_is_reported_and_the_others_keep_running() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    write(
        &t,
        "good.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { print(\"good tick\"); }\n",
    );
    write(
        &t,
        "bad.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) {\n    throw \"bad policy\";\n}\n",
    );
    write(
        &t,
        "slow.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { sleep(\"1h\"); }\n",
    );
    let w = Watcher::start(&t, &["--call-timeout", "500ms"]);
    w.wait_err("bad.rhai (on_tick) failed").await;
    w.wait_err("on_tick ran longer than 500ms and was stopped")
        .await;
    let err = w.stderr();
    has(&err, "bad.rhai:3:5");
    let ticks = w.stdout().matches("good tick").count();
    w.wait_out("good tick", ticks + 3).await;
    let (code, err) = w.stop();
    assert_eq!(code, 0, "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_policies_never_mutate_one_dr_cluster_at_the_same_time() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    // `holder` keeps the DR cluster's lock for a second on every tick.
    write(
        &t,
        "holder.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { set_mirror_interval(\"DR\", \"30m\"); sleep(\"1s\"); }\n",
    );
    write(
        &t,
        "rival.rhai",
        "const TICK = \"100ms\";\nfn on_tick(ctx) { set_mirror_interval(\"DR\", \"1h\"); }\n",
    );
    let w = Watcher::start(&t, &[]);
    w.wait_err("rival.rhai (on_tick) failed").await;
    let err = w.stderr();
    has(&err, "DR cluster \"DR\" is locked by run watch-holder-");
    w.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_and_an_operator_elsewhere_meet_one_lock_in_etcd() {
    let etcd = tokio::task::spawn_blocking(crate::harness::EtcdCluster::start)
        .await
        .unwrap();
    let sim = start_sim(|_| {}).await;
    let coordination = etcd.coordination(&[0, 1, 2], 2);
    let t = Test::new()
        .sim_config(&sim)
        .append("drbook.toml", &coordination);
    // One tick (the first comes at once), holding the lock for the whole act.
    write(
        &t,
        "holder.rhai",
        "const TICK = \"1h\";\nfn on_tick(ctx) { set_mirror_interval(\"DR\", \"30m\"); sleep(\"4s\"); }\n",
    );
    let w = Watcher::start(&t, &["--call-timeout", "10s"]);
    // Its lock is taken before its sends: once both sites have its update, it holds the lock
    // and nothing more of its own arrives while it does.
    eventually("the watcher's updates", || async {
        let updates: u64 = ["site-a", "site-b"]
            .iter()
            .map(|s| {
                sim.mutation_count(
                    s,
                    drbook::sim::faults::Api::Mold,
                    "updateDisasterRecoveryCluster",
                )
            })
            .sum();
        (updates >= 2).then_some(())
    })
    .await;
    assert_eq!(etcd.keys(0, "/drbook/lock/").len(), 1);
    // An operator on another machine (its own state and lock directories) meets it.
    let operator = Test::new()
        .sim_config(&sim)
        .append("drbook.toml", &coordination)
        .file("other.rhai", "set_mirror_interval(\"DR\", \"1h\");\n");
    let before = sim.mutations();
    let ran = operator.run_with(["run", "other.rhai"]).expect_code(1);
    has(
        &ran.error_lines().join("\n"),
        "DR cluster \"DR\" is locked by run watch-holder-",
    );
    assert!(sim.mutations().since(&before).is_empty());
    // The act over, the watcher lets the lock go while it keeps running: the operator's turn.
    eventually("the watcher's release", || async {
        etcd.keys(0, "/drbook/").is_empty().then_some(())
    })
    .await;
    operator.run_with(["run", "other.rhai"]).expect_code(0);
    w.stop();
    sim.shutdown().await;
}
