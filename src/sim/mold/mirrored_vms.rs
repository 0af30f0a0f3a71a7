//! The mirrored-VM lifecycle (spec §3.9): protecting a VM (`createDisasterRecoveryClusterVm`,
//! a job), the peer-internal map-row insert, and releasing the mirroring.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Local;
use serde_json::json;

use super::command::{Command, Ctx, Kind};
use super::envelope::INTERNAL;
use crate::sim::world::{ApiError, ApiResult, MapRow, Step, Vm, Volume, World};

pub static CREATE: Command = Command {
    name: "createDisasterRecoveryClusterVm",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.CreateDisasterRecoveryClusterVmCmd",
        submit: create_mirror_vm_job,
    },
    event: Some("DR.VM.CREATE"),
};

// Mold logs DR.VM.UPDATE; the simulator does not (nothing reads it back).
pub static UPDATE: Command = Command {
    name: "updateDisasterRecoveryClusterVm",
    kind: Kind::Sync(insert_map_row),
    event: None,
};

pub static DELETE: Command = Command {
    name: "deleteDisasterRecoveryClusterVm",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.DeleteDisasterRecoveryClusterVmCmd",
        submit: delete_mirror_vm_job,
    },
    event: Some("DR.VM.DELETE"),
};

pub static COMMANDS: &[&Command] = &[&CREATE, &UPDATE, &DELETE];

/// What a mirrored VM is made from on the DR site.
pub struct MirrorVmRequest {
    pub vm_id: String,
    pub cluster: String,
    pub offering: String,
    pub network: String,
}

fn create_mirror_vm_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let c = ctx.name();
    let req = MirrorVmRequest {
        vm_id: p.required(c, "virtualmachineid")?.to_string(),
        cluster: p.required(c, "drclustername")?.to_string(),
        offering: p.required(c, "serviceofferingname")?.to_string(),
        network: p.required(c, "networkname")?.to_string(),
    };
    if world.site(&ctx.site).vm(&req.vm_id).is_none() {
        return Err(ApiError::unknown_id("virtualmachineid", &req.vm_id));
    }
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let vm_id = req.vm_id.clone();
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", vm_id.clone())),
        delay,
        Box::new(move |w: &mut World, now| {
            Step::Done(create_mirror_vm(w, &site, &req, now).map(|()| json!({"success": true})))
        }),
    );
    Ok(json!({"jobid": jobid}))
}

/// Protects one VM: mirroring on each of its images, a stopped mirrored VM on the DR site
/// with volumes on the same images, and map rows on both sites (§3.9). Used by the command's
/// job and by the simulator's initial state.
pub fn create_mirror_vm(
    w: &mut World,
    site: &str,
    req: &MirrorVmRequest,
    now: Instant,
) -> Result<(), ApiError> {
    let peer = w.peer_of(site);
    let Some(record) = w.site(site).record_by_name(&req.cluster).cloned() else {
        return Err(ApiError::internal(INTERNAL));
    };
    let vm = w
        .site(site)
        .vm(&req.vm_id)
        .cloned()
        .ok_or_else(|| ApiError::internal(INTERNAL))?;
    if record.map.iter().any(|m| m.vm_id == vm.id) {
        return Err(ApiError::internal(format!(
            "A disaster recovery cluster with the same virtual machine id exists:{}",
            vm.internal_id
        )));
    }
    let volumes: Vec<_> = w.site(site).volumes_of(&vm.id).cloned().collect();
    let shared_offering = volumes.iter().any(|v| {
        w.site(site)
            .disk_offerings
            .iter()
            .any(|d| d.id == v.disk_offering_id && d.shareable)
    });
    if shared_offering {
        return Err(ApiError::internal(
            "Shared volumes are enabled for the virtual machine's disk offering cannot add a mirrored virtual machine.",
        ));
    }
    if !w.peer_reachable(site) {
        return Err(ApiError::internal(
            "Failed to request createVolume Mold-API.",
        ));
    }
    let p = w.site(&peer);
    let Some(disk_offering) = p
        .disk_offerings
        .iter()
        .find(|d| d.customized && !d.shareable && !d.kvdo)
        .map(|d| d.id.clone())
    else {
        return Err(ApiError::internal(
            "You cannot add a mirrored virtual machine because no disk offering exists with custom disk sizes enabled, shared volumes disabled, and the same compression deduplication settings as the virtual machines.",
        ));
    };
    if p.vms.iter().any(|v| v.name.eq_ignore_ascii_case(&vm.name)) {
        return Err(ApiError::internal(
            "A mirroring virtual machine cannot be added because a virtual machine with the same name as the corresponding virtual machine exists in the disaster recovery cluster.",
        ));
    }
    let offering = p
        .offerings
        .iter()
        .find(|o| o.name == req.offering)
        .map(|o| o.id.clone());
    let network = p
        .networks
        .iter()
        .find(|n| n.name == req.network)
        .map(|n| n.id.clone());
    let (Some(offering), Some(network)) = (offering, network) else {
        return Err(ApiError::internal(
            "Failed to request DeployVirtualMachineForVolume Mold-API.",
        ));
    };
    // Glue: mirroring on every image (volumes enabled earlier are not rolled back).
    for v in &volumes {
        if let Err(e) = w.storage.enable_mirroring(now, site, &v.path) {
            return Err(ApiError::internal(format!(
                "Failed to request glueImageMirrorSetup Glue-API. For volume path : {} ({})",
                v.path,
                e.output.trim()
            )));
        }
    }
    // The mirrored VM: stopped, its volumes on the same images.
    let peer_vm_id = w.uuid();
    let internal_id = w.next_internal_id();
    let host = w.site(&peer).hosts[0].id.clone();
    let mirror = Vm {
        id: peer_vm_id.clone(),
        internal_id,
        name: vm.name.clone(),
        instance_name: format!("i-2-{internal_id}-VM"),
        state: "Stopped".into(),
        host_id: None,
        last_host_id: Some(host),
        service_offering_id: offering,
        network_ids: vec![network],
        created: Local::now(),
        // Mold does not copy the protected VM's tags to the mirrored VM.
        tags: BTreeMap::new(),
    };
    w.site_mut(&peer).vms.push(mirror);
    for v in &volumes {
        let id = w.uuid();
        let internal_id = w.next_volume_id();
        w.site_mut(&peer).volumes.push(Volume {
            id,
            internal_id,
            name: v.name.clone(),
            path: v.path.clone(),
            vm_id: Some(peer_vm_id.clone()),
            kind: v.kind.clone(),
            size_bytes: v.size_bytes,
            disk_offering_id: disk_offering.clone(),
            state: "Ready".into(),
        });
    }
    for v in &volumes {
        if let Some(r) = w.site_mut(site).record_by_name_mut(&req.cluster) {
            r.map.push(MapRow {
                vm_id: vm.id.clone(),
                mirror_vm_id: peer_vm_id.clone(),
                mirror_vm_name: vm.name.clone(),
                mirror_vm_status: "Stopped".into(),
                vol_type: v.kind.clone(),
                vol_path: v.path.clone(),
                vol_status: "SYNCING".into(),
                mirror_vol_status: "READY".into(),
            });
        }
        if let Some(r) = w.site_mut(&peer).record_by_name_mut(&req.cluster) {
            r.map.push(MapRow {
                vm_id: peer_vm_id.clone(),
                mirror_vm_id: vm.id.clone(),
                mirror_vm_name: vm.name.clone(),
                mirror_vm_status: vm.state.clone(),
                vol_type: v.kind.clone(),
                vol_path: v.path.clone(),
                vol_status: "READY".into(),
                mirror_vol_status: "SYNCING".into(),
            });
        }
    }
    CREATE.record_event(
        w,
        site,
        "Completed",
        "Successfully completed creating disaster recovery cluster virtual machine",
    );
    Ok(())
}

/// `updateDisasterRecoveryClusterVm`: peer-internal, and it **inserts** a row every time.
fn insert_map_row(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let get = |k: &str| p.get(k).unwrap_or("").to_string();
    let cluster = get("drclustername");
    let row = MapRow {
        vm_id: get("drclustervmid"),
        mirror_vm_id: get("drclustermirrorvmid"),
        mirror_vm_name: get("drclustermirrorvmname"),
        mirror_vm_status: get("drclustermirrorvmstatus"),
        vol_type: get("drclustermirrorvmvoltype"),
        vol_path: get("drclustermirrorvmvolpath"),
        vol_status: String::new(),
        mirror_vol_status: get("drclustermirrorvmvolstatus"),
    };
    let site = ctx.site.clone();
    let vm = world.site(&site).vm(&row.vm_id).cloned();
    let Some(record) = world.site_mut(&site).record_by_name_mut(&cluster) else {
        return Err(ApiError::internal(format!(
            "Failed to update disaster recovery cluster virtual machine: no cluster {cluster}"
        )));
    };
    record.map.push(row.clone());
    Ok(json!({"disasterrecoveryclustervm": {
        "drclustername": cluster,
        "drclustervmid": row.vm_id,
        "drclustervmname": vm.as_ref().map(|v| v.name.clone()).unwrap_or_default(),
        "drclustervmstatus": vm.as_ref().map(|v| v.state.clone()).unwrap_or_default(),
        "drclustermirrorvmid": row.mirror_vm_id,
        "drclustermirrorvmname": row.mirror_vm_name,
        "drclustermirrorvmstatus": row.mirror_vm_status,
        "drclustermirrorvmvoltype": row.vol_type,
        "drclustermirrorvmvolpath": row.vol_path,
        "drclustermirrorvmvolstatus": row.mirror_vol_status,
    }}))
}

fn delete_mirror_vm_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let vm_id = p.required(ctx.name(), "virtualmachineid")?.to_string();
    let cluster = p.required(ctx.name(), "drclustername")?.to_string();
    if world.site(&ctx.site).vm(&vm_id).is_none() {
        return Err(ApiError::unknown_id("virtualmachineid", &vm_id));
    }
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", vm_id.clone())),
        delay,
        Box::new(move |w: &mut World, now| {
            Step::Done((|| {
                let Some(record) = w.site(&site).record_by_name(&cluster).cloned() else {
                    return Err(ApiError::internal(INTERNAL));
                };
                if record.cluster_type != "secondary" {
                    destroy_mirror_vm(w, &site, &cluster, &vm_id);
                    return Ok(json!({"success": true}));
                }
                let rows: Vec<MapRow> = record.map.iter().filter(|m| m.vm_id == vm_id).cloned().collect();
                for m in &rows {
                    if w.storage.disable_mirroring(now, &site, &m.vol_path).is_err() {
                        return Err(ApiError::internal(format!(
                            "Failed to request glueImageMirrorDelete Glue-API. For volume path : {}",
                            m.vol_path
                        )));
                    }
                    if let Some(r) = w.site_mut(&site).record_by_name_mut(&cluster) {
                        r.map.retain(|x| !(x.vm_id == m.vm_id && x.vol_path == m.vol_path));
                    }
                }
                if let Some(m) = rows.first() {
                    if !w.peer_reachable(&site) {
                        return Err(ApiError::internal(
                            "Failed to request deleteDisasterRecoveryClusterVm Mold-API.",
                        ));
                    }
                    let peer = w.peer_of(&site);
                    destroy_mirror_vm(w, &peer, &cluster, &m.mirror_vm_id);
                }
                DELETE.record_event(w, &site, "Completed", "Successfully completed deleting disaster recovery cluster virtual machine");
                Ok(json!({"success": true}))
            })())
        }),
    );
    Ok(json!({"jobid": jobid}))
}

/// The peer side of `deleteDisasterRecoveryClusterVm` on a `primary` record: the mirrored
/// VM and its volumes are destroyed and expunged, its rows removed.
pub fn destroy_mirror_vm(w: &mut World, site: &str, cluster: &str, vm_id: &str) {
    let s = w.site_mut(site);
    if let Some(r) = s.record_by_name_mut(cluster) {
        r.map.retain(|m| m.vm_id != vm_id);
    }
    s.vms.retain(|v| v.id != vm_id);
    s.volumes.retain(|v| v.vm_id.as_deref() != Some(vm_id));
}

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, dr_class, rows};
    use super::*;

    #[test]
    fn the_mirrored_vm_commands_as_the_spec_lists_them() {
        // Spec §3.0, less DR.VM.UPDATE, which the simulator does not log.
        assert_eq!(
            rows(COMMANDS),
            [
                (
                    "createDisasterRecoveryClusterVm",
                    Answer::Async,
                    Some("DR.VM.CREATE")
                ),
                ("updateDisasterRecoveryClusterVm", Answer::Sync, None),
                (
                    "deleteDisasterRecoveryClusterVm",
                    Answer::Async,
                    Some("DR.VM.DELETE")
                ),
            ]
        );
    }

    #[test]
    fn mirrored_vm_jobs_carry_the_dr_plugin_s_classes() {
        for c in COMMANDS {
            if let Some(class) = c.job_class() {
                assert_eq!(class, dr_class(c.name), "{}", c.name);
            }
        }
    }
}
