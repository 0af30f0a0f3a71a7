//! `ssh()` against a real OpenSSH server on loopback (Debian's openssh-server; `.ci/run`
//! installs it): key authentication, the host key checked, exit status and both streams,
//! destructive unless a known read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::Test;

/// An sshd of our own: its host key, our client key, on a free loopback port.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path, kind: &str) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-m", "PEM", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(ok.success());
}

fn sshd_binary() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/sshd");
    assert!(
        path.exists(),
        "this test needs a real OpenSSH server: apt-get install openssh-server (.ci/run does)"
    );
    path
}

impl Sshd {
    fn start() -> Self {
        let sshd = sshd_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"), "ed25519");
        keygen(&d.join("client_key"), "rsa");
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\nLogLevel ERROR\n",
            d.join("host_key").display(),
            d.join("sshd.pid").display(),
            d.join("authorized_keys").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready once it accepts connections.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        // known_hosts for the non-standard port.
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{port} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        std::fs::write(d.join("known_hosts"), line).unwrap();
        Self { child, port, dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A drbook.toml whose site-a reaches this sshd as its storage VM.
    fn config(&self, known_hosts: &str) -> String {
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        format!(
            "[sites.site-a]\nmold_url = \"http://127.0.0.1:9\"\napi_key = \"k\"\nsecret_key = \"s\"\nglue_urls = [\"http://127.0.0.1:8080\"]\nssh_user = \"{}\"\nssh_key_file = \"{}\"\nssh_port = {}\nssh_known_hosts = \"{known_hosts}\"\n",
            user.trim(),
            self.path("client_key"),
            self.port
        )
    }
}

#[test]
fn ssh_runs_commands_on_a_storage_vm() {
    let sshd = Sshd::start();
    let config = sshd.config(&sshd.path("known_hosts"));
    // A known read runs without a question; its exit status comes back.
    let ran = Test::new()
        .config(&config)
        .file("read.rhai", "let r = ssh(\"site-a\", \"rbd info rbd/x\");\nprint(`host=${r.host} status=${r.status}`);\n")
        .args(["run", "read.rhai"])
        .run()
        .expect_code(0);
    ran.stdout_has("host=127.0.0.1 status=");
    // Anything else is destructive: no terminal and no --yes is a refusal, nothing runs.
    let marker = sshd.dir.path().join("touched");
    let script = format!(
        "let r = ssh(\"site-a\", \"echo out; echo err >&2; touch {}; exit 3\");\nprint(`status=${{r.status}} stdout=${{r.stdout}}stderr=${{r.stderr}}`);\n",
        marker.display()
    );
    Test::new()
        .config(&config)
        .file("write.rhai", &script)
        .args(["run", "write.rhai"])
        .run()
        .expect_code(3);
    assert!(!marker.exists(), "a refused command did not run");
    let ran = Test::new()
        .config(&config)
        .file("write.rhai", &script)
        .args(["run", "write.rhai", "--yes"])
        .run()
        .expect_code(0);
    ran.stdout_has("status=3 stdout=out\nstderr=err\n");
    assert!(marker.exists());
}

#[test]
fn a_changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("k"), "ed25519");
    let wrong = std::fs::read_to_string(other.path().join("k.pub")).unwrap();
    let mut f = wrong.split_whitespace();
    let known = other.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            f.next().unwrap(),
            f.next().unwrap()
        ),
    )
    .unwrap();
    let ran = Test::new()
        .config(&sshd.config(&known.display().to_string()))
        .file("read.rhai", "ssh(\"site-a\", \"ceph -s\");\n")
        .args(["run", "read.rhai"])
        .run()
        .expect_code(1);
    ran.stderr_has("does not match");
}
