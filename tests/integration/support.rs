//! Small real servers on 127.0.0.1 for the client tests. Each one records what reaches it, so
//! a test can say how often a request was sent, not just what came back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use url::Url;

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

/// A raw TCP endpoint that counts connections and then misbehaves.
pub struct Raw {
    pub url: Url,
    connections: Arc<AtomicUsize>,
}

impl Raw {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

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
    /// Reads the whole request head, then closes without answering.
    CloseAfterRequest,
    /// Reads the request head and never answers.
    NeverAnswer,
}

pub async fn raw(scheme: &str, how: Misbehaviour) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("{scheme}://{}", listener.local_addr().unwrap())).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            match how {
                Misbehaviour::CloseAtOnce => drop(stream),
                Misbehaviour::CloseAfterRequest => {
                    read_head(&mut stream).await;
                    drop(stream);
                }
                Misbehaviour::NeverAnswer => {
                    read_head(&mut stream).await;
                    held.push(stream);
                }
            }
        }
    });
    Raw { url, connections }
}

/// Like [`raw`] over TLS (a fresh self-signed certificate: trust it with `Insecure`): the
/// handshake completes, then the endpoint misbehaves. `CloseAfterRequest` drops the TCP
/// connection without TLS's close_notify, as a storage VM or a Mold that crashes mid-answer
/// does; rustls words that with a link to its documentation.
pub async fn tls_raw(how: Misbehaviour) -> Raw {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
                        read_head(&mut tls).await;
                        drop(tls.into_inner().0);
                    }
                    Misbehaviour::NeverAnswer => {
                        read_head(&mut tls).await;
                        held.lock().unwrap().push(tls);
                    }
                }
            });
        }
    });
    Raw { url, connections }
}

/// Reads up to the end of a request head; false if the client went away first.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A URL nothing listens on: connections are refused.
pub async fn refused() -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    url
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
                if !read_head(&mut tls).await {
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
        cert_pem: certified.cert.pem(),
        requests,
    }
}
