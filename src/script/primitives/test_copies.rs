//! Test copies (a DR test without an outage), the Mold side: import a test clone as a
//! volume, deploy a VM for it in an isolated network, attach its data disks, and remove it
//! all again. Every one acts only on names that carry `-drtest-<run>`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};
use serde_json::json;

use super::{Kind, Overload, Param, Primitive, SITE, Ty, VM, planned};
use crate::dr::test_copy::{self, DeployTest};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target, script_error};

pub static PRIMITIVES: &[Primitive] = &[
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
const DEPLOY_OPTIONS: Param = Param::new("options", Ty::Options(&["network", "offering", "start"]));

fn test_name(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |base: &str, run: &str| -> RhaiResult<String> {
        test_copy::test_name(base, run).map_err(|e| script_error(e.to_string()))
    });
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
