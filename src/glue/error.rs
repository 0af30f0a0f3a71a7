//! What can go wrong talking to a site's Glue API, in words an operator can act on.
//!
//! Every error names the site, the Glue call (`GET /mirror/image/status/rbd/<img>`) and, when
//! one answered, the storage VM endpoint, and ends with one step an operator can take; it is
//! one line, under [`MAX_LINE`] characters for realistic inputs. Glue answers a failed `rbd`
//! command with HTTP 500 and the CLI's own text; that text is kept verbatim in
//! [`GlueErrorKind::Rbd`] so that callers can match Ceph's strings (spec §5.7, §6.6) and
//! operators can read them (the message shows it whole when it fits, else its `rbd:` and
//! librbd error lines, cut with an ellipsis). A body that is markup (a proxy's error page) is
//! never quoted: it is named by its title.

use std::fmt;

/// The longest an error line should be, for realistic inputs.
pub const MAX_LINE: usize = 300;

/// One failed Glue call.
#[derive(Debug, Clone, PartialEq)]
pub struct GlueError {
    /// The site whose Glue was called.
    pub site: String,
    /// Method and path under `/api/v1`, e.g. `GET /mirror/image/status/rbd/<img>`.
    pub operation: String,
    /// The endpoint that answered (or was last tried), without credentials.
    pub endpoint: Option<String>,
    /// Boxed: errors travel through every `Result` of the client and are rarely built.
    pub kind: Box<GlueErrorKind>,
}

/// Why a Glue call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GlueErrorKind {
    /// No endpoint accepted a connection: every endpoint with the reason it failed.
    #[error("no Glue endpoint could be reached ({}): {}", Tried(tried), Tried(tried).hint())]
    Unreachable { tried: Vec<(String, String)> },

    /// Glue ran the command and it failed: its normal error channel (HTTP 500), holding the
    /// `rbd`/`ceph` output. An answer, not a transport fault: the client does not retry it;
    /// the caller decides from the text (some states pass, e.g. an image being re-created).
    #[error("{}", RbdText { message, exit_status: *exit_status, budget: RBD_LINE })]
    Rbd {
        http_status: u16,
        /// The `code` of Glue's JSON error body, when it sent one.
        code: Option<i64>,
        /// The `exit status N` Glue puts in front of the CLI output.
        exit_status: Option<i32>,
        /// The CLI output without that prefix; may span lines. Empty when a Glue handler
        /// crashed (HTTP 500 with an empty body).
        message: String,
    },

    /// Any other non-success HTTP status. A 429 (a rate limiter turned the request away
    /// before it ran) is this too, once the retries are spent.
    #[error("HTTP {status}{}: {}", Excerpt(body_excerpt), http_step(*status))]
    Http { status: u16, body_excerpt: String },

    /// A read answered with a body that is not the JSON drbook expects.
    #[error("unexpected answer from Glue ({detail}): {}", decode_step(detail))]
    Decode { detail: String },

    /// A read reached an endpoint but got no usable answer (connection reset, closed), on
    /// every try.
    #[error(
        "no usable answer ({reason}): the storage VM dropped the connection: check it with `drbook sites`, then retry"
    )]
    Transport { reason: String },

    /// A mutation held back before it was sent: the run's DR cluster lock is no longer
    /// certain ([`crate::fence`]). Nothing reached Glue.
    #[error("not sent: {reason}")]
    Fenced { reason: String },

    /// A read got no answer within the site's `glue_timeout`, on every try.
    #[error(
        "no answer within glue_timeout = {timeout}: check the storage VM with `drbook sites`; if rbd is only slow, raise glue_timeout for this site in drbook.toml"
    )]
    Timeout { timeout: String },

    /// A mutation failed after it may have reached Glue. It was not sent again.
    #[error(
        "{reason}; it may have reached Glue; drbook did not re-send it: check the image status before retrying"
    )]
    OutcomeUnknown { reason: String },

    /// The site has no Glue endpoint configured.
    #[error(
        "no Glue endpoint is configured for this site: add glue_urls (one per storage VM) to it in drbook.toml"
    )]
    NoEndpoints,

    /// The client could not be built (bad endpoint URL, TLS set-up).
    #[error(
        "cannot set up the Glue client ({detail}): check glue_urls and glue_ca_file for this site in drbook.toml"
    )]
    Setup { detail: String },

    /// An argument cannot be sent as given (an image name that is not a valid path segment,
    /// an empty image list). Nothing was sent.
    #[error("{detail}; nothing was sent: correct it and call again")]
    InvalidArgument { detail: String },
}

impl fmt::Display for GlueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = format!(
            "{}: Glue {}{}: ",
            self.site,
            self.operation,
            EndpointSuffix(self.endpoint.as_deref())
        );
        f.write_str(&prefix)?;
        match self.kind.as_ref() {
            // rbd's output is the one long text: it gets what the line has left.
            GlueErrorKind::Rbd {
                message,
                exit_status,
                ..
            } => write!(
                f,
                "{}",
                RbdText {
                    message,
                    exit_status: *exit_status,
                    budget: MAX_LINE.saturating_sub(prefix.chars().count()),
                }
            ),
            kind => write!(f, "{kind}"),
        }
    }
}

impl std::error::Error for GlueError {}

impl GlueError {
    /// The `rbd` output of a failed command, if this is one.
    pub fn rbd_message(&self) -> Option<&str> {
        match self.kind.as_ref() {
            GlueErrorKind::Rbd { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The `rbd` exit status of a failed command, if Glue reported one.
    pub fn exit_status(&self) -> Option<i32> {
        match self.kind.as_ref() {
            GlueErrorKind::Rbd { exit_status, .. } => *exit_status,
            _ => None,
        }
    }

    /// Whether `rbd` said the image (or the pool) is not mirrored.
    pub fn is_not_mirrored(&self) -> bool {
        self.rbd_message().is_some_and(|m| {
            m.contains("mirroring not enabled on the image")
                || m.contains("mirroring not enabled on the pool")
        })
    }

    /// Whether `rbd` could not open the image because it does not exist (also seen for a few
    /// seconds while a resync re-creates it).
    pub fn is_image_absent(&self) -> bool {
        self.rbd_message().is_some_and(|m| {
            m.contains("error opening image") && m.contains("No such file or directory")
        })
    }

    /// Whether a mutation may or may not have happened: re-read state before deciding.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(*self.kind, GlueErrorKind::OutcomeUnknown { .. })
    }

    /// Whether no endpoint of the site could be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(*self.kind, GlueErrorKind::Unreachable { .. })
    }

    /// Whether a rate limiter in front of Glue (HTTP 429) turned the request away, so it did
    /// not run, on every try: asking again later is safe, even for a mutation.
    pub fn is_rate_limited(&self) -> bool {
        matches!(*self.kind, GlueErrorKind::Http { status: 429, .. })
    }
}

/// Glue's error answer (HTTP 500), taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ErrorBody {
    /// `{"code": 500, "message": "exit status 22\nrbd: ..."}`.
    Json {
        code: Option<i64>,
        exit_status: Option<i32>,
        message: String,
    },
    /// Plain text, as `GET /mirror` sends `rbd: mirroring not enabled on the pool`.
    Text {
        exit_status: Option<i32>,
        message: String,
    },
    /// Nothing: a Glue handler panicked.
    Empty,
    /// Something else (an HTML page from a proxy, other JSON): not Glue's error channel.
    Other,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Wire {
            code: Option<i64>,
            message: String,
        }
        let text = String::from_utf8_lossy(body);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Self::Empty;
        }
        if let Ok(wire) = serde_json::from_str::<Wire>(trimmed) {
            let (exit_status, message) = split_exit_status(&wire.message);
            return Self::Json {
                code: wire.code,
                exit_status,
                message: message.to_string(),
            };
        }
        if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.starts_with('<') {
            return Self::Other;
        }
        let (exit_status, message) = split_exit_status(trimmed);
        Self::Text {
            exit_status,
            message: message.to_string(),
        }
    }
}

/// Splits Go's `exit status N` line off the front of the CLI output.
fn split_exit_status(message: &str) -> (Option<i32>, &str) {
    let trimmed = message.trim();
    let Some(rest) = trimmed.strip_prefix("exit status ") else {
        return (None, trimmed);
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    match rest[..digits].parse() {
        Ok(status) => (Some(status), rest[digits..].trim()),
        Err(_) => (None, trimmed),
    }
}

/// At most this many characters of a body go into an error message (the line must keep room
/// for the call, the endpoint and the next step).
const EXCERPT_CHARS: usize = 60;

/// The most characters rbd's output, its exit status and the next step take when the line's
/// start is not known (the kind shown on its own).
const RBD_LINE: usize = 200;

/// However long the rest of the line, rbd's error line gets at least this much.
const RBD_MIN_CHARS: usize = 60;

/// The start of a response body as one line, for an error message; markup (a proxy's HTML
/// page) only by its title.
pub(crate) fn excerpt(body: &[u8]) -> String {
    if let Some(summary) = crate::http::markup_summary(body) {
        return summary;
    }
    let text = one_line(&String::from_utf8_lossy(body));
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Multi-line CLI output as one line: blank lines dropped, repeated lines kept once (a failed
/// local promote prints its output twice).
pub(crate) fn one_line(text: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    seen.join("; ")
}

struct EndpointSuffix<'a>(Option<&'a str>);

impl fmt::Display for EndpointSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(endpoint) => write!(f, " ({endpoint})"),
            None => Ok(()),
        }
    }
}

struct Tried<'a>(&'a [(String, String)]);

impl Tried<'_> {
    /// What to check: a certificate problem is not fixed by starting a storage VM.
    fn hint(&self) -> &'static str {
        let any = |f: fn(&str) -> bool| self.0.iter().any(|(_, reason)| f(reason));
        if any(|r| r.contains("certificate")) {
            "check the site's Glue TLS trust (glue_ca_file, or glue_insecure)"
        } else if any(crate::http::speaks_other_protocol) {
            "the port speaks the other protocol: check the scheme (http or https) of glue_urls"
        } else {
            "check the storage VMs and the network to them"
        }
    }
}

impl fmt::Display for Tried<'_> {
    /// Endpoints that failed alike share one reason: `https://a:8080, https://b:8080:
    /// cannot connect: Connection refused (os error 111)`. Any link a library put into a
    /// reason is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (endpoint, reason) in self.0 {
            let reason = crate::http::strip_links(&one_line(reason));
            match groups.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, endpoints)) => endpoints.push(endpoint),
                None => groups.push((reason, vec![endpoint])),
            }
        }
        for (i, (reason, endpoints)) in groups.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {reason}", endpoints.join(", "))?;
        }
        Ok(())
    }
}

/// rbd's output, its exit status and what to do, in at most `budget` characters (rbd's
/// error line gets at least [`RBD_MIN_CHARS`] whatever the budget).
struct RbdText<'a> {
    message: &'a str,
    exit_status: Option<i32>,
    budget: usize,
}

impl fmt::Display for RbdText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self
            .exit_status
            .map(|s| format!(" (exit status {s})"))
            .unwrap_or_default();
        let step = rbd_step(self.message);
        let room = self
            .budget
            .saturating_sub(status.chars().count() + step.chars().count() + 3)
            .max(RBD_MIN_CHARS);
        let message = rbd_within(self.message, room);
        match (message.is_empty(), self.exit_status) {
            (false, _) => write!(f, "{message}{status}: {step}"),
            (true, Some(status)) => write!(
                f,
                "the command failed with exit status {status}: see /var/log/glue-api.log on the storage VM"
            ),
            (true, None) => f.write_str(
                "Glue failed with HTTP 500 and an empty body (a Glue handler crashed, e.g. a \
                 peer operation with no peer configured): see /var/log/glue-api.log on the \
                 storage VM",
            ),
        }
    }
}

/// rbd's output as one line of at most `budget` characters: verbatim when it fits; else its
/// error lines — `rbd: …` and librbd's (`handle_get_info: …`, without the log line's
/// timestamp, thread and module) — first, and an ellipsis where the rest was cut.
fn rbd_within(message: &str, budget: usize) -> String {
    let whole = one_line(message);
    if whole.chars().count() <= budget {
        return whole;
    }
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut important: Vec<String> = Vec::new();
    let mut push = |line: String| {
        if !important.contains(&line) {
            important.push(line);
        }
    };
    for line in lines.iter().filter(|l| l.starts_with("rbd:")) {
        push((*line).to_string());
    }
    for line in lines.iter().filter(|l| !l.starts_with("rbd:")) {
        push(without_log_prefix(line));
    }
    let compact = important.join("; ");
    if compact.chars().count() <= budget {
        return compact;
    }
    let keep = budget.saturating_sub(1);
    let mut cut: String = compact.chars().take(keep).collect();
    cut.truncate(cut.trim_end_matches([' ', ';']).len());
    cut.push('…');
    cut
}

/// `2024-06-24T10:00:00.000+0900 7f5c -1 librbd::mirror::PromoteRequest: 0x55 handle_get_info:
/// image is …` → `handle_get_info: image is …`: a Ceph log line without what only the log
/// needs. Any other line is kept as it is.
fn without_log_prefix(line: &str) -> String {
    let mut tokens = line.split_whitespace().peekable();
    let starts_dated = line
        .get(..5)
        .is_some_and(|d| d[..4].bytes().all(|b| b.is_ascii_digit()) && d.ends_with('-'));
    if !starts_dated {
        return line.to_string();
    }
    tokens.next();
    while let Some(token) = tokens.peek() {
        let noise = token.bytes().all(|b| b.is_ascii_hexdigit())
            || token.parse::<i64>().is_ok()
            || token.starts_with("0x")
            || (token.contains("::") && token.ends_with(':'));
        if !noise {
            break;
        }
        tokens.next();
    }
    let rest: Vec<&str> = tokens.collect();
    if rest.is_empty() {
        line.to_string()
    } else {
        rest.join(" ")
    }
}

/// What to do about a failed rbd command, from what rbd said.
fn rbd_step(message: &str) -> &'static str {
    let has = |t: &str| message.contains(t);
    if has("mirroring not enabled on the pool") {
        "pool mirroring is off on this site: check the DR cluster's pairing (`drbook run status`)"
    } else if has("mirroring not enabled on the image") {
        "this image is not mirrored: check the VM's DR mirroring (`drbook run status`)"
    } else if has("error opening image") && has("No such file or directory") {
        "no such image here (a resync briefly removes it): check the name, or read again"
    } else if has("primary within a remote cluster") {
        "demote the peer first, or retry later"
    } else if has("image is already primary") {
        "already primary here: check `drbook run status`"
    } else if has("error flagging image resync") {
        "only a non-primary copy can be resynced: check which site is primary (`drbook run status`)"
    } else {
        "see /var/log/glue-api.log on the storage VM for the full output"
    }
}

fn http_step(status: u16) -> &'static str {
    match status {
        429 => "a rate limiter turned the request away, so it was not executed: retry later",
        500..=599 => {
            "a proxy or a restarting Glue answered: check the storage VM with `drbook sites` and retry when it answers"
        }
        300..=399 => {
            "it redirects, and drbook does not follow redirects: check the scheme of glue_urls"
        }
        404 => {
            "no such Glue route there: check glue_urls (each a storage VM's address and port only)"
        }
        _ => "Glue refused the request as sent, so nothing ran: check the call and glue_urls",
    }
}

fn decode_step(detail: &str) -> &'static str {
    if detail.ends_with("instead of JSON") || detail.starts_with("expected value") {
        "check that glue_urls points at Glue itself, not at a proxy or a login page"
    } else {
        "this Glue build answers in a shape drbook does not know: report it with the call above"
    }
}

struct Excerpt<'a>(&'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str(" with an empty body")
        } else {
            write!(f, ": {}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: GlueErrorKind) -> GlueError {
        GlueError {
            site: "site-b".into(),
            operation: "GET /mirror/image/status/rbd/abc".into(),
            endpoint: Some("https://10.0.0.1:8080".into()),
            kind: Box::new(kind),
        }
    }

    #[test]
    fn glue_json_error_keeps_the_rbd_text_and_the_exit_status() {
        let body =
            br#"{"code":500,"message":"exit status 22\nrbd: mirroring not enabled on the image"}"#;
        assert_eq!(
            ErrorBody::parse(body),
            ErrorBody::Json {
                code: Some(500),
                exit_status: Some(22),
                message: "rbd: mirroring not enabled on the image".into(),
            }
        );
    }

    #[test]
    fn raw_text_and_empty_bodies_are_recognised() {
        assert_eq!(
            ErrorBody::parse(b"rbd: mirroring not enabled on the pool\n"),
            ErrorBody::Text {
                exit_status: None,
                message: "rbd: mirroring not enabled on the pool".into()
            }
        );
        assert_eq!(ErrorBody::parse(b""), ErrorBody::Empty);
        assert_eq!(ErrorBody::parse(b"  \n"), ErrorBody::Empty);
        assert_eq!(
            ErrorBody::parse(b"<html>bad gateway</html>"),
            ErrorBody::Other
        );
        assert_eq!(ErrorBody::parse(br#"{"error":"x"}"#), ErrorBody::Other);
    }

    #[test]
    fn message_without_exit_status_is_kept_whole() {
        assert_eq!(
            split_exit_status("rbd: error opening image x: (2) No such file or directory"),
            (
                None,
                "rbd: error opening image x: (2) No such file or directory"
            )
        );
        assert_eq!(split_exit_status("exit status 1"), (Some(1), ""));
        assert_eq!(
            split_exit_status("exit status x\nrbd"),
            (None, "exit status x\nrbd")
        );
    }

    #[test]
    fn display_is_one_line_with_site_operation_and_endpoint() {
        let e = error(GlueErrorKind::Rbd {
            http_status: 500,
            code: Some(500),
            exit_status: Some(22),
            message: "rbd: mirroring not enabled on the image".into(),
        });
        assert_eq!(
            e.to_string(),
            "site-b: Glue GET /mirror/image/status/rbd/abc (https://10.0.0.1:8080): \
             rbd: mirroring not enabled on the image (exit status 22): this image is not \
             mirrored: check the VM's DR mirroring (`drbook run status`)"
        );
        assert!(e.is_not_mirrored());
        assert!(!e.is_image_absent());
        assert_eq!(e.exit_status(), Some(22));
    }

    #[test]
    fn repeated_promote_output_prints_once() {
        let body = "exit status 16\nrbd: error promoting image to primary\n\
                    2024-06-24T10:00:00 handle_get_info: image is primary within a remote cluster\n\
                    rbd: error promoting image to primary\n";
        let ErrorBody::Json {
            exit_status,
            message,
            ..
        } = ErrorBody::parse(
            serde_json::json!({"code": 500, "message": body})
                .to_string()
                .as_bytes(),
        )
        else {
            panic!("not recognised as Glue's error body");
        };
        let shown = error(GlueErrorKind::Rbd {
            http_status: 500,
            code: Some(500),
            exit_status,
            message,
        })
        .to_string();
        assert!(!shown.contains('\n'));
        assert_eq!(shown.matches("error promoting image").count(), 1);
        assert!(
            shown.contains("remote cluster (exit status 16): demote the peer"),
            "{shown}"
        );
    }

    #[test]
    fn empty_500_says_a_handler_crashed() {
        let e = error(GlueErrorKind::Rbd {
            http_status: 500,
            code: None,
            exit_status: None,
            message: String::new(),
        });
        assert!(e.to_string().contains("Glue handler crashed"));
    }

    #[test]
    fn unreachable_lists_every_endpoint_and_has_no_endpoint_suffix() {
        let mut e = error(GlueErrorKind::Unreachable {
            tried: vec![
                ("https://a:8080".into(), "cannot connect: refused".into()),
                ("https://b:8080".into(), "timed out".into()),
            ],
        });
        e.endpoint = None;
        assert_eq!(
            e.to_string(),
            "site-b: Glue GET /mirror/image/status/rbd/abc: no Glue endpoint could be reached \
             (https://a:8080: cannot connect: refused; https://b:8080: timed out): check the \
             storage VMs and the network to them"
        );
        assert!(e.is_unreachable());
    }

    #[test]
    fn unreachable_for_a_certificate_points_at_tls_trust() {
        let e = error(GlueErrorKind::Unreachable {
            tried: vec![(
                "https://a:8080".into(),
                "cannot connect: invalid peer certificate: UnknownIssuer".into(),
            )],
        });
        assert!(
            e.to_string()
                .ends_with("check the site's Glue TLS trust (glue_ca_file, or glue_insecure)"),
            "{e}"
        );
    }

    #[test]
    fn outcome_unknown_tells_what_to_do() {
        let e = error(GlueErrorKind::OutcomeUnknown {
            reason: "timed out".into(),
        });
        let shown = e.to_string();
        assert!(shown.contains("may have reached Glue"));
        assert!(shown.contains("did not re-send"));
        assert!(shown.contains("check the image status"));
        assert!(e.is_outcome_unknown());
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        let long = "x".repeat(1000);
        let ex = excerpt(long.as_bytes());
        assert_eq!(ex.chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt(b"a\n\nb\n"), "a; b");
        let http = error(GlueErrorKind::Http {
            status: 404,
            body_excerpt: String::new(),
        });
        assert!(
            http.to_string()
                .contains("HTTP 404 with an empty body: no such Glue route there"),
            "{http}"
        );
    }
}

#[cfg(test)]
mod line_tests {
    //! Every message: one line, under [`MAX_LINE`] for realistic inputs, ending with a next
    //! step, and without a link other than the configured endpoint.

    use super::*;

    const IMAGE: &str = "6f1c1d8e-1b0e-4c1e-9d1b-3a3d4d7b2f10";
    const ENDPOINT: &str = "https://10.10.22.11:8080";
    /// Glue's answer to a promote while the peer is primary, as two real clusters print it
    /// (librbd's log line comes with its timestamp, thread, level and module).
    const PROMOTE_BUSY: &str = "rbd: error promoting image to primary\n2024-06-24T10:00:00.123+0900 7f5c2a7fe640 -1 librbd::mirror::PromoteRequest: 0x55d0c8a1e2c0 handle_get_info: image is primary within a remote cluster or demotion is not propagated yet\nrbd: error promoting image to primary\n";

    fn error(operation: &str, endpoint: Option<&str>, kind: GlueErrorKind) -> GlueError {
        GlueError {
            site: "site-b".into(),
            operation: operation.into(),
            endpoint: endpoint.map(str::to_string),
            kind: Box::new(kind),
        }
    }

    fn rbd(exit_status: Option<i32>, message: &str) -> GlueErrorKind {
        GlueErrorKind::Rbd {
            http_status: 500,
            code: Some(500),
            exit_status,
            message: message.into(),
        }
    }

    fn every_kind() -> Vec<GlueError> {
        let promote = format!("POST /mirror/image/promote/peer/rbd/{IMAGE}");
        let status = format!("GET /mirror/image/status/rbd/{IMAGE}");
        let at = Some(ENDPOINT);
        let refused = "cannot connect: Connection refused (os error 111)";
        vec![
            error(&promote, at, rbd(Some(16), PROMOTE_BUSY)),
            error(
                &promote,
                at,
                rbd(
                    Some(22),
                    "rbd: error promoting image to primary\n2024-06-24T10:00:00.123+0900 7f5c2a7fe640 -1 librbd::mirror::PromoteRequest: 0x55d0c8a1e2c0 handle_get_info: image is already primary",
                ),
            ),
            error(
                &status,
                at,
                rbd(
                    Some(2),
                    &format!("rbd: error opening image {IMAGE}: (2) No such file or directory"),
                ),
            ),
            error(
                &status,
                at,
                rbd(Some(22), "rbd: mirroring not enabled on the image"),
            ),
            error(
                "GET /mirror",
                at,
                rbd(None, "rbd: mirroring not enabled on the pool"),
            ),
            error(
                &promote,
                at,
                rbd(Some(22), "rbd: error flagging image resync"),
            ),
            error(
                &promote,
                at,
                rbd(Some(1), &"rbd: something long happened; ".repeat(20)),
            ),
            error(&promote, at, rbd(Some(5), "")),
            error(&promote, at, rbd(None, "")),
            error(
                &status,
                None,
                GlueErrorKind::Unreachable {
                    tried: vec![
                        ("https://10.10.22.11:8080".into(), refused.into()),
                        ("https://10.10.22.12:8080".into(), refused.into()),
                        ("https://10.10.22.13:8080".into(), refused.into()),
                    ],
                },
            ),
            error(
                &status,
                None,
                GlueErrorKind::Unreachable {
                    tried: vec![(
                        ENDPOINT.into(),
                        "cannot connect: invalid peer certificate: UnknownIssuer".into(),
                    )],
                },
            ),
            error(
                &status,
                None,
                GlueErrorKind::Unreachable {
                    tried: vec![(
                        ENDPOINT.into(),
                        "cannot connect: received corrupt message of type InvalidContentType"
                            .into(),
                    )],
                },
            ),
            error(
                &promote,
                at,
                GlueErrorKind::Http {
                    status: 429,
                    body_excerpt: "slow down".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Http {
                    status: 503,
                    body_excerpt: "HTML page \"503 Service Unavailable\"".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Http {
                    status: 502,
                    body_excerpt: format!("{}…", "x".repeat(EXCERPT_CHARS)),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Http {
                    status: 404,
                    body_excerpt: "404 page not found".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Http {
                    status: 301,
                    body_excerpt: String::new(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Http {
                    status: 400,
                    body_excerpt: String::new(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Decode {
                    detail: "HTML page \"Login\" instead of JSON".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Decode {
                    detail: "missing field `peer_sites` at line 1 column 200".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Transport {
                    reason: "peer closed connection without sending TLS close_notify".into(),
                },
            ),
            error(
                &status,
                at,
                GlueErrorKind::Timeout {
                    timeout: "3m".into(),
                },
            ),
            error(
                &promote,
                at,
                GlueErrorKind::OutcomeUnknown {
                    reason: format!("Glue answered HTTP 502: {}…", "y".repeat(EXCERPT_CHARS)),
                },
            ),
            error(
                &promote,
                at,
                GlueErrorKind::OutcomeUnknown {
                    reason: "no answer (timed out after glue_timeout = 3m)".into(),
                },
            ),
            error("client set-up", None, GlueErrorKind::NoEndpoints),
            error(
                "client set-up",
                None,
                GlueErrorKind::Setup {
                    detail: "TLS set-up failed: no usable certificate".into(),
                },
            ),
            error(
                "POST /mirror/image/promote/rbd/..",
                None,
                GlueErrorKind::InvalidArgument {
                    detail: "image name \"..\" cannot be used in a Glue URL".into(),
                },
            ),
        ]
    }

    #[test]
    fn every_message_is_one_short_line_ending_with_a_next_step() {
        let steps = [
            "check",
            "retry",
            "raise",
            "see ",
            "add ",
            "correct",
            "report",
            "demote",
            "read again",
        ];
        for e in every_kind() {
            let shown = e.to_string();
            let n = shown.chars().count();
            assert!(n < MAX_LINE, "{n} chars: {shown}");
            assert!(!shown.contains('\n'), "{shown}");
            assert!(shown.starts_with("site-b: Glue "), "{shown}");
            let step = shown.rsplit(": ").next().unwrap();
            assert!(
                steps.iter().any(|s| step.contains(s)),
                "no next step at the end: {shown}"
            );
            let links = shown.matches("http://").count() + shown.matches("https://").count();
            let configured = shown.matches("https://10.10.22.1").count();
            assert_eq!(links, configured, "a link other than an endpoint: {shown}");
        }
    }

    #[test]
    fn long_rbd_output_keeps_its_error_lines() {
        let e = error(
            &format!("POST /mirror/image/promote/peer/rbd/{IMAGE}"),
            Some(ENDPOINT),
            rbd(Some(16), PROMOTE_BUSY),
        );
        let shown = e.to_string();
        assert!(
            shown.contains("rbd: error promoting image to primary"),
            "{shown}"
        );
        assert!(
            shown.contains("handle_get_info: image is primary within a remote cluster"),
            "{shown}"
        );
        assert!(shown.contains("(exit status 16)"), "{shown}");
        assert_eq!(shown.matches("rbd: error promoting").count(), 1, "{shown}");
        // The text callers match is untouched.
        assert_eq!(e.rbd_message(), Some(PROMOTE_BUSY));

        let long = error(
            "GET /mirror",
            Some(ENDPOINT),
            rbd(Some(1), &"rbd: something long happened; ".repeat(20)),
        );
        let shown = long.to_string();
        assert!(
            shown.contains("rbd: something long happened") && shown.contains('…'),
            "{shown}"
        );

        // What fits is shown verbatim, timestamp and all.
        let short = "rbd: x\n2024-06-24T10:00:00 handle_get_info: y";
        let e = error("GET /mirror", None, rbd(None, short));
        assert!(
            e.to_string()
                .contains("rbd: x; 2024-06-24T10:00:00 handle_get_info: y"),
            "{e}"
        );
    }

    #[test]
    fn log_prefixes_are_dropped_only_from_log_lines() {
        assert_eq!(
            without_log_prefix(
                "2024-06-24T10:00:00.123+0900 7f5c2a7fe640 -1 librbd::mirror::PromoteRequest: 0x55d0c8a1e2c0 handle_get_info: image is already primary"
            ),
            "handle_get_info: image is already primary"
        );
        assert_eq!(without_log_prefix("rbd: error"), "rbd: error");
        assert_eq!(without_log_prefix("2024 was a year"), "2024 was a year");
    }

    #[test]
    fn endpoints_that_failed_alike_share_one_reason() {
        let shown = error(
            "GET /mirror",
            None,
            GlueErrorKind::Unreachable {
                tried: vec![
                    ("https://a:8080".into(), "cannot connect: refused".into()),
                    ("https://b:8080".into(), "cannot connect: refused".into()),
                    ("https://c:8080".into(), "timed out".into()),
                ],
            },
        )
        .to_string();
        assert!(
            shown.contains("(https://a:8080, https://b:8080: cannot connect: refused; https://c:8080: timed out)"),
            "{shown}"
        );
    }

    #[test]
    fn a_rate_limited_call_says_it_did_not_run() {
        let e = error(
            "POST /mirror/image/promote/rbd/x",
            Some(ENDPOINT),
            GlueErrorKind::Http {
                status: 429,
                body_excerpt: String::new(),
            },
        );
        assert!(e.is_rate_limited());
        assert!(!e.is_outcome_unknown());
        let shown = e.to_string();
        assert!(
            shown.contains("rate limit")
                && shown.contains("not executed")
                && shown.ends_with("retry later"),
            "{shown}"
        );
        let busy = error(
            "GET /mirror",
            Some(ENDPOINT),
            GlueErrorKind::Http {
                status: 503,
                body_excerpt: String::new(),
            },
        );
        assert!(!busy.is_rate_limited());
    }
}
