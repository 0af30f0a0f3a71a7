//! Test harness: a fluent runner for the `drbook` binary over a temporary directory, and
//! small HTTP servers on loopback that stand in for a site's Mold where the simulator does not
//! yet go (they verify real signatures and count every request).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use drbook::mold::SignatureAlgorithm;
use drbook::mold::sign;

pub const API_KEY: &str = "AKtest-visible-in-no-output-7f3a";
pub const SECRET_KEY: &str = "SKtest-never-print-me-91b2";

/// Runs `drbook` in a fresh temporary directory: `Test::new().config(..).args(..).run()`.
pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// What a run printed and how it ended.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Writes `drbook.toml` (mode 600) in the test directory.
    pub fn config(self, text: &str) -> Self {
        self.file("drbook.toml", text)
    }

    /// Writes `drbook.toml` for a running simulator (its keys, Glue's certificate pinned).
    pub fn sim_config(self, sim: &drbook::sim::Sim) -> Self {
        sim.write_config(&self.dir.path().join("drbook.toml"))
            .expect("write sim config");
        self
    }

    /// The test directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Where its runs keep their journals (`DRBOOK_STATE_DIR`): `.drbook/` in the test
    /// directory, so that a test never writes the machine's state directory.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join(".drbook")
    }

    /// Where its runs take DR cluster locks (`DRBOOK_LOCK_DIR`), for the same reason; two
    /// tests that share one stand for two operators of one machine.
    pub fn lock_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("locks")
    }

    /// Runs drbook in the background (for signals); stdout and stderr are piped.
    pub fn spawn(&self) -> std::process::Child {
        self.spawn_with(&self.args)
    }

    /// Like [`Test::spawn`], with `args` instead of the builder's.
    pub fn spawn_with<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_drbook"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DRBOOK_CONFIG")
            .env_remove("DRBOOK_LOG")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("DRBOOK_STATE_DIR", self.state_dir())
            .env("DRBOOK_LOCK_DIR", self.lock_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn drbook")
    }

    /// Runs drbook off the async runtime that serves an in-process simulator.
    pub async fn run_async(self) -> Ran {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap()
    }

    pub fn file(self, name: &str, text: &str) -> Self {
        self.write_file(name, text);
        self
    }

    /// Writes a file (mode 600) in the test directory of a test already built.
    pub fn write_file(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn run(&self) -> Ran {
        self.exec(&self.args)
    }

    /// Runs drbook with `args` (instead of the builder's) in the same directory, so runs can
    /// share a journal; blocks in place on a multi-threaded runtime serving a simulator.
    pub fn run_with<I: IntoIterator<Item = S>, S: Into<String>>(&self, args: I) -> Ran {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        tokio::task::block_in_place(|| self.exec(&args))
    }

    /// Like [`Test::run_with`], with `extra` environment variables for this run only.
    pub fn run_env<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        args: I,
        extra: &[(&str, &str)],
    ) -> Ran {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        tokio::task::block_in_place(|| self.exec_env(&args, extra))
    }

    fn exec(&self, args: &[String]) -> Ran {
        self.exec_env(args, &[])
    }

    fn exec_env(&self, args: &[String], extra: &[(&str, &str)]) -> Ran {
        let output: Output = Command::new(env!("CARGO_BIN_EXE_drbook"))
            .args(args)
            .stdin(std::process::Stdio::null())
            .current_dir(self.dir.path())
            .env_remove("DRBOOK_CONFIG")
            .env_remove("DRBOOK_LOG")
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .env("DRBOOK_STATE_DIR", self.state_dir())
            .env("DRBOOK_LOCK_DIR", self.lock_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied())
            .output()
            .expect("run drbook");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Ran {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics if any of the test credentials appears anywhere in the output.
    pub fn expect_no_secret(self) -> Self {
        for secret in [API_KEY, SECRET_KEY] {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "secret {secret} leaked\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// The `error:` lines on stderr.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }

    /// The run id `drbook run` names for `--resume` after a failed run that got something
    /// done; `None` when it names none (nothing to resume: run it again).
    pub fn resume_hint(&self) -> Option<String> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("drbook: to continue this run"))
            .find_map(|l| l.split("--resume ").nth(1))
            .map(|id| id.trim().to_string())
    }

    /// The run id `drbook run` names for `--resume` after a failed run.
    pub fn resume_id(&self) -> String {
        self.resume_hint()
            .unwrap_or_else(|| panic!("no --resume hint in:\n{}", self.stderr))
            .trim()
            .to_string()
    }
}

/// One canned HTTP answer.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct FakeState {
    algorithm: Option<SignatureAlgorithm>,
    calls: BTreeMap<String, usize>,
    methods: Vec<(String, String)>,
    scripted: BTreeMap<String, VecDeque<Canned>>,
}

/// A loopback stand-in for a site's Mold: verifies each request's signature with the test
/// key pair (401 with Mold's body otherwise), counts requests per command, and answers from
/// per-command scripts (then from defaults for `listCapabilities` / `listScvmIpAddress`).
#[derive(Clone)]
pub struct FakeMold {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl FakeMold {
    pub async fn start(algorithm: SignatureAlgorithm) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            algorithm: Some(algorithm),
            ..FakeState::default()
        }));
        let app = axum::Router::new()
            .route("/client/api", axum::routing::any(handle))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues answers for `command`, used in order before the defaults.
    pub fn script(&self, command: &str, answers: impl IntoIterator<Item = Canned>) {
        self.state
            .lock()
            .unwrap()
            .scripted
            .entry(command.to_lowercase())
            .or_default()
            .extend(answers);
    }

    /// How many requests named `command` arrived (signed or not).
    pub fn calls(&self, command: &str) -> usize {
        *self
            .state
            .lock()
            .unwrap()
            .calls
            .get(&command.to_lowercase())
            .unwrap_or(&0)
    }

    /// The HTTP method each request for `command` used.
    pub fn methods(&self, command: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .methods
            .iter()
            .filter(|(c, _)| *c == command.to_lowercase())
            .map(|(_, m)| m.clone())
            .collect()
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut raw = query.unwrap_or_default();
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form {
        if !raw.is_empty() {
            raw.push('&');
        }
        raw.push_str(&String::from_utf8_lossy(&body));
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let command = get("command").unwrap_or_default().to_lowercase();
    let mut st = state.lock().unwrap();
    *st.calls.entry(command.clone()).or_default() += 1;
    st.methods.push((command.clone(), method.to_string()));
    let key = format!("{command}response");

    let signed_ok = get("apikey").as_deref() == Some(API_KEY)
        && get("signature").is_some_and(|sig| {
            sign::verify(&params, SECRET_KEY, st.algorithm.unwrap_or_default(), &sig)
        });
    if !signed_ok {
        return reply(&Canned::json(
            401,
            &serde_json::json!({ key: {"uuidList": [], "errorcode": 401,
                "errortext": "unable to verify user credentials and/or request signature"}}),
        ));
    }
    if let Some(answer) = st.scripted.get_mut(&command).and_then(VecDeque::pop_front) {
        return reply(&answer);
    }
    let answer = match command.as_str() {
        "listcapabilities" => Canned::json(
            200,
            &serde_json::json!({ key: {"capability": {
                "cloudstackversion": "4.20.0.0-mold", "disasterrecoveryenabled": true}}}),
        ),
        "listscvmipaddress" => Canned::json(
            200,
            &serde_json::json!({ key: {"count": 1, "scvmipaddress": [{"ipaddress": "10.0.0.11,10.0.0.12"}]}}),
        ),
        _ => Canned::json(
            432,
            &serde_json::json!({"errorresponse": {"uuidList": [], "errorcode": 432,
                "errortext": "The given command does not exist or it is not available for user"}}),
        ),
    };
    reply(&answer)
}

fn reply(c: &Canned) -> Response {
    let mut response = (StatusCode::from_u16(c.status).unwrap(), c.body.clone()).into_response();
    for (k, v) in &c.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

/// A server that reads each request, counts it, and hangs up without answering: what a
/// crashing Mold or a dropped link looks like after the request went out.
pub async fn hang_up_server() -> (SocketAddr, Arc<Mutex<usize>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read until the end of the headers and the body (small requests).
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if request_complete(&got) {
                        *seen.lock().unwrap() += 1;
                        break;
                    }
                }
                drop(sock);
            });
        }
    });
    (addr, count)
}

fn request_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..head_end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    bytes.len() >= head_end + 4 + length
}

/// A loopback address nothing listens on (bound, then released).
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A `drbook.toml` site table for a Mold at `url` with the test keys.
pub fn site_toml(name: &str, url: &str, secret: &str, extra: &str) -> String {
    format!(
        "[sites.{name}]\nmold_url = \"{url}\"\napi_key = \"{API_KEY}\"\nsecret_key = \"{secret}\"\n{extra}\n"
    )
}

/// A simulation with test timings and plain-HTTP Glue; `adjust` may change anything.
pub async fn start_sim(adjust: impl FnOnce(&mut drbook::sim::SimConfig)) -> drbook::sim::Sim {
    let mut config = drbook::sim::SimConfig::default().with_vms(3);
    config.timing = drbook::sim::config::SimTiming::fast();
    config.glue_tls = false;
    adjust(&mut config);
    drbook::sim::Sim::start(config)
        .await
        .expect("simulator starts")
}

/// drbook's Mold client for one simulated site, with test timings.
pub fn sim_mold(sim: &drbook::sim::Sim, site: &str) -> drbook::mold::MoldClient {
    use std::time::Duration;
    let e = &sim.endpoints().sites[site];
    drbook::mold::MoldClient::new(drbook::mold::MoldSettings {
        site: site.into(),
        url: e.mold.parse().unwrap(),
        api_key: drbook::secret::Secret::new(e.api_key.clone()),
        secret_key: drbook::secret::Secret::new(e.secret_key.clone()),
        algorithm: e.signature.parse().unwrap(),
        signature_v3_expiry: None,
        trust: drbook::http::TlsTrust::System,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        long_timeout: Duration::from_secs(60),
        job_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(50),
        retry: drbook::http::RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
    })
    .unwrap()
}

/// drbook's Glue client for one simulated site (plain HTTP).
pub fn sim_glue(sim: &drbook::sim::Sim, site: &str) -> drbook::glue::GlueClient {
    use std::time::Duration;
    let e = &sim.endpoints().sites[site];
    drbook::glue::GlueClient::new(drbook::glue::GlueSettings {
        site: site.into(),
        endpoints: e.glue.iter().map(|u| u.parse().unwrap()).collect(),
        trust: drbook::http::TlsTrust::System,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        retry: drbook::http::RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
    })
    .unwrap()
}

/// Polls `check` until it returns `Some`, or panics with `what` after a generous bound (the
/// bound only stops a broken test; nothing asserts how long it took).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// The write sequence numbers a `sim.write` call reported (its first image's).
pub fn written(w: &serde_json::Value) -> Vec<u64> {
    w["writes"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

/// Waits until `site` holds every one of `writes` in `vm`'s images and its status names the
/// snapshot that brought them (a replica's first report after a copy does not yet, as on
/// real Ceph): only then does a failover know what reached it.
pub async fn delivered(sim: &drbook::sim::Sim, vm: &str, site: &str, writes: &[u64]) {
    eventually(
        "the DR site to hold the writes and name their snapshot",
        || async {
            let ledger = sim.ledger(vm).unwrap();
            let images = ledger["images"].as_array().unwrap();
            let ready = images.iter().all(|image| {
                let path = image["image"].as_str().unwrap();
                sim.with_world(|w, now| w.storage.image_status(now, site, path))
                    .is_ok_and(|s| {
                        s["description"]
                            .as_str()
                            .is_some_and(|d| d.contains("local_snapshot_timestamp"))
                    })
            }) && writes.iter().all(|w| {
                images.iter().any(|image| {
                    image["sites"][site]
                        .as_array()
                        .is_some_and(|held| held.iter().any(|h| h.as_u64() == Some(*w)))
                })
            });
            ready.then_some(())
        },
    )
    .await;
}

/// The writes every image of `vm` holds on `site`, from the simulator's ledger.
pub fn held(sim: &drbook::sim::Sim, vm: &str, site: &str) -> Vec<u64> {
    sim.ledger(vm).unwrap()["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["sites"][site]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_u64())
        })
        .collect()
}

/// `name → state` of the VMs on a simulated site.
pub fn vm_states(sim: &drbook::sim::Sim, site: &str) -> std::collections::BTreeMap<String, String> {
    sim.state()["sites"][site]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every credential of a simulation: both sites' API and secret keys, and each body line of
/// their storage-VM private keys (a key leaks if any part of it shows).
pub fn sim_credentials(sim: &drbook::sim::Sim) -> Vec<String> {
    let mut out = Vec::new();
    for site in sim.endpoints().sites.values() {
        out.push(site.api_key.clone());
        out.push(site.secret_key.clone());
        out.extend(
            site.glue_private_key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(str::to_string),
        );
    }
    assert!(out.len() > 4, "the keys have bodies: {out:?}");
    out
}
