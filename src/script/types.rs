//! The script-visible types (`Site`, `DrCluster`, `Vm`, `MirrorStatus`, `VmMirror`,
//! `DrillReport`, `RunReport`, `Time`): getters, readable `to_string`, and `to_json()`.
//! None of them holds a secret.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde::Serialize;

use super::convert::to_dynamic;
use super::error::{ErrorKind, ScriptError};
use super::host::Host;
use crate::dr::{
    AtRisk, DrCluster, DrillReport, Fact, MirrorStatus, SiteInfo, Unreadable, Vm, VmMirror,
    VolumeMirror,
};
use crate::report::RunReport;

/// A fact drbook could not read, as scripts see it (`type_of(x) == "Unknown"`): it prints
/// with its reason, and comparing or negating it throws an `unknown` error naming what could
/// not be read, so no decision is taken on it by accident. `is_unknown(x)` tests for it.
#[derive(Debug, Clone)]
pub struct Unknown(pub Arc<Unreadable>);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown ({})", self.0)
    }
}

impl Unknown {
    /// What a decision on this value gets: an `unknown` error.
    fn refuse<T>(&self) -> Result<T, Box<EvalAltResult>> {
        Err(self.refuse_with(format!(
            "a decision needs a value drbook could not read: {}; test for it with is_unknown() first",
            self.0
        ))
        .into_eval())
    }

    /// `require_known(value, what)`'s error: `what` could not be read.
    pub fn refuse_for(&self, what: &str) -> Box<EvalAltResult> {
        self.refuse_with(format!("{what} is unknown: {}", self.0))
            .into_eval()
    }

    fn refuse_with(&self, message: String) -> ScriptError {
        let u = &self.0;
        let mut e = ScriptError::new(ErrorKind::Unknown, message);
        e.site = Some(u.site.clone());
        e.command = Some(u.command.clone());
        e.problem = u.to_string();
        e.advice = Some(u.advice());
        e
    }
}

/// A fact as a script value: the value, or an [`Unknown`].
pub fn fact<T>(f: &Fact<T>, known: impl FnOnce(&T) -> Dynamic) -> Dynamic {
    match f {
        Fact::Known(v) => known(v),
        Fact::Unknown(u) => Dynamic::from(Unknown(u.clone())),
    }
}

fn opt_time(t: Option<&DateTime<Utc>>) -> Dynamic {
    t.map_or(Dynamic::UNIT, |t| {
        Dynamic::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// One volume as a map (the fields of `VolumeMirror`), its unknowns as [`Unknown`]s.
pub fn volume_map(v: &VolumeMirror) -> Map {
    let text = |s: &String| Dynamic::from(s.clone());
    let mut m = Map::new();
    m.insert("type".into(), v.kind.clone().into());
    m.insert("path".into(), v.path.clone().into());
    m.insert("primary_state".into(), v.primary_state.clone().into());
    m.insert("dr_state".into(), v.dr_state.clone().into());
    m.insert(
        "primary_description".into(),
        v.primary_description.clone().into(),
    );
    m.insert("dr_description".into(), v.dr_description.clone().into());
    m.insert(
        "primary_role".into(),
        fact(&v.primary_role, |r| r.as_str().into()),
    );
    m.insert("dr_role".into(), fact(&v.dr_role, |r| r.as_str().into()));
    m.insert(
        "primary_seen_from_dr".into(),
        fact(&v.primary_seen_from_dr, text),
    );
    m.insert(
        "primary_state_seen_from_dr".into(),
        fact(&v.primary_state_seen_from_dr, text),
    );
    m.insert("synced".into(), fact(&v.synced, |b| (*b).into()));
    m.insert(
        "last_snapshot".into(),
        fact(&v.last_snapshot, |t| opt_time(t.as_ref())),
    );
    m.insert(
        "lag".into(),
        fact(&v.lag, |l| {
            l.map_or(Dynamic::UNIT, |l| Dynamic::from(l.num_seconds()))
        }),
    );
    m.insert(
        "syncing_percent".into(),
        v.syncing_percent.map_or(Dynamic::UNIT, Dynamic::from),
    );
    m
}

/// One VM at risk as a map: `vm`, `lag_secs`, `last_snapshot`, `reason`.
fn at_risk_map(r: &AtRisk) -> Map {
    let mut m = Map::new();
    m.insert("vm".into(), r.vm.clone().into());
    m.insert(
        "lag_secs".into(),
        fact(&r.lag_secs, |l| l.map_or(Dynamic::UNIT, Dynamic::from)),
    );
    m.insert(
        "last_snapshot".into(),
        fact(&r.last_snapshot, |t| opt_time(t.as_ref())),
    );
    m.insert("reason".into(), r.reason.clone().into());
    m
}

/// `unknown`, `is_unknown(x)`, `require_known(x, what)` and the refusals of comparisons.
fn register_unknown(engine: &mut Engine) {
    type Refusal = Result<bool, Box<EvalAltResult>>;
    engine
        .register_type_with_name::<Unknown>("Unknown")
        .register_fn("to_string", |u: &mut Unknown| u.to_string())
        .register_fn("to_debug", |u: &mut Unknown| u.to_string())
        .register_fn("to_json", |_: &mut Unknown| "\"unknown\"".to_string())
        .register_get("site", |u: &mut Unknown| u.0.site.clone())
        .register_get("api", |u: &mut Unknown| u.0.api.as_str().to_string())
        .register_get("command", |u: &mut Unknown| u.0.command.clone())
        .register_get("error", |u: &mut Unknown| u.0.error.clone())
        .register_get("dark", |u: &mut Unknown| u.0.dark)
        .register_get("reason", |u: &mut Unknown| u.0.to_string());
    for op in ["==", "!=", "<", ">", "<=", ">="] {
        engine.register_fn(op, |a: Unknown, _: Dynamic| -> Refusal { a.refuse() });
        engine.register_fn(op, |_: Dynamic, b: Unknown| -> Refusal { b.refuse() });
        engine.register_fn(op, |a: Unknown, _: Unknown| -> Refusal { a.refuse() });
    }
    engine.register_fn("!", |a: Unknown| -> Refusal { a.refuse() });
}

/// A point in time, from `now()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Time(pub DateTime<Utc>);

impl std::fmt::Display for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Registers `to_string`, `to_debug` and `to_json` for a type.
macro_rules! printable {
    ($engine:expr, $t:ty, $name:literal) => {
        $engine
            .register_type_with_name::<$t>($name)
            .register_fn("to_string", |v: &mut $t| v.to_string())
            .register_fn("to_debug", |v: &mut $t| v.to_string())
            .register_fn("to_json", |v: &mut $t| json(v));
    };
}

pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    register_unknown(engine);
    printable!(engine, SiteInfo, "Site");
    let h = host.clone();
    engine
        .register_get("name", |s: &mut SiteInfo| s.name.clone())
        .register_get("mold_url", |s: &mut SiteInfo| s.mold_url.clone())
        .register_get("role", move |s: &mut SiteInfo| {
            let (dr, name) = (h.dr.clone(), s.name.clone());
            h.rt.block_on(async move { dr.site_role(&name).await })
                .to_string()
        });

    printable!(engine, DrCluster, "DrCluster");
    let h = host.clone();
    let h2 = host.clone();
    engine
        .register_get("name", |c: &mut DrCluster| c.name.clone())
        .register_get("primary", move |c: &mut DrCluster| {
            h.dr.site(&c.primary_site)
                .map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_get("dr", move |c: &mut DrCluster| {
            h2.dr.site(&c.dr_site).map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_get("interval", |c: &mut DrCluster| opt(c.interval.clone()))
        .register_get("status", |c: &mut DrCluster| opt(c.status.clone()))
        .register_get("agent_status", |c: &mut DrCluster| {
            opt(c.agent_status.clone())
        });

    printable!(engine, Vm, "Vm");
    engine
        .register_get("id", |v: &mut Vm| v.id.clone())
        .register_get("name", |v: &mut Vm| v.name.clone())
        .register_get("state", |v: &mut Vm| v.state.clone())
        .register_get("site", |v: &mut Vm| v.site.clone())
        .register_get("host", |v: &mut Vm| opt(v.host.clone()))
        .register_get("tags", |v: &mut Vm| {
            v.tags
                .iter()
                .map(|(k, val)| (k.as_str().into(), Dynamic::from(val.clone())))
                .collect::<rhai::Map>()
        });

    printable!(engine, MirrorStatus, "MirrorStatus");
    engine
        .register_get("cluster", |m: &mut MirrorStatus| m.cluster.clone())
        .register_get("taken_at", |m: &mut MirrorStatus| Time(m.taken_at))
        .register_get("vms", |m: &mut MirrorStatus| {
            m.vms
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_get("summary", |m: &mut MirrorStatus| {
            to_dynamic(&m.summary).unwrap_or(Dynamic::UNIT)
        })
        .register_get("at_risk", |m: &mut MirrorStatus| {
            m.at_risk()
                .iter()
                .map(|r| Dynamic::from(at_risk_map(r)))
                .collect::<rhai::Array>()
        })
        .register_get("unknown", |m: &mut MirrorStatus| {
            to_dynamic(&m.unknown).unwrap_or(Dynamic::UNIT)
        })
        .register_get("complete", |m: &mut MirrorStatus| m.complete())
        .register_fn(
            "require_complete",
            |m: &mut MirrorStatus, purpose: &str| -> Result<MirrorStatus, Box<EvalAltResult>> {
                m.require_complete(purpose)
                    .map(|()| m.clone())
                    .map_err(|e| super::error::dr_error(&e))
            },
        )
        .register_get("primary_side", |m: &mut MirrorStatus| {
            m.primary_side()
                .map(|s| s.as_str().to_string())
                .map_err(|e| super::error::dr_error(&e))
        })
        .register_get("dr_promoted", |m: &mut MirrorStatus| {
            m.dr_promoted().map_err(|e| super::error::dr_error(&e))
        });

    engine
        .register_type_with_name::<VmMirror>("VmMirror")
        .register_fn("to_string", |m: &mut VmMirror| vm_mirror_text(m))
        .register_fn("to_debug", |m: &mut VmMirror| vm_mirror_text(m))
        .register_fn("to_json", |m: &mut VmMirror| json(m));
    engine
        .register_get("name", |m: &mut VmMirror| m.name.clone())
        .register_get("primary_vm", |m: &mut VmMirror| {
            m.primary_vm.clone().map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_get("dr_vm", |m: &mut VmMirror| {
            m.dr_vm.clone().map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_get("volumes", |m: &mut VmMirror| {
            m.volumes
                .iter()
                .map(|v| Dynamic::from(volume_map(v)))
                .collect::<rhai::Array>()
        })
        .register_get("synced", |m: &mut VmMirror| {
            fact(&m.synced, |b| (*b).into())
        });

    printable!(engine, DrillReport, "DrillReport");
    engine
        .register_get("vm", |d: &mut DrillReport| d.vm.clone())
        .register_get("ok", |d: &mut DrillReport| d.ok)
        .register_get("steps", |d: &mut DrillReport| {
            to_dynamic(&d.steps).unwrap_or(Dynamic::UNIT)
        })
        .register_get("rto", |d: &mut DrillReport| {
            d.rto.map_or(Dynamic::UNIT, |r| {
                Dynamic::from(i64::try_from(r.as_secs()).unwrap_or(i64::MAX))
            })
        });

    engine
        .register_type_with_name::<RunReport>("RunReport")
        .register_fn("to_string", |r: &mut RunReport| r.render())
        .register_fn("to_debug", |r: &mut RunReport| r.render())
        .register_fn("to_json", |r: &mut RunReport| json(r))
        .register_get("script", |r: &mut RunReport| r.script.clone())
        .register_get("started", |r: &mut RunReport| Time(r.started))
        .register_get("took", |r: &mut RunReport| {
            i64::try_from(r.took_ms / 1000).unwrap_or(i64::MAX)
        })
        .register_get("ok", |r: &mut RunReport| r.ok)
        .register_get("steps", |r: &mut RunReport| {
            to_dynamic(&r.steps).unwrap_or(Dynamic::UNIT)
        })
        .register_get("actions", |r: &mut RunReport| {
            to_dynamic(&r.actions).unwrap_or(Dynamic::UNIT)
        })
        .register_get("errors", |r: &mut RunReport| {
            to_dynamic(&r.errors).unwrap_or(Dynamic::UNIT)
        });

    engine
        .register_type_with_name::<Time>("Time")
        .register_fn("to_string", |t: &mut Time| t.to_string())
        .register_fn("to_debug", |t: &mut Time| t.to_string())
        .register_fn("to_json", |t: &mut Time| json(t))
        .register_fn("==", |a: Time, b: Time| a == b)
        .register_fn("<", |a: Time, b: Time| a < b)
        .register_fn(">", |a: Time, b: Time| a > b);
}

fn opt(v: Option<String>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from)
}

/// `dr-centos-1: synced (2 volumes)` / `dr-win-1: NOT synced (ROOT up+replaying, …)` /
/// `dr-win-2: synced UNKNOWN (site-b's Glue could not be read …)`.
fn vm_mirror_text(m: &VmMirror) -> String {
    match &m.synced {
        Fact::Known(true) => format!("{}: synced ({} volumes)", m.name, m.volumes.len()),
        Fact::Known(false) => {
            let states: Vec<String> = m
                .volumes
                .iter()
                .filter(|v| !v.synced.is_true())
                .map(|v| format!("{} {}", v.kind, v.dr_state))
                .collect();
            format!("{}: NOT synced ({})", m.name, states.join(", "))
        }
        Fact::Unknown(u) => format!("{}: synced UNKNOWN ({u})", m.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dr::Api;

    fn engine() -> Engine {
        let mut e = Engine::new();
        super::super::error::register(&mut e);
        register_unknown(&mut e);
        let u = Unknown(Arc::new(Unreadable {
            site: "site-b".into(),
            api: Api::Glue,
            command: "GET /mirror/image/rbd".into(),
            error: "unexpected answer from Glue: not JSON".into(),
            dark: false,
        }));
        e.register_fn("unread", move || u.clone());
        e.register_fn("is_unknown", |v: Dynamic| v.is::<Unknown>());
        e
    }

    /// The kind of what a script raised, or "ok".
    fn outcome(script: &str) -> String {
        match engine().eval::<Dynamic>(script) {
            Ok(v) => format!("ok {v}"),
            Err(e) => match *e {
                EvalAltResult::ErrorRuntime(v, _) => super::super::error::value_kind(&v).into(),
                other => format!("other: {other}"),
            },
        }
    }

    #[test]
    fn an_unknown_prints_its_reason_and_refuses_every_comparison() {
        let shown: String = engine().eval("`${unread()}`").unwrap();
        assert_eq!(
            shown,
            "unknown (site-b's Glue could not be read (GET /mirror/image/rbd: unexpected answer from Glue: not JSON))"
        );
        for decision in [
            "unread() == true",
            "unread() != ()",
            "true == unread()",
            "unread() > 5",
            "!unread()",
            "unread() == unread()",
        ] {
            assert_eq!(outcome(decision), "unknown", "{decision}");
        }
        assert_eq!(outcome("is_unknown(unread())"), "ok true");
        assert_eq!(outcome("is_unknown(false)"), "ok false");
        assert_eq!(outcome("type_of(unread())"), "ok Unknown");
        assert_eq!(outcome("unread().site"), "ok site-b");
        // A condition that is not a bool stops the script (Rhai's own type error).
        assert!(outcome("if unread() { 1 } else { 2 }").starts_with("other"));
    }
}
