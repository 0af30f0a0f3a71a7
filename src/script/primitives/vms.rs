//! VMs: power, protection (mirrored VMs), and the per-VM mirroring test.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{Value, json};

use super::{CLUSTER, Kind, Overload, Param, Primitive, SITE, Ty, VM, VMS, planned};
use crate::dr::{self, MirrorVmSpec};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target};

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "start_vm",
        kind: Kind::Mutate,
        doc: "Start a VM and wait for it to run; Mold's start guards apply.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VM],
            returns: "Vm",
        }],
        register: start_vm,
    },
    Primitive {
        name: "stop_vm",
        kind: Kind::Mutate,
        doc: "Stop a VM and wait for it to stop.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, VM],
                returns: "Vm",
            },
            Overload {
                params: &[
                    SITE,
                    VM,
                    Param::new("options", Ty::Options(&["force"])).shown("#{force: true}"),
                ],
                returns: "Vm",
            },
        ],
        register: stop_vm,
    },
    Primitive {
        name: "start_vms",
        kind: Kind::Mutate,
        doc: "Start VMs concurrently (bounded); one result per VM (`vm`, `ok`, `state`, `error`, `started` when its start was sent, `took_ms` to running), never stopping at the first failure.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, VMS],
                returns: "[map]",
            },
            Overload {
                params: &[
                    SITE,
                    VMS,
                    Param::new("options", Ty::Options(&["concurrency", "timeout"])),
                ],
                returns: "[map]",
            },
        ],
        register: start_vms,
    },
    Primitive {
        name: "stop_vms",
        kind: Kind::Mutate,
        doc: "Stop VMs concurrently (bounded); one result per VM, as start_vms gives.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, VMS],
                returns: "[map]",
            },
            Overload {
                params: &[
                    SITE,
                    VMS,
                    Param::new("options", Ty::Options(&["concurrency", "timeout", "force"])),
                ],
                returns: "[map]",
            },
        ],
        register: stop_vms,
    },
    Primitive {
        name: "create_mirror_vm",
        kind: Kind::Mutate,
        doc: "Protect a VM: mirroring on its images and a stopped mirrored VM on the DR site.",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER, VM],
                returns: "map",
            },
            Overload {
                params: &[
                    CLUSTER,
                    VM,
                    Param::new(
                        "options",
                        Ty::Options(&["offering", "network", "cpu", "memory_gb"]),
                    ),
                ],
                returns: "map",
            },
        ],
        register: create_mirror_vm,
    },
    Primitive {
        name: "remove_mirror_vm",
        kind: Kind::Destructive,
        doc: "Unprotect a VM: mirroring off, the mirrored VM destroyed on the DR site.",
        question: "Remove the mirrored VM of {1} (DR cluster {0})",
        overloads: CLUSTER_VM,
        register: remove_mirror_vm,
    },
    Primitive {
        name: "snapshot_vm",
        kind: Kind::Mutate,
        doc: "Take a mirror snapshot of a VM's volumes and verify it reached the DR site.",
        question: "",
        overloads: CLUSTER_VM,
        register: snapshot_vm,
    },
    Primitive {
        name: "promote_vm",
        kind: Kind::Mutate,
        doc: "Mirroring test: roles swap back, this site's images primary again.",
        question: "",
        overloads: CLUSTER_VM,
        register: promote_vm,
    },
    Primitive {
        name: "demote_vm",
        kind: Kind::Mutate,
        doc: "Mirroring test: this site's images demoted, the DR site's promoted.",
        question: "",
        overloads: CLUSTER_VM,
        register: demote_vm,
    },
    Primitive {
        name: "start_mirror_vm",
        kind: Kind::Mutate,
        doc: "Mirroring test: start the mirrored VM on the DR site.",
        question: "",
        overloads: CLUSTER_VM,
        register: start_mirror_vm,
    },
    Primitive {
        name: "stop_mirror_vm",
        kind: Kind::Mutate,
        doc: "Mirroring test: stop the mirrored VM on the DR site.",
        question: "",
        overloads: CLUSTER_VM,
        register: stop_mirror_vm,
    },
    Primitive {
        name: "drill",
        kind: Kind::Mutate,
        doc: "The 8-step mirroring simulation test of one VM: refused unless the VM runs on the protected site on its primary images; a failed step returns it there, and the error (kind drill_failed, e.details the report) says what is left. restore: first return a VM an earlier drill of this run left away.",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER, VM],
                returns: "DrillReport",
            },
            Overload {
                params: &[
                    CLUSTER,
                    VM,
                    Param::new("options", Ty::Options(&["observe", "restore"]))
                        .shown("#{observe: \"60s\", restore: false}"),
                ],
                returns: "DrillReport",
            },
        ],
        register: drill,
    },
];

const CLUSTER_VM: &[Overload] = &[Overload {
    params: &[CLUSTER, VM],
    returns: "map",
}];

/// Plan mode's stand-in for a VM after a power change: the VM as it is now, in `state`.
fn planned_vm(h: &Host, site: &str, vm: &str, state: &str) -> RhaiResult<Dynamic> {
    let (dr, site, vm) = (h.dr.clone(), site.to_string(), vm.to_string());
    let mut current = h.read("vm", async move { dr.vm(&site, &vm).await })?;
    current.state = state.to_string();
    Ok(Dynamic::from(current))
}

fn start_vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic, vm: Dynamic| {
        let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
        let dr = h.dr.clone();
        let (s, v) = (site.clone(), vm.clone());
        h.mutate(
            p,
            json!([site, vm]),
            Target::Site(&site),
            || planned_vm(&h, &site, &vm, "Running"),
            async move { dr.start_vm(&s, &v).await },
            |vm: dr::Vm| Ok(Dynamic::from(vm)),
        )
    });
}

fn stop(
    p: &'static Primitive,
    h: &Arc<Host>,
    site: &Dynamic,
    vm: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let force = p.options(opts)?.bool("force", false)?;
    let (site, vm) = (convert::site(site)?, convert::vm(vm)?);
    let dr = h.dr.clone();
    let (s, v) = (site.clone(), vm.clone());
    h.mutate(
        p,
        json!([site, vm, {"force": force}]),
        Target::Site(&site),
        || planned_vm(h, &site, &vm, "Stopped"),
        async move { dr.stop_vm(&s, &v, force).await },
        |vm: dr::Vm| Ok(Dynamic::from(vm)),
    )
}

fn stop_vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, stop, (site: Dynamic, vm: Dynamic));
}

/// One result per VM: `#{vm, ok, state, error}`.
/// One map per VM; `started` (when its command was sent) and `took_ms` (to its end state)
/// are what the run report draws each VM's job from.
fn batch_results(results: Vec<(String, Result<dr::Vm, dr::DrError>, dr::Span)>) -> Vec<Value> {
    results
        .into_iter()
        .map(|(name, r, span)| {
            let (ok, state, error) = match r {
                Ok(vm) => (true, Some(vm.state), None),
                Err(e) => (false, None, Some(e.to_string())),
            };
            json!({
                "vm": name,
                "ok": ok,
                "state": state,
                "error": error,
                "started": span.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "took_ms": u64::try_from(span.took.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect()
}

/// Whether a batch starts its VMs or stops them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Power {
    Start,
    Stop,
}

fn batch(
    p: &'static Primitive,
    power: Power,
    h: &Arc<Host>,
    site: &Dynamic,
    vms: &Array,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let concurrency = options.usize("concurrency", h.concurrency)?;
    let timeout = options.duration("timeout", Duration::from_secs(15 * 60))?;
    let force = options.bool("force", false)?;
    let site = convert::site(site)?;
    let names = convert::vms(vms)?;
    let args = json!([site, names, {"concurrency": concurrency, "timeout_secs": timeout.as_secs(), "force": force}]);
    let dr = h.dr.clone();
    let (s, n) = (site.clone(), names.clone());
    let plan_names = names.clone();
    let end_state = match power {
        Power::Start => "Running",
        Power::Stop => "Stopped",
    };
    h.mutate(
        p,
        args,
        Target::Site(&site),
        || {
            let planned: Vec<Value> = plan_names
                .iter()
                .map(|v| json!({"vm": v, "ok": true, "state": end_state, "error": null, "planned": true}))
                .collect();
            to_dynamic(&planned)
        },
        async move {
            let results = match power {
                Power::Start => dr.start_vms(&s, &n, concurrency, timeout).await,
                Power::Stop => dr.stop_vms(&s, &n, force, concurrency, timeout).await,
            };
            Ok(batch_results(results))
        },
        |v: Vec<Value>| to_dynamic(&v),
    )
}

fn register_batch(p: &'static Primitive, power: Power, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(
        p,
        engine,
        h,
        move |p, h, site, vms, options| batch(p, power, h, site, vms, options),
        (site: Dynamic, vms: Array)
    );
}

fn start_vms(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    register_batch(p, Power::Start, engine, h);
}

fn stop_vms(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    register_batch(p, Power::Stop, engine, h);
}

fn protect(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    vm: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let spec = MirrorVmSpec {
        offering: options.string("offering")?,
        network: options.string("network")?,
        cpu: options.u32("cpu")?,
        memory_gb: options.u32("memory_gb")?,
    };
    let (cluster, vm) = (convert::cluster(cluster)?, convert::vm(vm)?);
    let args = json!([cluster, vm, {"offering": spec.offering, "network": spec.network, "cpu": spec.cpu, "memory_gb": spec.memory_gb}]);
    let dr = h.dr.clone();
    let (c, v) = (cluster.clone(), vm.clone());
    h.mutate(
        p,
        args.clone(),
        Target::ProtectedSide(&cluster),
        || to_dynamic(&planned(p.name, &args)),
        async move {
            dr.create_mirror_vm(&c, &v, &spec)
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default())
        },
        |v: Value| to_dynamic(&v),
    )
}

fn create_mirror_vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, protect, (cluster: Dynamic, vm: Dynamic));
}

/// Registers an act on one mirrored VM of a DR cluster, run on its protected site.
macro_rules! vm_op {
    ($fn_name:ident, $method:ident) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            p.register_fn(
                engine,
                move |cluster: Dynamic, vm: Dynamic| -> RhaiResult<Dynamic> {
                    let (cluster, vm) = (convert::cluster(&cluster)?, convert::vm(&vm)?);
                    let args = json!([cluster, vm]);
                    let dr = h.dr.clone();
                    let (c, v) = (cluster.clone(), vm.clone());
                    h.mutate(
                        p,
                        args.clone(),
                        Target::ProtectedSide(&cluster),
                        || to_dynamic(&planned(p.name, &args)),
                        async move {
                            dr.$method(&c, &v)
                                .await
                                .map(|o| serde_json::to_value(o).unwrap_or_default())
                        },
                        |v: Value| to_dynamic(&v),
                    )
                },
            );
        }
    };
}

vm_op!(remove_mirror_vm, remove_mirror_vm);
vm_op!(snapshot_vm, snapshot_vm);
vm_op!(promote_vm, promote_vm);
vm_op!(demote_vm, demote_vm);
vm_op!(start_mirror_vm, start_mirror_vm);
vm_op!(stop_mirror_vm, stop_mirror_vm);

fn run_drill(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    vm: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let observe = options.duration("observe", Duration::from_secs(60))?;
    let restore = options.bool("restore", false)?;
    let (cluster, vm) = (convert::cluster(cluster)?, convert::vm(vm)?);
    let dr = h.dr.clone();
    let (c, v) = (cluster.clone(), vm.clone());
    let journal: Arc<dyn dr::drill::DrillLog> =
        Arc::new(crate::script::host::DrillJournal(h.clone()));
    let plan = dr::DrillReport {
        cluster: cluster.clone(),
        vm: vm.clone(),
        ok: true,
        steps: Vec::new(),
        rto: None,
        returned: false,
        left: Vec::new(),
    };
    let args = if restore {
        json!([cluster, vm, {"observe_secs": observe.as_secs(), "restore": true}])
    } else {
        json!([cluster, vm, {"observe_secs": observe.as_secs()}])
    };
    h.mutate(
        p,
        args,
        Target::ProtectedSide(&cluster),
        || Ok(Dynamic::from(plan)),
        async move { dr.drill(&c, &v, observe, restore, Some(journal)).await },
        |r: dr::DrillReport| Ok(Dynamic::from(r)),
    )
}

fn drill(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, run_drill, (cluster: Dynamic, vm: Dynamic));
}
