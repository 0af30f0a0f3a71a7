//! The Mold client's one error type: which site, which command, what Mold said, and what to
//! do next.
//!
//! Every message is one line that ends with one step an operator can take. Mold's own
//! `errortext` is quoted verbatim (runbooks and operators match its exact words); nothing else
//! from a response body is, beyond a summary (an HTML page's title), and no request URL
//! ever is (it carries the API key).

use super::sign::SignatureAlgorithm;

/// A failed Mold call. Displays as `site-b: promoteDisasterRecoveryCluster: <what happened>:
/// <what to do>`.
#[derive(Debug, thiserror::Error)]
#[error("{site}: {command}: {kind}")]
pub struct MoldError {
    pub site: String,
    pub command: String,
    pub kind: MoldErrorKind,
}

/// The text Mold's rate limiter and its DR pre-checks both end with.
const TRY_AGAIN_LATER: &str = "Please try again later.";

/// What went wrong, in words an operator can act on. Never carries a secret: bodies that may
/// hold one (DR records echo the peer's keys) are never quoted.
#[derive(Debug, thiserror::Error)]
pub enum MoldErrorKind {
    /// No connection could be made (`connect`), or, for a read, the answer was lost on
    /// every try.
    #[error("cannot reach Mold at {url} ({reason}): {}", unreachable_step(reason))]
    Unreachable {
        url: String,
        reason: String,
        /// No connection was accepted (refused, or not within `connect_timeout`): the site
        /// looks dark, and asking again at once would only wait.
        connect: bool,
    },

    /// The client could not be built (the TLS set-up). Nothing was sent.
    #[error(
        "cannot set up the Mold client ({detail}): check ca_file and insecure for this site in drbook.toml"
    )]
    Setup { detail: String },

    #[error(
        "Mold refused the request: {errortext} (HTTP 401): check api_key and secret_key for this site, and that signature = \"{algorithm}\" is what this Mold verifies"
    )]
    Unauthorized {
        errortext: String,
        algorithm: SignatureAlgorithm,
    },

    /// Mold's own error envelope: its answer, with its `errortext`.
    #[error("{errortext} ({}): {}", Codes(*errorcode, *http_status), api_step(*http_status, *errorcode, errortext))]
    Api {
        http_status: u16,
        errorcode: i64,
        cserrorcode: Option<i64>,
        errortext: String,
    },

    /// Something other than Mold's API layer answered (a proxy's error page, a web server).
    #[error(
        "Mold answered HTTP {http_status} without an API response ({excerpt}): {}",
        http_step(*http_status)
    )]
    Http { http_status: u16, excerpt: String },

    #[error(
        "Mold's answer (HTTP {http_status}) is not a valid API response: {detail}: {}",
        decode_step(detail)
    )]
    Decode { http_status: u16, detail: String },

    /// A read got no answer in time, on every try (a mutation's lost answer is
    /// [`MoldErrorKind::OutcomeUnknown`]).
    #[error(
        "no answer within timeout = {timeout}: check Mold with `drbook sites`; if it is only slow, raise timeout for this site in drbook.toml"
    )]
    Timeout { timeout: String },

    #[error(
        "the request may have reached Mold, but no valid answer came back ({reason}); drbook did not send it again: check `drbook run status` before retrying"
    )]
    OutcomeUnknown { reason: String },

    /// A mutation held back before it was sent: the run's DR cluster lock is no longer
    /// certain ([`crate::fence`]). Nothing reached Mold.
    #[error("not sent: {reason}")]
    Fenced { reason: String },

    #[error(
        "async job {jobid} failed: {errortext} (Mold errorcode {errorcode}): check `drbook run status` before retrying"
    )]
    JobFailed {
        jobid: String,
        errorcode: i64,
        errortext: String,
    },

    #[error(
        "async job {jobid} was still running after {waited} (job_timeout); it may still finish: check it with queryAsyncJobResult jobid={jobid} before retrying"
    )]
    JobTimeout { jobid: String, waited: String },

    /// The command was accepted as an async job, then the job could not be read: whether it
    /// ran is unknown.
    #[error(
        "accepted as async job {jobid}, then its result could not be read ({reason}); it may have run: check `drbook run status` before retrying"
    )]
    JobUnreadable { jobid: String, reason: String },
}

impl MoldErrorKind {
    /// What went wrong in a few words, without a next step: for errors that give their own
    /// (an outcome unknown because a job's poll failed).
    pub fn brief(&self) -> String {
        if self.is_rate_limited() {
            return "rate limited, HTTP 429".into();
        }
        match self {
            Self::Unreachable { .. } => "no connection".into(),
            Self::Setup { .. } => "the client could not be set up".into(),
            Self::Fenced { .. } => "not sent: the run lock was lost".into(),
            Self::Unauthorized { .. } => "credentials refused".into(),
            Self::Api { errortext, .. } | Self::JobFailed { errortext, .. } => {
                let mut t: String = errortext.chars().take(80).collect();
                if errortext.chars().count() > 80 {
                    t.push('…');
                }
                t
            }
            Self::Http { http_status, .. } => format!("HTTP {http_status}, not Mold's API"),
            Self::Decode { http_status, .. } => format!("HTTP {http_status}, garbled"),
            Self::Timeout { timeout } => format!("no answer within {timeout}"),
            Self::OutcomeUnknown { reason } | Self::JobUnreadable { reason, .. } => reason.clone(),
            Self::JobTimeout { waited, .. } => format!("still running after {waited}"),
        }
    }
}

/// What to check when no connection could be made: a certificate or a scheme mismatch is
/// not fixed by starting Mold.
fn unreachable_step(reason: &str) -> &'static str {
    if reason.contains("certificate") {
        "check this site's TLS trust (ca_file, or insecure) in drbook.toml"
    } else if crate::http::speaks_other_protocol(reason) {
        "this port speaks the other protocol: check the scheme (http or https) of mold_url"
    } else {
        "check mold_url and that Mold is running (`drbook sites`)"
    }
}

fn api_step(http_status: u16, errorcode: i64, errortext: &str) -> &'static str {
    if http_status == 429 || errorcode == 429 {
        "Mold's rate limiter turned the request away, so it was not executed: retry later"
    } else if matches!(errorcode, 430 | 431) {
        "nothing ran: check the arguments"
    } else if errorcode == 432 {
        "this Mold does not offer the command: check that its DR service is on (cloud.dr.service.enabled) and the API key's role"
    } else if errortext.trim_end().ends_with(TRY_AGAIN_LATER) {
        "Mold's pre-check refused, nothing ran: retry once that copy is idle"
    } else {
        "check `drbook run status` before retrying"
    }
}

/// `Mold errorcode 530`, with the HTTP status only when it differs (an error inside a 200).
struct Codes(i64, u16);

impl std::fmt::Display for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(errorcode, http_status) = *self;
        if errorcode == i64::from(http_status) {
            write!(f, "Mold errorcode {errorcode}")
        } else {
            write!(f, "Mold errorcode {errorcode}, HTTP {http_status}")
        }
    }
}

fn http_step(http_status: u16) -> &'static str {
    match http_status {
        429 => "a rate limiter turned the request away, so it was not executed: retry later",
        500..=599 => "a proxy or a restarting Mold answered: retry once `drbook sites` shows it up",
        300..=399 => {
            "it redirects, and drbook does not follow redirects: check the scheme and path of mold_url"
        }
        404 => "nothing serves Mold's API there: check mold_url (Mold answers at <url>/client/api)",
        _ => "check that mold_url points at Mold itself, not at a proxy or another service",
    }
}

fn decode_step(detail: &str) -> &'static str {
    if detail.starts_with("not JSON")
        || detail.starts_with("expected a JSON object")
        || detail.starts_with("expected exactly one top-level key")
    {
        "check that mold_url points at Mold itself, not at a proxy or another service"
    } else {
        "this Mold build answers in a shape drbook does not know: report it with the version `drbook sites` shows"
    }
}

impl MoldErrorKind {
    /// Whether an idempotent read may be tried again: the network, a timeout, rate limiting,
    /// or a 5xx that did not come from Mold's API layer (a proxy, a restarting server). Mold's
    /// own error envelope is its answer and is not retried.
    pub fn is_transient_for_read(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::OutcomeUnknown { .. } => true,
            Self::Http { http_status, .. } | Self::Decode { http_status, .. } => {
                crate::http::is_transient_status(*http_status)
            }
            Self::Api { http_status, .. } => {
                self.is_rate_limited() || matches!(http_status, 502..=504)
            }
            Self::Setup { .. }
            | Self::Fenced { .. }
            | Self::Unauthorized { .. }
            | Self::JobFailed { .. }
            | Self::JobTimeout { .. }
            | Self::JobUnreadable { .. } => false,
        }
    }

    /// Whether a mutation may be sent again: only when it provably did not run — it never
    /// left (connection refused) or a rate limiter (Mold's, or one in front of it: HTTP 429)
    /// turned it away before dispatch.
    pub fn proves_not_executed(&self) -> bool {
        matches!(self, Self::Unreachable { .. }) || self.is_rate_limited()
    }

    /// Whether a rate limiter refused the request: Mold's (HTTP 429 or errorcode 429, "You
    /// have reached the API rate limit. Please try again later."), or one in front of it
    /// answering 429. Not Mold's DR pre-checks that also end with "Please try again later."
    /// (errorcode 530): those are its answer about the mirroring state.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::Api {
                http_status,
                errorcode,
                ..
            } => *http_status == 429 || *errorcode == 429,
            Self::Http { http_status, .. } => *http_status == 429,
            _ => false,
        }
    }
}

impl MoldError {
    /// Mold's `errortext`, when Mold answered with one.
    pub fn errortext(&self) -> Option<&str> {
        match &self.kind {
            MoldErrorKind::Api { errortext, .. }
            | MoldErrorKind::JobFailed { errortext, .. }
            | MoldErrorKind::Unauthorized { errortext, .. } => Some(errortext),
            _ => None,
        }
    }

    /// Whether a rate limiter turned the request away (so it did not run), as opposed to
    /// Mold's DR pre-check refusing it with a text that also ends "Please try again later."
    /// (see [`MoldErrorKind::is_rate_limited`]).
    pub fn is_rate_limited(&self) -> bool {
        self.kind.is_rate_limited()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest texts Mold really sends (spec: 431 on an unknown id, the start guard).
    const LONG_431: &str = "Invalid parameter id value=0b6f1b2e-1111-2222-3333-444455556666 due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class.";
    const START_GUARD: &str = "The virtual machine cannot be started because the image syncing process for the mirroring virtual machine has not completed.";
    const RATE_LIMIT: &str = "You have reached the API rate limit. Please try again later.";
    const PRE_CHECK: &str = "Forced demote functions cannot be executed because peer state is syncing in volume path : 6f1c1d8e-1b0e-4c1e-9d1b-3a3d4d7b2f10. Please try again later.";
    const JOB_ID: &str = "3c5e7a4e-7f65-4b7a-9f0b-2d55c7e3a1f0";

    fn error(command: &str, kind: MoldErrorKind) -> MoldError {
        MoldError {
            site: "site-b".into(),
            command: command.into(),
            kind,
        }
    }

    fn api(status: u16, code: i64, text: &str) -> MoldErrorKind {
        MoldErrorKind::Api {
            http_status: status,
            errorcode: code,
            cserrorcode: Some(9999),
            errortext: text.into(),
        }
    }

    /// One of every kind, with the longest realistic inputs.
    fn every_kind() -> Vec<MoldError> {
        let c = "promoteDisasterRecoveryCluster";
        let url = "https://mold.site-b.example:8443/client/api";
        vec![
            error(c, MoldErrorKind::Unreachable {
                url: url.into(),
                reason: "cannot connect: Connection refused (os error 111)".into(),
                connect: true,
            }),
            error(c, MoldErrorKind::Unreachable {
                url: url.into(),
                reason: "cannot connect: invalid peer certificate: UnknownIssuer".into(),
                connect: true,
            }),
            error(c, MoldErrorKind::Unreachable {
                url: url.into(),
                reason: "cannot connect: received corrupt message of type InvalidContentType".into(),
                connect: true,
            }),
            error("(set-up)", MoldErrorKind::Setup {
                detail: "cannot read CA file /etc/drbook/site-b-mold-ca.pem: No such file or directory (os error 2)".into(),
            }),
            error(c, MoldErrorKind::Unauthorized {
                errortext: "unable to verify user credentials and/or request signature".into(),
                algorithm: SignatureAlgorithm::Sha256,
            }),
            error(c, api(431, 431, LONG_431)),
            error(c, api(432, 432, "The given command does not exist or it is not available for user")),
            error(c, api(429, 429, RATE_LIMIT)),
            error(c, api(530, 530, PRE_CHECK)),
            error(c, api(530, 530, "Internal error executing command, please contact your system administrator")),
            error("listVirtualMachines", MoldErrorKind::Http {
                http_status: 503,
                excerpt: "HTML page \"503 Service Unavailable\"".into(),
            }),
            error("listVirtualMachines", MoldErrorKind::Http {
                http_status: 502,
                excerpt: format!("\"{}…\"", "x".repeat(80)),
            }),
            error("listVirtualMachines", MoldErrorKind::Http { http_status: 429, excerpt: "empty body".into() }),
            error("listVirtualMachines", MoldErrorKind::Http { http_status: 404, excerpt: "HTML page \"404 Not Found\"".into() }),
            error("listVirtualMachines", MoldErrorKind::Http { http_status: 302, excerpt: "empty body".into() }),
            error("listVirtualMachines", MoldErrorKind::Http { http_status: 403, excerpt: "HTML page \"Forbidden\"".into() }),
            error("getDisasterRecoveryClusterList", MoldErrorKind::Decode {
                http_status: 200,
                detail: format!("not JSON (\"{}…\")", "y".repeat(80)),
            }),
            error("getDisasterRecoveryClusterList", MoldErrorKind::Decode {
                http_status: 200,
                detail: "unexpected \"disasterrecoverycluster\": missing field `drclustertype`".into(),
            }),
            error("getDisasterRecoveryClusterList", MoldErrorKind::Timeout { timeout: "2m".into() }),
            error(c, MoldErrorKind::OutcomeUnknown {
                reason: format!("HTTP 502: \"{}…\"", "z".repeat(80)),
            }),
            error("startDisasterRecoveryClusterVm", MoldErrorKind::OutcomeUnknown {
                reason: "timed out after long_timeout = 45m".into(),
            }),
            error("startVirtualMachine dr-centos-12", MoldErrorKind::JobFailed {
                jobid: JOB_ID.into(),
                errorcode: 530,
                errortext: START_GUARD.into(),
            }),
            error(c, MoldErrorKind::JobTimeout { jobid: JOB_ID.into(), waited: "2h".into() }),
            error(c, MoldErrorKind::JobUnreadable {
                jobid: JOB_ID.into(),
                reason: "HTTP 503, not Mold's API".into(),
            }),
        ]
    }

    #[test]
    fn every_message_is_one_line_under_300_with_a_next_step() {
        let steps = ["check", "retry", "raise", "report"];
        for e in every_kind() {
            let shown = e.to_string();
            assert!(
                shown.chars().count() < 300,
                "{} chars: {shown}",
                shown.chars().count()
            );
            assert!(!shown.contains('\n'), "{shown}");
            assert!(shown.starts_with("site-b: "), "{shown}");
            let step = shown.rsplit(": ").next().unwrap();
            assert!(
                steps.iter().any(|s| step.contains(s)),
                "no next step at the end: {shown}"
            );
            let links = shown.matches("http://").count() + shown.matches("https://").count();
            let configured =
                usize::from(shown.contains("https://mold.site-b.example:8443/client/api"));
            assert_eq!(
                links, configured,
                "a link other than the site's URL: {shown}"
            );
        }
    }

    #[test]
    fn molds_texts_are_quoted_verbatim() {
        for e in every_kind() {
            if let Some(text) = e.errortext() {
                assert!(e.to_string().contains(text), "{e}");
            }
        }
    }

    #[test]
    fn the_rate_limiter_is_told_apart_from_the_pre_check() {
        let limited = error("demoteDisasterRecoveryCluster", api(429, 429, RATE_LIMIT));
        assert!(limited.is_rate_limited());
        assert!(limited.kind.proves_not_executed());
        let shown = limited.to_string();
        assert!(shown.contains(RATE_LIMIT), "{shown}");
        assert!(
            shown.contains("rate limit")
                && shown.contains("not executed")
                && shown.ends_with("retry later"),
            "{shown}"
        );
        // An errorcode 429 inside an HTTP 200, and a proxy's bare 429, are rate limits too.
        assert!(api(200, 429, RATE_LIMIT).is_rate_limited());
        let proxy = MoldErrorKind::Http {
            http_status: 429,
            excerpt: "empty body".into(),
        };
        assert!(proxy.is_rate_limited() && proxy.proves_not_executed());
        assert!(proxy.to_string().contains("not executed"), "{proxy}");

        let pre_check = error("demoteDisasterRecoveryCluster", api(530, 530, PRE_CHECK));
        assert!(
            pre_check
                .errortext()
                .unwrap()
                .ends_with("Please try again later.")
        );
        assert!(!pre_check.is_rate_limited());
        assert!(!pre_check.kind.proves_not_executed());
        assert!(pre_check.to_string().contains("pre-check"), "{pre_check}");
        for other in [
            MoldErrorKind::Timeout {
                timeout: "2m".into(),
            },
            MoldErrorKind::Http {
                http_status: 503,
                excerpt: "empty body".into(),
            },
        ] {
            assert!(!other.is_rate_limited(), "{other}");
        }
    }

    #[test]
    fn timeouts_name_the_setting() {
        let read = MoldErrorKind::Timeout {
            timeout: "2m".into(),
        }
        .to_string();
        assert!(read.contains("raise timeout"), "{read}");
        let job = MoldErrorKind::JobTimeout {
            jobid: "j".into(),
            waited: "2h".into(),
        }
        .to_string();
        assert!(job.contains("job_timeout"), "{job}");
    }

    #[test]
    fn a_proxy_5xx_says_check_and_retry() {
        let e = error(
            "listVirtualMachines",
            MoldErrorKind::Http {
                http_status: 503,
                excerpt: "HTML page \"503 Service Unavailable\"".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "site-b: listVirtualMachines: Mold answered HTTP 503 without an API response (HTML page \"503 Service Unavailable\"): a proxy or a restarting Mold answered: retry once `drbook sites` shows it up"
        );
    }
}
