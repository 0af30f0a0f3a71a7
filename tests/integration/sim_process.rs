//! `drbook sim` as a child process, either backend, driven as a rehearsal drives it: the
//! control API for writes and disasters, Glue's own routes for the storage acts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `drbook sim` and what its ready line said.
pub struct SimProcess {
    pub child: Child,
    ready: Value,
    http: reqwest::Client,
    /// For Glue: the simulator's certificate is self-made, and trust is not under test here.
    glue_http: reqwest::Client,
}

/// What one Glue call answered: the HTTP status and the body (JSON when it parses).
#[derive(Debug)]
pub enum GlueAnswer {
    Answered {
        status: u16,
        body: Value,
    },
    /// No HTTP answer at all (the site is dark).
    Unreachable,
}

impl SimProcess {
    /// Starts `drbook sim ARGS` in `dir` and waits for its ready line.
    pub fn start<I, S>(dir: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drbook"))
            .arg("sim")
            .args(args)
            .current_dir(dir)
            .env_remove("DRBOOK_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("no ready line from drbook sim ({e}): {line:?}"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            child,
            ready,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            glue_http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    fn control(&self) -> &str {
        self.ready["control"].as_str().unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.control()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.control()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// The images of `vm` with the writes each site holds (and checksums on real storage).
    pub async fn ledger(&self, vm: &str) -> Vec<Value> {
        self.get(&format!("/ledger/{vm}")).await["images"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// One call to `site`'s first Glue endpoint (`path` under `/api/v1`), over plain HTTP
    /// (`--plain-glue`) or HTTPS alike.
    pub async fn glue(&self, site: &str, method: &str, path: &str) -> GlueAnswer {
        let base = self.ready["sites"][site]["glue"][0].as_str().unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        match self
            .glue_http
            .request(method, format!("{base}/api/v1/{path}"))
            .send()
            .await
        {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap_or_default();
                GlueAnswer::Answered {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                }
            }
            Err(_) => GlueAnswer::Unreachable,
        }
    }

    /// The PIDs of every Ceph daemon, from `/state` (real storage only).
    pub async fn daemon_pids(&self) -> Vec<u32> {
        let state = self.get("/state").await;
        let mut pids = Vec::new();
        for site in state["storage"]["sites"].as_object().unwrap().values() {
            for pid in site["daemons"].as_object().unwrap().values() {
                pids.push(u32::try_from(pid.as_u64().unwrap()).unwrap());
            }
        }
        assert_eq!(
            pids.len(),
            8,
            "mon, mgr, osd and rbd-mirror per site: {state}"
        );
        pids
    }

    /// Stops it the way an operator does (SIGTERM) and expects a clean exit.
    pub fn terminate(mut self) {
        let status = self.sigterm().unwrap();
        assert!(status.success(), "drbook sim exited with {status}");
    }

    fn sigterm(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok()?;
        self.child.wait().ok()
    }
}

impl Drop for SimProcess {
    /// A failing test still stops the simulator, and with it any Ceph daemons.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.sigterm();
        }
    }
}

/// The writes `image` (a ledger entry) holds on `site`.
pub fn writes(image: &Value, site: &str) -> Vec<u64> {
    image["sites"][site]
        .as_array()
        .map(|w| w.iter().map(|n| n.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// Polls `read` once a second until `ready` holds for what it read; panics with the last
/// reading after `limit`. Waits on state, never a fixed sleep.
pub async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    limit: Duration,
    mut read: impl FnMut() -> F,
    ready: impl Fn(&T) -> bool,
) -> T {
    let until = Instant::now() + limit;
    loop {
        let seen = read().await;
        if ready(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "gave up waiting for {what} after {limit:?}: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
