//! etcd's v3 API, through the JSON gateway every etcd server serves on its client URLs
//! (`POST /v3/kv/txn`, `/v3/kv/range`, `/v3/lease/grant`, `/v3/lease/keepalive`,
//! `/v3/lease/revoke`, `/v3/auth/authenticate`): the same `reqwest` and rustls stack as the
//! Mold and Glue clients, without protobuf code generation. Keys and values travel in base64,
//! 64-bit integers as JSON strings (the gateway's proto3 JSON mapping).
//!
//! Every request has a deadline ([`EtcdSettings::request_timeout`], validated to stay well
//! under the lease TTL, so a renewal that hangs never outlives the lease it renews). An
//! endpoint that cannot be reached, times out or has no leader is left for the next one; an
//! answer is final. With `user` and a password, a token from `/v3/auth/authenticate` goes in
//! each request's `Authorization` header and is fetched again when etcd says it expired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use url::Url;

use crate::http::TlsTrust;
use crate::http::tls::ClientIdentity;
use crate::secret::Secret;

/// `[coordination]` of drbook.toml: where etcd answers and how drbook uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs of the etcd members (`http://` or `https://`), tried in turn.
    pub endpoints: Vec<Url>,
    /// Every key drbook writes starts with it (`/drbook/` by default).
    pub prefix: String,
    /// How long a lease lives without renewal (whole seconds: etcd's unit).
    pub lease_ttl: Duration,
    /// The deadline of every request to etcd (connection included): well under the TTL.
    pub request_timeout: Duration,
    pub trust: TlsTrust,
    /// A client certificate, for etcd's `--client-cert-auth`.
    pub identity: Option<ClientIdentity>,
    /// etcd's own authentication (`etcdctl user add`): a user and its password.
    pub auth: Option<(String, Secret)>,
}

impl EtcdSettings {
    /// How early a holder gives its lock up: it counts the lock lost at
    /// `last renewal sent + TTL − margin`, while etcd keeps the lease until at least
    /// `last renewal received + TTL`. One request deadline: a check made just before that
    /// moment still leaves the act it allows that long before anyone else can hold the lock.
    pub fn margin(&self) -> Duration {
        self.request_timeout
    }

    /// How often a held lease is renewed: three times per TTL, so two renewals can fail
    /// (each within its deadline) before the holder's own deadline.
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }
}

/// What etcd could not do.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered: each one's reason.
    #[error("no etcd endpoint answered ({})", .tried.join("; "))]
    Unreachable { tried: Vec<String> },
    /// An endpoint answered with an error (etcd's gRPC code and message).
    #[error("etcd refused {call}: {message} (code {code})")]
    Refused {
        call: &'static str,
        code: i64,
        message: String,
    },
    #[error("etcd's answer to {call} could not be read: {reason}")]
    Decode { call: &'static str, reason: String },
    #[error("cannot set up the etcd client: {0}")]
    Setup(String),
}

/// gRPC codes an endpoint gives when another member may answer: unavailable (no leader,
/// stopping), deadline exceeded, aborted (leader changed).
const RETRY_ELSEWHERE: [i64; 3] = [14, 4, 10];
/// gRPC's unauthenticated: the token expired (or was never valid).
const UNAUTHENTICATED: i64 = 16;

/// A key as a range read finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease it is tied to (0: none).
    pub lease: i64,
}

/// What [`Etcd::create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key was absent and is now ours, created at this revision.
    Created { revision: i64 },
    /// It was there already, as it is.
    Exists(Kv),
}

/// A client of one etcd cluster.
pub struct Etcd {
    settings: EtcdSettings,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<String>>,
    /// The endpoint that answered last: the first one tried next time.
    next: AtomicUsize,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.settings.endpoints)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    pub fn new(settings: EtcdSettings) -> Result<Self, EtcdError> {
        let tls = settings
            .trust
            .client_config_with_identity(settings.identity.as_ref())
            .map_err(|e| EtcdError::Setup(e.to_string()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("drbook/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.request_timeout)
            .timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| {
                EtcdError::Setup(crate::http::strip_links(&e.without_url().to_string()))
            })?;
        Ok(Self {
            settings,
            http,
            token: tokio::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
        })
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.settings
    }

    /// A new lease of `ttl` (whole seconds, at least 1): its id and the TTL etcd gave.
    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), EtcdError> {
        let secs = ttl.as_secs().max(1);
        let v = self
            .call(
                "lease grant",
                "v3/lease/grant",
                json!({ "TTL": secs.to_string() }),
            )
            .await?;
        let id = int(&v["ID"]).ok_or_else(|| decode("lease grant", "no lease ID"))?;
        let granted = int(&v["TTL"]).unwrap_or(0);
        Ok((
            id,
            Duration::from_secs(u64::try_from(granted).unwrap_or(secs)),
        ))
    }

    /// Renews lease `id`: its TTL from now, or `None` when it is gone (expired, revoked).
    pub async fn keep_alive(&self, id: i64) -> Result<Option<Duration>, EtcdError> {
        let v = self
            .call(
                "lease keep-alive",
                "v3/lease/keepalive",
                json!({ "ID": id.to_string() }),
            )
            .await?;
        // The gateway streams the answers of a stream call, each as `{"result": …}`.
        let result = v.get("result").unwrap_or(&v);
        let ttl = int(&result["TTL"]).unwrap_or(0);
        Ok((ttl > 0).then(|| Duration::from_secs(u64::try_from(ttl).unwrap_or(0))))
    }

    /// Revokes lease `id`, deleting every key tied to it. A lease already gone is fine.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        match self
            .call(
                "lease revoke",
                "v3/lease/revoke",
                json!({ "ID": id.to_string() }),
            )
            .await
        {
            // NotFound: expired already.
            Ok(_) | Err(EtcdError::Refused { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates `key` with `value` tied to `lease` only if it is absent (its create revision
    /// is 0), in one transaction; otherwise reads it as it is.
    pub async fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<Created, EtcdError> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{
                "key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"
            }],
            "success": [
                { "request_put": { "key": k, "value": B64.encode(value), "lease": lease.to_string() } },
            ],
            "failure": [ { "request_range": { "key": k } } ],
        });
        let v = self.call("lock transaction", "v3/kv/txn", body).await?;
        if v["succeeded"].as_bool() == Some(true) {
            let revision = int(&v["header"]["revision"])
                .ok_or_else(|| decode("lock transaction", "no revision"))?;
            return Ok(Created::Created { revision });
        }
        let kv = v["responses"][0]["response_range"]["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(|kv| parse_kv(kv, "lock transaction"))
            .transpose()?;
        match kv {
            Some(kv) => Ok(Created::Exists(kv)),
            // Deleted between the compare and the read cannot happen in one transaction;
            // an answer without it is not one to act on.
            None => Err(decode("lock transaction", "neither created nor found")),
        }
    }

    /// The key, if present.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self
            .call("range", "v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        v["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(|kv| parse_kv(kv, "range"))
            .transpose()
    }

    /// Deletes `key` only while it is the one created at `revision` (never a successor's).
    pub async fn delete_if_created(&self, key: &str, revision: i64) -> Result<bool, EtcdError> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{
                "key": k, "target": "CREATE", "result": "EQUAL",
                "create_revision": revision.to_string()
            }],
            "success": [ { "request_delete_range": { "key": k } } ],
        });
        let v = self.call("lock release", "v3/kv/txn", body).await?;
        Ok(v["succeeded"].as_bool() == Some(true))
    }

    /// One request, endpoint after endpoint until one answers; re-authenticated once when
    /// etcd says the token is no longer good.
    async fn call(&self, call: &'static str, path: &str, body: Value) -> Result<Value, EtcdError> {
        match self.call_once(call, path, &body).await {
            Err(EtcdError::Refused {
                code: UNAUTHENTICATED,
                ..
            }) if self.settings.auth.is_some() => {
                *self.token.lock().await = None;
                self.call_once(call, path, &body).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        call: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let n = self.settings.endpoints.len();
        let first = self.next.load(Ordering::Relaxed) % n.max(1);
        let mut tried = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = &self.settings.endpoints[at];
            let token = match self.token(endpoint).await {
                Ok(t) => t,
                Err(Attempt::Elsewhere(why)) => {
                    tried.push(format!("{}: {why}", shown(endpoint)));
                    continue;
                }
                Err(Attempt::Final(e)) => return Err(e),
            };
            match self
                .post(endpoint, path, body, token.as_deref(), call)
                .await
            {
                Ok(v) => {
                    self.next.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(Attempt::Elsewhere(why)) => tried.push(format!("{}: {why}", shown(endpoint))),
                Err(Attempt::Final(e)) => {
                    self.next.store(at, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Err(EtcdError::Unreachable { tried })
    }

    /// The auth token to send, fetched from `endpoint` when there is none yet.
    async fn token(&self, endpoint: &Url) -> Result<Option<String>, Attempt> {
        let Some((user, password)) = &self.settings.auth else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        if let Some(t) = token.as_ref() {
            return Ok(Some(t.clone()));
        }
        let body = json!({ "name": user, "password": password.expose() });
        let v = self
            .post(
                endpoint,
                "v3/auth/authenticate",
                &body,
                None,
                "authenticate",
            )
            .await?;
        let t = v["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Attempt::Final(decode("authenticate", "no token")))?
            .to_string();
        *token = Some(t.clone());
        Ok(Some(t))
    }

    async fn post(
        &self,
        endpoint: &Url,
        path: &str,
        body: &Value,
        token: Option<&str>,
        call: &'static str,
    ) -> Result<Value, Attempt> {
        let url = endpoint
            .join(path)
            .map_err(|e| Attempt::Final(EtcdError::Setup(e.to_string())))?;
        let mut request = self.http.post(url).json(body);
        if let Some(t) = token {
            request = request.header(reqwest::header::AUTHORIZATION, t);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Elsewhere(crate::http::describe_transport_error(&e)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Attempt::Elsewhere(crate::http::describe_transport_error(&e)))?;
        let v: Value = serde_json::from_str(text.lines().next().unwrap_or(""))
            .map_err(|e| Attempt::Final(decode(call, &format!("HTTP {status}: {e}"))))?;
        // An error, as the gateway writes it: at the top, or inside a stream's answer.
        let error = v
            .get("error")
            .filter(|e| !e.is_null())
            .map_or(&v, |e| if e.is_object() { e } else { &v });
        let code = int(&error["code"]).unwrap_or(0);
        if code != 0 || !status.is_success() {
            let message = error["message"]
                .as_str()
                .or_else(|| error["error"].as_str())
                .unwrap_or("no message")
                .to_string();
            if RETRY_ELSEWHERE.contains(&code) || status.is_server_error() && code == 0 {
                return Err(Attempt::Elsewhere(message));
            }
            return Err(Attempt::Final(EtcdError::Refused {
                call,
                code,
                message,
            }));
        }
        Ok(v)
    }
}

/// One endpoint's try: leave it for the next endpoint, or the answer is final.
enum Attempt {
    Elsewhere(String),
    Final(EtcdError),
}

fn decode(call: &'static str, reason: &str) -> EtcdError {
    EtcdError::Decode {
        call,
        reason: reason.to_string(),
    }
}

/// A proto3 JSON int64: a string, or a number.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn parse_kv(kv: &Value, call: &'static str) -> Result<Kv, EtcdError> {
    let value = match kv["value"].as_str() {
        Some(v) => B64
            .decode(v)
            .map_err(|e| decode(call, &format!("value: {e}")))?,
        None => Vec::new(),
    };
    Ok(Kv {
        value,
        create_revision: int(&kv["create_revision"]).unwrap_or(0),
        mod_revision: int(&kv["mod_revision"]).unwrap_or(0),
        lease: int(&kv["lease"]).unwrap_or(0),
    })
}

/// An endpoint as errors show it: scheme, host and port.
fn shown(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        url.host_str()
            .map_or_else(String::new, |h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto3_integers_come_as_strings_or_numbers() {
        assert_eq!(
            int(&json!("6979068953455543044")),
            Some(6_979_068_953_455_543_044)
        );
        assert_eq!(int(&json!(7)), Some(7));
        assert_eq!(int(&json!(null)), None);
    }

    #[test]
    fn a_key_value_is_decoded_from_base64() {
        let kv = parse_kv(
            &json!({"key": "eA==", "create_revision": "2", "mod_revision": "3", "lease": "9", "value": "aGk="}),
            "range",
        )
        .unwrap();
        assert_eq!(
            kv,
            Kv {
                value: b"hi".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                lease: 9
            }
        );
    }

    #[test]
    fn endpoints_are_shown_without_paths_or_users() {
        let u = Url::parse("https://root:pw@10.0.0.1:2379/x?y").unwrap();
        assert_eq!(shown(&u), "https://10.0.0.1:2379");
    }
}
