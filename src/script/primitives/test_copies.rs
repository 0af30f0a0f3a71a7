//! Test copies (a DR test without an outage), the Mold side: import a test clone as a
//! volume, deploy a VM for it in an isolated network, attach its data disks, and remove it
//! all again. Every one acts only on names that carry `-drtest-<run>`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};
use serde_json::json;

use super::{CLUSTER, IMAGE, IMAGES, Kind, Overload, Param, Primitive, SITE, Ty, VM, planned};
use crate::dr::test_copy::{self, DeployTest};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target, script_error};

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "test_snapshot",
        kind: Kind::Mutate,
        doc: "Take run `run`'s user snapshot `drtest-<run>` of an image on the site where it is primary (rbd over SSH); the next mirror snapshot carries it to the DR site. One already there is returned as it is.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, IMAGE, RUN],
            returns: "map",
        }],
        register: test_snapshot,
    },
    Primitive {
        name: "wait_test_snapshots",
        kind: Kind::Read,
        doc: "Wait until run `run`'s user snapshots of `images` are usable on the cluster's DR site: listed there, and a complete mirror snapshot at or past each (rbd over SSH on both sites); one result per image.",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER, IMAGES, RUN],
                returns: "[map]",
            },
            Overload {
                params: &[CLUSTER, IMAGES, RUN, WAIT_OPTIONS],
                returns: "[map]",
            },
        ],
        register: wait_test_snapshots,
    },
    Primitive {
        name: "clone_test_image",
        kind: Kind::Mutate,
        doc: "Clone run `run`'s user snapshot of an image on the DR site as `<image>-drtest-<run>` (copy-on-write, format 2, unmirrored; rbd over SSH); returns the clone's name. One already there is returned.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, IMAGE, RUN],
            returns: "string",
        }],
        register: clone_test_image,
    },
    Primitive {
        name: "remove_test_image",
        kind: Kind::Mutate,
        doc: "Remove a test clone (its name carries `-drtest-<run>`, it has a parent and is not mirrored; rbd over SSH); true if it was there, false if already gone.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, IMAGE],
            returns: "bool",
        }],
        register: remove_test_image,
    },
    Primitive {
        name: "remove_test_snapshot",
        kind: Kind::Mutate,
        doc: "Remove run `run`'s user snapshot of an image on a site (rbd over SSH); true if it was there, false if already gone.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, IMAGE, RUN],
            returns: "bool",
        }],
        register: remove_test_snapshot,
    },
    Primitive {
        name: "test_snapshots",
        kind: Kind::Read,
        doc: "The test snapshots (`drtest-<run>`, user or trash namespace) of some images on a site (rbd over SSH): one #{image, snapshot} each.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, IMAGES],
            returns: "[map]",
        }],
        register: test_snapshots,
    },
    Primitive {
        name: "test_images",
        kind: Kind::Read,
        doc: "The test images of a site (rbd ls over SSH): every image whose name carries `-drtest-<run>`.",
        question: "",
        overloads: &[Overload {
            params: &[SITE],
            returns: "[string]",
        }],
        register: test_images,
    },
    Primitive {
        name: "test_name",
        kind: Kind::Read,
        doc: "The name a DR test gives its copy of `base` in run `run`: `<base>-drtest-<run>` (the run id checked: a-z, 0-9, -).",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("base", Ty::Text), RUN],
            returns: "string",
        }],
        register: test_name,
    },
    Primitive {
        name: "test_network",
        kind: Kind::Read,
        doc: "A network of a site checked as a DR test's network: isolated or L2, and no VM but test VMs on it; throws a guard error saying why not.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, Param::new("network", Ty::Text)],
            returns: "map",
        }],
        register: test_network,
    },
    Primitive {
        name: "test_vms",
        kind: Kind::Read,
        doc: "The test VMs of a site: every VM whose name carries `-drtest-<run>`.",
        question: "",
        overloads: &[Overload {
            params: &[SITE],
            returns: "[Vm]",
        }],
        register: test_vms,
    },
    Primitive {
        name: "test_volumes",
        kind: Kind::Read,
        doc: "The test volumes of a site: every volume whose name or image carries `-drtest-<run>`.",
        question: "",
        overloads: &[Overload {
            params: &[SITE],
            returns: "[map]",
        }],
        register: test_volumes,
    },
    Primitive {
        name: "import_test_volume",
        kind: Kind::Mutate,
        doc: "Register a test clone (an RBD image whose name carries `-drtest-<run>`) as a Mold volume named `name` (importVolume); an image Mold already has is returned as it is.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, Param::new("image", Ty::Image), NAME],
            returns: "map",
        }],
        register: import_test_volume,
    },
    Primitive {
        name: "make_test_root",
        kind: Kind::Mutate,
        doc: "Make an imported test volume a ROOT disk (updateVolume type=ROOT), so a VM can be deployed for it.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VOLUME],
            returns: "map",
        }],
        register: make_test_root,
    },
    Primitive {
        name: "deploy_test_vm",
        kind: Kind::Mutate,
        doc: "Deploy the test VM `name` for a test ROOT volume in an isolated or L2 network that no production VM uses (deployVirtualMachineForVolume); started unless `start: false`. A VM of that name already there is returned as it is.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VOLUME, NAME, DEPLOY_OPTIONS],
            returns: "map",
        }],
        register: deploy_test_vm,
    },
    Primitive {
        name: "attach_test_volume",
        kind: Kind::Mutate,
        doc: "Attach a test volume to a test VM (attachVolume).",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VM, VOLUME],
            returns: "map",
        }],
        register: attach_test_volume,
    },
    Primitive {
        name: "destroy_test_vm",
        kind: Kind::Mutate,
        doc: "Destroy a test VM and expunge it with its volumes, every one a test volume (destroyVirtualMachine expunge=true volumeids=…); true if it was there, false if already gone.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VM],
            returns: "bool",
        }],
        register: destroy_test_vm,
    },
    Primitive {
        name: "delete_test_volume",
        kind: Kind::Mutate,
        doc: "Delete a detached test volume (deleteVolume), one a crashed test left; true if it was there, false if already gone.",
        question: "",
        overloads: &[Overload {
            params: &[SITE, VOLUME],
            returns: "bool",
        }],
        register: delete_test_volume,
    },
];

const RUN: Param = Param::new("run", Ty::Text);
const NAME: Param = Param::new("name", Ty::Text);
const VOLUME: Param = Param::new("volume", Ty::Text);
const WAIT_OPTIONS: Param = Param::new("options", Ty::Options(&["timeout"]));
const DEPLOY_OPTIONS: Param = Param::new("options", Ty::Options(&["network", "offering", "start"]));

fn test_name(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |base: &str, run: &str| -> RhaiResult<String> {
        test_copy::test_name(base, run).map_err(|e| script_error(e.to_string()))
    });
}

fn test_network(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, network: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let dr = h.dr.clone();
            let network = network.to_string();
            let net = h.read("test_network", async move {
                let action = format!("use network {network} on {site} for a DR test");
                dr.test_network(&site, &network, &action).await
            })?;
            to_dynamic(&net)
        },
    );
}

fn test_vms(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic| -> RhaiResult<rhai::Array> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let vms = h.read("test_vms", async move { dr.test_vms(&site).await })?;
        Ok(vms.into_iter().map(Dynamic::from).collect())
    });
}

fn test_volumes(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic| -> RhaiResult<Dynamic> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let vols = h.read("test_volumes", async move { dr.test_volumes(&site).await })?;
        to_dynamic(&vols)
    });
}

fn import_test_volume(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, image: &str, name: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let args = json!([site, image, name]);
            let dr = h.dr.clone();
            let (at, image, name) = (site.clone(), image.to_string(), name.to_string());
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
                async move { dr.import_test_volume(&at, &image, &name).await },
                |v| to_dynamic(&v),
            )
        },
    );
}

fn make_test_root(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, volume: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let args = json!([site, volume]);
            let dr = h.dr.clone();
            let (s, v) = (site.clone(), volume.to_string());
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
                async move { dr.make_test_root(&s, &v).await },
                |v| to_dynamic(&v),
            )
        },
    );
}

fn deploy_test_vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, volume: &str, name: &str, opts: Map| -> RhaiResult<Dynamic> {
            let options = p.options(&opts)?;
            let need = |key: &str| {
                options.string(key)?.ok_or_else(|| {
                    script_error(format!(
                        "deploy_test_vm: the options need `{key}` (the test network and the compute offering, by name or id)"
                    ))
                })
            };
            let (network, offering) = (need("network")?, need("offering")?);
            let start = options.bool("start", true)?;
            let site = convert::site(&site)?;
            let args = json!([site, volume, name, {"network": network, "offering": offering, "start": start}]);
            let dr = h.dr.clone();
            let (at, volume, name) = (site.clone(), volume.to_string(), name.to_string());
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
                async move {
                    let how = DeployTest {
                        network: &network,
                        offering: &offering,
                        start,
                    };
                    dr.deploy_test_vm(&at, &volume, &name, &how).await
                },
                |vm| to_dynamic(&vm),
            )
        },
    );
}

fn attach_test_volume(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, vm: Dynamic, volume: &str| -> RhaiResult<Dynamic> {
            let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
            let args = json!([site, vm, volume]);
            let dr = h.dr.clone();
            let (at, vm_name, volume) = (site.clone(), vm.clone(), volume.to_string());
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
                async move { dr.attach_test_volume(&at, &vm_name, &volume).await },
                |v| to_dynamic(&v),
            )
        },
    );
}

fn destroy_test_vm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, vm: Dynamic| -> RhaiResult<Dynamic> {
            let (site, vm) = (convert::site(&site)?, convert::vm(&vm)?);
            let dr = h.dr.clone();
            let (s, m) = (site.clone(), vm.clone());
            h.mutate(
                p,
                json!([site, vm]),
                Target::Site(&site),
                || Ok(Dynamic::TRUE),
                async move { dr.destroy_test_vm(&s, &m).await },
                |gone| Ok(Dynamic::from(gone)),
            )
        },
    );
}

fn delete_test_volume(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, volume: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let dr = h.dr.clone();
            let (s, v) = (site.clone(), volume.to_string());
            h.mutate(
                p,
                json!([site, volume]),
                Target::Site(&site),
                || Ok(Dynamic::TRUE),
                async move { dr.delete_test_volume(&s, &v).await },
                |gone| Ok(Dynamic::from(gone)),
            )
        },
    );
}

/// Registers an act on one image of a site and a run.
macro_rules! image_run_op {
    ($fn_name:ident, $method:ident, $plausible:expr) => {
        fn $fn_name(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
            let h = h.clone();
            p.register_fn(
                engine,
                move |site: Dynamic, image: &str, run: &str| -> RhaiResult<Dynamic> {
                    let site = convert::site(&site)?;
                    let args = json!([site, image, run]);
                    let dr = h.dr.clone();
                    let (at, image, run) = (site.clone(), image.to_string(), run.to_string());
                    h.mutate(
                        p,
                        args.clone(),
                        Target::Site(&site),
                        || $plausible(p, &args),
                        async move { dr.$method(&at, &image, &run).await },
                        |v| to_dynamic(&v),
                    )
                },
            );
        }
    };
}

fn planned_map(p: &'static Primitive, args: &serde_json::Value) -> RhaiResult<Dynamic> {
    to_dynamic(&planned(p.name, args))
}

// The shape every plan-mode stand-in of `image_run_op!` has.
#[allow(clippy::unnecessary_wraps)]
fn planned_true(_: &'static Primitive, _: &serde_json::Value) -> RhaiResult<Dynamic> {
    Ok(Dynamic::TRUE)
}

/// Plan mode's clone name: the one the clone will have.
fn planned_clone(_: &'static Primitive, args: &serde_json::Value) -> RhaiResult<Dynamic> {
    let (image, run) = (
        args[1].as_str().unwrap_or_default(),
        args[2].as_str().unwrap_or_default(),
    );
    let image = image.strip_prefix("rbd/").unwrap_or(image);
    test_copy::test_name(image, run)
        .map(Dynamic::from)
        .map_err(|e| script_error(e.to_string()))
}

image_run_op!(test_snapshot, test_snapshot, planned_map);
image_run_op!(clone_test_image, clone_test_image, planned_clone);
image_run_op!(remove_test_snapshot, remove_test_snapshot, planned_true);

fn remove_test_image(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, image: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let dr = h.dr.clone();
            let (at, image_name) = (site.clone(), image.to_string());
            h.mutate(
                p,
                json!([site, image]),
                Target::Site(&site),
                || Ok(Dynamic::TRUE),
                async move { dr.remove_test_image(&at, &image_name).await },
                |gone| Ok(Dynamic::from(gone)),
            )
        },
    );
}

fn test_images(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |site: Dynamic| -> RhaiResult<rhai::Array> {
        let site = convert::site(&site)?;
        let dr = h.dr.clone();
        let names = h.read("test_images", async move { dr.test_images(&site).await })?;
        Ok(names.into_iter().map(Dynamic::from).collect())
    });
}

fn wait_test_snapshots(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(
        p,
        engine,
        h,
        wait_snapshots,
        (cluster: Dynamic, images: rhai::Array, run: rhai::ImmutableString)
    );
}

fn wait_snapshots(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    images: &rhai::Array,
    run: &rhai::ImmutableString,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let timeout = match opts.get("timeout") {
        Some(_) => Some(options.duration("timeout", std::time::Duration::ZERO)?),
        None => None,
    };
    let cluster = convert::cluster(cluster)?;
    let images = convert::images(images)?;
    let dr = h.dr.clone();
    let run = run.to_string();
    let arrivals = h.read("wait_test_snapshots", async move {
        let c = dr.dr_cluster(&cluster).await?;
        dr.wait_test_snapshots(&c.primary_site, &c.dr_site, &images, &run, timeout)
            .await
    })?;
    to_dynamic(&arrivals)
}

fn test_snapshots(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, images: rhai::Array| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let images = convert::images(&images)?;
            let dr = h.dr.clone();
            let found = h.read("test_snapshots", async move {
                dr.test_snapshots(&site, &images).await
            })?;
            let rows: Vec<serde_json::Value> = found
                .into_iter()
                .map(|(image, snapshot)| json!({"image": image, "snapshot": snapshot}))
                .collect();
            to_dynamic(&rows)
        },
    );
}
