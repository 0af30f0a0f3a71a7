//! What the Mold and Glue clients share about HTTP: TLS trust, the retry policy for reads, and
//! turning transport errors into words an operator can act on (without the request URL, which
//! carries the API key).

pub mod retry;
pub mod tls;

pub use retry::RetryPolicy;
pub use tls::{TlsError, TlsTrust};

use std::time::Duration;

/// Builds the one `reqwest::Client` a site's API client keeps for its lifetime, so connections
/// are reused across calls.
pub fn client(trust: &TlsTrust, connect_timeout: Duration) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .user_agent(concat!("drbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        // An API answer is never a redirect; following one would re-send a POST body to
        // wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(trust.client_config()?)
        .build()
        .map_err(|e| TlsError::Client(e.without_url().to_string()))
}

/// What went wrong below HTTP, in words: "connection refused", "timed out", "TLS: …".
///
/// `reqwest` puts the full URL (query string included, so the API key) into its `Display`;
/// this never does.
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    if err.is_timeout() {
        return "timed out".to_string();
    }
    // The innermost cause is the one that says what happened ("Connection refused (os error
    // 111)", "invalid peer certificate: UnknownIssuer").
    let mut source: Option<&dyn std::error::Error> = err.source();
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    let what = deepest.unwrap_or_else(|| {
        let mut e = String::new();
        let _ = std::fmt::Write::write_fmt(&mut e, format_args!("{}", ReqwestNoUrl(err)));
        e
    });
    if err.is_connect() {
        format!("cannot connect: {what}")
    } else {
        what
    }
}

struct ReqwestNoUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for ReqwestNoUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_body() || self.0.is_decode() {
            f.write_str("the response body could not be read")
        } else if self.0.is_request() {
            f.write_str("the request could not be sent")
        } else {
            f.write_str("HTTP error")
        }
    }
}

/// Whether a transport error proves the request never reached the server, so even a
/// mutation may be sent again.
pub fn never_sent(err: &reqwest::Error) -> bool {
    err.is_connect()
}

/// Whether an HTTP status is worth retrying for an idempotent read.
pub fn is_transient_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Remembers that a server could not be reached even after retries, so that for a while
/// calls try it once instead of waiting through the retries each time (a site in disaster is
/// asked on almost every primitive of a failover). Any answer from it clears the memory.
#[derive(Debug, Default)]
pub struct Unreachable {
    since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Unreachable {
    /// How long the memory lasts.
    pub const FOR: Duration = Duration::from_secs(30);

    /// Whether the server was found unreachable within the last [`Self::FOR`].
    pub fn recently(&self) -> bool {
        self.since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t.elapsed() < Self::FOR)
    }

    /// Records an outcome: unreachable (kept from the first time) or answered (forgotten).
    pub fn mark(&self, unreachable: bool) {
        let mut since = self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if unreachable {
            since.get_or_insert_with(std::time::Instant::now);
        } else {
            *since = None;
        }
    }
}
