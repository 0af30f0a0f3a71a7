//! A real etcd cluster on loopback (Debian's `etcd-server`; `.ci/run` installs it): three
//! members on free ports in a temporary directory, fast elections, each under a `sh` watchdog
//! on a pipe this process holds, so no member outlives the test, however the test ends.
//! Members can be frozen (SIGSTOP) and thawed (SIGCONT) to cut a client off its member.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// The watchdog: the member in the background, its PID on stdout, then a read of stdin that
/// returns only when the pipe closes; then the member is killed (SIGKILL ends a frozen one
/// too) and waited for.
const WATCHDOG: &str = r#"log=$1
shift
"$@" </dev/null >"$log" 2>&1 &
pid=$!
echo "$pid"
trap '' INT HUP TERM
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid"
"#;

struct Member {
    watchdog: Child,
    pid: i32,
    /// The URL drbook is given (https with [`EtcdCluster::start_tls`]).
    client: String,
    /// A plain-HTTP client URL for the harness's own reads.
    plain: String,
}

/// The files of a cluster serving TLS: its CA, and a client certificate it accepts.
pub struct EtcdTls {
    pub ca: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

/// Three etcd members, killed on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
    pub tls: Option<EtcdTls>,
    dir: tempfile::TempDir,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written into `dir`.
fn certificates(dir: &std::path::Path) -> EtcdTls {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "drbook test etcd CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // etcd's JSON gateway dials its own gRPC server with the server certificate, which with
    // --client-cert-auth must therefore be good for client authentication too.
    let (server, server_key) = leaf(
        "etcd",
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    write("server.pem", &server);
    write("server-key.pem", &server_key);
    let (client, client_key) = leaf("drbook", vec![ExtendedKeyUsagePurpose::ClientAuth]);
    EtcdTls {
        ca: write("ca.pem", &ca_cert.pem()),
        client_cert: write("client.pem", &client),
        client_key: write("client-key.pem", &client_key),
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl EtcdCluster {
    /// Starts three members and waits until each answers with a leader. Blocking.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`EtcdCluster::start`] serving its clients over TLS, a client certificate required
    /// (`--client-cert-auth`); the files are in [`EtcdCluster::tls`].
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        assert!(
            std::path::Path::new(ETCD).exists(),
            "this test needs a real etcd: apt-get install etcd-server (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(9);
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i]);
        let scheme = if tls { "https" } else { "http" };
        let client = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[3 * i + 1]);
        let plain = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i + 2]);
        let certs = tls.then(|| certificates(dir.path()));
        let tls_args: Vec<String> = match &certs {
            None => Vec::new(),
            Some(c) => vec![
                format!("--cert-file={}", dir.path().join("server.pem").display()),
                format!("--key-file={}", dir.path().join("server-key.pem").display()),
                format!("--trusted-ca-file={}", c.ca.display()),
                "--client-cert-auth".into(),
            ],
        };
        let initial = (0..3)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..3 {
            let data = dir.path().join(format!("m{i}"));
            let log = dir.path().join(format!("m{i}.log"));
            let mut watchdog = Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("sh")
                .arg(&log)
                .arg(ETCD)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args([
                    "--listen-client-urls",
                    &format!("{},{}", client(i), plain(i)),
                ])
                .args(["--advertise-client-urls", &client(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "drbook-test"])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--log-level", "error"])
                .args(&tls_args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the etcd watchdog");
            let mut line = String::new();
            BufReader::new(watchdog.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let pid = line.trim().parse().expect("the member's PID");
            members.push(Member {
                watchdog,
                pid,
                client: client(i),
                plain: plain(i),
            });
        }
        let cluster = Self {
            members,
            tls: certs,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..3 {
            while !cluster.healthy(i) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member m{i} did not come up: {}",
                    cluster.log(i)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client
    }

    /// A `[coordination]` section reaching members `members` with lease TTL `ttl` seconds.
    pub fn coordination(&self, members: &[usize], ttl: u64) -> String {
        let endpoints = members
            .iter()
            .map(|&i| format!("{:?}", self.endpoint(i)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("\n[coordination]\netcd_endpoints = [{endpoints}]\nlease_ttl = \"{ttl}s\"\n")
    }

    /// Turns etcd's authentication on: a `root` user, and `user` with `password` allowed to
    /// read and write the keys under `prefix` only. Through etcdctl (Debian's etcd-client).
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        assert!(
            std::path::Path::new(ETCDCTL).exists(),
            "this test needs etcdctl: apt-get install etcd-client (.ci/run does)"
        );
        let root = format!("root:{}", fastrand::u64(..));
        let user_pw = format!("{user}:{password}");
        for args in [
            vec!["user", "add", root.as_str()],
            vec!["role", "add", "root"],
            vec!["user", "grant-role", "root", "root"],
            vec!["user", "add", user_pw.as_str()],
            vec!["role", "add", user],
            vec![
                "role",
                "grant-permission",
                user,
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            vec!["user", "grant-role", user, user],
            vec!["auth", "enable"],
        ] {
            let out = Command::new(ETCDCTL)
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.members[0].plain))
                .args(&args)
                .output()
                .expect("run etcdctl");
            assert!(
                out.status.success(),
                "etcdctl {}: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Freezes member `i` (SIGSTOP): it neither answers nor takes part in the cluster.
    pub fn freeze(&self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets member `i` go on (SIGCONT).
    pub fn thaw(&self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.members[i].pid), signal)
            .expect("signal an etcd member");
    }

    /// The keys under `prefix` (through member `i`): key, create revision, value.
    pub fn keys(&self, i: usize, prefix: &str) -> Vec<(String, i64, String)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let body = format!(
            "{{\"key\":\"{}\",\"range_end\":\"{}\"}}",
            B64.encode(prefix),
            B64.encode(&end)
        );
        let answer = self
            .post(i, "/v3/kv/range", &body)
            .expect("etcd answers a range read");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        let text = |f: &str| {
                            String::from_utf8(B64.decode(kv[f].as_str().unwrap_or("")).unwrap())
                                .unwrap()
                        };
                        let rev = kv["create_revision"].as_str().unwrap().parse().unwrap();
                        (text("key"), rev, text("value"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn healthy(&self, i: usize) -> bool {
        self.get(i, "/health")
            .is_some_and(|body| body.contains("\"health\":\"true\""))
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }

    fn get(&self, i: usize, path: &str) -> Option<String> {
        self.http(i, &format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n"))
    }

    fn post(&self, i: usize, path: &str, body: &str) -> Option<String> {
        self.http(
            i,
            &format!(
                "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// One HTTP/1.0 exchange: the body of a 200 answer.
    fn http(&self, i: usize, request: &str) -> Option<String> {
        let addr = self.members[i].plain.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200")
            .then(|| body.to_string())
            .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            // Closing the pipe tells the watchdog to kill its member.
            drop(m.watchdog.stdin.take());
        }
        for m in &mut self.members {
            let _ = m.watchdog.wait();
        }
    }
}
