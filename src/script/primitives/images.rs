//! Images (Glue, image level): one RBD image at a time, for orderly switchovers by hand.

use std::sync::Arc;

use rhai::{Dynamic, Engine};
use serde_json::{Value, json};

use super::{IMAGE, Kind, Overload, Primitive, SITE, VM, planned};
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
        name: "resync_image",
        kind: Kind::Destructive,
        doc: "Flag a non-primary image for a full resync from the primary.",
        question: "Resync image {1} from its peer (a full copy)",
        overloads: SITE_IMAGE,
        register: resync_image,
    },
];

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
