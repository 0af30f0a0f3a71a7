//! Small real servers on 127.0.0.1 that stand in for a site's Mold or Glue where the
//! simulator does not go: `FakeMold` (verifies real signatures, scripted answers), a recording
//! Glue, a Glue over TLS, and endpoints that misbehave on purpose. Each one records or counts
//! what reaches it, so a test can say how often a request was sent, not just what came back.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use drbook::mold::SignatureAlgorithm;
use drbook::mold::sign;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use url::Url;

/// The test key pair: `FakeMold` verifies signatures with it, and no output may show it
/// ([`super::Ran::expect_no_secret`]).
pub const API_KEY: &str = "AKtest-visible-in-no-output-7f3a";
pub const SECRET_KEY: &str = "SKtest-never-print-me-91b2";

/// A `drbook.toml` site table for a Mold at `url` with the test keys.
pub fn site_toml(name: &str, url: &str, secret: &str, extra: &str) -> String {
    format!(
        "[sites.{name}]\nmold_url = \"{url}\"\napi_key = \"{API_KEY}\"\nsecret_key = \"{secret}\"\n{extra}\n"
    )
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

/// One request as a server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// As sent: still percent-encoded.
    pub path: String,
    pub accept: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Recorded {
    /// The form body as pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// A scripted HTTP server.
pub struct Server {
    pub url: Url,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The URL as the client's messages show it.
    pub fn label(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }
}

struct Script {
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Answer n goes to request n; the last one repeats.
    answers: Vec<Scripted>,
}

/// One scripted answer.
struct Scripted {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

/// An answer as tests write it: status, body, extra headers.
pub type Answer<'a> = (u16, &'a str, &'a [(&'a str, &'a str)]);

/// A Glue stand-in answering each request with the next of `answers` (status, body).
pub async fn glue(answers: &[(u16, &str)]) -> Server {
    let answers: Vec<Answer<'_>> = answers.iter().map(|(s, b)| (*s, *b, &[][..])).collect();
    glue_with_headers(&answers).await
}

/// Like [`glue`], each answer with extra headers (`Retry-After`, …).
pub async fn glue_with_headers(answers: &[Answer<'_>]) -> Server {
    assert!(!answers.is_empty());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Script {
        requests: requests.clone(),
        answers: answers
            .iter()
            .map(|(status, body, headers)| Scripted {
                status: *status,
                body: (*body).to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            })
            .collect(),
    });
    let app = axum::Router::new().fallback(answer).with_state(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { url, requests }
}

async fn answer(State(script): State<Arc<Script>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        accept: header("accept"),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: String::from_utf8(body.to_vec()).unwrap(),
    };
    let n = {
        let mut requests = script.requests.lock().unwrap();
        requests.push(recorded);
        requests.len() - 1
    };
    let Scripted {
        status,
        body,
        headers,
    } = &script.answers[n.min(script.answers.len() - 1)];
    let mut response = (
        StatusCode::from_u16(*status).unwrap(),
        [("content-type", "application/json; charset=utf-8")],
        Body::from(body.clone()),
    )
        .into_response();
    for (k, v) in headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    response
}

/// A Glue stand-in over TLS with a fresh self-signed certificate whose only SAN is
/// `10.10.22.11`, as Glue's own certificate names one address (`127.0.0.1`) that is not the
/// one clients dial. Every request gets `200` with `body`.
pub struct TlsGlue {
    pub url: Url,
    /// The certificate, PEM.
    pub cert_pem: String,
    requests: Arc<AtomicUsize>,
}

impl TlsGlue {
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub async fn tls_glue(body: &'static str) -> TlsGlue {
    use tokio::io::AsyncWriteExt;

    let (acceptor, cert_pem) = self_signed_tls();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("https://{}", listener.local_addr().unwrap())).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if !read_request(&mut tls).await {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsGlue {
        url,
        cert_pem,
        requests,
    }
}

/// An endpoint that accepts TCP, counts connections and then misbehaves: what a crashing
/// Mold or storage VM, a dropped link or a hung server looks like to a client.
pub struct Raw {
    pub url: Url,
    connections: Arc<AtomicUsize>,
}

impl Raw {
    /// How many connections were accepted (one per request: none is ever answered).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The URL as the client's messages show it.
    pub fn label(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_string()
    }
}

/// How a [`Raw`] endpoint misbehaves.
#[derive(Clone, Copy)]
pub enum Misbehaviour {
    /// Accepts TCP and closes at once. Under `https://` the TLS handshake fails, which the
    /// client counts as "could not connect": a dead Glue whose attempts can be counted.
    CloseAtOnce,
    /// Reads the whole request (head and body), then hangs up without answering: the
    /// request went out, its outcome is unknown.
    CloseAfterRequest,
    /// Reads the whole request and never answers.
    NeverAnswer,
}

/// A plain-TCP [`Raw`] endpoint; `scheme` only names the URL (`https` makes `CloseAtOnce` a
/// failed handshake).
pub async fn raw(scheme: &str, how: Misbehaviour) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("{scheme}://{}", listener.local_addr().unwrap())).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let held = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let held = held.clone();
            tokio::spawn(async move {
                match how {
                    Misbehaviour::CloseAtOnce => drop(stream),
                    Misbehaviour::CloseAfterRequest => {
                        read_request(&mut stream).await;
                        drop(stream);
                    }
                    Misbehaviour::NeverAnswer => {
                        read_request(&mut stream).await;
                        held.lock().unwrap().push(stream);
                    }
                }
            });
        }
    });
    Raw { url, connections }
}

/// Like [`raw`] over TLS (a fresh self-signed certificate: trust it with `Insecure`): the
/// handshake completes, then the endpoint misbehaves. `CloseAfterRequest` drops the TCP
/// connection without TLS's close_notify, as a storage VM or a Mold that crashes mid-answer
/// does; rustls words that with a link to its documentation.
pub async fn tls_raw(how: Misbehaviour) -> Raw {
    let (acceptor, _) = self_signed_tls();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("https://{}", listener.local_addr().unwrap())).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let held = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let held = held.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                match how {
                    Misbehaviour::CloseAtOnce => drop(tls.into_inner().0),
                    Misbehaviour::CloseAfterRequest => {
                        read_request(&mut tls).await;
                        drop(tls.into_inner().0);
                    }
                    Misbehaviour::NeverAnswer => {
                        read_request(&mut tls).await;
                        held.lock().unwrap().push(tls);
                    }
                }
            });
        }
    });
    Raw { url, connections }
}

/// A loopback address nothing listens on (bound, then released): connections are refused.
pub fn refused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A TLS acceptor with a fresh self-signed certificate whose only SAN is `10.10.22.11`, and
/// that certificate as PEM.
fn self_signed_tls() -> (tokio_rustls::TlsAcceptor, String) {
    use tokio_rustls::rustls;

    let certified = rcgen::generate_simple_self_signed(vec!["10.10.22.11".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certified.cert.pem(),
    )
}

/// Reads one whole request: its head, then as much body as its `content-length` says (small
/// requests). False if the client went away first.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !request_complete(&seen) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
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
