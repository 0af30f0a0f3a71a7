//! What can go wrong talking to a site's Glue API, in words an operator can act on.
//!
//! Every error names the site, the Glue call (`GET /mirror/image/status/rbd/<img>`) and, when
//! one answered, the storage VM endpoint. Glue answers a failed `rbd` command with HTTP 500 and
//! the CLI's own text; that text is kept verbatim in [`GlueErrorKind::Rbd`] so that callers can
//! match Ceph's strings (spec §5.7, §6.6) and operators can read them.

use std::fmt;

/// One failed Glue call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{site}: Glue {operation}{}: {kind}", EndpointSuffix(endpoint.as_deref()))]
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
    #[error("no Glue endpoint could be reached ({}); {}", Tried(tried), Tried(tried).hint())]
    Unreachable { tried: Vec<(String, String)> },

    /// Glue ran the command and it failed: its normal error channel (HTTP 500), holding the
    /// `rbd`/`ceph` output. An answer, not a transport fault: the client does not retry it;
    /// the caller decides from the text (some states pass, e.g. an image being re-created).
    #[error("{}", RbdText { message, exit_status: *exit_status })]
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

    /// Any other non-success HTTP status.
    #[error("HTTP {status}{}", Excerpt(body_excerpt))]
    Http { status: u16, body_excerpt: String },

    /// A read answered with a body that is not the JSON drbook expects.
    #[error("unexpected answer from Glue: {detail}")]
    Decode { detail: String },

    /// A read reached an endpoint but got no usable answer (timed out, connection reset), on
    /// every try.
    #[error("no usable answer: {reason}")]
    Transport { reason: String },

    /// A mutation failed after it may have reached Glue. It was not sent again.
    #[error(
        "{reason}; the request may have reached Glue and drbook did not re-send it: check the image status before trying again"
    )]
    OutcomeUnknown { reason: String },

    /// The site has no Glue endpoint configured.
    #[error("no Glue endpoint is configured for this site")]
    NoEndpoints,

    /// The client could not be built (bad endpoint URL, TLS set-up).
    #[error("cannot set up the Glue client: {detail}")]
    Setup { detail: String },

    /// An argument cannot be sent as given (an image name that is not a valid path segment,
    /// an empty image list). Nothing was sent.
    #[error("{detail}; nothing was sent")]
    InvalidArgument { detail: String },
}

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

/// At most this many characters of a body go into an error message.
const EXCERPT_CHARS: usize = 200;

/// The start of a response body as one line, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
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
        if self
            .0
            .iter()
            .any(|(_, reason)| reason.contains("certificate"))
        {
            "check the site's Glue TLS trust (glue_ca_file, or glue_insecure)"
        } else {
            "check that the storage VMs are up and their port is reachable from here"
        }
    }
}

impl fmt::Display for Tried<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (endpoint, reason)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{endpoint}: {}", one_line(reason))?;
        }
        Ok(())
    }
}

struct RbdText<'a> {
    message: &'a str,
    exit_status: Option<i32>,
}

impl fmt::Display for RbdText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = one_line(self.message);
        match (message.is_empty(), self.exit_status) {
            (false, Some(status)) => write!(f, "{message} (exit status {status})"),
            (false, None) => f.write_str(&message),
            (true, Some(status)) => write!(f, "the command failed with exit status {status}"),
            (true, None) => f.write_str(
                "Glue failed with HTTP 500 and an empty body (a Glue handler crashed, e.g. a \
                 peer operation with no peer configured); see /var/log/glue-api.log on the \
                 storage VM",
            ),
        }
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
             rbd: mirroring not enabled on the image (exit status 22)"
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
            shown.ends_with("remote cluster (exit status 16)"),
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
             (https://a:8080: cannot connect: refused; https://b:8080: timed out); check that \
             the storage VMs are up and their port is reachable from here"
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
        assert!(http.to_string().ends_with("HTTP 404 with an empty body"));
    }
}
