//! A real third-party CloudStack client — the Python `cs` package, which signs with
//! HMAC-SHA1 and sends `apiKey`/`signatureVersion` in camel case — against the simulator in
//! `sha1` mode. The virtual environment is made on first use (`.ci/run` makes it up front).

use std::path::PathBuf;
use std::process::Command;

use drbook::mold::SignatureAlgorithm;

use crate::harness::start_sim;

/// `cs`, pinned, in a virtual environment under the target directory.
fn cs_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cs-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import cs"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the cs interop test");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "cs==5.2.0"])
            .status()
            .expect("pip");
        assert!(
            pip.success(),
            "pip install cs==5.2.0 failed (is PyPI reachable?)"
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cs_client_talks_to_the_simulator() {
    let python = tokio::task::spawn_blocking(cs_python).await.unwrap();
    let sim = start_sim(|c| *c = std::mem::take(c).with_signature(SignatureAlgorithm::Sha1)).await;
    let ep = |s: &str| {
        let e = &sim.endpoints().sites[s];
        (
            format!("{}/client/api", e.mold),
            e.api_key.clone(),
            e.secret_key.clone(),
        )
    };
    let (ea, ka, sa) = ep("site-a");
    let (eb, kb, sb) = ep("site-b");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/cs_interop.py"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([ea, ka, sa, eb, kb, sb])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "cs script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        out["a_clusters"]["disasterrecoverycluster"][0]["name"],
        "DR"
    );
    assert_eq!(
        out["a_clusters"]["disasterrecoverycluster"][0]["drclustertype"],
        "secondary"
    );
    assert_eq!(
        out["b_clusters"]["disasterrecoverycluster"][0]["drclustertype"],
        "primary"
    );
    assert_eq!(out["vms"]["count"], 3);
    assert_eq!(out["stopped"]["virtualmachine"]["state"], "Stopped");
    assert_eq!(out["started"]["virtualmachine"]["state"], "Running");
    assert_eq!(
        out["keyword"],
        serde_json::json!({}),
        "a keyword with a space is signed right"
    );
    assert_eq!(out["bad_signature"]["status"], 401);
    assert_eq!(
        out["bad_signature"]["error"]["errortext"],
        "unable to verify user credentials and/or request signature"
    );
    assert!(
        sim.mold_calls("site-a", "queryAsyncJobResult") >= 2,
        "cs polled the jobs"
    );
    sim.shutdown().await;
}
