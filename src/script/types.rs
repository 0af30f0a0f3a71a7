//! The script-visible types (`Site`, `DrCluster`, `Vm`, `MirrorStatus`, `VmMirror`,
//! `DrillReport`, `RunReport`, `Time`): getters, readable `to_string`, and `to_json()`.
//! None of them holds a secret.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rhai::{Dynamic, Engine};
use serde::Serialize;

use super::convert::to_dynamic;
use super::host::Host;
use crate::dr::{DrCluster, DrillReport, MirrorStatus, SiteInfo, Vm, VmMirror};
use crate::report::RunReport;

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
            to_dynamic(&m.at_risk()).unwrap_or(Dynamic::UNIT)
        })
        .register_get("unreachable", |m: &mut MirrorStatus| {
            to_dynamic(&m.unreachable).unwrap_or(Dynamic::UNIT)
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
            to_dynamic(&m.volumes).unwrap_or(Dynamic::UNIT)
        })
        .register_get("synced", |m: &mut VmMirror| m.synced);

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

/// `dr-centos-1: synced (2 volumes)` / `dr-win-1: NOT synced (ROOT up+replaying, …)`.
fn vm_mirror_text(m: &VmMirror) -> String {
    if m.synced {
        format!("{}: synced ({} volumes)", m.name, m.volumes.len())
    } else {
        let states: Vec<String> = m
            .volumes
            .iter()
            .filter(|v| !v.synced)
            .map(|v| format!("{} {}", v.kind, v.dr_state))
            .collect();
        format!("{}: NOT synced ({})", m.name, states.join(", "))
    }
}
