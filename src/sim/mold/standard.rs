//! The standard CloudStack commands the DR feature, Glue's scheduler and the runbooks use
//! (spec §4): capabilities, VMs and their start/stop jobs, offerings, networks, accounts,
//! pools, zones, hosts. Volumes and the VMs deployed, attached and destroyed with them are
//! in `volumes.rs`.

use std::time::Instant;

use serde_json::{Value, json};

use super::command::{Command, Ctx, Kind};
use super::envelope::{list, page};
use super::start_guard::start_guard;
use crate::sim::world::{ApiError, ApiResult, Step, World};

pub static LIST_CAPABILITIES: Command = Command {
    name: "listCapabilities",
    kind: Kind::Sync(|w, ctx| Ok(capabilities(w, ctx))),
    event: None,
};

pub static LIST_VMS: Command = Command {
    name: "listVirtualMachines",
    kind: Kind::Sync(|w, ctx| Ok(list_vms(w, ctx))),
    event: None,
};

pub static START_VM: Command = Command {
    name: "startVirtualMachine",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.vm.StartVMCmdByAdmin",
        submit: start_vm,
    },
    event: None,
};

pub static STOP_VM: Command = Command {
    name: "stopVirtualMachine",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin",
        submit: stop_vm,
    },
    event: None,
};

pub static LIST_SERVICE_OFFERINGS: Command = Command {
    name: "listServiceOfferings",
    kind: Kind::Sync(|w, ctx| Ok(list_service_offerings(w, ctx))),
    event: None,
};

pub static LIST_NETWORKS: Command = Command {
    name: "listNetworks",
    kind: Kind::Sync(|w, ctx| Ok(list_networks(w, ctx))),
    event: None,
};

pub static LIST_DISK_OFFERINGS: Command = Command {
    name: "listDiskOfferings",
    kind: Kind::Sync(|w, ctx| Ok(list_disk_offerings(w, ctx))),
    event: None,
};

pub static LIST_ACCOUNTS: Command = Command {
    name: "listAccounts",
    kind: Kind::Sync(|w, ctx| Ok(list_accounts(w, ctx))),
    event: None,
};

pub static LIST_STORAGE_POOLS: Command = Command {
    name: "listStoragePoolsMetrics",
    kind: Kind::Sync(|w, ctx| Ok(list_storage_pools(w, ctx))),
    event: None,
};

/// CloudStack's plain `listStoragePools` (`ListStoragePoolsCmd`), which a test failover asks
/// for the pool to import its clones into: the same rows, without the metrics.
pub static LIST_STORAGE_POOLS_PLAIN: Command = Command {
    name: "listStoragePools",
    kind: Kind::Sync(|w, ctx| Ok(list_storage_pools(w, ctx))),
    event: None,
};

pub static LIST_ZONES: Command = Command {
    name: "listZones",
    kind: Kind::Sync(|w, ctx| Ok(list_zones(w, ctx))),
    event: None,
};

pub static LIST_HOSTS: Command = Command {
    name: "listHosts",
    kind: Kind::Sync(|w, ctx| Ok(list_hosts(w, ctx))),
    event: None,
};

pub static COMMANDS: &[&Command] = &[
    &LIST_CAPABILITIES,
    &LIST_VMS,
    &START_VM,
    &STOP_VM,
    &LIST_SERVICE_OFFERINGS,
    &LIST_NETWORKS,
    &LIST_DISK_OFFERINGS,
    &LIST_ACCOUNTS,
    &LIST_STORAGE_POOLS,
    &LIST_STORAGE_POOLS_PLAIN,
    &LIST_ZONES,
    &LIST_HOSTS,
];

fn capabilities(world: &World, ctx: &Ctx<'_>) -> Value {
    let s = world.site(&ctx.site);
    let mut cap = json!({
        "cloudstackversion": "4.20.0.0-mold-sim",
        "apilimitmax": 0,
        "apilimitinterval": 0,
        "kvmsnapshotenabled": true,
    });
    if s.spec.dr_enabled {
        cap["disasterrecoveryenabled"] = json!(true);
    } else {
        cap["disasterrecoveryenabled"] = json!(false);
    }
    json!({"capability": cap})
}

fn list_vms(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let id = p.get("id");
    let name = p.get("name");
    let keyword = p.get("keyword").map(str::to_lowercase);
    let state = p.get("state");
    let network = p.get("networkid");
    let items = s
        .vms
        .iter()
        .filter(|v| id.is_none_or(|i| v.id == i))
        .filter(|v| name.is_none_or(|n| v.name == n))
        .filter(|v| network.is_none_or(|n| v.network_ids.iter().any(|x| x == n)))
        .filter(|v| {
            keyword
                .as_deref()
                .is_none_or(|k| v.name.to_lowercase().contains(k))
        })
        .filter(|v| {
            // `present` is CloudStack's "neither Destroyed nor Expunging".
            state.is_none_or(|st| {
                if st.eq_ignore_ascii_case("present") {
                    v.state != "Destroyed" && v.state != "Expunging"
                } else {
                    v.state.eq_ignore_ascii_case(st)
                }
            })
        })
        .map(|v| world.vm_json(s, v))
        .collect();
    list("virtualmachine", &page(p, items))
}

fn list_service_offerings(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let items = s
        .offerings
        .iter()
        .map(|o| {
            json!({"id": o.id, "name": o.name, "displaytext": o.name, "iscustomized": o.customized,
                   "kvdoenable": o.kvdo, "cpunumber": o.cpu, "memory": o.memory_mb})
        })
        .collect();
    list("serviceoffering", &page(p, items))
}

fn list_networks(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let id = p.get("id");
    // ListNetworksCmd's `type`: isolated, l2, shared or all, in any case.
    let kind = p.get("type").filter(|t| !t.eq_ignore_ascii_case("all"));
    let items = s
        .networks
        .iter()
        .filter(|n| id.is_none_or(|i| n.id == i))
        .filter(|n| kind.is_none_or(|k| n.kind.eq_ignore_ascii_case(k)))
        .map(|n| {
            json!({"id": n.id, "name": n.name, "displaytext": n.name, "type": n.kind,
                   "traffictype": "Guest", "account": "admin", "zoneid": s.zone_id})
        })
        .collect();
    list("network", &page(p, items))
}

fn list_disk_offerings(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let items = s
        .disk_offerings
        .iter()
        .map(|d| {
            json!({"id": d.id, "name": d.name, "iscustomized": d.customized,
                   "shareable": d.shareable, "kvdoenable": d.kvdo})
        })
        .collect();
    list("diskoffering", &page(p, items))
}

fn list_accounts(world: &World, ctx: &Ctx<'_>) -> Value {
    let s = world.site(&ctx.site);
    list(
        "account",
        &[
            json!({"id": s.domain_id, "name": "admin", "domainid": s.domain_id, "domain": "ROOT", "roletype": "Admin"}),
        ],
    )
}

fn list_storage_pools(world: &World, ctx: &Ctx<'_>) -> Value {
    let s = world.site(&ctx.site);
    list(
        "storagepool",
        &[
            json!({"id": s.pool_id, "name": "rbd", "path": "rbd", "tags": "rbd", "type": "RBD", "zoneid": s.zone_id, "state": "Up"}),
        ],
    )
}

fn list_zones(world: &World, ctx: &Ctx<'_>) -> Value {
    let s = world.site(&ctx.site);
    list(
        "zone",
        &[
            json!({"id": s.zone_id, "name": format!("{}-zone", s.spec.name), "allocationstate": "Enabled"}),
        ],
    )
}

fn list_hosts(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    let s = world.site(&ctx.site);
    let items = s
        .hosts
        .iter()
        .map(|h| json!({"id": h.id, "name": h.name, "state": "Up", "type": "Routing", "hypervisor": "KVM"}))
        .collect();
    list("host", &page(p, items))
}

fn start_vm(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let Some(vm) = world.site(&site).vm(&id) else {
        return Err(ApiError::unknown_id("id", &id));
    };
    // Starting a running VM is a no-op job that answers with the VM, as CloudStack does.
    let was = vm.state.clone();
    if was == "Stopped" {
        world.site_mut(&site).vm_mut(&id).expect("vm").state = "Starting".into();
    }
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", id.clone())),
        delay,
        Box::new(move |w: &mut World, now| Step::Done(finish_start(w, &site, &id, &was, now))),
    );
    Ok(json!({"jobid": jobid}))
}

fn stop_vm(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let Some(vm) = world.site(&site).vm(&id) else {
        return Err(ApiError::unknown_id("id", &id));
    };
    if vm.state == "Running" {
        world.site_mut(&site).vm_mut(&id).expect("vm").state = "Stopping".into();
    }
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("VirtualMachine", id.clone())),
        delay,
        Box::new(move |w: &mut World, _| Step::Done(finish_stop(w, &site, &id))),
    );
    Ok(json!({"jobid": jobid}))
}

/// The end of a VM start job: Mold's DR guards, then `Running`.
pub fn finish_start(w: &mut World, site: &str, id: &str, was: &str, now: Instant) -> ApiResult {
    if was != "Running" {
        if let Err(text) = start_guard(w, site, id, now) {
            if let Some(vm) = w.site_mut(site).vm_mut(id) {
                vm.state = "Stopped".into();
            }
            return Err(ApiError::internal(text));
        }
        let s = w.site_mut(site);
        let host = s.hosts[0].id.clone();
        let Some(vm) = s.vm_mut(id) else {
            return Err(ApiError::internal("the virtual machine no longer exists"));
        };
        vm.state = "Running".into();
        vm.host_id = Some(vm.last_host_id.clone().unwrap_or(host));
    }
    let s = w.site(site);
    let vm = s
        .vm(id)
        .ok_or_else(|| ApiError::internal("the virtual machine no longer exists"))?;
    Ok(json!({"virtualmachine": w.vm_json(s, vm)}))
}

/// The end of a VM stop job.
pub fn finish_stop(w: &mut World, site: &str, id: &str) -> ApiResult {
    let s = w.site_mut(site);
    let Some(vm) = s.vm_mut(id) else {
        return Err(ApiError::internal("the virtual machine no longer exists"));
    };
    vm.state = "Stopped".into();
    if let Some(h) = vm.host_id.take() {
        vm.last_host_id = Some(h);
    }
    let s = w.site(site);
    let vm = s.vm(id).expect("present");
    Ok(json!({"virtualmachine": w.vm_json(s, vm)}))
}

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, rows};
    use super::*;

    #[test]
    fn the_standard_commands_and_which_submit_jobs() {
        // Spec §4: the VM lifecycle commands are async; every read answers at once.
        let asynchronous = ["startVirtualMachine", "stopVirtualMachine"];
        for (name, answer, event) in rows(COMMANDS) {
            let expected = if asynchronous.contains(&name) {
                Answer::Async
            } else {
                Answer::Sync
            };
            assert_eq!(answer, expected, "{name}");
            assert_eq!(event, None, "{name}: DR events are the DR plugin's");
        }
    }

    #[test]
    fn vm_jobs_carry_cloudstack_s_admin_classes() {
        let vm = "org.apache.cloudstack.api.command.admin.vm";
        for (command, class) in [
            (&START_VM, "StartVMCmdByAdmin"),
            (&STOP_VM, "StopVMCmdByAdmin"),
        ] {
            assert_eq!(command.job_class(), Some(format!("{vm}.{class}").as_str()));
        }
    }
}
