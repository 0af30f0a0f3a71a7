//! The one definition of every primitive scripts get: name, signatures, one-line doc, kind
//! (read / mutate / destructive / control), section — and how it is registered. From this
//! table come the Rhai registration, plan-mode behaviour, `drbook doc`, `drbook check`'s
//! list of known functions and the REPL's completion.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use serde_json::{Value, json};

use super::convert::{self, Options, to_dynamic};
use super::host::{Host, RhaiResult, TERMINATE_FAILED, Target, script_error, terminate};
use super::types::Time;
use crate::dr::{self, DrClusterSpec, MirrorVmSpec};

/// What calling a primitive does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Safe; retried on transient faults; runs in plan mode too.
    Read,
    /// Changes state: journaled, never retried blindly, recorded (not made) in plan mode.
    Mutate,
    /// A mutation that also needs a yes (`--yes`, an answer, or `confirm()` in the step).
    Destructive,
    /// Runbook control: steps, waits, confirmations, logging.
    Control,
    /// A read or a mutation, by the Mold command's verb (`mold()`, `glue()`).
    ByVerb,
    /// Destructive unless the command is a known read (`ssh()`).
    ByCommand,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Mutate => "mutate",
            Kind::Destructive => "destructive",
            Kind::Control => "control",
            Kind::ByVerb => "read or mutate",
            Kind::ByCommand => "read or destructive",
        }
    }
}

/// The sections of the reference, in order.
pub const SECTIONS: &[&str] = &[
    "Sites, clusters, status",
    "DR cluster operations",
    "VMs",
    "Images (Glue, image level)",
    "Runbook control",
    "Escape hatches",
];

/// One primitive.
pub struct Primitive {
    pub name: &'static str,
    /// Every overload, as the reference and editor hints show it.
    pub signatures: &'static [&'static str],
    pub doc: &'static str,
    pub kind: Kind,
    pub section: &'static str,
    /// How a confirmation question names a destructive act, `{0}`/`{1}` standing for the
    /// call's arguments: `Promote DR cluster {0}`.
    pub question: &'static str,
    pub register: fn(&mut Engine, &Arc<Host>),
}

/// Looks a primitive up by name.
pub fn find(name: &str) -> Option<&'static Primitive> {
    PRIMITIVES.iter().find(|p| p.name == name)
}

/// The destructive primitive a confirmation question comes from (the table's wording before
/// its first argument): the REPL shows that primitive's doc beside the question.
pub fn for_question(question: &str) -> Option<&'static Primitive> {
    PRIMITIVES.iter().find(|p| {
        let lead = p.question.split('{').next().unwrap_or_default();
        !lead.trim().is_empty() && question.starts_with(lead)
    })
}

/// The parameter names of a primitive's first signature with at least `arg + 1` of them:
/// `promote(cluster)` → `["cluster"]`.
pub fn param_name(name: &str, arg: usize) -> Option<&'static str> {
    find(name)?.signatures.iter().find_map(|sig| {
        let inner = sig.split_once('(')?.1.split_once(')')?.0;
        inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .nth(arg)
    })
}

/// A primitive's kind (unknown names count as mutations: the careful default).
pub fn kind_of(name: &str) -> Kind {
    find(name).map_or(Kind::Mutate, |p| p.kind)
}

/// Registers every primitive.
pub fn register_all(engine: &mut Engine, host: &Arc<Host>) {
    for p in PRIMITIVES {
        (p.register)(engine, host);
    }
}

const S_STATUS: &str = SECTIONS[0];
const S_CLUSTER: &str = SECTIONS[1];
const S_VMS: &str = SECTIONS[2];
const S_IMAGES: &str = SECTIONS[3];
const S_CONTROL: &str = SECTIONS[4];
const S_ESCAPE: &str = SECTIONS[5];

macro_rules! prim {
    ($name:literal, [$($sig:literal),+], $kind:ident, $section:expr, $doc:literal, $reg:path) => {
        prim!($name, [$($sig),+], $kind, $section, $doc, "", $reg)
    };
    ($name:literal, [$($sig:literal),+], $kind:ident, $section:expr, $doc:literal, $question:literal, $reg:path) => {
        Primitive {
            name: $name,
            signatures: &[$($sig),+],
            doc: $doc,
            kind: Kind::$kind,
            section: $section,
            question: $question,
            register: $reg,
        }
    };
}

/// The table.
pub static PRIMITIVES: &[Primitive] = &[
    // Sites, clusters, status
    prim!(
        "site",
        ["site(name) -> Site"],
        Read,
        S_STATUS,
        "A configured site: name, mold_url, and its live role (\"primary\", \"dr\" or \"unknown\").",
        reg_site
    ),
    prim!(
        "sites",
        ["sites() -> [Site]"],
        Read,
        S_STATUS,
        "Every configured site.",
        reg_sites
    ),
    prim!(
        "dr_cluster",
        ["dr_cluster(name) -> DrCluster"],
        Read,
        S_STATUS,
        "A DR cluster as both sites record it: its protected (primary) and DR sites, interval, status.",
        reg_dr_cluster
    ),
    prim!(
        "dr_clusters",
        ["dr_clusters() -> [DrCluster]"],
        Read,
        S_STATUS,
        "Every DR cluster seen from the configured sites (works with one site down).",
        reg_dr_clusters
    ),
    prim!(
        "health",
        [
            "health(site) -> #{mold, glue, mold_reach, glue_reach, glue_health, mold_ms, glue_ms, problem}"
        ],
        Read,
        S_STATUS,
        "Whether the site's Mold and Glue answer usably, with latencies; mold_reach/glue_reach say \"up\", \"down\" (no connection accepted: the site looks dark) or \"unknown\" (it answered, but not usably); never throws for an unreachable site.",
        reg_health
    ),
    prim!(
        "mirror_status",
        ["mirror_status(cluster) -> MirrorStatus"],
        Read,
        S_STATUS,
        "Mirroring of every mirrored VM and volume: state on both sites, synced, last snapshot, lag (one list call per site).",
        reg_mirror_status
    ),
    prim!(
        "vms",
        ["vms(site) -> [Vm]"],
        Read,
        S_STATUS,
        "The VMs of a site.",
        reg_vms
    ),
    prim!(
        "vm",
        ["vm(site, name_or_id) -> Vm"],
        Read,
        S_STATUS,
        "One VM by name or id; an unknown or ambiguous name is an error listing close matches.",
        reg_vm
    ),
    prim!(
        "mirror_interval",
        ["mirror_interval(cluster) -> string"],
        Read,
        S_STATUS,
        "The DR cluster's mirror snapshot interval, e.g. \"1h\".",
        reg_mirror_interval
    ),
    prim!(
        "image_status",
        ["image_status(site, image) -> map"],
        Read,
        S_STATUS,
        "Glue's mirror status of one RBD image on a site: state, description, primary, peer sites, last update, and a replica's replay detail (replay_state, last_snapshot_bytes, …).",
        reg_image_status
    ),
    prim!(
        "connectivity_test",
        ["connectivity_test(cluster) -> #{ok, reason}"],
        Read,
        S_STATUS,
        "Mold's own connection test from the protected site to the DR site.",
        reg_connectivity_test
    ),
    // DR cluster operations
    prim!(
        "create_dr_cluster",
        [
            "create_dr_cluster(name, protected_site, dr_site) -> map",
            "create_dr_cluster(name, protected_site, dr_site, #{description, private_key_file, glue_ip}) -> map"
        ],
        Mutate,
        S_CLUSTER,
        "Pair two sites as a new DR cluster after Mold's connection test; the DR site's storage-VM key is read from private_key_file, else its ssh_key_file.",
        reg_create_dr_cluster
    ),
    prim!(
        "promote",
        ["promote(cluster) -> map"],
        Destructive,
        S_CLUSTER,
        "Force-promote the DR site's images (failover). Guard: mirrored VMs stopped; reports the writes at risk (lag) first.",
        "Promote DR cluster {0}",
        reg_promote
    ),
    prim!(
        "resync",
        ["resync(cluster) -> map"],
        Destructive,
        S_CLUSTER,
        "Resync the returned protected site's images from the DR site (a full copy). Guards: VMs stopped on both sites; images in split-brain.",
        "Resync DR cluster {0} (a full copy of every volume)",
        reg_resync
    ),
    prim!(
        "demote",
        ["demote(cluster) -> map"],
        Destructive,
        S_CLUSTER,
        "Demote the DR site back (failback). Guards: VMs stopped on both sites; protected-site images replaying and idle.",
        "Demote DR cluster {0}",
        reg_demote
    ),
    prim!(
        "clear_garbage",
        ["clear_garbage(cluster) -> map"],
        Destructive,
        S_CLUSTER,
        "Clear the lost protected site's mirroring garbage on the DR site. Guard: the protected site is gone.",
        "Clear the mirroring garbage of DR cluster {0}",
        reg_clear_garbage
    ),
    prim!(
        "remove_dr_cluster",
        ["remove_dr_cluster(cluster, site) -> map"],
        Destructive,
        S_CLUSTER,
        "Delete the DR cluster record on a site.",
        "Delete the record of DR cluster {0}",
        reg_remove_dr_cluster
    ),
    prim!(
        "set_mirror_interval",
        ["set_mirror_interval(cluster, interval) -> map"],
        Mutate,
        S_CLUSTER,
        "Set the mirror snapshot interval (\"30m\", \"1h\", \"1d\"), keeping every other stored detail.",
        reg_set_mirror_interval
    ),
    // VMs
    prim!(
        "start_vm",
        ["start_vm(site, vm) -> Vm"],
        Mutate,
        S_VMS,
        "Start a VM and wait for it to run; Mold's start guards apply.",
        reg_start_vm
    ),
    prim!(
        "stop_vm",
        [
            "stop_vm(site, vm) -> Vm",
            "stop_vm(site, vm, #{force: true}) -> Vm"
        ],
        Mutate,
        S_VMS,
        "Stop a VM and wait for it to stop.",
        reg_stop_vm
    ),
    prim!(
        "start_vms",
        [
            "start_vms(site, vms) -> [map]",
            "start_vms(site, vms, #{concurrency, timeout}) -> [map]"
        ],
        Mutate,
        S_VMS,
        "Start VMs concurrently (bounded); one result per VM, never stopping at the first failure.",
        reg_start_vms
    ),
    prim!(
        "stop_vms",
        [
            "stop_vms(site, vms) -> [map]",
            "stop_vms(site, vms, #{concurrency, timeout, force}) -> [map]"
        ],
        Mutate,
        S_VMS,
        "Stop VMs concurrently (bounded); one result per VM.",
        reg_stop_vms
    ),
    prim!(
        "create_mirror_vm",
        [
            "create_mirror_vm(cluster, vm) -> map",
            "create_mirror_vm(cluster, vm, #{offering, network, cpu, memory_gb}) -> map"
        ],
        Mutate,
        S_VMS,
        "Protect a VM: mirroring on its images and a stopped mirrored VM on the DR site.",
        reg_create_mirror_vm
    ),
    prim!(
        "remove_mirror_vm",
        ["remove_mirror_vm(cluster, vm) -> map"],
        Destructive,
        S_VMS,
        "Unprotect a VM: mirroring off, the mirrored VM destroyed on the DR site.",
        "Remove the mirrored VM of {1} (DR cluster {0})",
        reg_remove_mirror_vm
    ),
    prim!(
        "snapshot_vm",
        ["snapshot_vm(cluster, vm) -> map"],
        Mutate,
        S_VMS,
        "Take a mirror snapshot of a VM's volumes and verify it reached the DR site.",
        reg_snapshot_vm
    ),
    prim!(
        "promote_vm",
        ["promote_vm(cluster, vm) -> map"],
        Mutate,
        S_VMS,
        "Mirroring test: roles swap back, this site's images primary again.",
        reg_promote_vm
    ),
    prim!(
        "demote_vm",
        ["demote_vm(cluster, vm) -> map"],
        Mutate,
        S_VMS,
        "Mirroring test: this site's images demoted, the DR site's promoted.",
        reg_demote_vm
    ),
    prim!(
        "start_mirror_vm",
        ["start_mirror_vm(cluster, vm) -> map"],
        Mutate,
        S_VMS,
        "Mirroring test: start the mirrored VM on the DR site.",
        reg_start_mirror_vm
    ),
    prim!(
        "stop_mirror_vm",
        ["stop_mirror_vm(cluster, vm) -> map"],
        Mutate,
        S_VMS,
        "Mirroring test: stop the mirrored VM on the DR site.",
        reg_stop_mirror_vm
    ),
    prim!(
        "drill",
        [
            "drill(cluster, vm) -> DrillReport",
            "drill(cluster, vm, #{observe: \"60s\", restore: false}) -> DrillReport"
        ],
        Mutate,
        S_VMS,
        "The 8-step mirroring simulation test of one VM: refused unless the VM runs on the protected site on its primary images; a failed step returns it there, and the error (kind drill_failed, e.details the report) says what is left. restore: first return a VM an earlier drill of this run left away.",
        reg_drill
    ),
    // Images
    prim!(
        "mirror_snapshot",
        ["mirror_snapshot(site, vm) -> map"],
        Mutate,
        S_IMAGES,
        "A mirror snapshot of a VM's images on the site where they are primary; returns once it reached the peer.",
        reg_mirror_snapshot
    ),
    prim!(
        "demote_image",
        ["demote_image(site, image) -> map"],
        Destructive,
        S_IMAGES,
        "Demote one image (orderly switchover). Guards: primary here, its VM stopped, the peer idle.",
        "Demote image {1}",
        reg_demote_image
    ),
    prim!(
        "promote_image",
        ["promote_image(site, image) -> map"],
        Destructive,
        S_IMAGES,
        "Promote one image after the peer's demotion was replayed here — never a second primary.",
        "Promote image {1}",
        reg_promote_image
    ),
    prim!(
        "resync_image",
        ["resync_image(site, image) -> map"],
        Destructive,
        S_IMAGES,
        "Flag a non-primary image for a full resync from the primary.",
        "Resync image {1} from its peer (a full copy)",
        reg_resync_image
    ),
    // Runbook control
    prim!(
        "step",
        ["step(name, || { ... })"],
        Control,
        S_CONTROL,
        "A journaled, resumable unit; on --resume a finished step returns its recorded result without running.",
        reg_step
    ),
    prim!(
        "confirm",
        ["confirm(question) -> bool"],
        Control,
        S_CONTROL,
        "Ask the operator; --yes answers yes; a yes also covers the destructive acts of the current step.",
        reg_confirm
    ),
    prim!(
        "wait_until",
        [
            "wait_until(|| cond)",
            "wait_until(|| cond, #{timeout, every, what})"
        ],
        Control,
        S_CONTROL,
        "Poll a condition until true; times out with a clear error.",
        reg_wait_until
    ),
    prim!(
        "wait_synced",
        [
            "wait_synced(cluster) -> MirrorStatus",
            "wait_synced(cluster, #{timeout}) -> MirrorStatus"
        ],
        Control,
        S_CONTROL,
        "Wait until every mirrored volume of the cluster is synced.",
        reg_wait_synced
    ),
    prim!(
        "wait_running",
        [
            "wait_running(site, vms) -> [Vm]",
            "wait_running(site, vms, #{timeout}) -> [Vm]"
        ],
        Control,
        S_CONTROL,
        "Wait until the VMs run on the site.",
        reg_wait_running
    ),
    prim!(
        "sleep",
        ["sleep(duration)"],
        Control,
        S_CONTROL,
        "Pause (\"30s\", \"5m\" or seconds); Ctrl-C cuts it short.",
        reg_sleep
    ),
    prim!(
        "now",
        ["now() -> Time"],
        Control,
        S_CONTROL,
        "The current time.",
        reg_now
    ),
    prim!(
        "elapsed",
        ["elapsed(time) -> int"],
        Control,
        S_CONTROL,
        "Whole seconds since a time from now().",
        reg_elapsed
    ),
    prim!(
        "duration",
        ["duration(text) -> int"],
        Control,
        S_CONTROL,
        "Seconds in \"1h30m\"-style text (units d, h, m, s, ms).",
        reg_duration
    ),
    prim!(
        "vars",
        ["vars(#{name: #{kind, fallback, min, max, of, required, doc}, …}) -> map"],
        Control,
        S_CONTROL,
        "The run's vars (ARGS), declared and parsed before anything is done: kinds text, bool (true/yes/1/on…), int (min, max), duration (as seconds), list (comma-separated, no empty item), choice (of: […]); fallbacks filled in; a var not declared or a value that cannot be meant is a usage error naming it.",
        reg_vars
    ),
    prim!(
        "plan_mode",
        ["plan_mode() -> bool"],
        Control,
        S_CONTROL,
        "True under --plan.",
        reg_plan_mode
    ),
    prim!(
        "info",
        ["info(message)"],
        Control,
        S_CONTROL,
        "A log line.",
        reg_info
    ),
    prim!(
        "warn",
        ["warn(message)"],
        Control,
        S_CONTROL,
        "A warning line.",
        reg_warn
    ),
    prim!(
        "fail",
        ["fail(message)"],
        Control,
        S_CONTROL,
        "Stop the run with exit code 1 (not catchable).",
        reg_fail
    ),
    prim!(
        "error",
        ["error(kind, message) -> Error"],
        Control,
        S_CONTROL,
        "An Error of one of the documented kinds (\"unknown\", \"guard\", …) to throw, so callers decide on e.kind: throw error(\"guard\", \"site-a still answers\").",
        reg_error
    ),
    prim!(
        "is_unknown",
        ["is_unknown(value) -> bool"],
        Control,
        S_CONTROL,
        "Whether a value is an Unknown: something drbook could not read (a dark site, a failed or garbled answer). Comparing or negating an Unknown throws an \"unknown\" error.",
        reg_is_unknown
    ),
    prim!(
        "require_known",
        ["require_known(value, what) -> value"],
        Control,
        S_CONTROL,
        "The value itself, or, for an Unknown, an \"unknown\" error saying that `what` could not be read, where and what to do.",
        reg_require_known
    ),
    prim!(
        "notify",
        ["notify(message)"],
        Control,
        S_CONTROL,
        "Post a message to the configured webhook ([notify] webhook_url).",
        reg_notify
    ),
    prim!(
        "notify_webhook",
        ["notify_webhook(url, payload)"],
        Control,
        S_CONTROL,
        "Post a JSON payload (a map) to a webhook URL.",
        reg_notify_webhook
    ),
    prim!(
        "run",
        [
            "run(runbook) -> RunReport",
            "run(runbook, #{vars}) -> RunReport"
        ],
        Control,
        S_CONTROL,
        "Run another runbook (a file next to this script, else a shipped one) as a nested run with its own journal; returns its report. Vars reach its ARGS as the values given (arrays, maps, numbers, bools; not functions). A nested run resumes with its parent: on --resume its finished steps and calls are not repeated.",
        reg_run
    ),
    // Escape hatches
    prim!(
        "mold",
        [
            "mold(site, command) -> map",
            "mold(site, command, #{params}) -> map"
        ],
        ByVerb,
        S_ESCAPE,
        "A raw signed Mold call; list*/get*/query* read, anything else mutates (journaled); async commands are waited for.",
        reg_mold
    ),
    prim!(
        "glue",
        [
            "glue(site, method, path) -> map",
            "glue(site, method, path, #{form}) -> map"
        ],
        ByVerb,
        S_ESCAPE,
        "A raw Glue call under /api/v1; GET reads, anything else mutates (journaled).",
        reg_glue
    ),
    prim!(
        "ssh",
        ["ssh(site, command) -> #{host, status, stdout, stderr}"],
        ByCommand,
        S_ESCAPE,
        "Run a command on one of the site's storage VMs with the site's SSH key; destructive (asks first) unless it is a known read (ceph -s, rbd … status/info/ls).",
        "Run {1}",
        reg_ssh
    ),
];

// ---------------------------------------------------------------------------------------
// Sites, clusters, status
// ---------------------------------------------------------------------------------------

fn reg_site(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("site", move |name: &str| {
        h.dr.site(name).map_err(|e| super::error::dr_error(&e))
    });
}

fn reg_sites(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("sites", move || {
        h.dr.site_names()
            .iter()
            .filter_map(|n| h.dr.site(n).ok())
            .map(Dynamic::from)
            .collect::<Array>()
    });
}

fn reg_dr_cluster(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("dr_cluster", move |name: &str| {
        let dr = h.dr.clone();
        h.read("dr_cluster", async move { dr.dr_cluster(name).await })
    });
}

fn reg_dr_clusters(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("dr_clusters", move || -> RhaiResult<Array> {
        let dr = h.dr.clone();
        let all = h.read("dr_clusters", async move { dr.dr_clusters().await })?;
        Ok(all.into_iter().map(Dynamic::from).collect())
    });
}

fn reg_health(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("health", move |site: Dynamic| -> RhaiResult<Dynamic> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let health = h.block("health", async move { dr.health(&site).await })?;
        to_dynamic(&health)
    });
}

fn reg_mirror_status(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("mirror_status", move |cluster: Dynamic| {
        let cluster = convert::cluster(&cluster)?;
        let dr = h.dr.clone();
        h.read(
            "mirror_status",
            async move { dr.mirror_status(&cluster).await },
        )
    });
}

fn reg_vms(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("vms", move |site: Dynamic| -> RhaiResult<Array> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let vms = h.read("vms", async move { dr.vms(&site).await })?;
        Ok(vms.into_iter().map(Dynamic::from).collect())
    });
}

fn reg_vm(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("vm", move |site: Dynamic, vm: Dynamic| {
        let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
        let dr = h.dr.clone();
        h.read("vm", async move { dr.vm(&site, &vm).await })
    });
}

fn reg_mirror_interval(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("mirror_interval", move |cluster: Dynamic| {
        let cluster = convert::cluster(&cluster)?;
        let dr = h.dr.clone();
        h.read("mirror_interval", async move {
            dr.mirror_interval(&cluster).await
        })
    });
}

fn reg_image_status(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "image_status",
        move |site: Dynamic, image: &str| -> RhaiResult<Dynamic> {
            use crate::glue::MirrorSide as _;
            let site = convert::site(&site)?;
            let (dr, image) = (h.dr.clone(), image.to_string());
            let st = h.read("image_status", async move {
                dr.image_status(&site, &image).await
            })?;
            let peers: Vec<Value> = st
                .peer_sites
                .iter()
                .map(|p| {
                    json!({"site_name": p.site_name, "state": p.state, "description": p.description,
                            "last_update": p.last_update.map(|t| t.to_string())})
                })
                .collect();
            to_dynamic(&json!({
                "name": st.name, "state": st.state, "description": st.description,
                "primary": st.is_primary(), "last_update": st.last_update.map(|t| t.to_string()),
                "peer_sites": peers,
                // A replica's replay detail (replay_state, last_snapshot_bytes, …), else ().
                "replay": st.replay_detail(),
            }))
        },
    );
}

fn reg_connectivity_test(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "connectivity_test",
        move |cluster: Dynamic| -> RhaiResult<Dynamic> {
            let cluster = convert::cluster(&cluster)?;
            let dr = h.dr.clone();
            let (ok, reason) = h.read("connectivity_test", async move {
                dr.connectivity_test(&cluster).await
            })?;
            to_dynamic(&json!({"ok": ok, "reason": reason}))
        },
    );
}

// ---------------------------------------------------------------------------------------
// DR cluster operations
// ---------------------------------------------------------------------------------------

/// A plan-mode stand-in for an outcome.
fn planned(action: &str, args: &Value) -> Value {
    json!({"action": action, "planned": true, "args": args})
}

macro_rules! cluster_op {
    ($fn_name:ident, $name:literal, $method:ident) => {
        fn $fn_name(e: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            e.register_fn($name, move |cluster: Dynamic| -> RhaiResult<Dynamic> {
                let cluster = convert::cluster(&cluster)?;
                let args = json!([cluster]);
                let dr = h.dr.clone();
                let c = cluster.clone();
                h.mutate(
                    $name,
                    args.clone(),
                    Target::Cluster(&cluster),
                    || to_dynamic(&planned($name, &args)),
                    async move {
                        dr.$method(&c)
                            .await
                            .map(|o| serde_json::to_value(o).unwrap_or_default())
                    },
                    |v: Value| to_dynamic(&v),
                )
            });
        }
    };
}

cluster_op!(reg_promote, "promote", promote);
cluster_op!(reg_resync, "resync", resync);
cluster_op!(reg_demote, "demote", demote);
cluster_op!(reg_clear_garbage, "clear_garbage", clear_garbage);

fn reg_remove_dr_cluster(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "remove_dr_cluster",
        move |cluster: Dynamic, site: Dynamic| -> RhaiResult<Dynamic> {
            let (cluster, site) = (convert::cluster(&cluster)?, convert::site(&site)?);
            let args = json!([cluster, site]);
            let dr = h.dr.clone();
            let (c, s) = (cluster.clone(), site.clone());
            h.mutate(
                "remove_dr_cluster",
                args.clone(),
                // The record is deleted on the site given; the lock covers its clusters.
                Target::Site(&site),
                || to_dynamic(&planned("remove_dr_cluster", &args)),
                async move {
                    dr.remove_dr_cluster(&c, &s)
                        .await
                        .map(|o| serde_json::to_value(o).unwrap_or_default())
                },
                |v: Value| to_dynamic(&v),
            )
        },
    );
}

fn create_dr_cluster(
    h: &Arc<Host>,
    name: &Dynamic,
    protected: &Dynamic,
    dr_site: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let o = Options::new(
        opts,
        &["description", "private_key_file", "glue_ip"],
        "create_dr_cluster",
    )?;
    let spec = DrClusterSpec {
        description: o.string("description")?,
        private_key_file: o.string("private_key_file")?.map(std::path::PathBuf::from),
        glue_ip: o.string("glue_ip")?,
    };
    let name = convert::cluster(name)?;
    let (protected, dr_site) = (convert::site(protected)?, convert::site(dr_site)?);
    // The key file's path, never its content: the journal and the report show these.
    let args = json!([name, protected, dr_site, {
        "description": spec.description,
        "private_key_file": spec.private_key_file,
        "glue_ip": spec.glue_ip,
    }]);
    let dr = h.dr.clone();
    let (cluster, from, to) = (name.clone(), protected.clone(), dr_site.clone());
    h.mutate(
        "create_dr_cluster",
        args.clone(),
        Target::Pairing(&name, &protected, &dr_site),
        || {
            let mut plan = planned("create_dr_cluster", &args);
            plan["site"] = json!(protected);
            plan["message"] = json!(format!(
                "would pair {protected} (protected) and {dr_site} (DR) as {name:?}"
            ));
            to_dynamic(&plan)
        },
        async move {
            dr.create_dr_cluster(&cluster, &from, &to, &spec)
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default())
        },
        |v: Value| to_dynamic(&v),
    )
}

fn reg_create_dr_cluster(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn(
        "create_dr_cluster",
        move |n: Dynamic, p: Dynamic, d: Dynamic| create_dr_cluster(&h1, &n, &p, &d, &Map::new()),
    );
    let h2 = h.clone();
    e.register_fn(
        "create_dr_cluster",
        move |n: Dynamic, p: Dynamic, d: Dynamic, o: Map| create_dr_cluster(&h2, &n, &p, &d, &o),
    );
}

fn reg_set_mirror_interval(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "set_mirror_interval",
        move |cluster: Dynamic, interval: &str| -> RhaiResult<Dynamic> {
            let cluster = convert::cluster(&cluster)?;
            let args = json!([cluster, interval]);
            let dr = h.dr.clone();
            let (c, i) = (cluster.clone(), interval.to_string());
            h.mutate(
                "set_mirror_interval",
                args.clone(),
                Target::Cluster(&cluster),
                || to_dynamic(&planned("set_mirror_interval", &args)),
                async move {
                    dr.set_mirror_interval(&c, &i)
                        .await
                        .map(|o| serde_json::to_value(o).unwrap_or_default())
                },
                |v: Value| to_dynamic(&v),
            )
        },
    );
}

// ---------------------------------------------------------------------------------------
// VMs
// ---------------------------------------------------------------------------------------

/// Plan mode's stand-in for a VM after a power change: the VM as it is now, in `state`.
fn planned_vm(h: &Host, site: &str, vm: &str, state: &str) -> RhaiResult<Dynamic> {
    let (dr, site, vm) = (h.dr.clone(), site.to_string(), vm.to_string());
    let mut current = h.read("vm", async move { dr.vm(&site, &vm).await })?;
    current.state = state.to_string();
    Ok(Dynamic::from(current))
}

fn reg_start_vm(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("start_vm", move |site: Dynamic, vm: Dynamic| {
        let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
        let dr = h.dr.clone();
        let (s, v) = (site.clone(), vm.clone());
        h.mutate(
            "start_vm",
            json!([site, vm]),
            Target::Site(&site),
            || planned_vm(&h, &site, &vm, "Running"),
            async move { dr.start_vm(&s, &v).await },
            |vm: dr::Vm| Ok(Dynamic::from(vm)),
        )
    });
}

fn stop_vm(h: &Arc<Host>, site: &Dynamic, vm: &Dynamic, force: bool) -> RhaiResult<Dynamic> {
    let (site, vm) = (convert::site(site)?, convert::vm(vm)?);
    let dr = h.dr.clone();
    let (s, v) = (site.clone(), vm.clone());
    h.mutate(
        "stop_vm",
        json!([site, vm, {"force": force}]),
        Target::Site(&site),
        || planned_vm(h, &site, &vm, "Stopped"),
        async move { dr.stop_vm(&s, &v, force).await },
        |vm: dr::Vm| Ok(Dynamic::from(vm)),
    )
}

fn reg_stop_vm(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("stop_vm", move |site: Dynamic, vm: Dynamic| {
        stop_vm(&h1, &site, &vm, false)
    });
    let h2 = h.clone();
    e.register_fn("stop_vm", move |site: Dynamic, vm: Dynamic, opts: Map| {
        let force = Options::new(&opts, &["force"], "stop_vm")?.bool("force", false)?;
        stop_vm(&h2, &site, &vm, force)
    });
}

/// One result per VM: `#{vm, ok, state, error}`.
fn batch_results(results: Vec<(String, Result<dr::Vm, dr::DrError>)>) -> Vec<Value> {
    results
        .into_iter()
        .map(|(name, r)| match r {
            Ok(vm) => json!({"vm": name, "ok": true, "state": vm.state, "error": null}),
            Err(e) => json!({"vm": name, "ok": false, "state": null, "error": e.to_string()}),
        })
        .collect()
}

fn batch(
    h: &Arc<Host>,
    name: &'static str,
    site: &Dynamic,
    vms: &Array,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let start = name == "start_vms";
    let allowed: &[&str] = if start {
        &["concurrency", "timeout"]
    } else {
        &["concurrency", "timeout", "force"]
    };
    let o = Options::new(opts, allowed, name)?;
    let concurrency = o.usize("concurrency", h.concurrency)?;
    let timeout = o.duration("timeout", Duration::from_secs(15 * 60))?;
    let force = o.bool("force", false)?;
    let site = convert::site(site)?;
    let names = convert::vms(vms)?;
    let args = json!([site, names, {"concurrency": concurrency, "timeout_secs": timeout.as_secs(), "force": force}]);
    let dr = h.dr.clone();
    let (s, n) = (site.clone(), names.clone());
    let plan_names = names.clone();
    h.mutate(
        name,
        args,
        Target::Site(&site),
        || {
            let planned: Vec<Value> = plan_names
                .iter()
                .map(|v| json!({"vm": v, "ok": true, "state": if start { "Running" } else { "Stopped" }, "error": null, "planned": true}))
                .collect();
            to_dynamic(&planned)
        },
        async move {
            let results = if start {
                dr.start_vms(&s, &n, concurrency, timeout).await
            } else {
                dr.stop_vms(&s, &n, force, concurrency, timeout).await
            };
            Ok(batch_results(results))
        },
        |v: Vec<Value>| to_dynamic(&v),
    )
}

fn reg_start_vms(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("start_vms", move |site: Dynamic, vms: Array| {
        batch(&h1, "start_vms", &site, &vms, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("start_vms", move |site: Dynamic, vms: Array, opts: Map| {
        batch(&h2, "start_vms", &site, &vms, &opts)
    });
}

fn reg_stop_vms(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("stop_vms", move |site: Dynamic, vms: Array| {
        batch(&h1, "stop_vms", &site, &vms, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("stop_vms", move |site: Dynamic, vms: Array, opts: Map| {
        batch(&h2, "stop_vms", &site, &vms, &opts)
    });
}

fn create_mirror_vm(
    h: &Arc<Host>,
    cluster: &Dynamic,
    vm: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let o = Options::new(
        opts,
        &["offering", "network", "cpu", "memory_gb"],
        "create_mirror_vm",
    )?;
    let spec = MirrorVmSpec {
        offering: o.string("offering")?,
        network: o.string("network")?,
        cpu: o.u32("cpu")?,
        memory_gb: o.u32("memory_gb")?,
    };
    let (cluster, vm) = (convert::cluster(cluster)?, convert::vm(vm)?);
    let args = json!([cluster, vm, {"offering": spec.offering, "network": spec.network, "cpu": spec.cpu, "memory_gb": spec.memory_gb}]);
    let dr = h.dr.clone();
    let (c, v) = (cluster.clone(), vm.clone());
    h.mutate(
        "create_mirror_vm",
        args.clone(),
        Target::ProtectedSide(&cluster),
        || to_dynamic(&planned("create_mirror_vm", &args)),
        async move {
            dr.create_mirror_vm(&c, &v, &spec)
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default())
        },
        |v: Value| to_dynamic(&v),
    )
}

fn reg_create_mirror_vm(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("create_mirror_vm", move |c: Dynamic, v: Dynamic| {
        create_mirror_vm(&h1, &c, &v, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("create_mirror_vm", move |c: Dynamic, v: Dynamic, o: Map| {
        create_mirror_vm(&h2, &c, &v, &o)
    });
}

macro_rules! vm_op {
    ($fn_name:ident, $name:literal, $method:ident) => {
        fn $fn_name(e: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            e.register_fn(
                $name,
                move |cluster: Dynamic, vm: Dynamic| -> RhaiResult<Dynamic> {
                    let (cluster, vm) = (convert::cluster(&cluster)?, convert::vm(&vm)?);
                    let args = json!([cluster, vm]);
                    let dr = h.dr.clone();
                    let (c, v) = (cluster.clone(), vm.clone());
                    h.mutate(
                        $name,
                        args.clone(),
                        Target::ProtectedSide(&cluster),
                        || to_dynamic(&planned($name, &args)),
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

vm_op!(reg_remove_mirror_vm, "remove_mirror_vm", remove_mirror_vm);
vm_op!(reg_snapshot_vm, "snapshot_vm", snapshot_vm);
vm_op!(reg_promote_vm, "promote_vm", promote_vm);
vm_op!(reg_demote_vm, "demote_vm", demote_vm);
vm_op!(reg_start_mirror_vm, "start_mirror_vm", start_mirror_vm);
vm_op!(reg_stop_mirror_vm, "stop_mirror_vm", stop_mirror_vm);

fn drill(h: &Arc<Host>, cluster: &Dynamic, vm: &Dynamic, opts: &Map) -> RhaiResult<Dynamic> {
    let o = Options::new(opts, &["observe", "restore"], "drill")?;
    let observe = o.duration("observe", Duration::from_secs(60))?;
    let restore = o.bool("restore", false)?;
    let (cluster, vm) = (convert::cluster(cluster)?, convert::vm(vm)?);
    let dr = h.dr.clone();
    let (c, v) = (cluster.clone(), vm.clone());
    let journal: Arc<dyn dr::drill::DrillLog> = Arc::new(super::host::DrillJournal(h.clone()));
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
        "drill",
        args,
        Target::ProtectedSide(&cluster),
        || Ok(Dynamic::from(plan)),
        async move { dr.drill(&c, &v, observe, restore, Some(journal)).await },
        |r: dr::DrillReport| Ok(Dynamic::from(r)),
    )
}

fn reg_drill(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("drill", move |c: Dynamic, v: Dynamic| {
        drill(&h1, &c, &v, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("drill", move |c: Dynamic, v: Dynamic, o: Map| {
        drill(&h2, &c, &v, &o)
    });
}

// ---------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------

fn reg_mirror_snapshot(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "mirror_snapshot",
        move |site: Dynamic, vm: Dynamic| -> RhaiResult<Dynamic> {
            let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
            let args = json!([site, vm]);
            let dr = h.dr.clone();
            let (s, v) = (site.clone(), vm.clone());
            h.mutate(
                "mirror_snapshot",
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned("mirror_snapshot", &args)),
                async move {
                    dr.mirror_snapshot(&s, &v)
                        .await
                        .map(|o| serde_json::to_value(o).unwrap_or_default())
                },
                |v: Value| to_dynamic(&v),
            )
        },
    );
}

macro_rules! image_op {
    ($fn_name:ident, $name:literal, $method:ident) => {
        fn $fn_name(e: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            e.register_fn(
                $name,
                move |site: Dynamic, image: &str| -> RhaiResult<Dynamic> {
                    let site = convert::site(&site)?;
                    let args = json!([site, image]);
                    let dr = h.dr.clone();
                    let (s, i) = (site.clone(), image.to_string());
                    h.mutate(
                        $name,
                        args.clone(),
                        Target::Site(&site),
                        || to_dynamic(&planned($name, &args)),
                        async move {
                            dr.$method(&s, &i)
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

image_op!(reg_demote_image, "demote_image", demote_image);
image_op!(reg_promote_image, "promote_image", promote_image);
image_op!(reg_resync_image, "resync_image", resync_image);

// ---------------------------------------------------------------------------------------
// Runbook control
// ---------------------------------------------------------------------------------------

fn reg_step(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "step",
        move |ctx: NativeCallContext, name: &str, f: FnPtr| -> RhaiResult<Dynamic> {
            if let Some(recorded) = h.step_start(name)? {
                h.log(
                    "info",
                    &format!("step {name}: done in an earlier run, skipped"),
                );
                return convert::from_json(&recorded);
            }
            h.log("info", &format!("step {name}"));
            match f.call_within_context::<Dynamic>(&ctx, ()) {
                Ok(v) => {
                    h.step_end(name, Ok(&convert::to_json(&v)))?;
                    Ok(v)
                }
                Err(err) => {
                    let msg = super::diagnostic::message_of(&err);
                    h.step_end(name, Err(&msg))?;
                    Err(err)
                }
            }
        },
    );
}

fn reg_confirm(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("confirm", move |question: &str| h.confirm(question));
}

fn wait_until(
    h: &Arc<Host>,
    ctx: &NativeCallContext,
    f: &FnPtr,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let o = Options::new(opts, &["timeout", "every", "what"], "wait_until")?;
    let timeout = o.duration("timeout", Duration::from_secs(30 * 60))?;
    let every = o.duration("every", h.poll_interval)?;
    let what = o.string("what")?.unwrap_or_else(|| "the condition".into());
    if h.plan_mode() {
        return Ok(Dynamic::TRUE);
    }
    let progress = super::progress::Progress::start(&format!("waiting for {what}"), timeout);
    let started = std::time::Instant::now();
    loop {
        // Why the condition could not be told on this round, if it could not.
        let unknown = match f.call_within_context::<Dynamic>(ctx, ()) {
            Ok(v) if v.is_bool() => {
                if v.as_bool().unwrap_or(false) {
                    progress.finish(&format!("{what}: done"));
                    return Ok(v);
                }
                None
            }
            Ok(v) => {
                return Err(script_error(format!(
                    "wait_until: the condition must return true or false, and it returned {} ({})",
                    super::error::value_message(&v),
                    v.type_name()
                )));
            }
            // What could not be read is waited through like a false, and said.
            Err(err) => match super::error::unknown_reason(&err) {
                Some(reason) => Some(reason),
                None => return Err(err),
            },
        };
        if started.elapsed() >= timeout {
            progress.finish(&format!("{what}: timed out"));
            let why = unknown.map_or_else(String::new, |r| format!("; last round: {r}"));
            return Err(super::error::ScriptError::new(
                super::error::ErrorKind::Timeout,
                format!(
                    "timed out after {} waiting for {what}{why}",
                    crate::duration::Human(timeout)
                ),
            )
            .into_eval());
        }
        progress.status(unknown.as_deref().unwrap_or("not yet"));
        h.block(&format!("waiting for {what}"), tokio::time::sleep(every))?;
    }
}

fn reg_wait_until(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("wait_until", move |ctx: NativeCallContext, f: FnPtr| {
        wait_until(&h1, &ctx, &f, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn(
        "wait_until",
        move |ctx: NativeCallContext, f: FnPtr, o: Map| wait_until(&h2, &ctx, &f, &o),
    );
}

fn wait_synced(h: &Arc<Host>, cluster: &Dynamic, opts: &Map) -> RhaiResult<Dynamic> {
    let timeout = Options::new(opts, &["timeout"], "wait_synced")?
        .duration("timeout", Duration::from_secs(2 * 3600))?;
    let cluster = convert::cluster(cluster)?;
    let dr = h.dr.clone();
    if h.plan_mode() {
        let status = h.read(
            "mirror_status",
            async move { dr.mirror_status(&cluster).await },
        )?;
        return Ok(Dynamic::from(status));
    }
    let progress = super::progress::Progress::start(
        &format!("waiting for DR cluster {cluster} to sync"),
        timeout,
    );
    let poll = h.poll_interval;
    let status = h.read("wait_synced", async move {
        dr.wait_synced(&cluster, timeout, poll, &|p: &dr::WaitProgress<'_>| {
            progress.status(&p.line());
        })
        .await
    })?;
    Ok(Dynamic::from(status))
}

fn reg_wait_synced(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("wait_synced", move |c: Dynamic| {
        wait_synced(&h1, &c, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("wait_synced", move |c: Dynamic, o: Map| {
        wait_synced(&h2, &c, &o)
    });
}

fn wait_running(h: &Arc<Host>, site: &Dynamic, vms: &Array, opts: &Map) -> RhaiResult<Array> {
    let timeout = Options::new(opts, &["timeout"], "wait_running")?
        .duration("timeout", Duration::from_secs(15 * 60))?;
    let (site, names) = (convert::site(site)?, convert::vms(vms)?);
    if h.plan_mode() {
        return Ok(names.into_iter().map(Dynamic::from).collect());
    }
    let dr = h.dr.clone();
    let vms = h.read("wait_running", async move {
        dr.wait_running(&site, &names, timeout).await
    })?;
    Ok(vms.into_iter().map(Dynamic::from).collect())
}

fn reg_wait_running(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("wait_running", move |s: Dynamic, v: Array| {
        wait_running(&h1, &s, &v, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("wait_running", move |s: Dynamic, v: Array, o: Map| {
        wait_running(&h2, &s, &v, &o)
    });
}

fn sleep(h: &Host, d: &Dynamic) -> RhaiResult<()> {
    let d = convert::duration(d)?;
    if h.plan_mode() {
        return Ok(());
    }
    h.block("sleep", tokio::time::sleep(d))
}

fn reg_sleep(e: &mut Engine, h: &Arc<Host>) {
    // Rhai's own sleep(int) and sleep(float) would win over a Dynamic overload: they ignore
    // a negative pause and cannot be cut short by Ctrl-C. These take their place.
    let h1 = h.clone();
    e.register_fn("sleep", move |d: Dynamic| sleep(&h1, &d));
    let h2 = h.clone();
    e.register_fn("sleep", move |n: rhai::INT| sleep(&h2, &Dynamic::from(n)));
    let h3 = h.clone();
    e.register_fn("sleep", move |f: rhai::FLOAT| sleep(&h3, &Dynamic::from(f)));
}

fn reg_now(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn("now", || Time(chrono::Utc::now()));
}

fn reg_elapsed(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn("elapsed", |t: Time| {
        (chrono::Utc::now() - t.0).num_seconds()
    });
}

fn reg_duration(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn("duration", |s: &str| -> RhaiResult<i64> {
        let d = crate::duration::parse(s).map_err(|e| script_error(e.to_string()))?;
        Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    });
}

fn reg_vars(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("vars", move |spec: Map| -> RhaiResult<Map> {
        super::vars::parse_all(&spec, &h.args).map_err(script_error)
    });
}

fn reg_plan_mode(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("plan_mode", move || h.plan_mode());
}

fn reg_info(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("info", move |msg: Dynamic| h.log("info", &msg.to_string()));
}

fn reg_warn(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("warn", move |msg: Dynamic| h.log("warn", &msg.to_string()));
}

fn reg_fail(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn("fail", |msg: Dynamic| -> RhaiResult<()> {
        Err(terminate(TERMINATE_FAILED, &msg.to_string()))
    });
}

fn reg_error(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn(
        "error",
        |kind: &str, message: &str| -> RhaiResult<super::error::ScriptError> {
            let kind = super::error::ErrorKind::ALL
                .iter()
                .map(|(k, _)| *k)
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| {
                    script_error(format!(
                        "error({kind:?}, …): no such kind (kinds: {})",
                        super::error::ErrorKind::ALL
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            Ok(super::error::ScriptError::new(kind, message))
        },
    );
}

fn reg_is_unknown(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn("is_unknown", |v: Dynamic| v.is::<super::types::Unknown>());
}

fn reg_require_known(e: &mut Engine, _h: &Arc<Host>) {
    e.register_fn(
        "require_known",
        |v: Dynamic, what: &str| -> RhaiResult<Dynamic> {
            match v.read_lock::<super::types::Unknown>() {
                None => Ok(v.clone()),
                Some(u) => Err(u.refuse_for(what)),
            }
        },
    );
}

fn post_webhook(h: &Host, url: &str, payload: &Value) -> RhaiResult<()> {
    if h.plan_mode() {
        return Ok(());
    }
    let client = crate::http::client(&crate::http::TlsTrust::System, Duration::from_secs(10))
        .map_err(|e| script_error(e.to_string()))?;
    let (url, body) = (url.to_string(), payload.clone());
    let resp = h.block("notify", async move {
        client
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
    })?;
    match resp {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(script_error(format!(
            "the webhook answered HTTP {}",
            r.status().as_u16()
        ))),
        Err(e) => Err(script_error(format!(
            "the webhook could not be reached: {}",
            crate::http::describe_transport_error(&e)
        ))),
    }
}

fn reg_notify(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn("notify", move |msg: Dynamic| -> RhaiResult<()> {
        let Some(url) = h.webhook.clone() else {
            h.log(
                "warn",
                &format!("notify: no [notify] webhook_url configured; message: {msg}"),
            );
            return Ok(());
        };
        post_webhook(&h, url.expose(), &json!({"text": msg.to_string()}))
    });
}

fn reg_notify_webhook(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "notify_webhook",
        move |url: &str, payload: Dynamic| -> RhaiResult<()> {
            post_webhook(&h, url, &convert::to_json(&payload))
        },
    );
}

/// How deep runbooks may nest `run()`.
const MAX_NESTED_RUNS: usize = 8;

fn run_nested(h: &Arc<Host>, runbook: &str, vars: &Map) -> RhaiResult<Dynamic> {
    use crate::script::host::{TERMINATE_INTERRUPTED, TERMINATE_REFUSED};
    if h.depth >= MAX_NESTED_RUNS {
        return Err(script_error(format!(
            "run({runbook:?}): runbooks nested {MAX_NESTED_RUNS} deep — does a runbook run itself?"
        )));
    }
    let dir = h.script_path.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    let name = if std::path::Path::new(runbook).extension().is_some() {
        runbook.to_string()
    } else {
        format!("{runbook}.rhai")
    };
    let path = dir.join(&name);
    // A file next to this script, else a shipped runbook of that name.
    let (source, shipped) = match std::fs::read_to_string(&path) {
        Ok(source) => (source, false),
        Err(e) => super::modules::shipped(runbook)
            .map(|s| (s.to_string(), true))
            .ok_or_else(|| {
                script_error(format!(
                    "run({runbook:?}): cannot read {} ({e}), and no shipped runbook has that name ({})",
                    path.display(),
                    super::modules::shipped_names()
                ))
            })?,
    };
    // Vars go through as the values they are; a function cannot be journaled nor called
    // in the nested run's engine.
    let mut args = Map::new();
    for (k, v) in vars {
        let v = convert::plain_data(v).ok_or_else(|| {
            script_error(format!(
                "run({runbook:?}): var {k} holds a function; pass data, not closures"
            ))
        })?;
        args.insert(k.clone(), v);
    }
    let child = Arc::new(h.child(path.clone(), args)?);
    let engine = super::engine::build(&child, &path, child.stdlib_dir.clone());
    let mut scope = super::engine::scope(&child);
    // Errors and logs name the file the source came from: the shipped one is `scripts/…`.
    let file = if shipped {
        format!("scripts/{name}")
    } else {
        path.display().to_string()
    };
    let ast = engine.compile_with_scope(&scope, &source).map_err(|e| {
        script_error(format!(
            "run({runbook:?}): {}",
            super::diagnostic::Diagnostic::from_parse(&file, &source, &e).one_line()
        ))
    })?;
    let started = std::time::Instant::now();
    h.log(
        "info",
        &format!(
            "run {file} (nested run {}{})",
            child.run_id,
            if child.resumed() { ", resumed" } else { "" }
        ),
    );
    let result = engine.run_ast_with_scope(&mut scope, &ast);
    let ok = result.is_ok();
    child.finish(ok, u8::from(!ok));
    // The nested run's planned acts belong to the outer plan.
    let planned = std::mem::take(
        &mut *child
            .planned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    h.planned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(planned);
    let mut report = child
        .report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.ok = ok;
    // The outer run's report shows what the nested run did, each step under its runbook.
    {
        let mut outer = h
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = runbook.strip_suffix(".rhai").unwrap_or(runbook);
        outer
            .steps
            .extend(report.steps.iter().cloned().map(|mut s| {
                s.name = format!("{label} › {}", s.name);
                s
            }));
        outer.actions.extend(report.actions.iter().cloned());
    }
    match result {
        Ok(()) => Ok(Dynamic::from(report)),
        Err(err) => {
            let d = super::diagnostic::Diagnostic::from_eval(&file, &source, &err);
            // A refusal, an abort or fail() ends the outer run too; any other error is the
            // outer script's to catch.
            let mut inner = &*err;
            while let rhai::EvalAltResult::ErrorInFunctionCall(_, _, e, _)
            | rhai::EvalAltResult::ErrorInModule(_, e, _) = inner
            {
                inner = e;
            }
            if let rhai::EvalAltResult::ErrorTerminated(v, _) = inner {
                let text = v.to_string();
                for tag in [TERMINATE_REFUSED, TERMINATE_INTERRUPTED, TERMINATE_FAILED] {
                    if let Some(rest) = text.strip_prefix(tag).and_then(|r| r.strip_prefix(':')) {
                        return Err(terminate(
                            tag,
                            &format!(
                                "in {}: {rest}",
                                d.one_line().split(": ").next().unwrap_or(&file)
                            ),
                        ));
                    }
                }
            }
            // The nested run's kind stays: the caller decides on it as if it had called the
            // primitive itself.
            // The inner error's own words, once; where it came from is in the trace.
            let label = runbook.strip_suffix(".rhai").unwrap_or(runbook);
            let message = format!("{label}: {}", d.message);
            let mut e = match inner {
                rhai::EvalAltResult::ErrorRuntime(v, _) => {
                    v.read_lock::<super::error::ScriptError>().map_or_else(
                        || super::error::ScriptError::new(super::error::ErrorKind::Script, ""),
                        |e| e.clone(),
                    )
                }
                _ => super::error::ScriptError::new(super::error::ErrorKind::Script, ""),
            };
            e.message = message;
            Err(e.into_eval())
        }
    }
}

fn reg_run(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("run", move |runbook: &str| {
        run_nested(&h1, runbook, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("run", move |runbook: &str, vars: Map| {
        run_nested(&h2, runbook, &vars)
    });
}

// ---------------------------------------------------------------------------------------
// Escape hatches
// ---------------------------------------------------------------------------------------

fn params_of(m: &Map) -> Vec<(String, String)> {
    m.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mold(h: &Arc<Host>, site: &Dynamic, command: &str, params: &Map) -> RhaiResult<Dynamic> {
    let site = convert::site(site)?;
    let params = params_of(params);
    let dr = h.dr.clone();
    let (s, c) = (site.clone(), command.to_string());
    if crate::mold::is_read_command(command) {
        let v = h.read("mold", async move { dr.mold_raw(&s, &c, &params).await })?;
        return to_dynamic(&v);
    }
    let args = json!([
        site,
        command,
        params
            .iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>()
    ]);
    h.mutate(
        "mold",
        args.clone(),
        Target::Site(&site),
        || to_dynamic(&planned("mold", &args)),
        async move { dr.mold_raw(&s, &c, &params).await },
        |v: Value| to_dynamic(&v),
    )
}

fn reg_mold(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("mold", move |s: Dynamic, c: &str| {
        mold(&h1, &s, c, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn("mold", move |s: Dynamic, c: &str, p: Map| {
        mold(&h2, &s, c, &p)
    });
}

fn glue(
    h: &Arc<Host>,
    site: &Dynamic,
    method: &str,
    path: &str,
    form: &Map,
) -> RhaiResult<Dynamic> {
    let site = convert::site(site)?;
    let form = params_of(form);
    let dr = h.dr.clone();
    let (on, verb, route) = (site.clone(), method.to_uppercase(), path.to_string());
    if verb == "GET" {
        let v = h.read("glue", async move {
            dr.glue_raw(&on, &verb, &route, &form).await
        })?;
        return to_dynamic(&v);
    }
    let args = json!([
        site,
        verb,
        path,
        form.iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>()
    ]);
    h.mutate(
        "glue",
        args.clone(),
        Target::Site(&site),
        || to_dynamic(&planned("glue", &args)),
        async move { dr.glue_raw(&on, &verb, &route, &form).await },
        |v: Value| to_dynamic(&v),
    )
}

fn reg_glue(e: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    e.register_fn("glue", move |site: Dynamic, method: &str, path: &str| {
        glue(&h1, &site, method, path, &Map::new())
    });
    let h2 = h.clone();
    e.register_fn(
        "glue",
        move |site: Dynamic, method: &str, path: &str, form: Map| {
            glue(&h2, &site, method, path, &form)
        },
    );
}

fn reg_ssh(e: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    e.register_fn(
        "ssh",
        move |site: Dynamic, command: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let dr = h.dr.clone();
            let (s, c) = (site.clone(), command.to_string());
            if crate::ssh::is_known_read(command) {
                let out = h.read("ssh", async move { dr.ssh(&s, &c).await })?;
                return to_dynamic(&out);
            }
            let args = json!([site, command]);
            h.mutate_as(
                Kind::Destructive,
                "ssh",
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned("ssh", &args)),
                async move { dr.ssh(&s, &c).await },
                |out: crate::ssh::SshOutput| to_dynamic(&out),
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_and_a_parameter_lead_back_to_the_table() {
        for p in PRIMITIVES.iter().filter(|p| p.kind == Kind::Destructive) {
            let asked = format!(
                "{} on site-b?",
                p.question.replace("{0}", "\"DR\"").replace("{1}", "\"x\"")
            );
            assert_eq!(for_question(&asked).map(|f| f.name), Some(p.name));
        }
        assert!(for_question("Carry on?").is_none());
        assert_eq!(param_name("vm", 1), Some("name_or_id"));
        assert_eq!(param_name("promote", 0), Some("cluster"));
        assert_eq!(param_name("start_vms", 1), Some("vms"));
        assert_eq!(param_name("promote", 1), None);
        assert_eq!(param_name("no_such", 0), None);
    }

    #[test]
    fn the_table_is_consistent() {
        let mut names: Vec<&str> = PRIMITIVES.iter().map(|p| p.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name appears twice");
        for p in PRIMITIVES {
            assert!(SECTIONS.contains(&p.section), "{}", p.name);
            assert!(
                !p.doc.is_empty() && p.doc.ends_with('.'),
                "{}: {}",
                p.name,
                p.doc
            );
            assert!(
                p.signatures.iter().all(|s| s.starts_with(p.name)),
                "{}",
                p.name
            );
            assert_eq!(
                matches!(p.kind, Kind::Destructive | Kind::ByCommand),
                !p.question.is_empty(),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn the_script_api_is_covered() {
        // Every function of ../shared/design/script-api.md.
        for name in [
            "site",
            "sites",
            "dr_cluster",
            "dr_clusters",
            "health",
            "mirror_status",
            "vms",
            "vm",
            "mirror_interval",
            "image_status",
            "connectivity_test",
            "promote",
            "resync",
            "demote",
            "clear_garbage",
            "remove_dr_cluster",
            "set_mirror_interval",
            "start_vm",
            "stop_vm",
            "start_vms",
            "stop_vms",
            "create_mirror_vm",
            "remove_mirror_vm",
            "snapshot_vm",
            "promote_vm",
            "demote_vm",
            "start_mirror_vm",
            "stop_mirror_vm",
            "drill",
            "mirror_snapshot",
            "demote_image",
            "promote_image",
            "resync_image",
            "step",
            "confirm",
            "wait_until",
            "wait_synced",
            "wait_running",
            "sleep",
            "now",
            "elapsed",
            "duration",
            "vars",
            "plan_mode",
            "info",
            "warn",
            "fail",
            "error",
            "is_unknown",
            "require_known",
            "notify",
            "notify_webhook",
            "run",
            "mold",
            "glue",
            "ssh",
        ] {
            assert!(find(name).is_some(), "{name} is missing from the table");
        }
    }
}
