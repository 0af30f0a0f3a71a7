//! The DR plugin's records and pairing (spec §3.1–§3.7): the storage-VM list, the
//! connection test, the record list with its side effects, create (pairing both sites),
//! update (also the interval), delete, enable and disable. Records are paired by name; what
//! the plugin does through the peer's API happens here directly on the peer's records, since
//! both sites live in one process.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::Local;
use serde_json::{Value, json};

use super::command::{Command, Ctx, Kind};
use super::envelope::{INTERNAL, list};
use super::mirrored_vms::destroy_mirror_vm;
use crate::sim::world::{ApiError, ApiResult, DrRecord, Step, World};

pub static LIST_SCVM_IPS: Command = Command {
    name: "listScvmIpAddress",
    kind: Kind::Sync(|w, ctx| Ok(list_scvm_ips(w, ctx))),
    event: None,
};

/// The read rule counts it as a read: it changes nothing but its event.
pub static CONNECTIVITY_TEST: Command = Command {
    name: "connectivityTestsDisasterRecovery",
    kind: Kind::Sync(connectivity_test),
    event: Some("DR.TEST.CONNECT"),
};

pub static LIST: Command = Command {
    name: "getDisasterRecoveryClusterList",
    kind: Kind::Sync(list_records),
    event: None,
};

pub static CREATE: Command = Command {
    name: "createDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.CreateDisasterRecoveryClusterCmd",
        submit: create_record,
    },
    event: Some("DR.CREATE"),
};

pub static UPDATE: Command = Command {
    name: "updateDisasterRecoveryCluster",
    kind: Kind::Sync(update_record),
    event: Some("DR.UPDATE"),
};

pub static DELETE: Command = Command {
    name: "deleteDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.DeleteDisasterRecoveryClusterCmd",
        submit: delete_record,
    },
    event: Some("DR.DELETE"),
};

// Mold logs DR.ENABLE and DR.DISABLE; the simulator does not (nothing reads them back).
pub static ENABLE: Command = Command {
    name: "enableDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.EnableDisasterRecoveryClusterCmd",
        submit: |w, ctx| enable_record(w, ctx, true),
    },
    event: None,
};

pub static DISABLE: Command = Command {
    name: "disableDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.DisableDisasterRecoveryClusterCmd",
        submit: |w, ctx| enable_record(w, ctx, false),
    },
    event: None,
};

pub static COMMANDS: &[&Command] = &[
    &LIST_SCVM_IPS,
    &CONNECTIVITY_TEST,
    &LIST,
    &CREATE,
    &UPDATE,
    &DELETE,
    &ENABLE,
    &DISABLE,
];

fn list_scvm_ips(world: &World, ctx: &Ctx<'_>) -> Value {
    let ips = world.site(&ctx.site).scvm_ips();
    list("scvmipaddress", &[json!({"ipaddress": ips})])
}

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
        .sites()
        .iter()
        .find(|s| base_url(&s.mold_url) == want)
        .map(|s| s.spec.name.clone())
}

/// A record of this site by its UUID; an unknown one is the framework's 431.
pub fn record_id(world: &World, site: &str, id: &str) -> Result<DrRecord, ApiError> {
    world
        .site(site)
        .record(id)
        .cloned()
        .ok_or_else(|| ApiError::unknown_id("id", id))
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
    let vms: HashMap<&str, &crate::sim::world::Vm> =
        s.vms.iter().map(|v| (v.id.as_str(), v)).collect();
    let rows: Vec<Value> = r
        .map
        .iter()
        .map(|m| {
            let vm = vms.get(m.vm_id.as_str());
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

fn connectivity_test(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let p = ctx.params;
    let c = ctx.name();
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
    CONNECTIVITY_TEST.record_event(
        world,
        &ctx.site,
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
    let images = world.storage.pool_states(now, site);
    let glue_empty = images.is_empty();
    // The peer VM's state, by exact name (Mold lists with keyword and filters).
    let peer_vm_states: BTreeMap<String, String> = world
        .site(&peer)
        .vms
        .iter()
        .map(|v| (v.name.clone(), v.state.clone()))
        .collect();
    for r in world.record_statuses_mut(site) {
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
    let c = ctx.name();
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
    let jobid = ctx.submit_job(
        world,
        Some(("DisasterRecoveryCluster", id.clone())),
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
        CREATE.record_event(
            w,
            site,
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
    CREATE.record_event(
        w,
        site,
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
    UPDATE.record_event(
        world,
        &site,
        "Completed",
        "Successfully completed updating disaster recovery cluster",
    );
    Ok(json!({"disasterrecoverycluster": v}))
}

fn delete_record(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("DisasterRecoveryCluster", id.clone())),
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
        DELETE.record_event(
            w,
            site,
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
    DELETE.record_event(
        w,
        site,
        "Completed",
        "Successfully completed deleting disaster recovery cluster",
    );
    Ok(json!({"success": true}))
}

fn enable_record(world: &mut World, ctx: &Ctx<'_>, enable: bool) -> ApiResult {
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.job;
    let jobid = ctx.submit_job(
        world,
        Some(("DisasterRecoveryCluster", id.clone())),
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

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, dr_class, rows};
    use super::*;

    #[test]
    fn the_pairing_commands_as_the_spec_lists_them() {
        // Spec §3.0: API, sync/async, event.
        let spec = [
            ("listScvmIpAddress", Answer::Sync, None),
            (
                "connectivityTestsDisasterRecovery",
                Answer::Sync,
                Some("DR.TEST.CONNECT"),
            ),
            ("getDisasterRecoveryClusterList", Answer::Sync, None),
            (
                "createDisasterRecoveryCluster",
                Answer::Async,
                Some("DR.CREATE"),
            ),
            (
                "updateDisasterRecoveryCluster",
                Answer::Sync,
                Some("DR.UPDATE"),
            ),
            (
                "deleteDisasterRecoveryCluster",
                Answer::Async,
                Some("DR.DELETE"),
            ),
            (
                "enableDisasterRecoveryCluster",
                Answer::Async,
                Some("DR.ENABLE"),
            ),
            (
                "disableDisasterRecoveryCluster",
                Answer::Async,
                Some("DR.DISABLE"),
            ),
        ];
        // Events Mold logs that the simulator leaves out.
        let unlogged = ["DR.ENABLE", "DR.DISABLE"];
        let expected: Vec<_> = spec
            .into_iter()
            .map(|(name, answer, event)| (name, answer, event.filter(|e| !unlogged.contains(e))))
            .collect();
        assert_eq!(rows(COMMANDS), expected);
    }

    #[test]
    fn pairing_jobs_carry_the_dr_plugin_s_classes() {
        for c in COMMANDS {
            if let Some(class) = c.job_class() {
                assert_eq!(class, dr_class(c.name), "{}", c.name);
            }
        }
    }
}
