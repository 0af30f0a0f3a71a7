//! What the Mold and Glue clients share about HTTP: TLS trust, the retry policy for reads, and
//! turning transport errors into words an operator can act on (without the request URL, which
//! carries the API key).

pub mod retry;
pub mod tls;
pub mod webhook;

pub use retry::RetryPolicy;
pub use tls::{TlsError, TlsTrust};

use crate::sync::Locked as _;
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
        .map_err(|e| TlsError::Client(strip_links(&e.without_url().to_string())))
}

/// What went wrong below HTTP, in words: "connection refused", "timed out", "TLS: …".
///
/// `reqwest` puts the full URL (query string included, so the API key) into its `Display`;
/// this never does. Nor does it keep a link some library put into its text (rustls ends its
/// "peer closed connection without sending TLS close_notify" with a docs.rs address): an
/// operator's error line names sites and settings, not documentation pages.
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
        deepest = Some(
            s.downcast_ref::<rustls::Error>()
                .and_then(describe_certificate_time)
                .unwrap_or_else(|| s.to_string()),
        );
        source = s.source();
    }
    let what = deepest.unwrap_or_else(|| ReqwestNoUrl(err).to_string());
    let what = strip_links(&what);
    if err.is_connect() {
        format!("cannot connect: {what}")
    } else {
        what
    }
}

/// rustls words an expired certificate with raw UNIX times ("verification time 1796118588
/// (UNIX), but certificate is not valid after 978307200 (817811388 seconds ago)"); this says
/// how long ago, in the duration grammar operators read everywhere else.
fn describe_certificate_time(err: &rustls::Error) -> Option<String> {
    use rustls::CertificateError;
    let rustls::Error::InvalidCertificate(cert) = err else {
        return None;
    };
    let human = |secs: u64| crate::duration::Human(Duration::from_secs(secs)).to_string();
    match cert {
        CertificateError::ExpiredContext { time, not_after } => Some(format!(
            "invalid peer certificate: it expired {} ago",
            human(time.as_secs().saturating_sub(not_after.as_secs()))
        )),
        CertificateError::NotValidYetContext { time, not_before } => Some(format!(
            "invalid peer certificate: it becomes valid only in {} (check this machine's clock)",
            human(not_before.as_secs().saturating_sub(time.as_secs()))
        )),
        _ => None,
    }
}

/// `text` without any `http://` or `https://` link, and without the separator that led to
/// it: `"peer closed connection without sending TLS close_notify: https://docs.rs/…"` becomes
/// `"peer closed connection without sending TLS close_notify"`.
pub fn strip_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_link(rest) {
        out.push_str(&rest[..at]);
        let link_len = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | '>' | '"' | '\'' | ','))
            .unwrap_or(rest.len() - at);
        rest = &rest[at + link_len..];
        // "…: <link>" or "… (see <link>)": drop what only introduced the link.
        let trimmed = out.trim_end();
        let trimmed = match trimmed.strip_suffix("see") {
            Some(before) if before.is_empty() || before.ends_with([' ', '(']) => before.trim_end(),
            _ => trimmed,
        };
        let trimmed = trimmed.trim_end_matches([':', ';', '-', ',']).trim_end();
        out.truncate(trimmed.len());
        if out.ends_with('(') && rest.starts_with(')') {
            out.pop();
            out.truncate(out.trim_end().len());
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

fn find_link(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("https://"), lower.find("http://")]
        .into_iter()
        .flatten()
        .min()
}

/// Whether a transport error's text means TLS met plain HTTP, or the reverse: rustls reads
/// an HTTP answer as "received corrupt message of type InvalidContentType", hyper reads a TLS
/// record as "invalid HTTP version parsed".
pub fn speaks_other_protocol(reason: &str) -> bool {
    ["InvalidContentType", "invalid HTTP version"]
        .iter()
        .any(|t| reason.contains(t))
}

/// A one-line account of a body that must not be quoted as it is: markup. An HTML page (a
/// proxy's or a login screen) is named by its `<title>` (else its first `<h1>`), as
/// `HTML page "503 Service Unavailable"`; other markup (Mold's XML, which would hold a DR
/// record's keys) is only named. `None` for a body that is not markup.
pub fn markup_summary(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    if !trimmed.starts_with('<') {
        return None;
    }
    // ASCII lower-casing keeps byte offsets, so they index `text` too.
    let lower = text.to_ascii_lowercase();
    let element = |tag: &str| {
        let open = lower.find(&format!("<{tag}"))?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find(&format!("</{tag}"))?;
        let inner = text[start..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (!inner.is_empty() && !inner.contains('<')).then_some(inner)
    };
    let is_html = lower.contains("<html")
        || lower.contains("<!doctype html")
        || lower.contains("<body")
        || lower.contains("<title");
    if !is_html {
        return Some("an XML or markup body (not shown)".to_string());
    }
    Some(match element("title").or_else(|| element("h1")) {
        Some(title) => {
            let mut title: String = strip_links(&title);
            if title.chars().count() > 60 {
                title = title.chars().take(60).collect::<String>() + "…";
            }
            format!("HTML page \"{title}\"")
        }
        None => "an HTML page without a title".to_string(),
    })
}

/// serde messages quote offending values (`invalid type: string "…"`); drop the quotes'
/// contents so nothing from a body (a DR record's keys, a Glue token) reaches an error.
pub fn unquote(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// A server's `Retry-After` in seconds (the HTTP-date form is not used by rate limiters in
/// front of Mold or Glue, and is ignored).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
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
        self.since.locked().is_some_and(|t| t.elapsed() < Self::FOR)
    }

    /// Records an outcome: unreachable (kept from the first time) or answered (forgotten).
    pub fn mark(&self, unreachable: bool) {
        let mut since = self.since.locked();
        if unreachable {
            since.get_or_insert_with(std::time::Instant::now);
        } else {
            *since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_cut_with_what_introduced_them() {
        assert_eq!(
            strip_links(
                "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof"
            ),
            "peer closed connection without sending TLS close_notify"
        );
        assert_eq!(
            strip_links("bad thing (see http://example.com/why) happened"),
            "bad thing happened"
        );
        assert_eq!(strip_links("a HTTPS://X.y b"), "a b");
        assert_eq!(strip_links("oversee https://x"), "oversee");
        assert_eq!(
            strip_links("nothing to cut: https"),
            "nothing to cut: https"
        );
        assert_eq!(strip_links("two: http://a, and https://b"), "two, and");
    }

    #[test]
    fn certificate_times_read_as_durations() {
        use rustls::pki_types::UnixTime;
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
            time: at(1_000_000 + 90_061),
            not_after: at(1_000_000),
        });
        assert_eq!(
            describe_certificate_time(&expired).as_deref(),
            Some("invalid peer certificate: it expired 1d1h1m1s ago")
        );
        let early =
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYetContext {
                time: at(1_000_000),
                not_before: at(1_000_000 + 120),
            });
        assert!(
            describe_certificate_time(&early)
                .is_some_and(|t| t.contains("in 2m") && t.contains("clock"))
        );
        let other = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(describe_certificate_time(&other), None);
    }

    #[test]
    fn markup_is_summarised_never_quoted() {
        let page = b"<html><head><title>503 Service Unavailable</title></head><body><p>secret</p></body></html>";
        assert_eq!(
            markup_summary(page).as_deref(),
            Some("HTML page \"503 Service Unavailable\"")
        );
        assert_eq!(
            markup_summary(b"<html><body><h1>Bad Gateway</h1></body></html>").as_deref(),
            Some("HTML page \"Bad Gateway\"")
        );
        assert_eq!(
            markup_summary(b"<html>bad gateway</html>").as_deref(),
            Some("an HTML page without a title")
        );
        assert_eq!(
            markup_summary(b"<TITLE>Login</TITLE>").as_deref(),
            Some("HTML page \"Login\"")
        );
        let xml = b"<?xml version=\"1.0\"?><listresponse><drclustersecretkey>SK</drclustersecretkey></listresponse>";
        let shown = markup_summary(xml).unwrap();
        assert!(!shown.contains("SK"), "{shown}");
        assert_eq!(markup_summary(b"rbd: error"), None);
        assert_eq!(markup_summary(br#"{"a":1}"#), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
