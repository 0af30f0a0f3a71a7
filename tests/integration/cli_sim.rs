//! `drbook sim` as a newcomer runs it: one JSON line when ready, a drbook.toml that
//! `drbook sites` accepts (Glue over HTTPS, its certificate pinned, each site's storage-VM key
//! beside it as its ssh_key_file), a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::{Test, has, lacks};

#[test]
fn sim_writes_a_config_that_sites_accepts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.toml");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_drbook"))
        .args(["sim", "--timing", "fast", "--vms", "2", "--write-config"])
        .arg(&config)
        .env_remove("DRBOOK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["sites"]["site-a"]["role"], "protected");
    assert_eq!(ready["sites"]["site-b"]["role"], "dr");
    assert!(
        ready["sites"]["site-a"]["glue"][0]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.1.1:")
    );
    assert!(
        ready["control"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    // The ready line carries no keys.
    lacks(&line, "secret");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "dr.toml holds keys: mode {mode:o}");
    }
    // Each site's storage-VM key beside it, private too, named as its ssh_key_file.
    let text = std::fs::read_to_string(&config).unwrap();
    for site in ["site-a", "site-b"] {
        let key = dir.path().join(format!("dr.toml.{site}-glue-key.pem"));
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        has(
            &text,
            &format!("ssh_key_file = {:?}", key.display().to_string()),
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{site}'s key: mode {mode:o}");
        }
    }
    let ran = Test::new()
        .args(["-c", config.to_str().unwrap(), "sites"])
        .run()
        .expect_code(0);
    ran.stdout_has("site-a").stdout_has("site-b");
    assert_eq!(ran.stdout.matches("HEALTH_OK").count(), 4, "{}", ran.stdout);
    assert!(
        ran.stderr.is_empty(),
        "no warnings for a pinned Glue: {}",
        ran.stderr
    );

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(sim.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = sim.wait().unwrap();
    assert!(
        status.success(),
        "drbook sim exits cleanly on SIGTERM: {status:?}"
    );
}

#[test]
fn a_bad_sim_file_is_a_positioned_usage_error() {
    let ran = Test::new()
        .file("sim.toml", "[timing]\njob = \"soon\"\n")
        .args(["sim", "--config", "sim.toml"])
        .run()
        .expect_code(2);
    ran.stderr_has("sim.toml:").stderr_has("timing.job");
}
