//! The script-visible types (`Site`, `DrCluster`, `Vm`, `MirrorStatus`, `VmMirror`,
//! `DrillReport`, `RunReport`, `Time`): getters, readable `to_string`, and `to_json()`.
//! None of them holds a secret.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rhai::{Dynamic, Engine, EvalAltResult, Map};
use serde::Serialize;

use super::error::{ErrorKind, ScriptError};
use super::host::Host;
use crate::dr::two_way::Way;
use crate::dr::{
    AtRisk, DrCluster, DrillReport, Fact, MirrorStatus, SiteInfo, Unreadable, Vm, VmMirror,
    VolumeMirror,
};
use crate::report::RunReport;

/// Registers a property getter with its doc: the Types section of `drbook doc` is read back
/// from these registrations ([`reference`]).
macro_rules! field {
    ($engine:expr, $name:literal, $doc:literal, $get:expr) => {
        rhai::FuncRegistration::new_getter($name)
            .with_comments([concat!("/// ", $doc)])
            .register_into_engine($engine, $get);
    };
}

/// A type's script name and doc, registered with it (`type_of(x)`, and `drbook doc`).
macro_rules! documented {
    ($($t:ty => $name:literal, $doc:literal;)*) => {
        $(impl rhai::CustomType for $t {
            fn build(mut builder: rhai::TypeBuilder<Self>) {
                builder.with_name($name).with_comments(&[concat!("/// ", $doc)]);
            }
        })*
    };
}

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
        .build_type::<Unknown>()
        .register_fn("to_string", |u: &mut Unknown| u.to_string())
        .register_fn("to_debug", |u: &mut Unknown| u.to_string())
        .register_fn("to_json", |_: &mut Unknown| "\"unknown\"".to_string());
    field!(
        engine,
        "site",
        "the site it could not be read from",
        |u: &mut Unknown| u.0.site.clone()
    );
    field!(engine, "api", "\"Mold\" or \"Glue\"", |u: &mut Unknown| u
        .0
        .api
        .as_str()
        .to_string());
    field!(
        engine,
        "command",
        "the call that failed",
        |u: &mut Unknown| u.0.command.clone()
    );
    field!(engine, "error", "why it failed", |u: &mut Unknown| u
        .0
        .error
        .clone());
    field!(
        engine,
        "dark",
        "whether the site accepted no connection at all",
        |u: &mut Unknown| u.0.dark
    );
    field!(
        engine,
        "reason",
        "all of the above in one line",
        |u: &mut Unknown| u.0.to_string()
    );
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

documented! {
    SiteInfo => "Site", "A configured site.";
    DrCluster => "DrCluster", "A DR cluster: two paired sites, as both record it.";
    Vm => "Vm", "A VM on one site.";
    MirrorStatus => "MirrorStatus", "The mirroring of every mirrored VM of a DR cluster, read from both sites at once.";
    VmMirror => "VmMirror", "One mirrored VM: its VM on each site and its volumes' mirroring.";
    DrillReport => "DrillReport", "What a drill did, step by step.";
    RunReport => "RunReport", "What a run (or a nested run) did: its steps and its actions.";
    Time => "Time", "A point in time, from now(); compares with ==, < and >, and elapsed(t) gives the seconds since.";
    Unknown => "Unknown", "What could not be read, in place of a value: it prints with its reason; comparing or negating it throws an unknown error; test for it with is_unknown(x).";
}

/// Registers `to_string`, `to_debug` and `to_json` for a type.
macro_rules! printable {
    ($engine:expr, $t:ty) => {
        $engine
            .build_type::<$t>()
            .register_fn("to_string", |v: &mut $t| v.to_string())
            .register_fn("to_debug", |v: &mut $t| v.to_string())
            .register_fn("to_json", |v: &mut $t| json(v));
    };
}

#[allow(clippy::too_many_lines)] // one table of getters
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    register_unknown(engine);
    printable!(engine, SiteInfo);
    field!(
        engine,
        "name",
        "its name in drbook.toml",
        |s: &mut SiteInfo| s.name.clone()
    );
    field!(
        engine,
        "mold_url",
        "its Mold API URL",
        |s: &mut SiteInfo| s.mold_url.clone()
    );
    let h = host.clone();
    field!(
        engine,
        "role",
        "its live role: \"primary\", \"dr\" or \"unknown\"",
        move |s: &mut SiteInfo| {
            let (dr, name) = (h.dr.clone(), s.name.clone());
            h.rt.block_on(async move { dr.site_role(&name).await })
                .to_string()
        }
    );

    printable!(engine, DrCluster);
    field!(
        engine,
        "name",
        "its name (the same on both sites)",
        |c: &mut DrCluster| c.name.clone()
    );
    let h = host.clone();
    field!(
        engine,
        "primary",
        "the protected site (a Site)",
        move |c: &mut DrCluster| {
            h.dr.site(&c.primary_site)
                .map_or(Dynamic::UNIT, Dynamic::from)
        }
    );
    let h = host.clone();
    field!(
        engine,
        "dr",
        "the DR site (a Site)",
        move |c: &mut DrCluster| { h.dr.site(&c.dr_site).map_or(Dynamic::UNIT, Dynamic::from) }
    );
    field!(
        engine,
        "interval",
        "the mirror snapshot interval",
        |c: &mut DrCluster| opt(c.interval.clone())
    );
    field!(
        engine,
        "status",
        "Mold's status of the pairing (Enabled, …)",
        |c: &mut DrCluster| opt(c.status.clone())
    );
    field!(
        engine,
        "agent_status",
        "the DR agent's status",
        |c: &mut DrCluster| opt(c.agent_status.clone())
    );

    printable!(engine, Vm);
    field!(engine, "id", "Mold's id", |v: &mut Vm| v.id.clone());
    field!(engine, "name", "its name", |v: &mut Vm| v.name.clone());
    field!(engine, "state", "Running, Stopped, …", |v: &mut Vm| v
        .state
        .clone());
    field!(engine, "site", "the site it is on", |v: &mut Vm| v
        .site
        .clone());
    field!(
        engine,
        "host",
        "the host it runs on, if any",
        |v: &mut Vm| opt(v.host.clone())
    );
    field!(
        engine,
        "offering",
        "its compute offering's name, if known",
        |v: &mut Vm| opt(v.offering.clone())
    );
    field!(engine, "tags", "a map: tag key → value", |v: &mut Vm| {
        v.tags
            .iter()
            .map(|(k, val)| (k.as_str().into(), Dynamic::from(val.clone())))
            .collect::<rhai::Map>()
    });

    printable!(engine, MirrorStatus);
    field!(
        engine,
        "cluster",
        "the DR cluster's name",
        |m: &mut MirrorStatus| m.cluster.clone()
    );
    field!(
        engine,
        "protected_site",
        "the site its VMs are protected from: the pairing's protected site, or with mirror_status(cluster, #{home}) that home",
        |m: &mut MirrorStatus| m.primary_site.clone()
    );
    field!(
        engine,
        "dr_site",
        "the site they are mirrored to (and fail over to)",
        |m: &mut MirrorStatus| m.dr_site.clone()
    );
    field!(
        engine,
        "taken_at",
        "when it was read (a Time)",
        |m: &mut MirrorStatus| Time(m.taken_at)
    );
    field!(
        engine,
        "vms",
        "every mirrored VM (VmMirror)",
        |m: &mut MirrorStatus| {
            m.vms
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        }
    );
    field!(
        engine,
        "summary",
        "a map: vms, synced, unsynced, unknown, max_lag_secs",
        |m: &mut MirrorStatus| { rhai::serde::to_dynamic(&m.summary).unwrap_or(Dynamic::UNIT) }
    );
    field!(
        engine,
        "at_risk",
        "what a forced promote now would lose: maps of vm, lag_secs, last_snapshot, reason",
        |m: &mut MirrorStatus| {
            m.at_risk()
                .iter()
                .map(|r| Dynamic::from(at_risk_map(r)))
                .collect::<rhai::Array>()
        }
    );
    field!(
        engine,
        "unknown",
        "what could not be read: maps of site, api, command, error, dark",
        |m: &mut MirrorStatus| { rhai::serde::to_dynamic(&m.unknown).unwrap_or(Dynamic::UNIT) }
    );
    field!(
        engine,
        "storage_read_via",
        "where each site's storage was read from: a map of site to \"glue\", or \"ssh\" when no Glue endpoint answered and the same rbd command ran over SSH on a storage VM",
        |m: &mut MirrorStatus| {
            m.storage_read_via
                .iter()
                .map(|(site, via)| {
                    (
                        site.as_str().into(),
                        Dynamic::from(via.as_str().to_string()),
                    )
                })
                .collect::<rhai::Map>()
        }
    );
    field!(
        engine,
        "notes",
        "one line per site read over SSH (\"site-b: Glue unreachable, read over SSH from 10.10.22.11\")",
        |m: &mut MirrorStatus| {
            m.notes
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        }
    );
    field!(
        engine,
        "complete",
        "whether both sites were read in full",
        |m: &mut MirrorStatus| m.complete()
    );
    rhai::FuncRegistration::new("require_complete")
        .with_params_info(["status: &mut MirrorStatus", "purpose: &str", "MirrorStatus"])
        .with_comments(["/// the status itself if both sites were read in full, else an unknown error naming what is missing for `purpose`"])
        .register_into_engine(
            engine,
            |m: &mut MirrorStatus, purpose: &str| -> Result<MirrorStatus, Box<EvalAltResult>> {
                m.require_complete(purpose)
                    .map(|()| m.clone())
                    .map_err(|e| super::error::dr_error(&e))
            },
        );
    field!(
        engine,
        "primary_side",
        "where the images are primary (\"protected\", \"dr\", \"both\", \"none\" or \"mixed\"), an unknown error unless both sites were read",
        |m: &mut MirrorStatus| {
            m.primary_side()
                .map(|s| s.as_str().to_string())
                .map_err(|e| super::error::dr_error(&e))
        }
    );
    field!(
        engine,
        "dr_promoted",
        "whether the DR site's images are primary, from the DR site alone",
        |m: &mut MirrorStatus| { m.dr_promoted().map_err(|e| super::error::dr_error(&e)) }
    );

    engine
        .build_type::<VmMirror>()
        .register_fn("to_string", |m: &mut VmMirror| vm_mirror_text(m))
        .register_fn("to_debug", |m: &mut VmMirror| vm_mirror_text(m))
        .register_fn("to_json", |m: &mut VmMirror| json(m));
    field!(
        engine,
        "name",
        "the protected VM's name",
        |m: &mut VmMirror| m.name.clone()
    );
    field!(
        engine,
        "primary_vm",
        "the VM on the protected site (a Vm), if it could be read",
        |m: &mut VmMirror| { m.primary_vm.clone().map_or(Dynamic::UNIT, Dynamic::from) }
    );
    field!(
        engine,
        "dr_vm",
        "the mirrored VM on the DR site (a Vm), if it could be read",
        |m: &mut VmMirror| { m.dr_vm.clone().map_or(Dynamic::UNIT, Dynamic::from) }
    );
    field!(
        engine,
        "volumes",
        "maps of type, path, primary_state, dr_state, primary_description, dr_description, primary_role, dr_role (\"primary\", \"replica\", \"absent\"), primary_seen_from_dr, primary_state_seen_from_dr, synced, last_snapshot, lag, syncing_percent",
        |m: &mut VmMirror| {
            m.volumes
                .iter()
                .map(|v| Dynamic::from(volume_map(v)))
                .collect::<rhai::Array>()
        }
    );
    field!(
        engine,
        "synced",
        "whether every volume is synced",
        |m: &mut VmMirror| { fact(&m.synced, |b| (*b).into()) }
    );
    field!(
        engine,
        "home",
        "the site it runs on in normal operation, () when drbook never recorded it, an Unknown when the sites' tags could not be read or contradict each other",
        |m: &mut VmMirror| fact(&m.home, |h| h.clone().map_or(Dynamic::UNIT, Dynamic::from))
    );
    field!(
        engine,
        "direction",
        "the site drbook acts on it as its home: its recorded home or, in a pairing that protects one way only, the protected site; () when that cannot be told (direction_problem says why)",
        |m: &mut VmMirror| m
            .way
            .home()
            .map_or(Dynamic::UNIT, |s| Dynamic::from(s.to_string()))
    );
    field!(
        engine,
        "direction_problem",
        "why its direction cannot be told (its home is not recorded, or could not be read, in a pairing that protects both ways); () when it can",
        |m: &mut VmMirror| match &m.way {
            Way::Untold(why) => Dynamic::from(why.clone()),
            Way::Home(_) => Dynamic::UNIT,
        }
    );

    printable!(engine, DrillReport);
    field!(engine, "vm", "the VM drilled", |d: &mut DrillReport| d
        .vm
        .clone());
    field!(
        engine,
        "ok",
        "whether every step succeeded",
        |d: &mut DrillReport| d.ok
    );
    field!(
        engine,
        "steps",
        "maps of the steps done",
        |d: &mut DrillReport| { rhai::serde::to_dynamic(&d.steps).unwrap_or(Dynamic::UNIT) }
    );
    field!(
        engine,
        "rto",
        "seconds from the failover to the mirrored VM running, if it ran",
        |d: &mut DrillReport| {
            d.rto.map_or(Dynamic::UNIT, |r| {
                Dynamic::from(i64::try_from(r.as_secs()).unwrap_or(i64::MAX))
            })
        }
    );

    engine
        .build_type::<RunReport>()
        .register_fn("to_string", |r: &mut RunReport| r.render())
        .register_fn("to_debug", |r: &mut RunReport| r.render())
        .register_fn("to_json", |r: &mut RunReport| json(r));
    field!(engine, "script", "the runbook run", |r: &mut RunReport| r
        .script
        .clone());
    field!(
        engine,
        "started",
        "when (a Time)",
        |r: &mut RunReport| Time(r.started)
    );
    field!(engine, "took", "whole seconds", |r: &mut RunReport| {
        i64::try_from(r.took_ms / 1000).unwrap_or(i64::MAX)
    });
    field!(
        engine,
        "ok",
        "whether it ended well",
        |r: &mut RunReport| r.ok
    );
    field!(engine, "steps", "maps of its steps", |r: &mut RunReport| {
        rhai::serde::to_dynamic(&r.steps).unwrap_or(Dynamic::UNIT)
    });
    field!(
        engine,
        "actions",
        "maps of its mutations",
        |r: &mut RunReport| { rhai::serde::to_dynamic(&r.actions).unwrap_or(Dynamic::UNIT) }
    );
    field!(engine, "errors", "its errors", |r: &mut RunReport| {
        rhai::serde::to_dynamic(&r.errors).unwrap_or(Dynamic::UNIT)
    });

    engine
        .build_type::<Time>()
        .register_fn("to_string", |t: &mut Time| t.to_string())
        .register_fn("to_debug", |t: &mut Time| t.to_string())
        .register_fn("to_json", |t: &mut Time| json(t))
        .register_fn("==", |a: Time, b: Time| a == b)
        .register_fn("<", |a: Time, b: Time| a < b)
        .register_fn(">", |a: Time, b: Time| a > b);
}

/// One script-visible type as its registrations describe it.
#[derive(Debug)]
pub struct TypeDoc {
    pub name: String,
    pub doc: String,
    /// Each property and documented method, with its doc.
    pub members: Vec<(String, String)>,
}

/// Every script-visible type with its fields, read back from what `engine` registered (the
/// Types section of `drbook doc`).
pub fn reference(engine: &Engine) -> Vec<TypeDoc> {
    let meta: serde_json::Value = engine
        .gen_fn_metadata_to_json(false)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    let doc_of = |v: &serde_json::Value| -> String {
        v["docComments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(|c| c.trim_start_matches("///").trim())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let functions = meta["functions"].as_array().cloned().unwrap_or_default();
    let mut types: Vec<TypeDoc> = meta["customTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["docComments"].is_array())
        .map(|t| {
            let name = t["displayName"].as_str().unwrap_or_default().to_string();
            let this = format!("&mut {name}");
            let members = functions
                .iter()
                .filter(|f| f["params"][0]["type"] == this.as_str() && f["docComments"].is_array())
                .map(|f| {
                    let fname = f["name"].as_str().unwrap_or_default();
                    let shown = if let Some(prop) = fname.strip_prefix("get$") {
                        prop.to_string()
                    } else {
                        let params: Vec<&str> = f["params"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .skip(1)
                            .filter_map(|p| p["name"].as_str())
                            .collect();
                        format!("{fname}({})", params.join(", "))
                    };
                    (shown, doc_of(f))
                })
                .collect();
            TypeDoc {
                name,
                doc: doc_of(t),
                members,
            }
        })
        .collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    types
}

/// The message of an error value a script threw or a primitive raised: a `ScriptError`'s
/// line, a string as it is, anything else as Rhai prints it.
pub fn value_message(value: &Dynamic) -> String {
    if let Some(e) = value.read_lock::<ScriptError>() {
        return e.message.clone();
    }
    if let Some(u) = value.read_lock::<Unknown>() {
        return u.to_string();
    }
    // A time as RFC 3339, which `elapsed()` reads back when a resumed step returns it.
    if let Some(t) = value.read_lock::<Time>() {
        return t.to_string();
    }
    if value.is_string() {
        return value.clone().into_string().unwrap_or_default();
    }
    value.to_string()
}

fn opt_ref(v: Option<&String>) -> Dynamic {
    v.map_or(Dynamic::UNIT, |s| Dynamic::from(s.clone()))
}

documented! {
    ScriptError => "Error", "What a failed primitive throws; `${e}` is its message; a caught string's kind is \"script\".";
}

/// Registers the `Error` type, its getters, and `kind` on thrown strings (`"script"`), so
/// `e.kind` works whatever was caught.
pub fn register_error(engine: &mut Engine) {
    engine
        .build_type::<ScriptError>()
        .register_fn("to_string", |e: &mut ScriptError| e.message.clone())
        .register_fn("to_debug", |e: &mut ScriptError| e.message.clone())
        .register_fn("to_json", |e: &mut ScriptError| {
            serde_json::to_string_pretty(e).unwrap_or_default()
        });
    field!(
        engine,
        "kind",
        "one of the error kinds below: decide on it, never on the words",
        |e: &mut ScriptError| e.kind.as_str().to_string()
    );
    field!(
        engine,
        "action",
        "what was being done",
        |e: &mut ScriptError| opt_ref(e.action.as_ref())
    );
    field!(engine, "site", "where", |e: &mut ScriptError| opt_ref(
        e.site.as_ref()
    ));
    field!(
        engine,
        "command",
        "the API call or command",
        |e: &mut ScriptError| opt_ref(e.command.as_ref())
    );
    field!(
        engine,
        "problem",
        "what went wrong, in Mold's, Glue's or drbook's words",
        |e: &mut ScriptError| e.problem.clone()
    );
    field!(
        engine,
        "advice",
        "what to do next",
        |e: &mut ScriptError| opt_ref(e.advice.as_ref())
    );
    field!(
        engine,
        "details",
        "more, as data (a failed drill's report)",
        |e: &mut ScriptError| {
            e.details.as_ref().map_or(Dynamic::UNIT, |d| {
                rhai::serde::to_dynamic(d).unwrap_or(Dynamic::UNIT)
            })
        }
    );
    field!(
        engine,
        "message",
        "the whole line",
        |e: &mut ScriptError| e.message.clone()
    );
    // A string a script threw is an error of kind "script".
    engine.register_get("kind", |_: &mut rhai::ImmutableString| "script".to_string());
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
        register_error(&mut e);
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
