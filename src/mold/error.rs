//! The Mold client's one error type: which site, which command, what Mold said.

use super::sign::SignatureAlgorithm;

/// A failed Mold call. Displays as `site-b: promoteDisasterRecoveryCluster: <what happened>`.
#[derive(Debug, thiserror::Error)]
#[error("{site}: {command}: {kind}")]
pub struct MoldError {
    pub site: String,
    pub command: String,
    pub kind: MoldErrorKind,
}

/// What went wrong, in words an operator can act on. Never carries a secret: bodies that may
/// hold one (DR records echo the peer's keys) are never quoted.
#[derive(Debug, thiserror::Error)]
pub enum MoldErrorKind {
    #[error("cannot reach Mold at {url} ({reason}): check mold_url and that Mold is running")]
    Unreachable { url: String, reason: String },

    #[error(
        "Mold refused the request: {errortext} (HTTP 401): check api_key and secret_key for this site, and that signature = \"{algorithm}\" is what this Mold verifies"
    )]
    Unauthorized {
        errortext: String,
        algorithm: SignatureAlgorithm,
    },

    #[error("{errortext} (Mold errorcode {errorcode}, HTTP {http_status})")]
    Api {
        http_status: u16,
        errorcode: i64,
        cserrorcode: Option<i64>,
        errortext: String,
    },

    #[error("Mold answered HTTP {http_status} without an API response: {excerpt}")]
    Http { http_status: u16, excerpt: String },

    #[error("Mold's answer (HTTP {http_status}) is not a valid API response: {detail}")]
    Decode { http_status: u16, detail: String },

    #[error("no answer within {timeout}")]
    Timeout { timeout: String },

    #[error(
        "the request may have reached Mold, but no valid answer came back ({reason}); drbook did not send it again: check the current state before retrying"
    )]
    OutcomeUnknown { reason: String },

    #[error("async job {jobid} failed: {errortext} (Mold errorcode {errorcode})")]
    JobFailed {
        jobid: String,
        errorcode: i64,
        errortext: String,
    },

    #[error(
        "async job {jobid} was still running after {waited}; it may still finish: check it with queryAsyncJobResult jobid={jobid} before retrying"
    )]
    JobTimeout { jobid: String, waited: String },
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
            Self::Api {
                http_status,
                errorcode,
                ..
            } => *http_status == 429 || *errorcode == 429 || matches!(http_status, 502..=504),
            Self::Unauthorized { .. } | Self::JobFailed { .. } | Self::JobTimeout { .. } => false,
        }
    }

    /// Whether a mutation may be sent again: only when it provably did not run — it never
    /// left (connection refused) or Mold's rate limiter turned it away before dispatch.
    pub fn proves_not_executed(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api {
                http_status,
                errorcode,
                ..
            } => *http_status == 429 || *errorcode == 429,
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
}
