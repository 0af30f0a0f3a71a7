//! Images (Glue, image level), for orderly switchovers: one RBD image (or one VM's
//! snapshot) at a time by hand, or a whole batch at once (one read per side for all of it,
//! one result per item).

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{Value, json};

use super::{IMAGE, IMAGES, Kind, Overload, Param, Primitive, SITE, Ty, VM, VMS, planned};
use crate::dr::{self, image_batch::BatchResults};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target};

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "mirror_snapshot",
        kind: Kind::Mutate,
        doc: "A mirror snapshot of a VM's images on the site where they are primary; returns once it reached the peer.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VM],
            returns: "map",
        }],
        register: mirror_snapshot,
    },
    Primitive {
        name: "mirror_snapshots",
        kind: Kind::Mutate,
        doc: "mirror_snapshot of many VMs, concurrently (bounded); one result per VM, each once its snapshot reached the peer.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, VMS],
                returns: "[map]",
            },
            Overload {
                params: &[SITE, VMS, BATCH_OPTIONS],
                returns: "[map]",
            },
        ],
        register: mirror_snapshots,
    },
    Primitive {
        name: "demote_image",
        kind: Kind::Destructive,
        doc: "Demote one image (orderly switchover). Guards: primary here, its VM stopped, the peer idle.",
        question: "Demote image {1}",
        overloads: SITE_IMAGE,
        register: demote_image,
    },
    Primitive {
        name: "promote_image",
        kind: Kind::Destructive,
        doc: "Promote one image after the peer's demotion was replayed here — never a second primary.",
        question: "Promote image {1}",
        overloads: SITE_IMAGE,
        register: promote_image,
    },
    Primitive {
        name: "demote_images",
        kind: Kind::Destructive,
        doc: "demote_image of many images, concurrently (bounded), guards judged per image; one result per image.",
        question: "Demote each of the given images",
        overloads: &[
            Overload {
                params: &[SITE, IMAGES],
                returns: "[map]",
            },
            Overload {
                params: &[SITE, IMAGES, BATCH_OPTIONS],
                returns: "[map]",
            },
        ],
        register: demote_images,
    },
    Primitive {
        name: "promote_images",
        kind: Kind::Destructive,
        doc: "promote_image of many images, each sent once the peer's demotion of it replayed here; one result per image.",
        question: "Promote each of the given images once its demotion replayed",
        overloads: &[
            Overload {
                params: &[SITE, IMAGES],
                returns: "[map]",
            },
            Overload {
                params: &[SITE, IMAGES, BATCH_OPTIONS],
                returns: "[map]",
            },
        ],
        register: promote_images,
    },
    Primitive {
        name: "resync_image",
        kind: Kind::Destructive,
        doc: "Flag a non-primary image for a full resync from the primary.",
        question: "Resync image {1} from its peer (a full copy)",
        overloads: SITE_IMAGE,
        register: resync_image,
    },
];

const BATCH_OPTIONS: Param = Param::new("options", Ty::Options(&["concurrency"]));

const SITE_IMAGE: &[Overload] = &[Overload {
    params: &[SITE, IMAGE],
    returns: "map",
}];

fn mirror_snapshot(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, vm: Dynamic| -> RhaiResult<Dynamic> {
            let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
            let args = json!([site, vm]);
            let dr = h.dr.clone();
            let (s, v) = (site.clone(), vm.clone());
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
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

/// Registers an act on one image of a site.
macro_rules! image_op {
    ($fn_name:ident, $method:ident) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            p.register_fn(
                engine,
                move |site: Dynamic, image: &str| -> RhaiResult<Dynamic> {
                    let site = convert::site(&site)?;
                    let args = json!([site, image]);
                    let dr = h.dr.clone();
                    let (s, i) = (site.clone(), image.to_string());
                    h.mutate(
                        p,
                        args.clone(),
                        Target::Site(&site),
                        || to_dynamic(&planned(p.name, &args)),
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

image_op!(demote_image, demote_image);
image_op!(promote_image, promote_image);
image_op!(resync_image, resync_image);

/// Which batch of image-level acts.
#[derive(Clone, Copy)]
enum Batch {
    Snapshots,
    Demotes,
    Promotes,
}

/// One result per item: `#{vm|image, ok, message, detail, error}`.
fn batch_results(key: &str, results: BatchResults) -> Vec<Value> {
    results
        .into_iter()
        .map(|(item, r)| match r {
            Ok(o) => json!({key: item, "ok": true, "message": o.message, "detail": o.detail, "error": null}),
            Err(e) => json!({key: item, "ok": false, "message": null, "detail": null, "error": e.to_string()}),
        })
        .collect()
}

fn batch(
    p: &'static Primitive,
    which: Batch,
    h: &Arc<Host>,
    site: &Dynamic,
    items: &Array,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let concurrency = options.usize("concurrency", h.concurrency)?;
    let site = convert::site(site)?;
    let (key, items) = match which {
        Batch::Snapshots => ("vm", convert::vms(items)?),
        Batch::Demotes | Batch::Promotes => ("image", convert::images(items)?),
    };
    let args = json!([site, items, {"concurrency": concurrency}]);
    let dr: dr::Dr = h.dr.clone();
    let (s, n) = (site.clone(), items.clone());
    h.mutate(
        p,
        args,
        Target::Site(&site),
        || {
            let planned: Vec<Value> = items
                .iter()
                .map(|i| json!({key: i, "ok": true, "message": "planned", "detail": null, "error": null, "planned": true}))
                .collect();
            to_dynamic(&planned)
        },
        async move {
            let results = match which {
                Batch::Snapshots => dr.mirror_snapshots(&s, &n, concurrency).await,
                Batch::Demotes => dr.demote_images(&s, &n, concurrency).await,
                Batch::Promotes => dr.promote_images(&s, &n, concurrency).await,
            };
            Ok(batch_results(key, results))
        },
        |v: Vec<Value>| to_dynamic(&v),
    )
}

macro_rules! batch_op {
    ($fn_name:ident, $which:expr) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            with_options!(
                p,
                engine,
                h,
                move |p, h, site, items, options| batch(p, $which, h, site, items, options),
                (site: Dynamic, items: Array)
            );
        }
    };
}

batch_op!(mirror_snapshots, Batch::Snapshots);
batch_op!(demote_images, Batch::Demotes);
batch_op!(promote_images, Batch::Promotes);
