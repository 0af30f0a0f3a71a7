//! The 20 commands of Mold's DR plugin ("재해 복구 클러스터"), with their parameters,
//! validations, exact error texts, sync/async split and side effects on both sites (spec
//! `mold-api.md` §3). Records are paired by name; what the plugin does through the peer's API
//! happens here directly on the peer's records, since both sites live in one process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Local;
use serde_json::{Value, json};

use super::mold_api::{Ctx, list};
use super::params::Params;
use super::server::Shared;
use super::world::{ApiError, ApiResult, DrRecord, MapRow, Step, World};
use crate::glue::types::{ImageStatus, MirrorSide};

/// Every command the plugin registers (when `cloud.dr.service.enabled` is true).
pub const COMMANDS: &[&str] = &[
    "listScvmIpAddress",
    "connectivityTestsDisasterRecovery",
    "getDisasterRecoveryClusterList",
    "createDisasterRecoveryCluster",
    "updateDisasterRecoveryCluster",
    "deleteDisasterRecoveryCluster",
    "enableDisasterRecoveryCluster",
    "disableDisasterRecoveryCluster",
    "promoteDisasterRecoveryCluster",
    "demoteDisasterRecoveryCluster",
    "resyncDisasterRecoveryCluster",
    "clearDisasterRecoveryCluster",
    "createDisasterRecoveryClusterVm",
    "updateDisasterRecoveryClusterVm",
    "deleteDisasterRecoveryClusterVm",
    "startDisasterRecoveryClusterVm",
    "stopDisasterRecoveryClusterVm",
    "promoteDisasterRecoveryClusterVm",
    "demoteDisasterRecoveryClusterVm",
    "takeSnapshotDisasterRecoveryClusterVm",
];

/// The synchronous VM-level commands that hold the request while Mold waits on Ceph (the
/// client's own list: the same five).
pub use crate::mold::client::is_long_command;

const INTERNAL: &str = "Internal error executing command, please contact your system administrator";
const DEMOTE_DONE: &str = "Successfully completed demoting disaster recovery cluster";

/// The short (non-blocking) DR commands.
pub fn dispatch(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    match ctx.command {
        "listScvmIpAddress" => {
            let ips = world.site(&ctx.site).scvm_ips();
            Ok(list("scvmipaddress", &[json!({"ipaddress": ips})]))
        }
        "connectivityTestsDisasterRecovery" => connectivity_test(world, ctx),
        "getDisasterRecoveryClusterList" => list_records(world, ctx),
        "createDisasterRecoveryCluster" => create_record(world, ctx),
        "updateDisasterRecoveryCluster" => update_record(world, ctx),
        "deleteDisasterRecoveryCluster" => delete_record(world, ctx),
        "enableDisasterRecoveryCluster" => enable_record(world, ctx, true),
        "disableDisasterRecoveryCluster" => enable_record(world, ctx, false),
        "promoteDisasterRecoveryCluster" => cluster_job(world, ctx, promote_cluster),
        "demoteDisasterRecoveryCluster" => demote_cluster_job(world, ctx),
        "resyncDisasterRecoveryCluster" => resync_cluster_job(world, ctx),
        "clearDisasterRecoveryCluster" => cluster_job(world, ctx, clear_cluster),
        "createDisasterRecoveryClusterVm" => create_mirror_vm_job(world, ctx),
        "updateDisasterRecoveryClusterVm" => insert_map_row(world, ctx),
        "deleteDisasterRecoveryClusterVm" => delete_mirror_vm_job(world, ctx),
        other => Err(ApiError::internal(format!(
            "{other} is not a short DR command"
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the commands
// ---------------------------------------------------------------------------------------

/// `http://h:p/`, `http://h:p/client/api/` → `http://h:p`, to compare Mold URLs.
fn base_url(url: &str) -> String {
    let t = url.trim().trim_end_matches('/');
    t.strip_suffix("/client/api")
        .unwrap_or(t)
        .trim_end_matches('/')
        .to_string()
}

/// The site whose Mold answers at `url`, if it is one of ours.
fn site_at(world: &World, url: &str) -> Option<String> {
    let want = base_url(url);
    world
        .sites
        .iter()
        .find(|s| base_url(&s.mold_url) == want)
        .map(|s| s.spec.name.clone())
}

/// A record of this site by its UUID; an unknown one is the framework's 431.
fn record_id(world: &World, site: &str, id: &str) -> Result<DrRecord, ApiError> {
    world
        .site(site)
        .record(id)
        .cloned()
        .ok_or_else(|| ApiError::unknown_id("id", id))
}

/// Glue's per-image status on a site, as Mold reads it.
fn status(world: &mut World, now: Instant, site: &str, image: &str) -> Option<ImageStatus> {
    world.image_status(now, site, image)
}

fn peer_desc(s: &ImageStatus) -> (String, String) {
    s.peer()
        .map(|p| (p.state.clone(), p.description.clone()))
        .unwrap_or_default()
}

/// `mirroringagentstatus` from the local Glue's pool summary (§5.2).
fn agent_status(world: &mut World, now: Instant, site: &str) -> String {
    match world.storage.pool_summary(now, site) {
        Ok(v) => {
            let health = v.get("health").and_then(Value::as_str).unwrap_or("");
            if health.contains("OK") {
                "Enabled"
            } else if health.contains("WARNING") {
                "Warning"
            } else {
                "Error"
            }
        }
        Err(_) => "Disabled",
    }
    .to_string()
}

fn date(t: chrono::DateTime<Local>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

/// A record as the list shows it (details in plain text, as Mold does).
fn record_json(world: &World, site: &str, r: &DrRecord, peer_answers: bool) -> Value {
    let mut v = json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "drclusterurl": r.url,
        "drclustertype": r.cluster_type,
        "drclusterstatus": r.status,
        "mirroringagentstatus": r.agent_status,
        "created": date(r.created),
    });
    if r.cluster_type == "secondary"
        && let Some(ip) = &r.glue_ip
    {
        v["drclusterglueipaddress"] = json!(ip);
    }
    if !r.details.is_empty() {
        v["details"] = json!(r.details);
    }
    let s = world.site(site);
    let rows: Vec<Value> = r
        .map
        .iter()
        .map(|m| {
            let vm = s.vm(&m.vm_id);
            let mut row = json!({
                "drclustername": r.name,
                "drclustervmid": m.vm_id,
                "drclustervmname": vm.map(|v| v.name.clone()).unwrap_or_default(),
                "drclustervmstatus": vm.map(|v| v.state.clone()).unwrap_or_default(),
                "drclustermirrorvmid": m.mirror_vm_id,
                "drclustermirrorvmname": m.mirror_vm_name,
                "drclustermirrorvmstatus": m.mirror_vm_status,
                "drclustermirrorvmvoltype": m.vol_type,
                "drclustermirrorvmvolpath": m.vol_path,
                "drclustermirrorvmvolstatus": m.mirror_vol_status,
            });
            if !m.vol_status.is_empty() {
                row["drclustervmvolstatus"] = json!(m.vol_status);
            }
            row
        })
        .collect();
    if !rows.is_empty() {
        v["drclustervmmap"] = json!(rows);
    }
    if peer_answers {
        let peer = world.site(&world.peer_of(site));
        v["serviceofferingdetails"] = json!(
            peer.offerings
                .iter()
                .map(|o| json!({"id": o.id, "name": o.name, "iscustomized": o.customized, "kvdoenable": o.kvdo}))
                .collect::<Vec<_>>()
        );
        v["network"] = json!(
            peer.networks
                .iter()
                .map(|n| json!({"id": n.id, "name": n.name}))
                .collect::<Vec<_>>()
        );
    }
    v
}

// ---------------------------------------------------------------------------------------
// Pairing: connectivity test, list, create, update, delete, enable/disable
// ---------------------------------------------------------------------------------------

fn connectivity_test(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let c = ctx.command;
    let url = p.required(c, "drclusterurl")?;
    let api_key = p.required(c, "drclusterapikey")?;
    let secret = p.required(c, "drclustersecretkey")?;
    let glue_ip = p.required(c, "drclusterglueipaddress")?;
    let failed = || ApiError::internal("Failed to connectivity tests disaster recovery cluster");
    let Some(peer) = site_at(world, url).filter(|p| *p != ctx.site) else {
        return Err(failed());
    };
    let peer_site = world.site(&peer);
    // The peer's `listScvmIpAddress` is a DR command too: off with the peer's DR service.
    if world.partitioned || !peer_site.up || !peer_site.spec.dr_enabled {
        return Err(failed());
    }
    if peer_site.spec.api_key != api_key || peer_site.spec.secret_key != secret {
        return Err(failed());
    }
    if !peer_site
        .glue_ips
        .iter()
        .any(|ip| ip.to_string() == glue_ip.trim())
    {
        return Err(ApiError::internal(
            "The Glue IP was entered incorrectly. Please check again.",
        ));
    }
    world.event(
        &ctx.site,
        "DR.TEST.CONNECT",
        "Completed",
        "Successfully completed connectivity tests disaster recovery",
    );
    Ok(json!({"success": true}))
}

/// `getDisasterRecoveryClusterList`, with its side effects (§3.3): the agent status and
/// the map's VM and volume statuses are recomputed and stored.
fn list_records(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let now = ctx.now;
    let p = ctx.params;
    refresh_records(world, &site, now)?;
    let id = p.get("id");
    let name = p.get("name");
    let kind = p.get("drclustertype");
    let keyword = p.get("keyword").map(str::to_lowercase);
    let peer_answers = world.peer_reachable(&site);
    let s = world.site(&site);
    let items: Vec<Value> = s
        .dr_records
        .iter()
        .filter(|r| id.is_none_or(|i| r.id == i))
        .filter(|r| name.is_none_or(|n| r.name == n))
        .filter(|r| kind.is_none_or(|k| r.cluster_type.eq_ignore_ascii_case(k)))
        .filter(|r| {
            keyword
                .as_deref()
                .is_none_or(|k| r.name.to_lowercase().contains(k) || r.id.contains(k))
        })
        .map(|r| record_json(world, &site, r, peer_answers))
        .collect();
    Ok(list("disasterrecoverycluster", &items))
}

/// The list's side effects, shared with the operations that read the same statuses.
fn refresh_records(world: &mut World, site: &str, now: Instant) -> Result<(), ApiError> {
    let agent = agent_status(world, now, site);
    let peer = world.peer_of(site);
    let peer_answers = world.peer_reachable(site);
    let pool = world.storage.pool_status(now, site);
    let images: BTreeMap<String, (String, String)> = pool
        .get("images")
        .and_then(Value::as_array)
        .map(|imgs| {
            imgs.iter()
                .filter_map(|i| {
                    let name = i.get("name")?.as_str()?.to_string();
                    let state = i.get("state")?.as_str().unwrap_or("").to_string();
                    let peer_state = i
                        .get("peer_sites")
                        .and_then(Value::as_array)
                        .and_then(|p| p.last())
                        .and_then(|p| p.get("state"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    Some((name, (state, peer_state)))
                })
                .collect()
        })
        .unwrap_or_default();
    let glue_empty = images.is_empty();
    // The peer VM's state, by exact name (Mold lists with keyword and filters).
    let peer_vm_states: BTreeMap<String, String> = world
        .site(&peer)
        .vms
        .iter()
        .map(|v| (v.name.clone(), v.state.clone()))
        .collect();
    let records = &mut world.site_mut(site).dr_records;
    for r in records.iter_mut() {
        r.agent_status.clone_from(&agent);
        for m in &mut r.map {
            if peer_answers {
                match peer_vm_states.get(&m.mirror_vm_name) {
                    Some(state) => m.mirror_vm_status.clone_from(state),
                    None => return Err(ApiError::internal(INTERNAL)),
                }
            } else {
                m.mirror_vm_status = "unknown".into();
            }
            if glue_empty {
                m.vol_status = "UNKNOWN".into();
                m.mirror_vol_status = "UNKNOWN".into();
            } else if let Some((state, peer_state)) = images.get(&m.vol_path) {
                m.vol_status = World::volume_status(state, true).into();
                m.mirror_vol_status = World::volume_status(peer_state, false).into();
            }
        }
    }
    Ok(())
}

fn create_record(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let c = ctx.command;
    for required in [
        "name",
        "description",
        "drclusterurl",
        "drclustertype",
        "drclusterapikey",
        "drclustersecretkey",
    ] {
        if p.get(required).is_none() {
            return Err(ApiError::missing(c, required));
        }
    }
    let get = |k: &str| p.get(k).unwrap_or("").to_string();
    let (name, url, kind) = (get("name"), get("drclusterurl"), get("drclustertype"));
    let (api_key, secret) = (get("drclusterapikey"), get("drclustersecretkey"));
    let private_key = get("drclusterprivatekey");
    let glue_ip = get("drclusterglueipaddress");
    let secondary = kind.eq_ignore_ascii_case("secondary");
    let invalid = |what: &str, v: &str| {
        ApiError::internal(format!(
            "Invalid {what} for the disaster recovery cluster {what}:{v}"
        ))
    };
    if name.trim().is_empty() {
        return Err(ApiError::internal(format!(
            "Invalid name for the disaster recovery cluster name:{name}"
        )));
    }
    if secondary && private_key.trim().is_empty() {
        return Err(invalid("private key", &private_key));
    }
    if secondary && glue_ip.trim().is_empty() {
        return Err(invalid("glue ip", &glue_ip));
    }
    if url.trim().is_empty() {
        return Err(invalid("url", &url));
    }
    if api_key.trim().is_empty() {
        return Err(invalid("api key", &api_key));
    }
    if secret.trim().is_empty() {
        return Err(invalid("secret key", &secret));
    }
    let site = ctx.site.clone();
    if world.site(&site).record_by_name(&name).is_some() {
        return Err(ApiError::internal(format!(
            "A disaster recovery cluster with the same name exists:{name}"
        )));
    }
    let mut details = BTreeMap::from([
        ("drclusterapikey".to_string(), api_key),
        ("drclustersecretkey".to_string(), secret),
        ("mirrorscheduleinterval".to_string(), "1h".to_string()),
    ]);
    if !private_key.is_empty() {
        details.insert("drclusterprivatekey".into(), private_key);
    }
    let id = world.uuid();
    let internal_id = world.next_internal_id();
    let record = DrRecord {
        id: id.clone(),
        internal_id,
        name: name.clone(),
        description: get("description"),
        url: url.clone(),
        cluster_type: if secondary { "secondary" } else { "primary" }.into(),
        status: "Created".into(),
        agent_status: "Created".into(),
        glue_ip: (!glue_ip.is_empty()).then_some(glue_ip),
        details,
        created: Local::now(),
        map: Vec::new(),
    };
    world.site_mut(&site).dr_records.push(record);
    let delay = world.config.timing.job;
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.dr.CreateDisasterRecoveryClusterCmd",
        Some(("DisasterRecoveryCluster", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, now| {
            if secondary {
                Step::Done(pair_with_peer(w, &site, &name, &url, now))
            } else {
                Step::Done(created_record(w, &site, &name))
            }
        }),
    );
    Ok(json!({"id": id, "jobid": jobid}))
}

fn created_record(w: &World, site: &str, name: &str) -> ApiResult {
    let r = w
        .site(site)
        .record_by_name(name)
        .ok_or_else(|| ApiError::internal(INTERNAL))?;
    let mut v = record_json(w, site, r, false);
    if let Some(map) = v.as_object_mut() {
        map.remove("drclustervmmap");
    }
    Ok(json!({"disasterrecoverycluster": v}))
}

/// Phase 2 of a create on the protected site: the peer's copy of the record, pool
/// mirroring on both sites, both records `Enabled`.
fn pair_with_peer(w: &mut World, site: &str, name: &str, url: &str, now: Instant) -> ApiResult {
    let set_error = |w: &mut World, peer: Option<&str>| {
        for s in std::iter::once(site).chain(peer) {
            if let Some(r) = w.site_mut(s).record_by_name_mut(name) {
                r.status = "Error".into();
                r.agent_status = "Error".into();
            }
        }
    };
    let record = w.site(site).record_by_name(name).cloned().expect("created");
    let peer = site_at(w, url).filter(|p| p != site);
    let Some(peer) = peer
        .filter(|_| !w.partitioned)
        .filter(|p| w.site(p).up && w.site(p).spec.dr_enabled)
    else {
        set_error(w, None);
        return Err(ApiError::internal(
            "Failed to request createDisasterRecoveryCluster Mold-API.",
        ));
    };
    let peer_spec = w.site(&peer).spec.clone();
    let keys_ok = record.details.get("drclusterapikey") == Some(&peer_spec.api_key)
        && record.details.get("drclustersecretkey") == Some(&peer_spec.secret_key);
    if !keys_ok {
        set_error(w, None);
        return Err(ApiError::internal(
            "Failed to request createDisasterRecoveryCluster Mold-API.",
        ));
    }
    // The peer validates the name in its own synchronous phase: a duplicate is an immediate
    // 530 there, which the plugin's HTTP helper turns into "no answer".
    if w.site(&peer).record_by_name(name).is_some() {
        set_error(w, None);
        return Err(ApiError::internal(
            "Failed to request createDisasterRecoveryCluster Mold-API.",
        ));
    }
    let local = w.site(site);
    let (local_url, local_key, local_secret) = (
        local.mold_url.clone(),
        local.spec.api_key.clone(),
        local.spec.secret_key.clone(),
    );
    let id = w.uuid();
    let internal_id = w.next_internal_id();
    w.site_mut(&peer).dr_records.push(DrRecord {
        id,
        internal_id,
        name: name.into(),
        description: record.description.clone(),
        url: local_url,
        cluster_type: "primary".into(),
        status: "Created".into(),
        agent_status: "Created".into(),
        glue_ip: None,
        details: BTreeMap::from([
            ("drclusterapikey".to_string(), local_key),
            ("drclustersecretkey".to_string(), local_secret),
            ("mirrorscheduleinterval".to_string(), "1h".to_string()),
        ]),
        created: Local::now(),
        map: Vec::new(),
    });
    // Step 3: the local Glue's `POST /mirror` (host = the peer Glue IP, the private key as
    // `glue.key`) logs into the peer's storage VM over SSH to exchange the bootstrap tokens.
    // That needs one of the peer's storage-VM addresses and the peer's own key; otherwise
    // every local storage VM fails it and both records end `Error`/`Error` (step 4).
    if !glue_can_reach_peer(w, &record, &peer) {
        set_error(w, Some(&peer));
        w.event(
            site,
            "DR.CREATE",
            "Completed",
            "Error while creating disaster recovery cluster",
        );
        return Err(ApiError::internal(
            "Failed to setup disaster recovery cluster",
        ));
    }
    w.glue_mirror_setup(now);
    for s in [site, peer.as_str()] {
        if let Some(r) = w.site_mut(s).record_by_name_mut(name) {
            r.status = "Enabled".into();
            r.agent_status = "Enabled".into();
        }
    }
    w.event(
        site,
        "DR.CREATE",
        "Completed",
        "Successfully completed creating disaster recovery cluster",
    );
    created_record(w, site, name)
}

/// Whether the local Glue's mirror setup can log into the peer's storage VM: the record's
/// Glue IP is one of the peer's storage VMs, and its private key is the peer's own (compared
/// without surrounding whitespace; a peer whose key is not modelled takes any).
fn glue_can_reach_peer(w: &World, record: &DrRecord, peer: &str) -> bool {
    let p = w.site(peer);
    let host_ok = record
        .glue_ip
        .as_deref()
        .is_some_and(|ip| p.glue_ips.iter().any(|g| g.to_string() == ip.trim()));
    let key = record
        .details
        .get("drclusterprivatekey")
        .map_or("", |k| k.trim());
    let key_ok = p.scvm_private_key.is_empty() || p.scvm_private_key.trim() == key;
    host_ok && key_ok
}

fn update_record(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let site = ctx.site.clone();
    let details = p.map("details");
    if let Some(d) = &details {
        let Some(interval) = d.get("mirrorscheduleinterval") else {
            return Err(ApiError::internal(INTERNAL));
        };
        let ok = ['d', 'h', 'm']
            .iter()
            .any(|u| interval.contains(*u) && interval.ends_with(*u));
        if !ok {
            return Err(ApiError::internal(
                "The mirror schedule interval can be specified in days, hours, or minutes using d, h, m suffix respectively",
            ));
        }
    }
    let by_id = p.get("id").map(str::to_string);
    let name = if let Some(id) = &by_id {
        record_id(world, &site, id)?.name
    } else {
        // A peer's call names the record instead.
        let n = p
            .get("name")
            .filter(|n| world.site(&site).record_by_name(n).is_some())
            .ok_or_else(|| ApiError::internal("Invalid Disaster Recovery id specified"))?;
        n.to_string()
    };
    {
        let r = world
            .site_mut(&site)
            .record_by_name_mut(&name)
            .expect("found");
        for (key, field) in [
            ("description", &mut r.description),
            ("drclusterurl", &mut r.url),
            ("drclusterstatus", &mut r.status),
            ("mirroringagentstatus", &mut r.agent_status),
        ] {
            if let Some(v) = p.get(key) {
                *field = v.to_string();
            }
        }
        if let Some(ip) = p.get("drclusterglueipaddress") {
            r.glue_ip = Some(ip.to_string());
        }
        if let Some(d) = &details {
            if by_id.is_some() {
                // With `id` the map replaces every stored detail (§3.5, §8).
                r.details.clone_from(d);
            } else if let Some(i) = d.get("mirrorscheduleinterval") {
                r.details.insert("mirrorscheduleinterval".into(), i.clone());
            }
        }
    }
    // Propagate the interval to the peer's record, signed with the keys from the new details.
    if let (Some(_), Some(d)) = (&by_id, &details) {
        let peer = world.peer_of(&site);
        let peer_spec = world.site(&peer).spec.clone();
        let signed_ok = d.get("drclusterapikey") == Some(&peer_spec.api_key)
            && d.get("drclustersecretkey") == Some(&peer_spec.secret_key);
        if world.peer_reachable(&site)
            && signed_ok
            && let Some(r) = world.site_mut(&peer).record_by_name_mut(&name)
            && let Some(i) = d.get("mirrorscheduleinterval")
        {
            r.details.insert("mirrorscheduleinterval".into(), i.clone());
        }
    }
    let agent = agent_status(world, ctx.now, &site);
    let r = world
        .site_mut(&site)
        .record_by_name_mut(&name)
        .expect("found");
    r.agent_status = agent;
    let r = world
        .site(&site)
        .record_by_name(&name)
        .expect("found")
        .clone();
    let mut v = record_json(world, &site, &r, false);
    if let Some(m) = v.as_object_mut() {
        // The ablecloud build leaves the recomputed agent status out of this answer.
        m.remove("mirroringagentstatus");
        m.remove("drclustervmmap");
    }
    world.event(
        &site,
        "DR.UPDATE",
        "Completed",
        "Successfully completed updating disaster recovery cluster",
    );
    Ok(json!({"disasterrecoverycluster": v}))
}

fn delete_record(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let id = ctx.params.required(ctx.command, "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.dr.DeleteDisasterRecoveryClusterCmd",
        Some(("DisasterRecoveryCluster", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, now| Step::Done(delete_record_now(w, &site, &record, now))),
    );
    Ok(json!({"jobid": jobid}))
}

fn delete_record_now(w: &mut World, site: &str, record: &DrRecord, now: Instant) -> ApiResult {
    let remove_local = |w: &mut World| {
        w.site_mut(site).dr_records.retain(|r| r.id != record.id);
    };
    if record.cluster_type != "secondary" {
        remove_local(w);
        w.event(
            site,
            "DR.DELETE",
            "Completed",
            "Successfully completed deleting disaster recovery cluster",
        );
        return Ok(json!({"success": true}));
    }
    // Glue DELETE /mirror: a full teardown on both sites.
    w.glue_mirror_teardown(now);
    let peer = w.peer_of(site);
    if w.peer_reachable(site) {
        let peer_has = w.site(&peer).record_by_name(&record.name).cloned();
        match peer_has {
            Some(peer_record) => {
                for m in &record.map {
                    destroy_mirror_vm(w, &peer, &record.name, &m.mirror_vm_id);
                }
                w.site_mut(&peer)
                    .dr_records
                    .retain(|r| r.id != peer_record.id);
            }
            None if !w.site(&peer).dr_records.is_empty() => {
                return Err(ApiError::internal(format!(
                    "Failed to delete disaster recovery cluster ID: {}",
                    record.internal_id
                )));
            }
            None => {}
        }
    }
    remove_local(w);
    w.event(
        site,
        "DR.DELETE",
        "Completed",
        "Successfully completed deleting disaster recovery cluster",
    );
    Ok(json!({"success": true}))
}

/// The peer side of `deleteDisasterRecoveryClusterVm` on a `primary` record: the mirrored
/// VM and its volumes are destroyed and expunged, its rows removed.
fn destroy_mirror_vm(w: &mut World, site: &str, cluster: &str, vm_id: &str) {
    let s = w.site_mut(site);
    if let Some(r) = s.record_by_name_mut(cluster) {
        r.map.retain(|m| m.vm_id != vm_id);
    }
    s.vms.retain(|v| v.id != vm_id);
    s.volumes.retain(|v| v.vm_id.as_deref() != Some(vm_id));
}

fn enable_record(world: &mut World, ctx: &Ctx<'_>, enable: bool) -> ApiResult {
    let id = ctx.params.required(ctx.command, "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let cmd = if enable {
        "org.apache.cloudstack.api.command.admin.dr.EnableDisasterRecoveryClusterCmd"
    } else {
        "org.apache.cloudstack.api.command.admin.dr.DisableDisasterRecoveryClusterCmd"
    };
    let jobid = world.submit_job(
        site.clone(),
        cmd,
        Some(("DisasterRecoveryCluster", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, now| {
            let peer = w.peer_of(&site);
            let status = if enable { "Enabled" } else { "Disabled" };
            if enable {
                w.glue_mirror_setup(now);
            } else {
                w.glue_mirror_teardown(now);
            }
            if let Some(r) = w.site_mut(&site).record_by_name_mut(&record.name) {
                r.status = status.into();
                r.agent_status = status.into();
                if !enable {
                    r.map.clear();
                }
            }
            if !w.peer_reachable(&site) {
                return Step::Done(Err(ApiError::internal(format!(
                    "Failed to {} disaster recovery cluster ID: {}",
                    if enable { "enable" } else { "disable" },
                    record.internal_id
                ))));
            }
            if let Some(r) = w.site_mut(&peer).record_by_name_mut(&record.name) {
                r.status = status.into();
                r.agent_status = status.into();
            }
            if !enable {
                for m in &record.map {
                    destroy_mirror_vm(w, &peer, &record.name, &m.mirror_vm_id);
                }
            }
            Step::Done(Ok(json!({"success": true})))
        }),
    );
    Ok(json!({"jobid": jobid}))
}

// ---------------------------------------------------------------------------------------
// Cluster-level operations on the DR site: promote, demote, resync, clear
// ---------------------------------------------------------------------------------------

type ClusterWork = fn(&mut World, &str, &DrRecord, Instant) -> Step;

/// Submits a cluster operation as a job; the work runs after the site's DR job time.
fn cluster_job(world: &mut World, ctx: &Ctx<'_>, work: ClusterWork) -> ApiResult {
    let id = ctx.params.required(ctx.command, "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.dr_job;
    let cmd = format!(
        "org.apache.cloudstack.api.command.admin.dr.{}Cmd",
        upper_first(ctx.command)
    );
    let jobid = world.submit_job(
        site.clone(),
        &cmd,
        Some(("DisasterRecoveryCluster", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, now| {
            // Re-read the record: rows may have changed while the job waited.
            let record = w.site(&site).record(&record.id).cloned().unwrap_or(record);
            work(w, &site, &record, now)
        }),
    );
    Ok(json!({"jobid": jobid}))
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Mold's own sleeps between Ceph steps (10 s, scaled), never shorter than the storage
/// needs to replay a demotion — Mold's real 10 s is long enough for that.
fn mold_step(w: &World) -> Duration {
    let st = &w.config.timing.storage;
    w.config
        .timing
        .dr_vm_command
        .max(st.demote_propagation + st.demote_settle + Duration::from_millis(20))
}

/// The names of the mapped VMs of a record that are not `Stopped` on `site`.
fn running_vms(w: &World, site: &str, vm_ids: impl Iterator<Item = String>) -> Vec<String> {
    let s = w.site(site);
    vm_ids
        .filter_map(|id| s.vm(&id).map(|v| (v.name.clone(), v.state.clone())))
        .filter(|(_, state)| state != "Stopped")
        .map(|(n, _)| n)
        .collect()
}

fn promote_cluster(w: &mut World, site: &str, record: &DrRecord, now: Instant) -> Step {
    Step::Done((|| {
        let local_vms = record.map.iter().map(|m| m.vm_id.clone());
        if let Some(name) = running_vms(w, site, local_vms).first() {
            return Err(ApiError::internal(format!(
                "Forced promote functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : {name}"
            )));
        }
        if record.map.is_empty() {
            return Err(ApiError::internal("There are no images being mirrored."));
        }
        let mut promoted = 0;
        for m in &record.map {
            let Some(st) = status(w, now, site, &m.vol_path) else {
                return Err(ApiError::internal(
                    "Failed to request mirror image status Glue-API.",
                ));
            };
            if st.promote_not_needed() {
                continue;
            }
            if w.storage.promote(now, site, &m.vol_path, true).is_err() {
                return Err(ApiError::internal(format!(
                    "Failed to promote image, For volumes with a path of {}, You must manually promote local images and resync remote image, add a local image snapshots schedule.",
                    m.vol_path
                )));
            }
            promoted += 1;
        }
        if promoted == 0 {
            return Err(ApiError::internal(
                "Promote cannot be executed because the current image is in ready or force promote.",
            ));
        }
        w.event(
            site,
            "DR.PROMOTE",
            "Completed",
            "Successfully completed promoting disaster recovery cluster",
        );
        Ok(json!({"success": true}))
    })())
}

/// The preconditions resync and demote share (§3.8): VMs stopped on both sites, the peer
/// reachable, every mapped peer VM present.
fn check_both_sites_stopped(
    w: &World,
    site: &str,
    record: &DrRecord,
    verb: &str,
) -> Result<(), ApiError> {
    let local_vms = record.map.iter().map(|m| m.vm_id.clone());
    if let Some(name) = running_vms(w, site, local_vms).first() {
        return Err(ApiError::internal(format!(
            "{verb} functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : {name}"
        )));
    }
    if !w.peer_reachable(site) {
        return Err(ApiError::internal(format!(
            "{verb} functions cannot be executed because primary cluster Mold failed to request API."
        )));
    }
    let peer = w.site(&w.peer_of(site));
    for m in &record.map {
        match peer.vm_by_name(&m.mirror_vm_name) {
            None => {
                return Err(ApiError::internal(
                    "JSONObject[\"virtualmachine\"] not found.",
                ));
            }
            Some(vm) if vm.state != "Stopped" => {
                return Err(ApiError::internal(format!(
                    "{verb} functions cannot be executed because there is a running disaster recovery primary cluster virtual machine : {}",
                    vm.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn resync_cluster_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    cluster_job(world, ctx, |w, site, record, _now| {
        if let Err(e) = check_both_sites_stopped(w, site, record, "Resync") {
            return Step::Done(Err(e));
        }
        // Glue restarts rbd-mirror, then Mold sleeps 180 s (scaled).
        let record = record.clone();
        let site = site.to_string();
        let pause = mold_step(w);
        Step::Later(
            pause,
            Box::new(move |w: &mut World, now| {
                let peer = w.peer_of(&site);
                let mut flagged = 0;
                for m in &record.map {
                    let local = status(w, now, &site, &m.vol_path);
                    let both_primary = local.as_ref().is_some_and(ImageStatus::is_both_primary);
                    if !both_primary {
                        // Mold skips it silently; the simulator says what it read.
                        tracing::info!(
                            site = %site,
                            image = %m.vol_path,
                            status = ?local.as_ref().map(|s| (&s.state, &s.description, s.peer())),
                            "resync skips an image that is not primary on both sites"
                        );
                        continue;
                    }
                    let _ = w.storage.demote(now, &peer, &m.vol_path);
                    if w.storage.resync(now, &peer, &m.vol_path).is_err() {
                        return Step::Done(Err(ApiError::internal(format!(
                            "Failed to resync primary cluster image, For volumes with a path of {}, You must manually resync primary cluster image.",
                            m.vol_path
                        ))));
                    }
                    flagged += 1;
                }
                if flagged == 0 {
                    return Step::Done(Err(ApiError::internal(
                        "Resync cannot be executed because the current image is not force promoting state.",
                    )));
                }
                // Then Mold sleeps 300 s (scaled) before it reports success.
                let pause = mold_step(w);
                Step::Later(
                    pause,
                    Box::new(move |w: &mut World, _| {
                        w.event(
                            &site,
                            "DR.RESYNC",
                            "Completed",
                            "Successfully completed resyncing disaster recovery cluster",
                        );
                        Step::Done(Ok(json!({"success": true})))
                    }),
                )
            }),
        )
    })
}

/// Demote's pre-check of one volume (§3.8 step 3, §3.10): local primary, peer replaying and
/// idle. `prefix` is the command family's wording.
fn check_synced(st: Option<&ImageStatus>, image: &str, prefix: &str) -> Result<(), ApiError> {
    let Some(st) = st else {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because image mirror status glue-API request failed."
        )));
    };
    let (peer_state, peer_desc) = peer_desc(st);
    if !st.is_primary() || !peer_state.contains("replaying") {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because peer state is {peer_state}in volume path : {image}"
        )));
    }
    if !peer_desc.contains("idle") {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because peer state is syncing in volume path : {image}. Please try again later."
        )));
    }
    Ok(())
}

fn demote_cluster_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    world.event(
        &ctx.site,
        "DR.DEMOTE",
        "Started",
        "demoting disaster recovery cluster",
    );
    cluster_job(world, ctx, |w, site, record, now| {
        let fail = |w: &mut World, e: ApiError| {
            w.event(
                site,
                "DR.DEMOTE",
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            Step::Done(Err(e))
        };
        if let Err(e) = check_both_sites_stopped(w, site, record, "Forced demote") {
            return fail(w, e);
        }
        for m in &record.map {
            let st = status(w, now, site, &m.vol_path);
            if let Err(e) = check_synced(st.as_ref(), &m.vol_path, "Forced demote") {
                return fail(w, e);
            }
        }
        // The final snapshot of every VM's volumes, then wait until the peer is idle.
        for m in &record.map {
            let _ = w.storage.mirror_snapshot(now, site, &m.vol_path);
        }
        let record = record.clone();
        let site = site.to_string();
        Step::Later(mold_step(w), wait_idle_then_swap(site, record, 100))
    })
}

/// Polls until every peer image is idle (≤ `rounds`; a timeout is not an error), then swaps
/// roles volume by volume: demote here, promote the peer, resync here.
fn wait_idle_then_swap(site: String, record: DrRecord, rounds: u32) -> super::world::JobWork {
    Box::new(move |w: &mut World, now| {
        let idle = peers_idle(w, now, &site, &record.map);
        if !idle && rounds > 1 {
            let pause = mold_step(w);
            return Step::Later(pause, wait_idle_then_swap(site, record, rounds - 1));
        }
        let mut demoted = Vec::new();
        for m in &record.map {
            if w.storage.demote(now, &site, &m.vol_path).is_ok() {
                demoted.push(m.vol_path.clone());
            }
        }
        if demoted.is_empty() {
            w.event(
                &site,
                "DR.DEMOTE",
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            return Step::Done(Err(ApiError::internal(
                "Demote cannot be executed because the current image is in Syncing state.",
            )));
        }
        // Mold sleeps 10 s before each promote of the peer: the demotion propagates.
        let pause = mold_step(w);
        Step::Later(pause, promote_peer_then_resync(site, demoted, 100))
    })
}

fn promote_peer_then_resync(
    site: String,
    images: Vec<String>,
    tries: u32,
) -> super::world::JobWork {
    Box::new(move |w: &mut World, now| {
        let peer = w.peer_of(&site);
        let mut left = Vec::new();
        for img in &images {
            let promoted =
                w.peer_reachable(&site) && w.storage.promote(now, &peer, img, true).is_ok();
            if promoted {
                let _ = w.storage.resync(now, &site, img);
            } else {
                left.push(img.clone());
            }
        }
        if left.is_empty() {
            w.event(&site, "DR.DEMOTE", "Completed", DEMOTE_DONE);
            return Step::Done(Ok(json!({"success": true})));
        }
        if tries <= 1 {
            w.event(
                &site,
                "DR.DEMOTE",
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            return Step::Done(Err(ApiError::internal(format!(
                "Failed to promote remote image, For volumes with a path of {}, You must manually promote remote images and resync local image, add a remote image snapshots schedule.",
                left[0]
            ))));
        }
        let pause = mold_step(w);
        Step::Later(pause, promote_peer_then_resync(site, left, tries - 1))
    })
}

fn clear_cluster(w: &mut World, site: &str, record: &DrRecord, now: Instant) -> Step {
    for m in &record.map {
        if w.storage.disable_mirroring(now, site, &m.vol_path).is_err() {
            return Step::Done(Err(ApiError::internal(format!(
                "Clear cannot be executed because the current image failed to disable mirroring image. volume path : {}",
                m.vol_path
            ))));
        }
    }
    // DELETE /mirror/garbage: the peer, its key, pool mirroring and MOLD-DR go, locally;
    // the job's result is that call's (a JSON string).
    if let Err(e) = w.glue_garbage(now, site) {
        return Step::Done(Err(ApiError::internal(format!(
            "Failed to clear disaster recovery cluster ID: {} ({})",
            record.internal_id,
            e.output.lines().last().unwrap_or_default()
        ))));
    }
    w.event(
        site,
        "DR.CLEAR",
        "Completed",
        "Successfully completed clearing disaster recovery cluster",
    );
    Step::Done(Ok(json!("")))
}

// ---------------------------------------------------------------------------------------
// Mirrored VMs: create, the peer-internal row insert, delete
// ---------------------------------------------------------------------------------------

/// What a mirrored VM is made from on the DR site.
pub struct MirrorVmRequest {
    pub vm_id: String,
    pub cluster: String,
    pub offering: String,
    pub network: String,
}

fn create_mirror_vm_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let c = ctx.command;
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
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.dr.CreateDisasterRecoveryClusterVmCmd",
        Some(("VirtualMachine", vm_id.clone())),
        ctx.now,
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
    let mirror = super::world::Vm {
        id: peer_vm_id.clone(),
        internal_id,
        name: vm.name.clone(),
        instance_name: format!("i-2-{internal_id}-VM"),
        state: "Stopped".into(),
        host_id: None,
        last_host_id: Some(host),
        service_offering_id: offering,
        network_id: network,
        created: Local::now(),
        // Mold does not copy the protected VM's tags to the mirrored VM.
        tags: BTreeMap::new(),
    };
    w.site_mut(&peer).vms.push(mirror);
    for v in &volumes {
        let id = w.uuid();
        w.site_mut(&peer).volumes.push(super::world::Volume {
            id,
            name: v.name.clone(),
            path: v.path.clone(),
            vm_id: Some(peer_vm_id.clone()),
            kind: v.kind.clone(),
            size_bytes: v.size_bytes,
            disk_offering_id: disk_offering.clone(),
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
    w.event(
        site,
        "DR.VM.CREATE",
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
    let vm_id = p.required(ctx.command, "virtualmachineid")?.to_string();
    let cluster = p.required(ctx.command, "drclustername")?.to_string();
    if world.site(&ctx.site).vm(&vm_id).is_none() {
        return Err(ApiError::unknown_id("virtualmachineid", &vm_id));
    }
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.dr.DeleteDisasterRecoveryClusterVmCmd",
        Some(("VirtualMachine", vm_id.clone())),
        ctx.now,
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
                w.event(&site, "DR.VM.DELETE", "Completed", "Successfully completed deleting disaster recovery cluster virtual machine");
                Ok(json!({"success": true}))
            })())
        }),
    );
    Ok(json!({"jobid": jobid}))
}

// ---------------------------------------------------------------------------------------
// The VM-level test operations: synchronous, long (§3.10)
// ---------------------------------------------------------------------------------------

/// Runs one of the long synchronous commands. The request is held (the caller already
/// slept the command's base time); waits release the lock between rounds.
pub async fn run_long(shared: &Shared, site: &str, command: &str, params: &Params) -> ApiResult {
    let vm_id = params.required(command, "virtualmachineid")?.to_string();
    let cluster = if command == "takeSnapshotDisasterRecoveryClusterVm" {
        None
    } else {
        Some(params.required(command, "drclustername")?.to_string())
    };
    let (rows, internal_id) = {
        let w = shared.world();
        let s = w.site(site);
        let Some(vm) = s.vm(&vm_id) else {
            return Err(ApiError::unknown_id("virtualmachineid", &vm_id));
        };
        let rows: Vec<MapRow> = s
            .dr_records
            .iter()
            .filter(|r| cluster.as_deref().is_none_or(|c| r.name == c))
            .flat_map(|r| r.map.iter().filter(|m| m.vm_id == vm_id).cloned())
            .collect();
        (rows, vm.internal_id)
    };
    let Some(first) = rows.first().cloned() else {
        return Err(ApiError::internal(INTERNAL));
    };
    let generic = |verb: &str| {
        ApiError::internal(format!(
            "Failed to {verb} disaster recovery cluster virtual machine ID: {internal_id}"
        ))
    };
    let result = match command {
        "stopDisasterRecoveryClusterVm" => {
            peer_vm_power(shared, site, &first.mirror_vm_id, false).await
        }
        "startDisasterRecoveryClusterVm" => {
            wait_start_ready(shared, site, &rows).await;
            peer_vm_power(shared, site, &first.mirror_vm_id, true).await
        }
        "takeSnapshotDisasterRecoveryClusterVm" => take_snapshot(shared, site, &rows).await,
        "demoteDisasterRecoveryClusterVm" => demote_vm(shared, site, &rows).await,
        "promoteDisasterRecoveryClusterVm" => promote_vm(shared, site, &rows).await,
        other => {
            return Err(ApiError::internal(format!(
                "{other} is not a long DR command"
            )));
        }
    };
    match result {
        Ok(true) => {
            let event = format!("DR.VM.{}", command_event(command));
            shared
                .world()
                .event(site, &event, "Completed", "Successfully completed");
            Ok(json!({"success": true}))
        }
        Ok(false) => Err(generic(match command {
            "stopDisasterRecoveryClusterVm" => "stop",
            "startDisasterRecoveryClusterVm" => "start",
            "promoteDisasterRecoveryClusterVm" => "promote",
            "demoteDisasterRecoveryClusterVm" => "demote",
            _ => "take snapshot",
        })),
        Err(e) => Err(e),
    }
}

fn command_event(command: &str) -> &'static str {
    match command {
        "stopDisasterRecoveryClusterVm" => "STOP",
        "startDisasterRecoveryClusterVm" => "START",
        "promoteDisasterRecoveryClusterVm" => "PROMOTE",
        "demoteDisasterRecoveryClusterVm" => "DEMOTE",
        _ => "SNAPSHOT",
    }
}

/// The pause between Mold's rounds inside a long command.
fn round_pause(shared: &Shared) -> Duration {
    mold_step(&shared.world())
}

/// Stops or starts the mirrored VM on the peer (`stopVirtualMachine forced=true` /
/// `startVirtualMachine`, polled): true when the peer's job succeeded.
async fn peer_vm_power(
    shared: &Shared,
    site: &str,
    peer_vm: &str,
    start: bool,
) -> Result<bool, ApiError> {
    let (peer, job) = {
        let w = shared.world();
        (w.peer_of(site), w.config.timing.job)
    };
    if !shared.world().peer_reachable(site) {
        return Err(ApiError::internal(if start {
            "Failed to request StartVirtualMachine Mold-API."
        } else {
            "Failed to request StopVirtualMachine Mold-API."
        }));
    }
    let was = {
        let mut w = shared.world();
        let Some(vm) = w.site_mut(&peer).vm_mut(peer_vm) else {
            return Ok(false);
        };
        let was = vm.state.clone();
        vm.state = if start { "Starting" } else { "Stopping" }.into();
        was
    };
    tokio::time::sleep(job).await;
    let now = shared.now();
    let mut w = shared.world();
    w.advance(now);
    let done = if start {
        super::mold_api::finish_start(&mut w, &peer, peer_vm, &was, now)
    } else {
        super::mold_api::finish_stop(&mut w, &peer, peer_vm)
    };
    Ok(done.is_ok())
}

/// startDisasterRecoveryClusterVm's rounds: wait while the DR side's image is still the
/// primary and ours not yet idle; after the last round it starts anyway (§3.10).
async fn wait_start_ready(shared: &Shared, site: &str, rows: &[MapRow]) {
    for _ in 0..100 {
        let ready = {
            let now = shared.now();
            let mut w = shared.world();
            w.advance(now);
            rows.iter().all(|m| {
                status(&mut w, now, site, &m.vol_path).is_some_and(|st| {
                    let (_, peer_desc) = peer_desc(&st);
                    peer_desc != crate::glue::types::PRIMARY || st.description.contains("idle")
                })
            })
        };
        if ready {
            return;
        }
        tokio::time::sleep(round_pause(shared)).await;
    }
}

/// Whether every row's peer image shows `idle` (seen from `site`).
fn peers_idle(w: &mut World, now: Instant, site: &str, rows: &[MapRow]) -> bool {
    rows.iter().all(|m| {
        status(w, now, site, &m.vol_path)
            .and_then(|s| s.peer().map(|p| p.description.contains("idle")))
            .unwrap_or(false)
    })
}

/// The VM-level pre-check every volume must pass (local primary, peer replaying and idle),
/// then `act` on each volume's image — all under one look at the world.
fn prechecked(
    shared: &Shared,
    site: &str,
    rows: &[MapRow],
    act: impl Fn(&mut World, Instant, &str),
) -> Result<(), ApiError> {
    let now = shared.now();
    let mut w = shared.world();
    w.advance(now);
    for m in rows {
        let st = status(&mut w, now, site, &m.vol_path);
        check_synced(st.as_ref(), &m.vol_path, "Simulation test")?;
    }
    for m in rows {
        act(&mut w, now, &m.vol_path);
    }
    Ok(())
}

async fn take_snapshot(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    prechecked(shared, site, rows, |w, now, image| {
        let _ = w.storage.mirror_snapshot(now, site, image);
    })?;
    // Poll until every peer is idle; a timeout still answers success.
    for _ in 0..100 {
        tokio::time::sleep(round_pause(shared)).await;
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        if peers_idle(&mut w, now, site, rows) {
            break;
        }
    }
    Ok(true)
}

/// Step 3 of the mirroring test: the DR side's images become primary, ours replicas.
async fn demote_vm(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    prechecked(shared, site, rows, |w, now, image| {
        let _ = w.storage.demote(now, site, image);
    })?;
    for m in rows {
        swap_with_retries(shared, site, &m.vol_path, SwapDirection::PeerBecomesPrimary).await?;
    }
    Ok(true)
}

/// Step 7: roles swap back — the peer is demoted, ours promoted, the peer resynced.
async fn promote_vm(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    {
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        let peer = w.peer_of(site);
        for m in rows {
            let _ = w.storage.demote(now, &peer, &m.vol_path);
        }
    }
    for m in rows {
        swap_with_retries(
            shared,
            site,
            &m.vol_path,
            SwapDirection::LocalBecomesPrimary,
        )
        .await?;
    }
    Ok(true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SwapDirection {
    PeerBecomesPrimary,
    LocalBecomesPrimary,
}

/// Mold's loop: sleep 10 s (scaled), promote (Glue forces it), up to 100 tries; then resync
/// the side that was demoted.
async fn swap_with_retries(
    shared: &Shared,
    site: &str,
    image: &str,
    dir: SwapDirection,
) -> Result<(), ApiError> {
    for _ in 0..100 {
        tokio::time::sleep(round_pause(shared)).await;
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        let peer = w.peer_of(site);
        let (promote_on, resync_on) = match dir {
            SwapDirection::PeerBecomesPrimary => (peer.clone(), site.to_string()),
            SwapDirection::LocalBecomesPrimary => (site.to_string(), peer.clone()),
        };
        let reachable = promote_on == site || w.peer_reachable(site);
        if reachable && w.storage.promote(now, &promote_on, image, true).is_ok() {
            let resynced = (resync_on == site || w.peer_reachable(site))
                && w.storage.resync(now, &resync_on, image).is_ok();
            if !resynced && dir == SwapDirection::LocalBecomesPrimary {
                return Err(ApiError::internal(format!(
                    "The image was promoted successfully, but resyncing the image failed. For volumes with a path of {image}, Manually set image resync."
                )));
            }
            return Ok(());
        }
    }
    Err(ApiError::internal(match dir {
        SwapDirection::PeerBecomesPrimary => {
            format!("Failed to promote remote image, For volumes with a path of {image}.")
        }
        SwapDirection::LocalBecomesPrimary => {
            format!("Failed to promote image, For volumes with a path of {image}.")
        }
    }))
}

// ---------------------------------------------------------------------------------------
// Mold's VM start guards (§5.6)
// ---------------------------------------------------------------------------------------

/// Whether Mold lets `vm_id` start on `site`; the error is Mold's text.
pub fn start_guard(w: &mut World, site: &str, vm_id: &str, now: Instant) -> Result<(), String> {
    let s = w.site(site);
    let under_primary_record = s
        .dr_records
        .iter()
        .any(|r| r.cluster_type == "primary" && r.map.iter().any(|m| m.vm_id == vm_id));
    let today = Local::now().date_naive();
    let demote_events: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.kind == "DR.DEMOTE" && e.at.date_naive() == today)
        .cloned()
        .collect();
    let images: Vec<String> = s.volumes_of(vm_id).map(|v| v.path.clone()).collect();
    if under_primary_record && !demote_events.is_empty() {
        let completed = demote_events
            .iter()
            .any(|e| e.state == "Completed" && e.description == DEMOTE_DONE);
        if !completed {
            return Err(
                "The virtual machine cannot be started because the forced demote is not completed."
                    .into(),
            );
        }
        for img in &images {
            if let Some(st) = status(w, now, site, img) {
                let (peer_state, peer_desc) = peer_desc(&st);
                if st.is_primary()
                    && peer_state.contains("replaying")
                    && !peer_desc.contains("idle")
                {
                    return Err("The virtual machine cannot be started because the image syncing process for the mirroring virtual machine has not completed.".into());
                }
            }
        }
    }
    // Any VM whose images are replicas cannot start: Mold checks mapped VMs, and a VM on
    // non-primary images could not write anyway.
    for img in &images {
        let Some(st) = status(w, now, site, img) else {
            continue;
        };
        if !st.is_startable() {
            return Err("The virtual machine cannot be started because the mirroring image not ready status.".into());
        }
    }
    Ok(())
}
