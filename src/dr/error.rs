//! What can stop a DR primitive, in words an operator under stress can act on: what is wrong,
//! where, and what to do next. Every variant displays as one line. Mold's `errortext` and
//! Glue's `rbd` output are kept verbatim inside the client errors.

use std::fmt;
use std::time::Duration;

use super::unknown::{Api, Fact, Unreadable};
use crate::duration::Human;
use crate::glue::GlueError;
use crate::mold::{MoldError, MoldErrorKind};

/// A failed or refused DR primitive.
#[derive(Debug, thiserror::Error)]
pub enum DrError {
    /// Mold answered with an error (its `errortext` kept intact) or could not be reached.
    #[error(transparent)]
    Mold(#[from] MoldError),

    /// Glue answered with an error (the `rbd` output kept intact) or could not be reached.
    #[error(transparent)]
    Glue(#[from] GlueError),

    /// SSH to a storage VM failed.
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),

    /// An `rbd` command run over SSH on a storage VM failed: its exit status and rbd's own
    /// lines.
    #[error("site {site}: `{command}` failed (exit {status}): {output}")]
    Rbd {
        site: String,
        command: String,
        status: i32,
        output: String,
    },

    /// A storage read (`storage_read.rs`): no Glue endpoint of the site could be reached,
    /// and the same read over SSH (`command`) failed too (`ssh`: why; `ssh_dark`: no storage
    /// VM accepted an SSH connection either).
    #[error("{glue}; over SSH (`{command}`): {ssh}")]
    StorageUnreadable {
        glue: Box<GlueError>,
        command: String,
        ssh: String,
        ssh_dark: bool,
    },

    /// A guard refused before anything was sent: nothing changed.
    #[error("cannot {action}: {problem} — {advice}")]
    Guard {
        action: String,
        problem: String,
        advice: String,
    },

    /// Something the primitive must decide on (`what`) could not be read (a dark site, a
    /// failed or garbled answer): nothing was sent. The line ends with the client's own next
    /// step; `advice` is kept for scripts.
    #[error("cannot {action}: {unreadable}")]
    Unknown {
        action: String,
        what: String,
        unreadable: Box<Unreadable>,
        advice: String,
    },

    /// A site, DR cluster, VM or image that does not exist; `suggestions` are the closest
    /// names that do.
    #[error("no {what} {name:?}{}", Suggestions(suggestions))]
    NotFound {
        what: String,
        name: String,
        suggestions: Vec<String>,
    },

    /// A name that fits more than one thing.
    #[error("{name:?} is ambiguous ({what}): {} — give the id instead", candidates.join(", "))]
    Ambiguous {
        what: String,
        name: String,
        candidates: Vec<String>,
    },

    /// A wait ran out; `pending` says what was still not there.
    #[error("gave up waiting for {what} after {}: still pending: {}", Human(*waited), pending.join("; "))]
    Timeout {
        what: String,
        waited: Duration,
        pending: Vec<String>,
    },

    /// A mutation may or may not have run (its answer was lost). It was not sent again; drbook
    /// re-read the state and says what it found.
    #[error("{action}: {cause}; not sent again; now {found} — {advice}")]
    OutcomeUnknown {
        action: String,
        cause: String,
        found: String,
        advice: String,
    },

    /// The site accepted the change, but reading it back shows it did not take effect.
    #[error("{action}: accepted, but a fresh read shows {found} — {advice}")]
    NotApplied {
        action: String,
        found: String,
        advice: String,
    },

    /// Mold's job failed part-way (its own error kept, for `errortext`): a fresh read says
    /// what it left behind.
    #[error("{action}: Mold's job failed part-way ({}); now {found} — {advice}", .error.without_source_brief())]
    PartlyDone {
        action: String,
        found: String,
        advice: String,
        error: Box<DrError>,
    },

    /// A drill ran and failed (or ended with the VM away from where it started): the report
    /// says which step, whether the VM is back, and what is left.
    #[error("{}", .0.summary())]
    DrillFailed(Box<super::outcome::DrillReport>),

    /// drbook's own configuration does not allow the primitive (a site without Glue, a DR
    /// cluster pointing at an unconfigured Mold, …).
    #[error("{0}")]
    Config(String),
}

/// The refusal Mold's demote gives while a snapshot delta copies: its pre-check failed, so
/// nothing changed and asking again later is exactly what it says to do.
const TRY_AGAIN_LATER: &str = "Please try again later.";
/// How often a command is asked again after that refusal.
pub(crate) const LATER_ATTEMPTS: u32 = 5;

impl DrError {
    /// Whether Mold refused in a pre-check that asks to try again later. Mold's rate limiter
    /// (HTTP 429) ends its text the same way, but it is no pre-check: the client already retried
    /// it with backoff, and waiting for the copies would wait for nothing.
    pub(crate) fn says_try_again_later(&self) -> bool {
        !self.is_rate_limited()
            && self
                .errortext()
                .is_some_and(|t| t.ends_with(TRY_AGAIN_LATER))
    }

    pub(crate) fn guard(
        action: impl Into<String>,
        problem: impl Into<String>,
        advice: impl Into<String>,
    ) -> Self {
        Self::Guard {
            action: action.into(),
            problem: problem.into(),
            advice: advice.into(),
        }
    }

    /// A decision on `what` refused because `unreadable` could not be read.
    pub(crate) fn unknown(action: &str, what: &str, unreadable: &Unreadable) -> Self {
        Self::Unknown {
            action: action.to_string(),
            what: what.to_string(),
            advice: unreadable.advice(),
            unreadable: Box::new(unreadable.clone()),
        }
    }

    /// Why a mutation's outcome is unknown, without the client's own next step (the
    /// [`DrError::OutcomeUnknown`] built from it gives one, after re-reading the state).
    pub(crate) fn lost_answer(&self) -> String {
        match self {
            Self::Mold(e) => match &e.kind {
                MoldErrorKind::OutcomeUnknown { reason } => {
                    format!("no valid answer came back ({})", short_reason(reason))
                }
                MoldErrorKind::JobTimeout { jobid, waited } => {
                    format!("async job {jobid} was still running after {waited}")
                }
                MoldErrorKind::JobUnreadable { jobid, reason } => {
                    format!("job {jobid} accepted, its result unreadable ({reason})")
                }
                _ => self.to_string(),
            },
            Self::Glue(e) => match e.kind.as_ref() {
                crate::glue::GlueErrorKind::OutcomeUnknown { reason } => short_reason(reason),
                _ => self.to_string(),
            },
            _ => self.to_string(),
        }
    }

    /// The error without the site and call a client error starts with: what went wrong.
    pub(crate) fn without_source(&self) -> String {
        match self {
            Self::Mold(e) => e.kind.to_string(),
            Self::Glue(e) => e.kind.to_string(),
            Self::StorageUnreadable {
                glue, command, ssh, ..
            } => format!("{}; over SSH (`{command}`): {ssh}", glue.kind),
            other => other.to_string(),
        }
    }

    /// What went wrong in a few words, without the client's next step.
    fn without_source_brief(&self) -> String {
        match self {
            Self::Mold(e) => e.kind.brief(),
            other => other.without_source(),
        }
    }

    /// Mold's `errortext`, when Mold answered with one.
    pub fn errortext(&self) -> Option<&str> {
        match self {
            Self::Mold(e) => e.errortext(),
            Self::PartlyDone { error, .. } => error.errortext(),
            _ => None,
        }
    }

    /// Whether a rate limiter turned the request away (HTTP 429): it did not run.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::Mold(e) => e.is_rate_limited(),
            Self::Glue(e) => e.is_rate_limited(),
            _ => false,
        }
    }

    /// Whether a guard refused (and so nothing was sent).
    pub fn is_guard(&self) -> bool {
        matches!(self, Self::Guard { .. })
    }

    /// Whether a mutation may or may not have taken effect (its answer was lost and reading
    /// did not settle it): the journal marks it so, and `--resume` settles it by reading.
    pub fn in_doubt(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. }) || self.outcome_unknown()
    }

    /// Whether a mutation's outcome is unknown at the client level: the request may have run.
    /// The caller re-reads state and decides; it never re-sends.
    pub(crate) fn outcome_unknown(&self) -> bool {
        match self {
            Self::Mold(e) => matches!(
                e.kind,
                MoldErrorKind::OutcomeUnknown { .. }
                    | MoldErrorKind::JobTimeout { .. }
                    | MoldErrorKind::JobUnreadable { .. }
            ),
            Self::Glue(e) => e.is_outcome_unknown(),
            // The session broke after the command started: it may have run.
            Self::Ssh(e) => matches!(e, crate::ssh::SshError::Exec { .. }),
            _ => false,
        }
    }

    /// Whether the site did not accept a connection at all (as opposed to answering with an
    /// error): how "the site is lost" is told apart from "the site refused".
    pub(crate) fn is_unreachable(&self) -> bool {
        match self {
            Self::Mold(e) => matches!(e.kind, MoldErrorKind::Unreachable { .. }),
            Self::Glue(e) => e.is_unreachable(),
            // Glue accepted no connection: that is what the unknown's `dark` says of Glue.
            Self::StorageUnreadable { .. } => true,
            _ => false,
        }
    }

    /// Names the thing a Mold command acted on (`startVirtualMachine dr-centos-1`), so the
    /// one-line error says which VM Mold refused.
    pub(crate) fn about(self, target: &str) -> Self {
        match self {
            Self::Mold(mut e) if !target.is_empty() => {
                e.command = format!("{} {target}", e.command);
                Self::Mold(e)
            }
            other => other,
        }
    }
}

/// A lost answer's reason without the body excerpt it may quote (`HTTP 200: not JSON
/// ("{…")` → `HTTP 200: not JSON`): the excerpt says nothing an operator acts on.
fn short_reason(reason: &str) -> String {
    let cut = [reason.find(" ("), reason.find(": \"")]
        .into_iter()
        .flatten()
        .min();
    match cut {
        Some(i) => reason[..i].to_string(),
        None => reason.to_string(),
    }
}

/// `; closest: a, b` after a not-found name.
struct Suggestions<'a>(&'a [String]);

impl fmt::Display for Suggestions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; closest: {}", self.0.join(", "))
        }
    }
}

/// An unreadable fact's record, from the error of the read that failed (kept here, with the
/// errors it is made from, so that `unknown` imports nothing back).
impl Unreadable {
    /// From a failed read's error.
    pub(crate) fn new(site: &str, api: Api, command: &str, error: &DrError) -> Self {
        Self {
            site: site.to_string(),
            api,
            command: command.to_string(),
            error: error.without_source(),
            dark: error.is_unreachable(),
        }
    }
}

impl<T> Fact<T> {
    /// The value, or [`DrError::Unknown`] for `action` when it could not be read.
    pub fn require(self, action: &str, what: &str) -> Result<T, DrError> {
        match self {
            Fact::Known(v) => Ok(v),
            Fact::Unknown(u) => Err(DrError::unknown(action, what, &u)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_reads_as_one_actionable_line() {
        let e = DrError::guard(
            "promote DR cluster \"DR\"",
            "mirrored VM dr-centos-2 is Running on site-b",
            "stop it first (stop_vm(\"site-b\", \"dr-centos-2\"))",
        );
        assert_eq!(
            e.to_string(),
            "cannot promote DR cluster \"DR\": mirrored VM dr-centos-2 is Running on site-b — stop it first (stop_vm(\"site-b\", \"dr-centos-2\"))"
        );
        assert!(e.is_guard());
    }

    #[test]
    fn not_found_lists_the_closest() {
        let e = DrError::NotFound {
            what: "VM on site-a".into(),
            name: "dr-cento-1".into(),
            suggestions: vec!["dr-centos-1".into(), "dr-centos-2".into()],
        };
        assert_eq!(
            e.to_string(),
            "no VM on site-a \"dr-cento-1\"; closest: dr-centos-1, dr-centos-2"
        );
        let e = DrError::NotFound {
            what: "site".into(),
            name: "x".into(),
            suggestions: vec![],
        };
        assert_eq!(e.to_string(), "no site \"x\"");
    }

    #[test]
    fn mold_errors_keep_errortext_and_name_the_target() {
        let e = DrError::from(MoldError {
            site: "site-b".into(),
            command: "startVirtualMachine".into(),
            kind: MoldErrorKind::JobFailed {
                jobid: "j1".into(),
                errorcode: 530,
                errortext: "The virtual machine cannot be started because the mirroring image not ready status.".into(),
            },
        })
        .about("dr-centos-1");
        let shown = e.to_string();
        assert!(
            shown.starts_with("site-b: startVirtualMachine dr-centos-1: async job j1 failed: The virtual machine cannot be started"),
            "{shown}"
        );
        assert_eq!(
            e.errortext(),
            Some(
                "The virtual machine cannot be started because the mirroring image not ready status."
            )
        );
        assert!(!e.outcome_unknown());
    }

    #[test]
    fn timeout_names_what_is_pending() {
        let e = DrError::Timeout {
            what: "DR cluster \"DR\" to be synced".into(),
            waited: Duration::from_secs(90),
            pending: vec!["dr-centos-1: img-1 syncing 42%".into()],
        };
        assert_eq!(
            e.to_string(),
            "gave up waiting for DR cluster \"DR\" to be synced after 1m30s: still pending: dr-centos-1: img-1 syncing 42%"
        );
    }
}
