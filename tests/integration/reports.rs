//! The reports people keep: a failover's saved record (per-VM RTO and RPO, each VM's start
//! job), listed by `drbook runs`, and its HTML page drawn by a real headless Chromium —
//! a screenshot that is not blank and shows the timeline's bars.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Test, delivered, start_sim, written};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Draws `page` in headless Chromium (the flags a closed network needs) into a PNG.
fn screenshot(page: &Path, png: &Path, profile: &Path) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test draws the report in a real browser: apt-get install chromium (.ci/run does)"
    );
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The decoded screenshot's RGB pixels.
fn pixels(png: &Path) -> Vec<[u8; 3]> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_leaves_a_record_that_a_browser_draws() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    // Every VM's first copy has arrived; then writes the DR site cannot get.
    for vm in ["dr-centos-1", "dr-centos-2", "dr-centos-3"] {
        let safe = written(&sim.write(vm, "site-a", 1).unwrap());
        delivered(&sim, vm, "site-b", &safe).await;
    }
    sim.set_partitioned(true).unwrap();
    sim.write("dr-centos-1", "site-a", 3).unwrap();
    sim.disaster("site-a").await.unwrap();
    sim.set_partitioned(false).unwrap();
    let ran = tokio::task::block_in_place(|| t.run_with(["run", "failover", "--yes"]));
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    sim.shutdown().await;

    let listed = t.run_with(["--output", "json", "runs"]).expect_code(0);
    let runs: Value = serde_json::from_str(&listed.stdout).unwrap();
    let run = &runs[0];
    assert_eq!(run["runbook"], "failover", "{runs:#}");
    assert_eq!(run["cluster"], "DR");
    assert_eq!(run["outcome"], "ok");
    assert!(run["rto_s"].as_i64().is_some(), "{run}");
    let dir = t
        .state_dir()
        .join("runs")
        .join(run["run"].as_str().unwrap());

    // Per VM: its group's RTO and the writes at risk when it was promoted.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let vms = saved["record"]["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3, "{saved:#}");
    for v in vms {
        assert!(
            v["rto_s"].as_i64().is_some() && v["rpo_s"].as_i64().is_some(),
            "{v}\n{}",
            ran.stdout
        );
        assert_eq!(v["site"], "site-b");
        assert!(
            v["at risk"].as_str().unwrap().starts_with("writes after "),
            "{v}"
        );
    }

    let png = t.dir().join("report.png");
    screenshot(
        &dir.join("report.html"),
        &png,
        &t.dir().join("chromium-profile"),
    );
    let pixels = pixels(&png);
    let white = pixels.iter().filter(|p| p.iter().all(|&c| c > 245)).count();
    assert!(
        white < pixels.len() * 97 / 100,
        "the page drew (almost) nothing: {white} of {} pixels white",
        pixels.len()
    );
    // The timeline's bars of steps and VM start jobs that finished (#3f8f5a).
    let green = pixels
        .iter()
        .filter(|p| {
            p[0].abs_diff(0x3f) < 12 && p[1].abs_diff(0x8f) < 12 && p[2].abs_diff(0x5a) < 12
        })
        .count();
    assert!(green > 500, "{green} pixels of the timeline's bars");
}
