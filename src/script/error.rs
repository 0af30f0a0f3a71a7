//! The errors a script catches. A DR primitive that fails throws an `Error` object: `kind`
//! (a small, stable set runbooks decide on), `action`, `site`, `command`, `problem`,
//! `advice`, and `details` where there is more (a drill's report); its string is the one-line
//! message, so `${e}` reads as it always did. Runbooks decide on `e.kind`, never on the text.

use std::fmt;

use rhai::{Dynamic, EvalAltResult, Position};
use serde::Serialize;

use crate::dr::DrError;
use crate::glue::GlueErrorKind;
use crate::mold::MoldErrorKind;

/// What kind of failure, in the words runbooks test: `e.kind == "unknown"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A guard refused before anything was sent: nothing changed.
    Guard,
    /// Something a decision needs could not be read (a failed or garbled answer): nothing
    /// was sent.
    Unknown,
    /// The site accepted no connection; a mutation was provably not sent.
    Unreachable,
    /// A mutation may or may not have run (its answer was lost); it was not sent again.
    OutcomeUnknown,
    /// The site accepted the change, but a fresh read shows it did not take effect.
    NotApplied,
    /// Mold answered with an error of its own (its `errortext`), or its async job failed.
    Mold,
    /// Glue answered with an error (the `rbd` output).
    Glue,
    /// A rate limiter turned the request away on every try: it was not executed.
    RateLimited,
    /// A wait ran out.
    Timeout,
    /// No such site, DR cluster, VM or image (or an ambiguous name).
    NotFound,
    /// drbook's configuration does not allow it.
    Config,
    /// A primitive was called wrongly (an argument, an option, a var).
    Usage,
    /// SSH to a storage VM failed.
    Ssh,
    /// Ctrl-C cancelled a wait or a read.
    Interrupted,
    /// A drill ran and failed; `details` is its report.
    DrillFailed,
    /// The script stopped itself (`throw "…"`): what a caught string or map reports.
    Script,
}

impl ErrorKind {
    /// Every kind with what it means, for `drbook doc` and the README.
    pub const ALL: &'static [(ErrorKind, &'static str)] = &[
        (
            Self::Guard,
            "a guard refused before anything was sent: nothing changed",
        ),
        (
            Self::Unknown,
            "something the decision needs could not be read (a failed or garbled answer): nothing was sent",
        ),
        (
            Self::Unreachable,
            "the site accepted no connection; a mutation was provably not sent",
        ),
        (
            Self::OutcomeUnknown,
            "a mutation may or may not have run (its answer was lost); it was not sent again",
        ),
        (
            Self::NotApplied,
            "the site accepted the change, but a fresh read shows it did not take effect",
        ),
        (
            Self::Mold,
            "Mold answered with its own error (errortext), or its async job failed",
        ),
        (
            Self::Glue,
            "the storage answered with an error: rbd's output, from Glue or from rbd over SSH",
        ),
        (
            Self::RateLimited,
            "a rate limiter turned the request away on every try: it was not executed",
        ),
        (Self::Timeout, "a wait ran out"),
        (
            Self::NotFound,
            "no such site, DR cluster, VM or image (or an ambiguous name)",
        ),
        (Self::Config, "drbook's configuration does not allow it"),
        (
            Self::Usage,
            "a primitive or a runbook var was given something it cannot take",
        ),
        (Self::Ssh, "SSH to a storage VM failed"),
        (Self::Interrupted, "Ctrl-C cancelled a wait or a read"),
        (
            Self::DrillFailed,
            "a drill ran and failed; `details` is its report",
        ),
        (
            Self::Script,
            "the runbook stopped itself (throw \"…\"); a caught string also has this kind",
        ),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guard => "guard",
            Self::Unknown => "unknown",
            Self::Unreachable => "unreachable",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::NotApplied => "not_applied",
            Self::Mold => "mold",
            Self::Glue => "glue",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::NotFound => "not_found",
            Self::Config => "config",
            Self::Usage => "usage",
            Self::Ssh => "ssh",
            Self::Interrupted => "interrupted",
            Self::DrillFailed => "drill_failed",
            Self::Script => "script",
        }
    }

    /// The kind of a DR error.
    fn of(e: &DrError) -> Self {
        match e {
            DrError::Guard { .. } => Self::Guard,
            DrError::Unknown { .. }
            | DrError::StorageUnreadable {
                ssh_dark: false, ..
            } => Self::Unknown,
            DrError::NotFound { .. } | DrError::Ambiguous { .. } => Self::NotFound,
            DrError::Timeout { .. } => Self::Timeout,
            // An SSH session that broke after its command started: it may have run.
            DrError::OutcomeUnknown { .. } | DrError::Ssh(crate::ssh::SshError::Exec { .. }) => {
                Self::OutcomeUnknown
            }
            DrError::NotApplied { .. } => Self::NotApplied,
            DrError::Config(_) => Self::Config,
            DrError::Ssh(_) => Self::Ssh,
            DrError::Rbd { .. } => Self::Glue,
            DrError::StorageUnreadable { ssh_dark: true, .. } => Self::Unreachable,
            DrError::DrillFailed(_) => Self::DrillFailed,
            DrError::PartlyDone { .. } => Self::Mold,
            DrError::Mold(m) if m.is_rate_limited() => Self::RateLimited,
            DrError::Glue(g) if g.is_rate_limited() => Self::RateLimited,
            DrError::Mold(m) => match &m.kind {
                MoldErrorKind::Unreachable { .. } => Self::Unreachable,
                MoldErrorKind::Setup { .. } => Self::Config,
                MoldErrorKind::Fenced { .. } => Self::NotApplied,
                MoldErrorKind::OutcomeUnknown { .. }
                | MoldErrorKind::JobTimeout { .. }
                | MoldErrorKind::JobUnreadable { .. } => Self::OutcomeUnknown,
                // What only a read gets (a mutation's lost answer is an outcome unknown):
                // the state it asked for could not be read.
                MoldErrorKind::Http { .. }
                | MoldErrorKind::Decode { .. }
                | MoldErrorKind::Timeout { .. } => Self::Unknown,
                MoldErrorKind::Unauthorized { .. }
                | MoldErrorKind::Api { .. }
                | MoldErrorKind::JobFailed { .. } => Self::Mold,
            },
            DrError::Glue(g) => {
                if g.is_unreachable() {
                    return Self::Unreachable;
                }
                if g.is_outcome_unknown() {
                    return Self::OutcomeUnknown;
                }
                match g.kind.as_ref() {
                    GlueErrorKind::Rbd { .. } => Self::Glue,
                    GlueErrorKind::Http { status, .. } if *status < 500 => Self::Glue,
                    GlueErrorKind::NoEndpoints | GlueErrorKind::Setup { .. } => Self::Config,
                    GlueErrorKind::InvalidArgument { .. } => Self::Usage,
                    _ => Self::Unknown,
                }
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure as a script sees it (`type_of(e) == "Error"`).
#[derive(Debug, Clone, Serialize)]
pub struct ScriptError {
    pub kind: ErrorKind,
    /// What was being done (`promote DR cluster "DR"`), when known.
    pub action: Option<String>,
    pub site: Option<String>,
    /// The Mold command or Glue route, when one failed.
    pub command: Option<String>,
    /// What is wrong.
    pub problem: String,
    /// The next step, when there is one beyond the message.
    pub advice: Option<String>,
    /// The one-line message (`${e}`).
    pub message: String,
    /// More, where there is more (a drill's report).
    pub details: Option<serde_json::Value>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ScriptError {
    /// An error of `kind` with only a message (its problem too).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            kind,
            action: None,
            site: None,
            command: None,
            problem: message.clone(),
            advice: None,
            message,
            details: None,
        }
    }

    /// A DR error's parts, kept apart for the script.
    pub fn from_dr(e: &DrError) -> Self {
        let mut out = Self::new(ErrorKind::of(e), e.to_string());
        match e {
            DrError::Guard {
                action,
                problem,
                advice,
            } => {
                out.action = Some(action.clone());
                out.problem.clone_from(problem);
                out.advice = Some(advice.clone());
            }
            DrError::Unknown {
                action,
                what,
                unreadable,
                advice,
            } => {
                out.action = Some(action.clone());
                out.site = Some(unreadable.site.clone());
                out.command = Some(unreadable.command.clone());
                out.problem = format!("{what} is unknown: {unreadable}");
                out.advice = Some(advice.clone());
            }
            DrError::OutcomeUnknown {
                action,
                cause,
                found,
                advice,
            } => {
                out.action = Some(action.clone());
                out.problem = format!("{cause}; a fresh read shows: {found}");
                out.advice = Some(advice.clone());
            }
            DrError::NotApplied {
                action,
                found,
                advice,
            }
            | DrError::PartlyDone {
                action,
                found,
                advice,
                ..
            } => {
                out.action = Some(action.clone());
                out.problem.clone_from(found);
                out.advice = Some(advice.clone());
            }
            DrError::Timeout { what, .. } => {
                out.action = Some(format!("wait for {what}"));
            }
            DrError::Mold(m) => {
                out.site = Some(m.site.clone());
                out.command = Some(m.command.clone());
                out.problem = m.kind.to_string();
            }
            DrError::Glue(g) => {
                out.site = Some(g.site.clone());
                out.command = Some(g.operation.clone());
                out.problem = g.kind.to_string();
            }
            DrError::Rbd {
                site,
                command,
                output,
                ..
            } => {
                out.site = Some(site.clone());
                out.command = Some(command.clone());
                out.problem.clone_from(output);
            }
            DrError::StorageUnreadable { glue, .. } => {
                out.site = Some(glue.site.clone());
                out.command = Some(glue.operation.clone());
                out.problem = e.without_source();
            }
            DrError::DrillFailed(report) => {
                out.action = Some(format!("drill {}", report.vm));
                out.problem = report.summary();
                out.details = serde_json::to_value(report).ok();
            }
            DrError::Ssh(_)
            | DrError::NotFound { .. }
            | DrError::Ambiguous { .. }
            | DrError::Config(_) => {}
        }
        out
    }

    /// As a catchable script error.
    pub fn into_eval(self) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(
            Dynamic::from(self),
            Position::NONE,
        ))
    }
}

/// What a primitive or a script returns: a value, or the error it raised.
pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Why a run stops for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A yes was refused, or could not be asked for (exit 3).
    Refused,
    /// A second Ctrl-C, or a signal (exit 130 or 143).
    Interrupted,
    /// `fail()`, or what the host cannot go on after: a journal that cannot be written, a
    /// DR cluster another operator holds (exit 1).
    Failed,
}

/// What ends a run: carried as the value of Rhai's `ErrorTerminated`, so no `try` in the
/// script catches it, and read back by `drbook run`, the REPL and nested runs with
/// [`Stop::of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub reason: StopReason,
    pub message: String,
}

impl Stop {
    pub fn new(reason: StopReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(StopReason::Refused, message)
    }

    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(StopReason::Interrupted, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(StopReason::Failed, message)
    }

    /// As the error that ends the run.
    pub fn into_eval(self) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(self),
            Position::NONE,
        ))
    }

    /// The stop an error is, under the calls it came through.
    pub fn of(err: &EvalAltResult) -> Option<Stop> {
        match innermost(err) {
            EvalAltResult::ErrorTerminated(v, _) => v.read_lock::<Stop>().map(|s| s.clone()),
            _ => None,
        }
    }
}

/// An error that ends the run, for `reason`.
pub fn stop(reason: StopReason, message: &str) -> Box<EvalAltResult> {
    Stop::new(reason, message).into_eval()
}

/// An error and the calls it came through, outermost first: a call into a script function
/// or a module wraps what went wrong inside it.
pub fn chain(err: &EvalAltResult) -> impl Iterator<Item = &EvalAltResult> {
    std::iter::successors(Some(err), |e| match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => Some(&**inner),
        _ => None,
    })
}

/// What went wrong, under every call it came through.
pub fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    chain(err).last().unwrap_or(err)
}

/// A DR error as a catchable script error.
pub fn dr_error(e: &DrError) -> Box<EvalAltResult> {
    ScriptError::from_dr(e).into_eval()
}

/// A usage error (a wrong argument, option or var) as a catchable script error.
pub fn usage(message: impl Into<String>) -> Box<EvalAltResult> {
    ScriptError::new(ErrorKind::Usage, message).into_eval()
}

/// The kind of an error value: a `ScriptError`'s, `"script"` for what a script threw itself.
pub fn value_kind(value: &Dynamic) -> &'static str {
    value
        .read_lock::<ScriptError>()
        .map_or("script", |e| e.kind.as_str())
}

/// Why a condition could not be told, when that is what `err` is: an `unknown` or
/// `unreachable` error (a site could not be read), or a method called on an Unknown.
pub fn unknown_reason(err: &EvalAltResult) -> Option<String> {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(v, _) => v
            .read_lock::<ScriptError>()
            .filter(|e| matches!(e.kind, ErrorKind::Unknown | ErrorKind::Unreachable))
            .map(|e| e.message.clone()),
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.contains("Unknown") => Some(format!(
            "{sig} was called on a value drbook could not read (an Unknown)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mold::MoldError;

    fn engine() -> rhai::Engine {
        let mut e = rhai::Engine::new();
        crate::script::types::register_error(&mut e);
        e.register_fn("boom", || -> Result<(), Box<EvalAltResult>> {
            Err(dr_error(&DrError::guard(
                "promote DR cluster \"DR\"",
                "mirrored VM dr-centos-2 is Running on site-b",
                "stop it first",
            )))
        });
        e
    }

    #[test]
    fn a_caught_dr_error_has_its_kind_and_its_old_words() {
        let e = engine();
        let out: String = e
            .eval(r#"let out = ""; try { boom(); } catch (e) { out = `${e.kind}|${e.action}|${e}`; } out"#)
            .unwrap();
        assert_eq!(
            out,
            "guard|promote DR cluster \"DR\"|cannot promote DR cluster \"DR\": mirrored VM dr-centos-2 is Running on site-b — stop it first"
        );
        let kind: String = e
            .eval(r#"let k = (); try { throw "mine"; } catch (e) { k = e.kind; } k"#)
            .unwrap();
        assert_eq!(kind, "script");
    }

    #[test]
    fn an_uncaught_one_reads_as_its_message() {
        let err = engine().run("boom();").unwrap_err();
        let EvalAltResult::ErrorRuntime(v, _) = *err else {
            panic!("{err}");
        };
        assert!(crate::script::types::value_message(&v).starts_with("cannot promote"));
        assert_eq!(value_kind(&v), "guard");
    }

    #[test]
    fn kinds_follow_what_the_site_did() {
        let mold = |kind| {
            ErrorKind::of(&DrError::Mold(MoldError {
                site: "site-a".into(),
                command: "listVirtualMachines".into(),
                kind,
            }))
        };
        assert_eq!(
            mold(MoldErrorKind::Http {
                http_status: 503,
                excerpt: "HTML page".into()
            }),
            ErrorKind::Unknown
        );
        assert_eq!(
            mold(MoldErrorKind::Api {
                http_status: 429,
                errorcode: 429,
                cserrorcode: None,
                errortext: "You have reached the API rate limit. Please try again later.".into()
            }),
            ErrorKind::RateLimited
        );
        assert_eq!(
            mold(MoldErrorKind::Api {
                http_status: 530,
                errorcode: 530,
                cserrorcode: None,
                errortext: "x".into()
            }),
            ErrorKind::Mold
        );
        assert_eq!(
            mold(MoldErrorKind::Unreachable {
                url: "http://x".into(),
                reason: "refused".into(),
                connect: true,
            }),
            ErrorKind::Unreachable
        );
        // Every kind is documented once, under its own name.
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|(k, _)| k.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
    }
}
