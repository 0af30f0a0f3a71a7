//! Sites, clusters, status: the reads a runbook decides on.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{Value, json};

use super::{CLUSTER, Kind, Overload, Param, Primitive, SITE, Ty};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult};

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "site",
        kind: Kind::Read,
        doc: "A configured site: name, mold_url, and its live role (\"primary\", \"dr\" or \"unknown\").",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("name", Ty::Text)],
            returns: "Site",
        }],
        register: site,
    },
    Primitive {
        name: "sites",
        kind: Kind::Read,
        doc: "Every configured site.",
        question: "",
        overloads: &[Overload {
            params: &[],
            returns: "[Site]",
        }],
        register: sites,
    },
    Primitive {
        name: "dr_cluster",
        kind: Kind::Read,
        doc: "A DR cluster as both sites record it: its protected (primary) and DR sites, interval, status.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("name", Ty::Text)],
            returns: "DrCluster",
        }],
        register: dr_cluster,
    },
    Primitive {
        name: "dr_clusters",
        kind: Kind::Read,
        doc: "Every DR cluster seen from the configured sites (works with one site down).",
        question: "",
        overloads: &[Overload {
            params: &[],
            returns: "[DrCluster]",
        }],
        register: dr_clusters,
    },
    Primitive {
        name: "health",
        kind: Kind::Read,
        doc: "Whether the site's Mold and Glue answer usably, with latencies; mold_reach/glue_reach say \"up\", \"down\" (no connection accepted: the site looks dark) or \"unknown\" (it answered, but not usably); with Glue down, Ceph's health is read with `ceph -s` over SSH (storage_read_via \"ssh\", and a note saying so); never throws for an unreachable site.",
        question: "",
        overloads: &[Overload {
            params: &[SITE],
            returns: "#{mold, glue, mold_reach, glue_reach, glue_health, storage_read_via, note, mold_ms, glue_ms, problem}",
        }],
        register: health,
    },
    Primitive {
        name: "mirror_status",
        kind: Kind::Read,
        doc: "Mirroring of every mirrored VM and volume: state on both sites, synced, last snapshot, lag, direction (one list call and one listTags per site); with #{home: SITE} only the VMs at home there, seen from it. A site whose Glue accepts no connection is read with rbd over SSH (storage_read_via, notes).",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER],
                returns: "MirrorStatus",
            },
            Overload {
                params: &[CLUSTER, Param::new("options", Ty::Options(&["home"]))],
                returns: "MirrorStatus",
            },
        ],
        register: mirror_status,
    },
    Primitive {
        name: "vms",
        kind: Kind::Read,
        doc: "The VMs of a site.",
        question: "",
        overloads: &[Overload {
            params: &[SITE],
            returns: "[Vm]",
        }],
        register: vms,
    },
    Primitive {
        name: "vm",
        kind: Kind::Read,
        doc: "One VM by name or id; an unknown or ambiguous name is an error listing close matches.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, Param::new("name_or_id", Ty::Vm)],
            returns: "Vm",
        }],
        register: vm,
    },
    Primitive {
        name: "mirror_interval",
        kind: Kind::Read,
        doc: "The DR cluster's mirror snapshot interval, e.g. \"1h\".",
        question: "",
        overloads: &[Overload {
            params: &[CLUSTER],
            returns: "string",
        }],
        register: mirror_interval,
    },
    Primitive {
        name: "image_status",
        kind: Kind::Read,
        doc: "Glue's mirror status of one RBD image on a site: state, description, primary, peer sites, last update, and a replica's replay detail (replay_state, last_snapshot_bytes, …); via says \"glue\", or \"ssh\" when no Glue endpoint answered and rbd ran over SSH (then note says from where).",
        question: "",
        overloads: &[Overload {
            params: &[SITE, super::IMAGE],
            returns: "map",
        }],
        register: image_status,
    },
    Primitive {
        name: "connectivity_test",
        kind: Kind::Read,
        doc: "Mold's own connection test from the protected site to the DR site.",
        question: "",
        overloads: &[Overload {
            params: &[CLUSTER],
            returns: "#{ok, reason}",
        }],
        register: connectivity_test,
    },
];

fn site(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |name: &str| {
        h.dr.site(name)
            .map_err(|e| crate::script::error::dr_error(&e))
    });
}

fn sites(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move || {
        h.dr.site_names()
            .iter()
            .filter_map(|n| h.dr.site(n).ok())
            .map(Dynamic::from)
            .collect::<Array>()
    });
}

fn dr_cluster(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |name: &str| {
        let dr = h.dr.clone();
        let name = name.to_string();
        h.read(p.name, async move { dr.dr_cluster(&name).await })
    });
}

fn dr_clusters(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move || -> RhaiResult<Array> {
        let dr = h.dr.clone();
        let all = h.read(p.name, async move { dr.dr_clusters().await })?;
        Ok(all.into_iter().map(Dynamic::from).collect())
    });
}

fn health(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic| -> RhaiResult<Dynamic> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let health = h.block(p.name, async move { dr.health(&site).await })?;
        if let Some(note) = &health.note {
            h.log("note", note);
        }
        to_dynamic(&health)
    });
}

fn status_of(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    opts: &Map,
) -> RhaiResult<crate::dr::MirrorStatus> {
    let home = p.options(opts)?.string("home")?;
    let cluster = convert::cluster(cluster)?;
    let dr = h.dr.clone();
    let status = h.read(p.name, async move {
        match home {
            None => dr.mirror_status(&cluster).await,
            Some(home) => dr.mirror_status_of(&cluster, &home).await,
        }
    })?;
    for note in &status.notes {
        h.log("note", note);
    }
    Ok(status)
}

fn mirror_status(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, status_of, (cluster: Dynamic));
}

fn vms(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic| -> RhaiResult<Array> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let vms = h.read(p.name, async move { dr.vms(&site).await })?;
        Ok(vms.into_iter().map(Dynamic::from).collect())
    });
}

fn vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic, vm: Dynamic| {
        let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
        let dr = h.dr.clone();
        h.read(p.name, async move { dr.vm(&site, &vm).await })
    });
}

fn mirror_interval(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |cluster: Dynamic| {
        let cluster = convert::cluster(&cluster)?;
        let dr = h.dr.clone();
        h.read(p.name, async move { dr.mirror_interval(&cluster).await })
    });
}

fn image_status(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, image: &str| -> RhaiResult<Dynamic> {
            use crate::glue::MirrorSide as _;
            let site = convert::site(&site)?;
            let (dr, image) = (h.dr.clone(), image.to_string());
            let (st, from) = h.read(
                p.name,
                async move { dr.image_status_read(&site, &image).await },
            )?;
            let note = from.note();
            if let Some(note) = &note {
                h.log("note", note);
            }
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
                // Where it was read from: "glue", or "ssh" with no Glue endpoint reachable.
                "via": from.via, "note": note,
            }))
        },
    );
}

fn connectivity_test(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |cluster: Dynamic| -> RhaiResult<Dynamic> {
        let cluster = convert::cluster(&cluster)?;
        let dr = h.dr.clone();
        let (ok, reason) = h.read(p.name, async move { dr.connectivity_test(&cluster).await })?;
        to_dynamic(&json!({"ok": ok, "reason": reason}))
    });
}
