//! DR cluster operations: pairing two sites, and the acts of a failover and a failback.

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};
use serde_json::{Value, json};

use super::{CLUSTER, Kind, Overload, Param, Primitive, SITE, Ty, planned};
use crate::dr::DrClusterSpec;
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target};

/// `#{home: SITE}`: only the VMs at home on that site (the direction being failed over or
/// back), image by image in an Active-Active pairing.
const BY_DIRECTION: &[Overload] = &[
    Overload {
        params: &[CLUSTER],
        returns: "map",
    },
    Overload {
        params: &[CLUSTER, Param::new("options", Ty::Options(&["home"]))],
        returns: "map",
    },
];

const CREATE_OPTIONS: Param = Param::new(
    "options",
    Ty::Options(&["description", "private_key_file", "glue_ip"]),
);

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "create_dr_cluster",
        kind: Kind::Mutate,
        doc: "Pair two sites as a new DR cluster after Mold's connection test; the DR site's storage-VM key is read from private_key_file, else its ssh_key_file.",
        question: "",
        overloads: &[
            Overload {
                params: &[NAME, PROTECTED_SITE, DR_SITE],
                returns: "map",
            },
            Overload {
                params: &[NAME, PROTECTED_SITE, DR_SITE, CREATE_OPTIONS],
                returns: "map",
            },
        ],
        register: create_dr_cluster,
    },
    Primitive {
        name: "promote",
        kind: Kind::Destructive,
        doc: "Force-promote the DR site's images (failover); with #{home: SITE} only the VMs at home there, on the other site. Guards: mirrored VMs stopped; never touches VMs at home on the acting site; reports the writes at risk (lag) first.",
        question: "Promote DR cluster {0}",
        overloads: BY_DIRECTION,
        register: promote,
    },
    Primitive {
        name: "resync",
        kind: Kind::Destructive,
        doc: "Resync the returned protected site's images from the DR site (a full copy); with #{home: SITE} only the VMs at home there. Guards: VMs stopped on both sites; images in split-brain; never touches the other direction.",
        question: "Resync DR cluster {0} (a full copy of every volume)",
        overloads: BY_DIRECTION,
        register: resync,
    },
    Primitive {
        name: "demote",
        kind: Kind::Destructive,
        doc: "Demote the DR site back (failback); with #{home: SITE} only the VMs at home there, image by image. Guards: VMs stopped on both sites; home images replaying and idle; never touches the other direction.",
        question: "Demote DR cluster {0}",
        overloads: BY_DIRECTION,
        register: demote,
    },
    Primitive {
        name: "clear_garbage",
        kind: Kind::Destructive,
        doc: "Clear the lost protected site's mirroring garbage on the DR site. Guard: the protected site is gone.",
        question: "Clear the mirroring garbage of DR cluster {0}",
        overloads: ONE_CLUSTER,
        register: clear_garbage,
    },
    Primitive {
        name: "remove_dr_cluster",
        kind: Kind::Destructive,
        doc: "Delete the DR cluster record on a site.",
        question: "Delete the record of DR cluster {0}",
        overloads: &[Overload {
            params: &[CLUSTER, SITE],
            returns: "map",
        }],
        register: remove_dr_cluster,
    },
    Primitive {
        name: "record_homes",
        kind: Kind::Mutate,
        doc: "Record the home (the site it runs on in normal operation) of every mirrored VM that has none, or of the VMs given, as a drbook.dr tag on both sites' copies, inferred at steady state (running on one site over primary images); refused, recording nothing, when any VM's home cannot be told. mirror_status shows each VM's home.",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER],
                returns: "map",
            },
            Overload {
                params: &[CLUSTER, super::VMS],
                returns: "map",
            },
        ],
        register: record_homes,
    },
    Primitive {
        name: "set_mirror_interval",
        kind: Kind::Mutate,
        doc: "Set the mirror snapshot interval (\"30m\", \"1h\", \"1d\"), keeping every other stored detail.",
        question: "",
        overloads: &[Overload {
            params: &[CLUSTER, Param::new("interval", Ty::Text)],
            returns: "map",
        }],
        register: set_mirror_interval,
    },
];

const NAME: Param = Param::new("name", Ty::Text);
const PROTECTED_SITE: Param = Param::new("protected_site", Ty::Site);
const DR_SITE: Param = Param::new("dr_site", Ty::Site);
const ONE_CLUSTER: &[Overload] = &[Overload {
    params: &[CLUSTER],
    returns: "map",
}];

fn create(
    p: &'static Primitive,
    h: &Arc<Host>,
    name: &Dynamic,
    protected: &Dynamic,
    dr_site: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let o = p.options(opts)?;
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
        p,
        args.clone(),
        Target::Pairing(&name, &protected, &dr_site),
        || {
            let mut plan = planned(p.name, &args);
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

fn create_dr_cluster(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, create, (name: Dynamic, protected: Dynamic, dr_site: Dynamic));
}

/// Registers an operation on one DR cluster, run on its DR site.
macro_rules! cluster_op {
    ($fn_name:ident, $method:ident) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            p.register_fn(engine, move |cluster: Dynamic| -> RhaiResult<Dynamic> {
                let cluster = convert::cluster(&cluster)?;
                let args = json!([cluster]);
                let dr = h.dr.clone();
                let c = cluster.clone();
                h.mutate(
                    p,
                    args.clone(),
                    Target::Cluster(&cluster),
                    || to_dynamic(&planned(p.name, &args)),
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

/// Registers a failover or failback act on one DR cluster, also for the VMs of one
/// direction (`#{home: SITE}`, `dr/by_direction.rs`).
macro_rules! direction_op {
    ($fn_name:ident, $whole:ident, $home:ident) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            fn act(
                p: &'static Primitive,
                h: &Arc<Host>,
                cluster: &Dynamic,
                opts: &Map,
            ) -> RhaiResult<Dynamic> {
                let home = p.options(opts)?.string("home")?;
                let cluster = convert::cluster(cluster)?;
                let args = match &home {
                    None => json!([cluster]),
                    Some(home) => json!([cluster, {"home": home}]),
                };
                let dr = h.dr.clone();
                let c = cluster.clone();
                h.mutate(
                    p,
                    args.clone(),
                    Target::Cluster(&cluster),
                    || to_dynamic(&planned(p.name, &args)),
                    async move {
                        match home {
                            None => dr.$whole(&c).await.map(|o| serde_json::to_value(o).unwrap_or_default()),
                            Some(home) => dr
                                .$home(&c, &home)
                                .await
                                .map(|o| serde_json::to_value(o).unwrap_or_default()),
                        }
                    },
                    |v: Value| to_dynamic(&v),
                )
            }
            with_options!(p, engine, h, act, (cluster: Dynamic));
        }
    };
}

direction_op!(promote, promote, promote_home);
direction_op!(resync, resync, resync_home);
direction_op!(demote, demote, demote_home);
cluster_op!(clear_garbage, clear_garbage);

fn remove_dr_cluster(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |cluster: Dynamic, site: Dynamic| -> RhaiResult<Dynamic> {
            let (cluster, site) = (convert::cluster(&cluster)?, convert::site(&site)?);
            let args = json!([cluster, site]);
            let dr = h.dr.clone();
            let (c, s) = (cluster.clone(), site.clone());
            h.mutate(
                p,
                args.clone(),
                // The record is deleted on the site given; the lock covers its clusters.
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
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

fn set_mirror_interval(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |cluster: Dynamic, interval: &str| -> RhaiResult<Dynamic> {
            let cluster = convert::cluster(&cluster)?;
            let args = json!([cluster, interval]);
            let dr = h.dr.clone();
            let (c, i) = (cluster.clone(), interval.to_string());
            h.mutate(
                p,
                args.clone(),
                Target::Cluster(&cluster),
                || to_dynamic(&planned(p.name, &args)),
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

fn homes(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    vms: Option<&rhai::Array>,
) -> RhaiResult<Dynamic> {
    let cluster = convert::cluster(cluster)?;
    let names = vms.map(convert::vms).transpose()?;
    let args = match &names {
        Some(n) => json!([cluster, n]),
        None => json!([cluster]),
    };
    let dr = h.dr.clone();
    let c = cluster.clone();
    h.mutate(
        p,
        args.clone(),
        Target::Cluster(&cluster),
        || to_dynamic(&planned(p.name, &args)),
        async move {
            dr.record_homes(&c, names.as_deref())
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default())
        },
        |v: Value| to_dynamic(&v),
    )
}

fn record_homes(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    p.register_fn(engine, move |cluster: Dynamic| {
        homes(p, &h1, &cluster, None)
    });
    let h2 = h.clone();
    p.register_fn(engine, move |cluster: Dynamic, vms: rhai::Array| {
        homes(p, &h2, &cluster, Some(&vms))
    });
}
