//! `drbook sim` as a newcomer runs it: one JSON line when ready, a drbook.toml that
//! `drbook sites` accepts (Glue over HTTPS, its certificate pinned, each site's storage-VM key
//! beside it as its ssh_key_file, the storage VMs' host keys as its ssh_known_hosts) and that
//! `ssh()` reaches the storage VMs with, a clean stop on SIGTERM that takes their sshd along —
//! as does a SIGKILL.

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

    // SSH is on by default (sshd is installed here): the written config reaches the storage
    // VMs, host keys checked, and their commands run this same binary.
    assert!(
        std::path::Path::new("/usr/sbin/sshd").exists(),
        "this test needs a real OpenSSH server: apt-get install openssh-server (.ci/run does)"
    );
    let port = ready["sites"]["site-a"]["ssh"]["port"].as_u64().unwrap();
    let known = std::fs::read_to_string(dir.path().join("dr.toml.known_hosts")).unwrap();
    has(&known, &format!("[127.0.1.1]:{port} ssh-ed25519 "));
    has(&known, &format!("[127.0.1.2]:{port} ssh-ed25519 "));
    has(&text, &format!("ssh_port = {port}\n"));
    let ran = Test::new()
        .file(
            "health.rhai",
            "let r = ssh(\"site-a\", \"ceph health\");\nprint(`status=${r.status} ${r.stdout}`);\n",
        )
        .args(["-c", config.to_str().unwrap(), "run", "health.rhai"])
        .run()
        .expect_code(0);
    ran.stdout_has("status=0 HEALTH_OK");
    let port = u16::try_from(port).unwrap();

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
    assert!(
        std::net::TcpStream::connect(("127.0.1.1", port)).is_err(),
        "the storage VMs' sshd stopped with it"
    );
}

#[test]
fn a_killed_sim_takes_its_storage_vms_sshd_along() {
    let mut sim = Command::new(env!("CARGO_BIN_EXE_drbook"))
        .args(["sim", "--timing", "fast", "--vms", "1", "--plain-glue"])
        .env_remove("DRBOOK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let port = u16::try_from(ready["sites"]["site-b"]["ssh"]["port"].as_u64().unwrap()).unwrap();
    assert!(std::net::TcpStream::connect(("127.0.2.1", port)).is_ok());
    sim.kill().unwrap();
    sim.wait().unwrap();
    // The watchdog notices its pipe close and stops sshd: soon, not at once.
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.2.1", port)).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("sshd still listens on 127.0.2.1:{port} after drbook sim was killed");
}

#[test]
fn without_ssh_the_config_names_no_ssh_port() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.toml");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_drbook"))
        .args([
            "sim",
            "--timing",
            "fast",
            "--vms",
            "1",
            "--no-ssh",
            "--write-config",
        ])
        .arg(&config)
        .env_remove("DRBOOK_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert!(ready["sites"]["site-a"].get("ssh").is_none(), "{line}");
    let text = std::fs::read_to_string(&config).unwrap();
    lacks(&text, "ssh_port =");
    lacks(&text, "ssh_known_hosts =");
    has(&text, "ssh_key_file");
    assert!(!dir.path().join("dr.toml.known_hosts").exists());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(sim.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(sim.wait().unwrap().success());
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
