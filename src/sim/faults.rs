//! Injected faults: what a flaky network, an overloaded Mold or a crashing Glue looks like to
//! drbook — per site, per API, per command; once, N times, or at a rate.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Which API of a site a fault hits (and a mutation reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Mold,
    Glue,
    /// The storage VMs' SSH (command lines, [`super::ssh::shell`]): counted in mutations;
    /// no fault is injected there (a disaster makes it unreachable).
    Ssh,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An HTTP 5xx (`status`, default 503) with a proxy's HTML page.
    ServerError,
    /// HTTP 429 (Mold: its rate-limit envelope).
    RateLimit,
    /// The answer comes `latency` late.
    Latency,
    /// The connection is dropped before the request is handled.
    Reset,
    /// No answer at all, and the request is not handled (the client's timeout decides).
    Timeout,
    /// HTTP 200 with a body that is not valid JSON.
    MalformedJson,
    /// An HTML error page with status `status` (default 503).
    HtmlPage,
    /// The request succeeds, but the async job it starts fails (Mold only).
    FailedJob,
    /// The request is handled in full (its effect applied, its job submitted), then its
    /// answer is lost: the connection is dropped, after `latency` if given (so a client's
    /// timeout can end it first). What a crash or a cut link after the work looks like.
    LostAnswer,
}

/// A fault as `POST /fault` takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub site: String,
    pub api: Api,
    /// A Mold command name, or a substring of a Glue route (`/mirror/image/promote`);
    /// absent: every request.
    #[serde(default)]
    pub command: Option<String>,
    pub kind: FaultKind,
    /// How many requests it hits (default 1 unless `rate` is given, then unlimited).
    #[serde(default)]
    pub times: Option<u32>,
    /// The chance (0–1) that a matching request is hit.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub status: Option<u16>,
    /// For `latency` (and, optionally, `lost_answer`): e.g. `"2s"`.
    #[serde(default)]
    pub latency: Option<String>,
    /// For `failed_job`: the job's errortext.
    #[serde(default)]
    pub message: Option<String>,
}

/// What the server does with a request a fault hit.
pub enum FaultAction {
    None,
    Respond(Response),
    Delay(Duration),
    FailJob(String),
    /// Handle the request, then hold its answer this long and drop the connection.
    LoseAnswer(Duration),
}

#[derive(Debug, Default)]
pub struct Faults {
    active: Vec<(FaultSpec, Option<u32>)>,
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) -> Result<(), String> {
        if let Some(r) = spec.rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err("rate must be between 0 and 1".into());
        }
        if spec.kind == FaultKind::Latency {
            let l = spec
                .latency
                .as_deref()
                .ok_or("a latency fault needs \"latency\"")?;
            crate::duration::parse(l).map_err(|e| e.to_string())?;
        }
        if spec.kind == FaultKind::LostAnswer
            && let Some(l) = spec.latency.as_deref()
        {
            crate::duration::parse(l).map_err(|e| e.to_string())?;
        }
        if spec.api == Api::Ssh {
            return Err(
                "the simulator injects no faults into SSH: a disaster makes a site's storage VMs unreachable"
                    .into(),
            );
        }
        if spec.kind == FaultKind::FailedJob && spec.api != Api::Mold {
            return Err("failed_job applies to Mold only".into());
        }
        let remaining = match (spec.times, spec.rate) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(1),
        };
        self.active.push((spec, remaining));
        Ok(())
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    pub fn list(&self) -> Vec<FaultSpec> {
        self.active.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Consumes the first fault matching this request, if any.
    pub fn take(&mut self, site: &str, api: Api, command: &str) -> Option<FaultSpec> {
        let index = self.active.iter().position(|(spec, remaining)| {
            spec.site == site
                && spec.api == api
                && remaining.is_none_or(|n| n > 0)
                && spec.command.as_deref().is_none_or(|c| match api {
                    Api::Mold => c.eq_ignore_ascii_case(command),
                    Api::Glue | Api::Ssh => command.contains(c),
                })
        })?;
        let (spec, remaining) = &mut self.active[index];
        if let Some(r) = spec.rate
            && fastrand::f64() >= r
        {
            return None;
        }
        let spec = spec.clone();
        if let Some(n) = remaining {
            *n -= 1;
            if *n == 0 {
                self.active.remove(index);
            }
        }
        Some(spec)
    }
}

impl FaultSpec {
    /// The action for a request this fault hit; `key` is Mold's envelope key.
    pub fn action(&self, key: &str) -> FaultAction {
        let status = StatusCode::from_u16(self.status.unwrap_or(503))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        match self.kind {
            FaultKind::ServerError | FaultKind::HtmlPage => FaultAction::Respond(html(status)),
            FaultKind::RateLimit => FaultAction::Respond(match self.api {
                Api::Mold => {
                    let body = serde_json::json!({ key: {"uuidList": [], "errorcode": 429, "cserrorcode": 9999,
                        "errortext": "You have reached the API rate limit. Please try again later."}});
                    (StatusCode::TOO_MANY_REQUESTS, body.to_string()).into_response()
                }
                Api::Glue | Api::Ssh => {
                    (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()
                }
            }),
            FaultKind::Latency => FaultAction::Delay(self.latency_or(Duration::from_secs(1))),
            FaultKind::LostAnswer => FaultAction::LoseAnswer(self.latency_or(Duration::ZERO)),
            FaultKind::Reset => FaultAction::Respond(reset_response()),
            FaultKind::Timeout => FaultAction::Respond(no_answer()),
            FaultKind::MalformedJson => FaultAction::Respond(
                (
                    StatusCode::OK,
                    format!("{{\"{key}\": {{\"count\": 1, \"truncated"),
                )
                    .into_response(),
            ),
            FaultKind::FailedJob => FaultAction::FailJob(
                self.message
                    .clone()
                    .unwrap_or_else(|| "Simulated failure of the async job".into()),
            ),
        }
    }

    /// `latency` as a duration (checked when the fault was added), else `default`.
    fn latency_or(&self, default: Duration) -> Duration {
        self.latency
            .as_deref()
            .and_then(|l| crate::duration::parse(l).ok())
            .unwrap_or(default)
    }
}

/// What a `lost_answer` fault does once the handler has run: the answer is discarded and,
/// after `hold`, the connection dropped.
pub async fn lose_answer(answer: Response, hold: Duration) -> Response {
    drop(answer);
    tokio::time::sleep(hold).await;
    reset_response()
}

fn html(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut r = (
        status,
        format!(
            "<html><head><title>{} {reason}</title></head><body><h1>{reason}</h1><hr><center>nginx</center></body></html>",
            status.as_u16()
        ),
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/html"));
    r
}

/// A response whose body fails at once: hyper drops the connection mid-answer, which the
/// client sees as a reset.
pub fn reset_response() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-length", HeaderValue::from_static("1024"));
    r
}

/// A response that never comes.
fn no_answer() -> Response {
    let stream = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("content-length", HeaderValue::from_static("1024"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            site: "site-a".into(),
            api: Api::Mold,
            command: Some("listVirtualMachines".into()),
            kind,
            times: None,
            rate: None,
            status: None,
            latency: None,
            message: None,
        }
    }

    #[test]
    fn once_by_default_then_gone() {
        let mut f = Faults::default();
        f.add(spec(FaultKind::ServerError)).unwrap();
        assert!(f.take("site-a", Api::Mold, "startVirtualMachine").is_none());
        assert!(f.take("site-b", Api::Mold, "listVirtualMachines").is_none());
        assert!(f.take("site-a", Api::Glue, "listVirtualMachines").is_none());
        assert!(f.take("site-a", Api::Mold, "listvirtualmachines").is_some());
        assert!(f.take("site-a", Api::Mold, "listVirtualMachines").is_none());
    }

    #[test]
    fn n_times_and_rates() {
        let mut f = Faults::default();
        f.add(FaultSpec {
            times: Some(3),
            ..spec(FaultKind::Reset)
        })
        .unwrap();
        let hits = (0..10)
            .filter(|_| f.take("site-a", Api::Mold, "listVirtualMachines").is_some())
            .count();
        assert_eq!(hits, 3);
        f.add(FaultSpec {
            rate: Some(1.0),
            ..spec(FaultKind::Reset)
        })
        .unwrap();
        assert!((0..5).all(|_| f.take("site-a", Api::Mold, "listVirtualMachines").is_some()));
        f.clear();
        f.add(FaultSpec {
            rate: Some(0.0),
            ..spec(FaultKind::Reset)
        })
        .unwrap();
        assert!(f.take("site-a", Api::Mold, "listVirtualMachines").is_none());
        assert!(
            f.add(FaultSpec {
                rate: Some(2.0),
                ..spec(FaultKind::Reset)
            })
            .is_err()
        );
        assert!(f.add(spec(FaultKind::Latency)).is_err());
    }

    #[test]
    fn a_lost_answer_may_hold_the_answer_first() {
        let mut f = Faults::default();
        for api in [Api::Mold, Api::Glue] {
            f.add(FaultSpec {
                api,
                ..spec(FaultKind::LostAnswer)
            })
            .unwrap();
        }
        assert!(
            f.add(FaultSpec {
                latency: Some("soon".into()),
                ..spec(FaultKind::LostAnswer)
            })
            .is_err()
        );
        let held = |latency: Option<&str>| {
            let s = FaultSpec {
                latency: latency.map(Into::into),
                ..spec(FaultKind::LostAnswer)
            };
            match s.action("listvirtualmachinesresponse") {
                FaultAction::LoseAnswer(d) => Some(d),
                _ => None,
            }
        };
        assert_eq!(held(None), Some(Duration::ZERO));
        assert_eq!(held(Some("2s")), Some(Duration::from_secs(2)));
    }

    #[test]
    fn glue_commands_match_route_substrings() {
        let mut f = Faults::default();
        f.add(FaultSpec {
            api: Api::Glue,
            command: Some("/mirror/image/promote".into()),
            ..spec(FaultKind::ServerError)
        })
        .unwrap();
        assert!(f.take("site-a", Api::Glue, "GET /api/v1/mirror").is_none());
        assert!(
            f.take(
                "site-a",
                Api::Glue,
                "POST /api/v1/mirror/image/promote/rbd/x"
            )
            .is_some()
        );
    }
}
