//! Volumes, and the VMs deployed on, attached to and destroyed with them: what a test
//! failover without an outage needs — an existing RBD image (a clone of a replica) registered
//! as a volume (`importVolume`), turned into a ROOT disk (`updateVolume`), a VM deployed for
//! it (`deployVirtualMachineForVolume`, Mold's own), a second disk attached (`attachVolume`),
//! and everything removed again (`destroyVirtualMachine expunge=true volumeids=…`,
//! `deleteVolume`), with `listVolumes` to read it back.
//!
//! Parameters, order of checks and error texts follow Mold's code (jeongda-young/ablestack-cloud):
//! `ImportVolumeCmd` + `VolumeImportUnmanageManagerImpl`, `UpdateVolumeCmd` +
//! `VolumeApiServiceImpl.updateVolume`, `DeployVMVolumeCmd` +
//! `UserVmManagerImpl.createVirtualMachineVolume`, `AttachVolumeCmd` +
//! `VolumeApiServiceImpl.attachVolumeToVM`, `DeleteVolumeCmd` + `destroyVolume`,
//! `DestroyVMCmd` + `UserVmManagerImpl.destroyVm`, `ListVolumesCmd` + `QueryManagerImpl`.
//! Where a check runs matters for how it fails: a command's synchronous part (the framework's
//! parameter checks, an async create's `create()`, a sync command) answers 431 for an
//! `InvalidParameterValueException` (`cserrorcode` 4350) and 530 for a `CloudRuntimeException`;
//! anything thrown inside an async job fails the job with 530.

use std::time::Instant;

use chrono::Local;
use serde_json::{Value, json};

use super::command::{Command, Ctx, Kind};
use super::envelope::{list, page};
use super::standard::finish_start;
use crate::sim::params::Params;
use crate::sim::world::{ApiError, ApiResult, DiskOffering, Site, Step, Vm, Volume, World};

pub static IMPORT_VOLUME: Command = Command {
    name: "importVolume",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.volume.ImportVolumeCmd",
        submit: import_volume,
    },
    event: None,
};

pub static UPDATE_VOLUME: Command = Command {
    name: "updateVolume",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.volume.UpdateVolumeCmdByAdmin",
        submit: update_volume,
    },
    event: None,
};

pub static DEPLOY_FOR_VOLUME: Command = Command {
    name: "deployVirtualMachineForVolume",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.vm.DeployVMVolumeCmdByAdmin",
        submit: deploy_for_volume,
    },
    event: None,
};

pub static ATTACH_VOLUME: Command = Command {
    name: "attachVolume",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.volume.AttachVolumeCmdByAdmin",
        submit: attach_volume,
    },
    event: None,
};

/// `DeleteVolumeCmd` is a plain `BaseCmd`: it answers at once.
pub static DELETE_VOLUME: Command = Command {
    name: "deleteVolume",
    kind: Kind::Sync(delete_volume),
    event: None,
};

pub static DESTROY_VM: Command = Command {
    name: "destroyVirtualMachine",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.vm.DestroyVMCmdByAdmin",
        submit: destroy_vm,
    },
    event: None,
};

pub static LIST_VOLUMES: Command = Command {
    name: "listVolumes",
    kind: Kind::Sync(|w, ctx| Ok(list_volumes(w, ctx))),
    event: None,
};

pub static COMMANDS: &[&Command] = &[
    &IMPORT_VOLUME,
    &UPDATE_VOLUME,
    &DEPLOY_FOR_VOLUME,
    &ATTACH_VOLUME,
    &DELETE_VOLUME,
    &DESTROY_VM,
    &LIST_VOLUMES,
];

/// The disk offering `importVolume` makes and uses when it is given none
/// (`getOrCreateDefaultDiskOfferingIdForVolumeImport`).
const IMPORT_OFFERING: &str = "Default Custom Offering for Volume Import";

/// The `networkdomain` of the admin account's guest networks: CloudStack's default,
/// `cs<account id in hex>` + `guest.domain.suffix` (`cloud.internal`); admin is account 2.
const NETWORK_DOMAIN: &str = "cs2cloud.internal";

/// An `InvalidParameterValueException` raised in a command's synchronous part: 431, with
/// that exception's `cserrorcode`.
fn invalid(text: impl Into<String>) -> ApiError {
    ApiError {
        errorcode: 431,
        cserrorcode: Some(4350),
        errortext: text.into(),
    }
}

/// A `CloudRuntimeException` raised in a command's synchronous part: 530, 4250.
fn runtime(text: impl Into<String>) -> ApiError {
    ApiError {
        errorcode: 530,
        cserrorcode: Some(4250),
        errortext: text.into(),
    }
}

/// A `LIST` parameter: comma-separated values, empty ones dropped.
fn list_param(p: &Params, name: &str) -> Vec<String> {
    p.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `VolumeVO.toString()`, which some of Mold's texts quote: `Vol[<id>|name=<name>|vm=<vm
/// id or null>|<type>]`, numeric ids.
fn vol_string(site: &Site, v: &Volume) -> String {
    let vm = v
        .vm_id
        .as_deref()
        .and_then(|id| site.vm(id))
        .map_or_else(|| "null".to_string(), |vm| vm.internal_id.to_string());
    format!("Vol[{}|name={}|vm={vm}|{}]", v.internal_id, v.name, v.kind)
}

/// A volume as CloudStack's `VolumeResponse` shows it; null fields are left out.
pub fn volume_json(site: &Site, v: &Volume) -> Value {
    let offering = site
        .disk_offerings
        .iter()
        .find(|d| d.id == v.disk_offering_id);
    let mut out = json!({
        "id": v.id,
        "name": v.name,
        "zoneid": site.zone_id,
        "zonename": format!("{}-zone", site.spec.name),
        "type": v.kind,
        "size": v.size_bytes,
        "state": v.state,
        "account": "admin",
        "domainid": site.domain_id,
        "domain": "ROOT",
        "hypervisor": "KVM",
        "provisioningtype": "thin",
        "storagetype": "shared",
        "storageid": site.pool_id,
        "storage": "rbd",
        "diskofferingid": v.disk_offering_id,
        "diskofferingname": offering.map(|d| d.name.clone()).unwrap_or_default(),
        "destroyed": v.state == "Destroy",
    });
    // `updateVolume` without `path` clears it (see there): then Mold shows none.
    if !v.path.is_empty() {
        out["path"] = json!(v.path);
    }
    if let Some(vm) = v.vm_id.as_deref().and_then(|id| site.vm(id)) {
        out["virtualmachineid"] = json!(vm.id);
        // `vmname` is the instance's internal name (vm_instance.name), as in CloudStack.
        out["vmname"] = json!(vm.instance_name);
        out["vmdisplayname"] = json!(vm.name);
        out["vmstate"] = json!(vm.state);
    }
    out
}

/// The volume of `site` with this id.
fn volume<'a>(site: &'a Site, id: &str) -> Option<&'a Volume> {
    site.volumes.iter().find(|v| v.id == id)
}

fn volume_mut<'a>(w: &'a mut World, site: &str, id: &str) -> Option<&'a mut Volume> {
    w.site_mut(site).volumes.iter_mut().find(|v| v.id == id)
}

/// The answer of a job about a volume that went away while it waited.
fn gone(what: &str) -> ApiError {
    ApiError::internal(format!("Unable to find {what}"))
}

// ---------------------------------------------------------------------------------------
// importVolume

/// `importVolume` (admin, async, since 4.19.1): `path` and `storageid` required, `name` and
/// `diskofferingid` optional. `ImportVolumeCmd` has no `zoneid`: the zone is the pool's, and
/// the API server ignores a parameter a command does not declare, as the simulator does.
fn import_volume(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let path = p.required(ctx.name(), "path")?.trim().to_string();
    let storage = p.required(ctx.name(), "storageid")?;
    let s = world.site(&ctx.site);
    if storage != s.pool_id {
        return Err(ApiError::unknown_id("storageid", storage));
    }
    let offering = p.get("diskofferingid").filter(|d| !d.is_empty());
    if let Some(d) = offering
        && !s.disk_offerings.iter().any(|o| o.id == d)
    {
        return Err(ApiError::unknown_id("diskofferingid", d));
    }
    let offering = offering.map(str::to_string);
    let name = p
        .get("name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        None,
        delay,
        Box::new(move |w: &mut World, _| {
            Step::Done(finish_import(w, &site, &path, name, offering))
        }),
    );
    Ok(json!({"jobid": jobid}))
}

/// The job of `importVolume`, in `VolumeImportUnmanageManagerImpl.importVolume`'s order.
fn finish_import(
    w: &mut World,
    site: &str,
    path: &str,
    name: Option<String>,
    offering: Option<String>,
) -> ApiResult {
    // Step 3: a volume record on this pool with this path, whatever its state short of
    // removed (a `Destroy` volume still counts).
    if w.site(site).volumes.iter().any(|v| v.path == path) {
        return Err(ApiError::internal(format!(
            "Volume is already managed by CloudStack: {path}"
        )));
    }
    // Step 4: the KVM agent looks the image up through libvirt. A missing RBD image makes
    // libvirt's lookup throw inside the agent (LibvirtStorageAdaptor.getVolume: "Could not
    // find volume …"), so the agent answers a plain failed `Answer`, not a
    // `GetVolumesOnStorageAnswer`: the text is the "via host" one, with the first host of the
    // pool's zone, and not "Cannot find volume on storage pool".
    //
    // A clone is accepted. The agent's only layering check is `qemu-img info`'s backing file
    // (`checkIfVolumeHasBackingFile`: "Volume with backing file cannot be imported or
    // unmanaged."); an RBD clone's parent lives inside librbd and qemu reports no backing
    // file for an `rbd:` image, so a clone of a replica's snapshot imports like any image.
    let Ok(info) = w.storage.image_info(site, path) else {
        let host = w
            .site(site)
            .hosts
            .first()
            .map(|h| h.name.clone())
            .unwrap_or_default();
        return Err(ApiError::internal(format!(
            "Cannot get volumes on storage pool via host {host}"
        )));
    };
    let bytes = info.get("size").and_then(Value::as_u64).unwrap_or(0);
    // Step 6: the offering given, or the import's default one, made on first use.
    // (Mold also checks a custom offering's size range; every image here is within it.)
    let offering = match offering {
        Some(id) => id,
        None => default_import_offering(w, site),
    };
    let id = w.uuid();
    let internal_id = w.next_volume_id();
    // Step 7: `volumeManager.importVolume(Volume.Type.DATADISK, …)` in state Ready, detached.
    let v = Volume {
        id,
        internal_id,
        name: name.unwrap_or_else(|| path.to_string()),
        path: path.to_string(),
        vm_id: None,
        kind: "DATADISK".into(),
        size_bytes: bytes,
        disk_offering_id: offering,
        state: "Ready".into(),
    };
    let answer = volume_json(w.site(site), &v);
    w.site_mut(site).volumes.push(v);
    Ok(json!({"volume": answer}))
}

fn default_import_offering(w: &mut World, site: &str) -> String {
    if let Some(d) = w
        .site(site)
        .disk_offerings
        .iter()
        .find(|d| d.name == IMPORT_OFFERING)
    {
        return d.id.clone();
    }
    let id = w.uuid();
    w.site_mut(site).disk_offerings.push(DiskOffering {
        id: id.clone(),
        name: IMPORT_OFFERING.into(),
        customized: true,
        shareable: false,
        kvdo: false,
    });
    id
}

// ---------------------------------------------------------------------------------------
// updateVolume

/// `updateVolume` (async; Mold's form takes `type` too): `id`, and the admin-only `path`,
/// `storageid`, `state`, and `name`, `type`.
fn update_volume(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    // `id` is optional in the command class, but its owner is looked up before the job is
    // queued (`getEntityOwnerId`), which refuses a missing one.
    let Some(id) = p.get("id").filter(|i| !i.is_empty()).map(str::to_string) else {
        return Err(invalid("Invalid volume id was provided"));
    };
    let s = world.site(&ctx.site);
    if volume(s, &id).is_none() {
        return Err(ApiError::unknown_id("id", &id));
    }
    if let Some(pool) = p.get("storageid").filter(|x| !x.is_empty())
        && pool != s.pool_id
    {
        return Err(ApiError::unknown_id("storageid", pool));
    }
    let change = VolumeChange {
        path: p.get("path").map(str::to_string),
        state: p.get("state").map(str::to_string),
        name: p.get("name").map(str::to_string),
        kind: p.get("type").map(str::to_string),
    };
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("Volume", id.clone())),
        delay,
        Box::new(move |w: &mut World, _| Step::Done(finish_update(w, &site, &id, &change))),
    );
    Ok(json!({"jobid": jobid}))
}

struct VolumeChange {
    path: Option<String>,
    state: Option<String>,
    name: Option<String>,
    kind: Option<String>,
}

/// `Volume.State`'s names: `valueOf` is exact, case included.
const VOLUME_STATES: &[&str] = &[
    "Allocated",
    "Creating",
    "Ready",
    "Migrating",
    "Snapshotting",
    "RevertSnapshotting",
    "Resizing",
    "Expunging",
    "Expunged",
    "Destroy",
    "Destroying",
    "UploadOp",
    "Copying",
    "Uploaded",
    "NotUploaded",
    "UploadInProgress",
    "UploadError",
    "UploadAbandoned",
    "Attaching",
    "Restoring",
];

/// `Volume.Type`'s names.
const VOLUME_TYPES: &[&str] = &["UNKNOWN", "ROOT", "SWAP", "DATADISK", "ISO"];

fn finish_update(w: &mut World, site: &str, id: &str, change: &VolumeChange) -> ApiResult {
    if volume(w.site(site), id).is_none() {
        return Err(ApiError::internal("The volume id doesn't exist"));
    }
    // Mold changes its copy of the record and writes it once at the end: a bad state or
    // type refuses the whole update.
    if let Some(st) = &change.state
        && !VOLUME_STATES.contains(&st.as_str())
    {
        return Err(ApiError::internal("Invalid volume state specified"));
    }
    if let Some(t) = &change.kind
        && !VOLUME_TYPES.contains(&t.as_str())
    {
        return Err(ApiError::internal("Invalid volume type specified"));
    }
    let Some(v) = volume_mut(w, site, id) else {
        return Err(gone("the volume"));
    };
    // Mold's quirk, kept: `volume.setPath(path)` runs whether or not `path` was sent, so an
    // update without it clears the path.
    v.path = change.path.clone().unwrap_or_default();
    if let Some(st) = &change.state {
        v.state.clone_from(st);
    }
    if let Some(n) = &change.name {
        v.name.clone_from(n);
    }
    if let Some(t) = &change.kind {
        v.kind.clone_from(t);
    }
    let s = w.site(site);
    let v = volume(s, id).ok_or_else(|| gone("the volume"))?;
    Ok(json!({"volume": volume_json(s, v)}))
}

// ---------------------------------------------------------------------------------------
// deployVirtualMachineForVolume

/// `verifyDomainNameLabel(name, true)`: letters, digits and hyphens, 1 to 63 long, no hyphen
/// at either end, not starting with a digit.
fn rfc_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !b[0].is_ascii_digit()
}

/// The networks the VM asked for: `networkids`, or `iptonetworklist[n].networkid`.
fn requested_networks(site: &Site, p: &Params) -> Result<Vec<String>, ApiError> {
    let ids = list_param(p, "networkids");
    let by_ip = p.entries("iptonetworklist");
    if !by_ip.is_empty() {
        if !ids.is_empty() || p.get("ipaddress").is_some() {
            return Err(invalid(
                "ipToNetworkMap can't be specified along with networkIds or ipAddress",
            ));
        }
        let mut out = Vec::new();
        for entry in &by_ip {
            let id = entry
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("networkid"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            // Looked up by UUID, then as a numeric id; neither matches an unknown UUID.
            if !site.networks.iter().any(|n| n.id == id) {
                return Err(invalid(format!(
                    "Unable to translate and find entity with networkId: {id}"
                )));
            }
            out.push(id);
        }
        return Ok(out);
    }
    for id in &ids {
        if !site.networks.iter().any(|n| &n.id == id) {
            return Err(ApiError::unknown_id("networkids", id));
        }
    }
    if ids.is_empty() {
        // `getDefaultNetwork`: the account has more than one isolated network (the seeded
        // world has two), so Mold cannot choose. The account is rendered as Mold's
        // `AccountVO.toString()` gives it, to the best of the simulator's knowledge.
        let isolated = site
            .networks
            .iter()
            .filter(|n| n.kind == "Isolated")
            .count();
        if isolated > 1 {
            return Err(invalid(format!(
                "More than 1 default Isolated networks are found for account Account [{{\"accountName\":\"admin\",\"id\":2,\"uuid\":\"{}\"}}]; please specify networkIds",
                site.domain_id
            )));
        }
        return Ok(site
            .networks
            .iter()
            .filter(|n| n.kind == "Isolated")
            .map(|n| n.id.clone())
            .collect());
    }
    Ok(ids)
}

/// `deployVirtualMachineForVolume` (Mold only; async, answers `id` + `jobid`): `zoneid` and
/// `serviceofferingid` required; `volumeid`, `networkids` or `iptonetworklist[n].networkid`,
/// `name`, `displayname`, `startvm` (true unless `false`), and the rest of
/// `deployVirtualMachine`'s parameters, which the simulator accepts and ignores.
///
/// Like every `BaseAsyncCreateCmd`, its checks and the VM record are made before the job is
/// queued (`create()`): a refusal is the request's own answer, and the answer carries the new
/// VM's id. The job starts it, or only reads it back with `startvm=false`.
fn deploy_for_volume(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let zone = p.required(ctx.name(), "zoneid")?;
    let offering = p.required(ctx.name(), "serviceofferingid")?.to_string();
    let s = world.site(&ctx.site);
    if zone != s.zone_id {
        return Err(ApiError::unknown_id("zoneid", zone));
    }
    let Some(so) = s.offerings.iter().find(|o| o.id == offering) else {
        return Err(ApiError::unknown_id("serviceofferingid", &offering));
    };
    let volume_id = p.get("volumeid").filter(|v| !v.is_empty());
    if let Some(v) = volume_id
        && volume(s, v).is_none()
    {
        return Err(ApiError::unknown_id("volumeid", v));
    }
    // `createVirtualMachineVolume`, in its order.
    if !so.customized
        && p.map("details").is_some_and(|d| {
            d.keys().any(|k| {
                ["cpuNumber", "cpuSpeed", "memory"]
                    .iter()
                    .any(|x| k.eq_ignore_ascii_case(x))
            })
        })
    {
        return Err(invalid(
            "cpuNumber or cpuSpeed or memory should not be specified for static service offering",
        ));
    }
    // (Mold's text, trailing space included.)
    let Some(volume_id) = volume_id.map(str::to_string) else {
        return Err(invalid("Unable to use volume "));
    };
    let networks = requested_networks(s, p)?;
    let id = world.uuid();
    let name = p
        .get("name")
        .filter(|n| !n.is_empty())
        .map_or_else(|| format!("VM-{id}"), str::to_string);
    if !rfc_name(&name) {
        return Err(invalid(
            "Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and can't start or end with \"-\" and can't start with digit",
        ));
    }
    let s = world.site(&ctx.site);
    for net in &networks {
        let taken = s
            .vms
            .iter()
            .any(|v| v.name == name && v.network_ids.contains(net));
        if taken {
            let net_name = s
                .networks
                .iter()
                .find(|n| &n.id == net)
                .map_or("<unknown>", |n| n.name.as_str());
            return Err(invalid(format!(
                "The vm with hostName {name} already exists in the network domain: {NETWORK_DOMAIN}; network={net_name}"
            )));
        }
    }
    // The display name is the one sent, else the host name (CloudStack's default); the
    // simulator's VM has one name, so `displayname` is shown but `name` is kept.
    let internal_id = world.next_internal_id();
    let start = !p
        .get("startvm")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let site = ctx.site.clone();
    world.site_mut(&site).vms.push(Vm {
        id: id.clone(),
        internal_id,
        name,
        instance_name: format!("i-2-{internal_id}-VM"),
        state: if start { "Starting" } else { "Stopped" }.into(),
        host_id: None,
        last_host_id: None,
        service_offering_id: offering,
        network_ids: networks,
        created: Local::now(),
        tags: std::collections::BTreeMap::new(),
    });
    // Mold only points the volume at the new VM (VirtualMachineManagerImpl.allocate:
    // `volVO.setInstanceId`); it neither checks nor changes its type or its old VM.
    if let Some(v) = volume_mut(world, &site, &volume_id) {
        v.vm_id = Some(id.clone());
    }
    let delay = world.config.timing.job;
    let vm = id.clone();
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", id.clone())),
        delay,
        Box::new(move |w: &mut World, now| {
            Step::Done(if start {
                finish_start(w, &site, &vm, "Stopped", now)
            } else {
                let s = w.site(&site);
                s.vm(&vm)
                    .map(|v| json!({"virtualmachine": w.vm_json(s, v)}))
                    .ok_or_else(|| gone("the virtual machine"))
            })
        }),
    );
    Ok(json!({"id": id, "jobid": jobid}))
}

// ---------------------------------------------------------------------------------------
// attachVolume

/// `attachVolume` (async): `id` and `virtualmachineid` required; `deviceid` is accepted.
fn attach_volume(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let id = p.required(ctx.name(), "id")?.to_string();
    let vm = p.required(ctx.name(), "virtualmachineid")?.to_string();
    let s = world.site(&ctx.site);
    if volume(s, &id).is_none() {
        return Err(ApiError::unknown_id("id", &id));
    }
    if s.vm(&vm).is_none() {
        return Err(ApiError::unknown_id("virtualmachineid", &vm));
    }
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("Volume", id.clone())),
        delay,
        Box::new(move |w: &mut World, _| Step::Done(finish_attach(w, &site, &id, &vm))),
    );
    Ok(json!({"jobid": jobid}))
}

/// `getAndCheckVolumeInfo`, then `getAndCheckUserVmVO`, then the attach.
fn finish_attach(w: &mut World, site: &str, id: &str, vm_id: &str) -> ApiResult {
    let s = w.site(site);
    let v = volume(s, id).ok_or_else(|| gone("the volume"))?;
    if v.kind != "ROOT" && v.kind != "DATADISK" {
        return Err(ApiError::internal(
            "Please specify a volume with the valid type: ROOT or DATADISK",
        ));
    }
    if v.vm_id.is_some() {
        return Err(ApiError::internal(
            "Please specify a volume that is not attached to any VM.",
        ));
    }
    if v.state == "Destroy" {
        return Err(ApiError::internal(
            "Please specify a volume that is not destroyed.",
        ));
    }
    if !["Allocated", "Ready", "Uploaded"].contains(&v.state.as_str()) {
        return Err(ApiError::internal(
            "Volume state must be in Allocated, Ready or in Uploaded state",
        ));
    }
    let Some(vm) = s.vm(vm_id) else {
        return Err(ApiError::internal("Please specify a valid User VM."));
    };
    if vm.state != "Running" && vm.state != "Stopped" {
        return Err(ApiError::internal(
            "Please specify a VM that is either running or stopped.",
        ));
    }
    if let Some(v) = volume_mut(w, site, id) {
        v.vm_id = Some(vm_id.to_string());
    }
    let s = w.site(site);
    let v = volume(s, id).ok_or_else(|| gone("the volume"))?;
    Ok(json!({"volume": volume_json(s, v)}))
}

// ---------------------------------------------------------------------------------------
// deleteVolume

/// `deleteVolume` (sync): `id` required. `destroyVolume(id, caller, expunge=true, …)`:
/// refused for an attached volume; otherwise destroyed, its RBD image removed and the record
/// gone.
fn delete_volume(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let site = ctx.site.clone();
    let s = world.site(&site);
    let Some(v) = volume(s, &id) else {
        return Err(ApiError::unknown_id("id", &id));
    };
    // `retrieveAndValidateVolume`.
    if v.vm_id.as_deref().is_some_and(|vm| s.vm(vm).is_some()) {
        return Err(invalid(
            "Please specify a volume that is not attached to any VM.",
        ));
    }
    expunge_volume(world, &site, &id, ctx.now).map_err(runtime)?;
    Ok(json!({"success": true}))
}

/// Destroys a volume and expunges it: its image goes from the pool, then its record. When
/// the image cannot be removed, Mold's `expungeVolumesInPrimaryOrSecondary` throws and the
/// volume is left destroyed (`Destroy`), as Mold leaves it; the error is Mold's text. An
/// image already absent has nothing to remove (the simulator takes it as gone).
fn expunge_volume(w: &mut World, site: &str, id: &str, now: Instant) -> Result<(), String> {
    let Some(v) = volume_mut(w, site, id) else {
        return Ok(());
    };
    v.state = "Destroy".into();
    v.vm_id = None;
    let path = v.path.clone();
    if !path.is_empty()
        && w.storage.is_primary(site, &path).is_some()
        && let Err(e) = w.storage.remove_image(now, site, &path)
    {
        let s = w.site(site);
        let text = volume(s, id).map(|v| vol_string(s, v)).unwrap_or_default();
        return Err(format!(
            "Failed to expunge the volume {text} in Primary data store : {}",
            e.output.trim()
        ));
    }
    w.site_mut(site).volumes.retain(|v| v.id != id);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// destroyVirtualMachine

/// `destroyVirtualMachine` (async): `id` required, `expunge` (false unless `true`),
/// `volumeids` (data disks of this VM to destroy with it). Without `expunge` the VM is
/// `Destroyed` and stays listed, its ROOT volume with it (`destroy.root.volume.on.vm.destruction`
/// is false by default); with it the VM, its ROOT volume and that volume's image go. The
/// listed data volumes are destroyed (expunged with `expunge`), the others detached.
fn destroy_vm(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let p = ctx.params;
    let id = p.required(ctx.name(), "id")?.to_string();
    let s = world.site(&site);
    if s.vm(&id).is_none() {
        return Err(ApiError::unknown_id("id", &id));
    }
    let volume_ids = list_param(p, "volumeids");
    for v in &volume_ids {
        if volume(s, v).is_none() {
            return Err(ApiError::unknown_id("volumeids", v));
        }
    }
    // Mold's DR guard (spec §5.6), before anything is queued.
    if s.is_mapped(&id) {
        return Err(ApiError::internal(
            "If a mirroring virtual machine exists, the virtual machine cannot be destroyed or expunged.",
        ));
    }
    let expunge = p.flag("expunge");
    let delay = world.config.timing.job;
    let owner = site.clone();
    let vm = id.clone();
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", id)),
        delay,
        Box::new(move |w: &mut World, now| {
            Step::Done(finish_destroy(w, &owner, &vm, &volume_ids, expunge, now))
        }),
    );
    Ok(json!({"jobid": jobid}))
}

/// `UserVmManagerImpl.destroyVm(DestroyVMCmd)`, in its order.
fn finish_destroy(
    w: &mut World,
    site: &str,
    vm_id: &str,
    volume_ids: &[String],
    expunge: bool,
    now: Instant,
) -> ApiResult {
    let s = w.site(site);
    let Some(vm) = s.vm(vm_id) else {
        return Err(ApiError::internal(
            "unable to find a virtual machine with id ".to_string() + vm_id,
        ));
    };
    if !expunge && (vm.state == "Destroyed" || vm.state == "Expunging") {
        return Ok(json!({"virtualmachine": w.vm_json(s, vm)}));
    }
    // `checkForUnattachedVolumes`: every listed volume must be a data disk of this VM.
    let mut wrong = String::new();
    for id in volume_ids {
        let Some(v) = volume(s, id) else {
            return Err(ApiError::internal(format!(
                "Unable to find volume with ID: {id}"
            )));
        };
        if v.vm_id.as_deref() != Some(vm_id) || v.kind != "DATADISK" {
            wrong.push_str(&vol_string(s, v));
            wrong.push_str("; ");
        }
    }
    if !wrong.is_empty() {
        return Err(ApiError::internal(format!(
            "The following supplied volumes are not DATADISK attached to the VM: {wrong}"
        )));
    }
    let data: Vec<String> = s
        .volumes
        .iter()
        .filter(|v| v.vm_id.as_deref() == Some(vm_id) && v.kind == "DATADISK")
        .map(|v| v.id.clone())
        .collect();
    let root: Vec<String> = s
        .volumes
        .iter()
        .filter(|v| v.vm_id.as_deref() == Some(vm_id) && v.kind == "ROOT")
        .map(|v| v.id.clone())
        .collect();
    // Stopped (forced), then every data disk detached, then the VM destroyed.
    if let Some(vm) = w.site_mut(site).vm_mut(vm_id) {
        if let Some(h) = vm.host_id.take() {
            vm.last_host_id = Some(h);
        }
        vm.state = "Destroyed".into();
    }
    for id in &data {
        if let Some(v) = volume_mut(w, site, id) {
            v.vm_id = None;
        }
    }
    let s = w.site(site);
    let answer = s.vm(vm_id).map_or(Value::Null, |vm| w.vm_json(s, vm));
    if expunge {
        // Expunging the VM expunges its ROOT volume: the image goes with it.
        for id in &root {
            expunge_volume(w, site, id, now).map_err(ApiError::internal)?;
        }
        w.site_mut(site).vms.retain(|v| v.id != vm_id);
    }
    // `deleteVolumesFromVm`: the listed data disks destroyed, expunged with `expunge`.
    for id in volume_ids {
        if expunge {
            // Mold logs a failed volume destroy here and goes on; the VM is gone anyway.
            if let Err(e) = expunge_volume(w, site, id, now) {
                tracing::warn!(site, volume = id, "destroyVirtualMachine: {e}");
            }
        } else if let Some(v) = volume_mut(w, site, id) {
            v.state = "Destroy".into();
        }
    }
    Ok(json!({"virtualmachine": answer}))
}

// ---------------------------------------------------------------------------------------
// listVolumes

/// `listVolumes`: `id`, `ids`, `name` (exact), `keyword` (substring of name, type or state),
/// `type`, `virtualmachineid`, `state`; Mold lists destroyed volumes too (only expunged ones,
/// which the simulator removes, are hidden). `ListVolumesCmd` has no `path` filter.
fn list_volumes(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let id = p.get("id").filter(|i| !i.is_empty());
    let ids = list_param(p, "ids");
    let name = p.get("name");
    let keyword = p.get("keyword").map(str::to_lowercase);
    let kind = p.get("type");
    let vm = p.get("virtualmachineid");
    let state = p.get("state");
    let items = s
        .volumes
        .iter()
        .filter(|v| id.is_none_or(|i| v.id == i))
        .filter(|v| ids.is_empty() || ids.contains(&v.id))
        .filter(|v| name.is_none_or(|n| v.name == n))
        .filter(|v| {
            keyword.as_deref().is_none_or(|k| {
                [&v.name, &v.kind, &v.state]
                    .iter()
                    .any(|f| f.to_lowercase().contains(k))
            })
        })
        // MySQL compares without case.
        .filter(|v| kind.is_none_or(|t| v.kind.eq_ignore_ascii_case(t)))
        .filter(|v| vm.is_none_or(|id| v.vm_id.as_deref() == Some(id)))
        .filter(|v| state.is_none_or(|st| v.state.eq_ignore_ascii_case(st)))
        .map(|v| volume_json(s, v))
        .collect();
    list("volume", &page(p, items))
}

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, rows};
    use super::*;

    #[test]
    fn the_volume_commands_and_how_they_answer() {
        assert_eq!(
            rows(COMMANDS),
            [
                ("importVolume", Answer::Async, None),
                ("updateVolume", Answer::Async, None),
                ("deployVirtualMachineForVolume", Answer::Async, None),
                ("attachVolume", Answer::Async, None),
                ("deleteVolume", Answer::Sync, None),
                ("destroyVirtualMachine", Answer::Async, None),
                ("listVolumes", Answer::Sync, None),
            ]
        );
    }

    #[test]
    fn jobs_carry_mold_s_admin_classes() {
        let api = "org.apache.cloudstack.api.command.admin";
        for (command, class) in [
            (&IMPORT_VOLUME, "volume.ImportVolumeCmd"),
            (&UPDATE_VOLUME, "volume.UpdateVolumeCmdByAdmin"),
            (&DEPLOY_FOR_VOLUME, "vm.DeployVMVolumeCmdByAdmin"),
            (&ATTACH_VOLUME, "volume.AttachVolumeCmdByAdmin"),
            (&DESTROY_VM, "vm.DestroyVMCmdByAdmin"),
        ] {
            assert_eq!(command.job_class(), Some(format!("{api}.{class}").as_str()));
        }
    }

    #[test]
    fn vm_names_follow_mold_s_host_name_rule() {
        for ok in ["dr-centos-1", "a", "Test-VM-2"] {
            assert!(rfc_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "1abc", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!rfc_name(bad), "{bad}");
        }
    }

    #[test]
    fn list_parameters_split_on_commas() {
        let p = Params::parse("volumeids=a,%20b,,c");
        assert_eq!(list_param(&p, "volumeids"), ["a", "b", "c"]);
        assert!(list_param(&p, "networkids").is_empty());
    }
}
