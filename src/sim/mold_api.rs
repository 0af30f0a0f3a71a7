//! A site's Mold API at `/client/api`, as Mold's `ApiServer` serves it: GET or POST form,
//! signature verified with the site's admin key pair and algorithm (`signatureversion=3` +
//! `expires` honoured), `response=json` envelopes, errors with `X-Description`, and the
//! standard commands the DR feature and runbooks use. The DR commands live in `mold_dr.rs`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, SubsecRound, TimeZone, Utc};
use serde_json::{Value, json};

use super::faults::{Api, FaultAction, lose_answer, reset_response};
use super::mold_dr;
use super::params::Params;
use super::server::{Shared, SiteRoute};
use super::world::{ApiError, ApiResult, Job, Step, World};
use crate::mold::sign;

/// One request's context.
pub struct Ctx<'a> {
    pub site: String,
    pub command: &'a str,
    pub params: &'a Params,
    pub now: Instant,
}

pub async fn handle(
    State(route): State<SiteRoute>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = route.shared.clone();
    let site = route.site.clone();
    let mut raw = query.unwrap_or_default();
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form && !body.is_empty() {
        if !raw.is_empty() {
            raw.push('&');
        }
        raw.push_str(&String::from_utf8_lossy(&body));
    }
    let params = Params::parse(&raw);
    let command = params.get("command").unwrap_or_default().to_string();

    if !shared.site_up(&site) {
        return reset_response();
    }
    // Every request that arrives counts, including those a fault then spoils.
    {
        let mut world = shared.world();
        *world
            .calls
            .entry((site.clone(), command.clone()))
            .or_default() += 1;
        if !command.is_empty() && !is_read(&command) {
            world.mutations.record(&site, Api::Mold, &command);
        }
    }
    let key = format!("{}response", command.to_lowercase());
    let mut fail_job = None;
    let mut lose = None;
    match shared.take_fault(&site, Api::Mold, &command, &key) {
        FaultAction::None => {}
        FaultAction::Respond(r) => return r,
        FaultAction::Delay(d) => tokio::time::sleep(d).await,
        FaultAction::FailJob(text) => fail_job = Some(text),
        FaultAction::LoseAnswer(hold) => lose = Some(hold),
    }
    let request = Request {
        site: &site,
        method: &method,
        command: &command,
        params: &params,
        key: &key,
    };
    let answer = serve(&shared, &request, fail_job).await;
    match lose {
        Some(hold) => lose_answer(answer, hold).await,
        None => answer,
    }
}

/// A request past counting and faults.
struct Request<'a> {
    site: &'a str,
    method: &'a Method,
    command: &'a str,
    params: &'a Params,
    key: &'a str,
}

/// Handles a request as Mold does: the gate, then the command; `fail_job` makes the job it
/// submits fail.
async fn serve(shared: &Shared, request: &Request<'_>, fail_job: Option<String>) -> Response {
    let &Request {
        site,
        method,
        command,
        params,
        key,
    } = request;
    let now = shared.now();
    let hold = {
        let mut world = shared.world();
        world.advance(now);
        if let Some(refused) = gate(&world, site, method, command, params) {
            return refused;
        }
        world.config.timing.dr_vm_command
    };
    if mold_dr::is_long_command(command) {
        // Mold holds these requests while it waits on Ceph (10–60 s sleeps, scaled).
        tokio::time::sleep(hold).await;
        return match mold_dr::run_long(shared, site, command, params).await {
            Ok(inner) => ok(key, &inner),
            Err(e) => {
                shared.world().refused.record(site, Api::Mold, command);
                error(key, &e)
            }
        };
    }
    let mut world = shared.world();
    let ctx = Ctx {
        site: site.to_string(),
        command,
        params,
        now,
    };
    let result = if mold_dr::COMMANDS.contains(&command) {
        mold_dr::dispatch(&mut world, &ctx)
    } else {
        standard(&mut world, &ctx)
    };
    match result {
        Ok(inner) => {
            if let (Some(text), Some(jobid)) =
                (fail_job, inner.get("jobid").and_then(Value::as_str))
            {
                world.fail_job(jobid, text);
            }
            ok(key, &inner)
        }
        Err(e) => {
            if !is_read(command) {
                world.refused.record(site, Api::Mold, command);
            }
            error(key, &e)
        }
    }
}

/// What Mold checks before any command runs: the signature, POST enforcement, and that the
/// command exists (DR commands only while the DR service is enabled). `Some` is the refusal.
fn gate(
    world: &World,
    site: &str,
    method: &Method,
    command: &str,
    params: &Params,
) -> Option<Response> {
    let key = format!("{}response", command.to_lowercase());
    let spec = &world.site(site).spec;
    if let Err(why) = verify(params, spec) {
        return Some(unauthorized(&key, &why));
    }
    if spec.enforce_post && method != Method::POST && !is_read(command) {
        return Some(error(
            &key,
            &ApiError {
                errorcode: 400,
                cserrorcode: Some(9999),
                errortext: format!(
                    "State changing command {command} needs to be sent using POST request"
                ),
            },
        ));
    }
    let known =
        STANDARD.contains(&command) || (spec.dr_enabled && mold_dr::COMMANDS.contains(&command));
    if !known {
        return Some(error(
            "errorresponse",
            &ApiError {
                errorcode: 432,
                cserrorcode: Some(9999),
                errortext: "The given command does not exist or it is not available for user"
                    .into(),
            },
        ));
    }
    None
}

/// Mold's rule for a read: the name starts with `list`, `get`, `query` or `find` followed by
/// an upper-case letter (`listVirtualMachines`; not `listener`, not `ListVirtualMachines`).
/// Everything else changes state: it must be POSTed under enforcement, and it counts as a
/// mutation. The simulator's own rule, on the name as sent, so that drbook's client is
/// checked against it rather than against itself.
pub fn is_read(command: &str) -> bool {
    // Mold's connection test only looks at the peer (it records an event, nothing else).
    command == "connectivityTestsDisasterRecovery"
        || ["list", "get", "query", "find"].iter().any(|verb| {
            command
                .strip_prefix(verb)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
}

/// Checks the signature the way `ApiServer.verifyRequest` does; the error is for the log.
fn verify(params: &Params, spec: &crate::sim::config::SiteSpec) -> Result<(), String> {
    let api_key = params.get("apikey").ok_or("no apikey")?;
    let signature = params.get("signature").ok_or("no signature")?;
    if api_key != spec.api_key {
        return Err("unknown api key".into());
    }
    let expires = params.get("expires");
    match params.get("signatureversion") {
        Some("3") => {
            let expires = expires.ok_or("signatureversion=3 without expires")?;
            let at = parse_expires(expires).ok_or("unparseable expires")?;
            let now = Utc::now();
            if at < now {
                return Err("request expired".into());
            }
            if spec.enforce_post && at > now + chrono::Duration::minutes(15) {
                return Err("expires too far ahead".into());
            }
        }
        Some(_) => return Err("signatureversion must be 3".into()),
        None if spec.enforce_post => return Err("signatureversion=3 is enforced".into()),
        None => {}
    }
    if sign::verify(&params.0, &spec.secret_key, spec.algorithm, signature) {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
}

/// The `expires` formats Mold accepts (spec §2.2, §8.5).
fn parse_expires(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%SZ%z",
    ] {
        if let Ok(d) = DateTime::<FixedOffset>::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

fn ok(key: &str, inner: &Value) -> Response {
    json_response(StatusCode::OK, &json!({ key: inner }))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// Mold's error envelope: HTTP status = errorcode, `X-Description` = errortext.
pub fn error(key: &str, e: &ApiError) -> Response {
    let mut inner = json!({"uuidList": [], "errorcode": e.errorcode, "errortext": e.errortext});
    if let Some(cs) = e.cserrorcode {
        inner["cserrorcode"] = json!(cs);
    }
    let status = StatusCode::from_u16(e.errorcode).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &json!({ key: inner }));
    if let Ok(v) = HeaderValue::from_str(&e.errortext) {
        r.headers_mut().insert("X-Description", v);
    }
    r
}

/// The 401 of a bad signature: no `cserrorcode`, no `X-Description` (spec §8.5).
fn unauthorized(key: &str, why: &str) -> Response {
    tracing::debug!(why, "rejected request signature");
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({ key: {"uuidList": [], "errorcode": 401,
            "errortext": "unable to verify user credentials and/or request signature"}}),
    )
}

/// The standard (non-DR) commands the simulator serves.
pub const STANDARD: &[&str] = &[
    "listCapabilities",
    "listVirtualMachines",
    "startVirtualMachine",
    "stopVirtualMachine",
    "destroyVirtualMachine",
    "queryAsyncJobResult",
    "listAsyncJobs",
    "listServiceOfferings",
    "listNetworks",
    "listDiskOfferings",
    "listVolumes",
    "listAccounts",
    "listStoragePoolsMetrics",
    "listZones",
    "listHosts",
];

/// A list answer: `{}` when empty, as Mold sends it.
pub fn list(object: &str, items: &[Value]) -> Value {
    if items.is_empty() {
        json!({})
    } else {
        json!({"count": items.len(), object: items})
    }
}

/// Applies `page`/`pagesize` to a full list.
fn page(params: &Params, items: Vec<Value>) -> Vec<Value> {
    let size: usize = params
        .get("pagesize")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(usize::MAX);
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    items
        .into_iter()
        .skip(size.saturating_mul(page - 1))
        .take(size)
        .collect()
}

fn standard(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.as_str();
    let p = ctx.params;
    match ctx.command {
        "listCapabilities" => {
            let s = world.site(site);
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
            Ok(json!({"capability": cap}))
        }
        "listVirtualMachines" => {
            let s = world.site(site);
            let id = p.get("id");
            let name = p.get("name");
            let keyword = p.get("keyword").map(str::to_lowercase);
            let state = p.get("state");
            let items = s
                .vms
                .iter()
                .filter(|v| id.is_none_or(|i| v.id == i))
                .filter(|v| name.is_none_or(|n| v.name == n))
                .filter(|v| {
                    keyword
                        .as_deref()
                        .is_none_or(|k| v.name.to_lowercase().contains(k))
                })
                .filter(|v| state.is_none_or(|st| v.state.eq_ignore_ascii_case(st)))
                .map(|v| world.vm_json(s, v))
                .collect();
            Ok(list("virtualmachine", &page(p, items)))
        }
        "startVirtualMachine" => start_vm(world, ctx),
        "stopVirtualMachine" => stop_vm(world, ctx),
        "destroyVirtualMachine" => {
            let id = p.required(ctx.command, "id")?.to_string();
            if world.site(site).vm(&id).is_none() {
                return Err(ApiError::unknown_id("id", &id));
            }
            if world.site(site).is_mapped(&id) {
                return Err(ApiError::internal(
                    "If a mirroring virtual machine exists, the virtual machine cannot be destroyed or expunged.",
                ));
            }
            let delay = world.config.timing.job;
            let owner = site.to_string();
            let jobid = world.submit_job(
                site.to_string(),
                "org.apache.cloudstack.api.command.admin.vm.DestroyVMCmdByAdmin",
                Some(("VirtualMachine", id.clone())),
                ctx.now,
                delay,
                Box::new(move |w: &mut World, _| {
                    let s = w.site_mut(&owner);
                    s.vms.retain(|v| v.id != id);
                    s.volumes
                        .retain(|v| v.vm_id.as_deref() != Some(id.as_str()));
                    Step::Done(Ok(json!({"success": true})))
                }),
            );
            Ok(json!({"jobid": jobid}))
        }
        "queryAsyncJobResult" => query_job(world, ctx),
        "listAsyncJobs" => list_jobs(world, ctx),
        "listServiceOfferings" => {
            let s = world.site(site);
            let items = s
                .offerings
                .iter()
                .map(|o| {
                    json!({"id": o.id, "name": o.name, "displaytext": o.name, "iscustomized": o.customized,
                           "kvdoenable": o.kvdo, "cpunumber": o.cpu, "memory": o.memory_mb})
                })
                .collect();
            Ok(list("serviceoffering", &page(p, items)))
        }
        "listNetworks" => {
            let s = world.site(site);
            let items = s
                .networks
                .iter()
                .map(|n| json!({"id": n.id, "name": n.name, "account": "admin", "zoneid": s.zone_id}))
                .collect();
            Ok(list("network", &page(p, items)))
        }
        "listDiskOfferings" => {
            let s = world.site(site);
            let items = s
                .disk_offerings
                .iter()
                .map(|d| {
                    json!({"id": d.id, "name": d.name, "iscustomized": d.customized,
                           "shareable": d.shareable, "kvdoenable": d.kvdo})
                })
                .collect();
            Ok(list("diskoffering", &page(p, items)))
        }
        "listVolumes" => {
            let s = world.site(site);
            let vm = p.get("virtualmachineid");
            let items = s
                .volumes
                .iter()
                .filter(|v| vm.is_none_or(|id| v.vm_id.as_deref() == Some(id)))
                .map(|v| {
                    json!({"id": v.id, "name": v.name, "path": v.path, "type": v.kind,
                           "size": v.size_bytes, "virtualmachineid": v.vm_id,
                           "diskofferingid": v.disk_offering_id, "state": "Ready",
                           "storageid": s.pool_id})
                })
                .collect();
            Ok(list("volume", &page(p, items)))
        }
        "listAccounts" => {
            let s = world.site(site);
            Ok(list(
                "account",
                &[
                    json!({"id": s.domain_id, "name": "admin", "domainid": s.domain_id, "domain": "ROOT", "roletype": "Admin"}),
                ],
            ))
        }
        "listStoragePoolsMetrics" => {
            let s = world.site(site);
            Ok(list(
                "storagepool",
                &[
                    json!({"id": s.pool_id, "name": "rbd", "path": "rbd", "tags": "rbd", "type": "RBD", "zoneid": s.zone_id, "state": "Up"}),
                ],
            ))
        }
        "listZones" => {
            let s = world.site(site);
            Ok(list(
                "zone",
                &[
                    json!({"id": s.zone_id, "name": format!("{}-zone", s.spec.name), "allocationstate": "Enabled"}),
                ],
            ))
        }
        "listHosts" => {
            let s = world.site(site);
            let items = s
                .hosts
                .iter()
                .map(|h| json!({"id": h.id, "name": h.name, "state": "Up", "type": "Routing", "hypervisor": "KVM"}))
                .collect();
            Ok(list("host", &page(p, items)))
        }
        other => Err(ApiError::internal(format!(
            "command {other} is not simulated"
        ))),
    }
}

fn start_vm(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let id = ctx.params.required(ctx.command, "id")?.to_string();
    let Some(vm) = world.site(&site).vm(&id) else {
        return Err(ApiError::unknown_id("id", &id));
    };
    // Starting a running VM is a no-op job that answers with the VM, as CloudStack does.
    let was = vm.state.clone();
    if was == "Stopped" {
        world.site_mut(&site).vm_mut(&id).expect("vm").state = "Starting".into();
    }
    let delay = world.config.timing.job;
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.vm.StartVMCmdByAdmin",
        Some(("VirtualMachine", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, now| Step::Done(finish_start(w, &site, &id, &was, now))),
    );
    Ok(json!({"jobid": jobid}))
}

fn stop_vm(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let site = ctx.site.clone();
    let id = ctx.params.required(ctx.command, "id")?.to_string();
    let Some(vm) = world.site(&site).vm(&id) else {
        return Err(ApiError::unknown_id("id", &id));
    };
    if vm.state == "Running" {
        world.site_mut(&site).vm_mut(&id).expect("vm").state = "Stopping".into();
    }
    let delay = world.config.timing.job;
    let jobid = world.submit_job(
        site.clone(),
        "org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin",
        Some(("VirtualMachine", id.clone())),
        ctx.now,
        delay,
        Box::new(move |w: &mut World, _| Step::Done(finish_stop(w, &site, &id))),
    );
    Ok(json!({"jobid": jobid}))
}

/// The end of a VM start job: Mold's DR guards, then `Running`.
pub fn finish_start(w: &mut World, site: &str, id: &str, was: &str, now: Instant) -> ApiResult {
    if was != "Running" {
        if let Err(text) = mold_dr::start_guard(w, site, id, now) {
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

fn query_job(world: &World, ctx: &Ctx<'_>) -> ApiResult {
    let jobid = ctx.params.required(ctx.command, "jobid")?;
    let Some(job) = world.jobs.get(jobid).filter(|j| j.site == ctx.site) else {
        return Err(ApiError::unknown_id("jobid", jobid));
    };
    Ok(job_json(world, job))
}

/// `listAsyncJobs`: this site's jobs created at or after `startdate` (all without it), in
/// the order they were created, each as `queryAsyncJobResult` shows it. `listall` is
/// accepted: the admin sees every job anyway.
fn list_jobs(world: &World, ctx: &Ctx<'_>) -> ApiResult {
    let since = match ctx.params.get("startdate").filter(|d| !d.is_empty()) {
        None => None,
        Some(raw) => Some(parse_date_param(raw).ok_or_else(|| {
            ApiError::param(format!(
                "Unable to parse date {raw} for command listasyncjobs, please pass dates in the format mentioned in the api documentation"
            ))
        })?),
    };
    let mut jobs: Vec<&Job> = world
        .jobs
        .values()
        .filter(|j| j.site == ctx.site)
        // Mold keeps `created` to the second, as its answer shows it.
        .filter(|j| since.is_none_or(|t| j.created.trunc_subsecs(0) >= t))
        .collect();
    jobs.sort_by_key(|j| j.created);
    let items = jobs.into_iter().map(|j| job_json(world, j)).collect();
    Ok(list("asyncjobs", &page(ctx.params, items)))
}

/// A `DATE` parameter as Mold's `ParamProcessWorker` reads it: the `expires` formats first
/// (`2026-12-01T12:00:00+0000`, ISO with an offset, …), then `yyyy-MM-dd HH:mm:ss`, then
/// `yyyy-MM-dd` (a start date: that day's midnight), both in the server's time zone.
fn parse_date_param(raw: &str) -> Option<DateTime<Local>> {
    if let Some(t) = parse_expires(raw) {
        return Some(t.with_timezone(&Local));
    }
    let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Local.from_local_datetime(&naive).earliest()
}

/// One job as `queryAsyncJobResult` and `listAsyncJobs` show it.
fn job_json(world: &World, job: &Job) -> Value {
    let s = world.site(&job.site);
    let mut v = json!({
        "accountid": s.domain_id,
        "account": "admin",
        "domainid": s.domain_id,
        "domainpath": "ROOT",
        "userid": s.domain_id,
        "cmd": job.cmd,
        "jobprocstatus": 0,
        "created": job.created.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        "jobid": job.id,
    });
    if let Some(t) = &job.instance_type {
        v["jobinstancetype"] = json!(t);
    }
    if let Some(i) = &job.instance_id {
        v["jobinstanceid"] = json!(i);
    }
    match &job.result {
        None => {
            v["jobstatus"] = json!(0);
            v["jobresultcode"] = json!(0);
        }
        Some(Ok(result)) => {
            v["jobstatus"] = json!(1);
            v["jobresultcode"] = json!(0);
            v["jobresulttype"] = json!("object");
            v["jobresult"] = result.clone();
        }
        Some(Err(e)) => {
            v["jobstatus"] = json!(2);
            v["jobresultcode"] = json!(e.errorcode);
            v["jobresulttype"] = json!("object");
            v["jobresult"] =
                json!({"uuidList": [], "errorcode": e.errorcode, "errortext": e.errortext});
        }
    }
    if let Some(c) = job.completed {
        v["completed"] = json!(c.format("%Y-%m-%dT%H:%M:%S%z").to_string());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_by_mold_s_rule_and_the_connection_test() {
        for read in [
            "listVirtualMachines",
            "getDisasterRecoveryClusterList",
            "queryAsyncJobResult",
            "findHostsForMigration",
            "listScvmIpAddress",
            "connectivityTestsDisasterRecovery",
        ] {
            assert!(is_read(read), "{read}");
        }
        for mutation in [
            "startVirtualMachine",
            "promoteDisasterRecoveryCluster",
            "updateDisasterRecoveryClusterVm",
            "takeSnapshotDisasterRecoveryClusterVm",
            "createDisasterRecoveryCluster",
            // The verb alone, or not followed by an upper-case letter, is no read.
            "list",
            "listener",
            "getaway",
            "query_x",
            "finder",
            // The rule is on the name as sent: Mold's verbs are lower-case.
            "ListVirtualMachines",
            "LISTVIRTUALMACHINES",
            "",
        ] {
            assert!(!is_read(mutation), "{mutation}");
        }
    }

    #[test]
    fn expires_formats() {
        for s in [
            "2030-01-01T00:00:00+09:00",
            "2030-01-01T00:00:00+0900",
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00.123456+0900",
            "2030-01-01T00:00:00Z+0900",
        ] {
            assert!(parse_expires(s).is_some(), "{s}");
        }
        assert!(parse_expires("tomorrow").is_none());
    }

    #[test]
    fn date_parameters() {
        let utc = |s: &str| parse_date_param(s).map(|d| d.with_timezone(&Utc).to_rfc3339());
        assert_eq!(
            utc("2026-12-01T12:00:00+0000").as_deref(),
            Some("2026-12-01T12:00:00+00:00")
        );
        assert_eq!(
            utc("2026-12-01T21:00:00+09:00").as_deref(),
            Some("2026-12-01T12:00:00+00:00")
        );
        // Without a zone: the server's.
        let local = |s: &str| parse_date_param(s).map(|d| d.naive_local().to_string());
        assert_eq!(local("2026-12-01").as_deref(), Some("2026-12-01 00:00:00"));
        assert_eq!(
            local("2026-12-01 08:30:00").as_deref(),
            Some("2026-12-01 08:30:00")
        );
        for bad in ["", "yesterday", "2026-13-01", "12/01/2026"] {
            assert!(parse_date_param(bad).is_none(), "{bad}");
        }
    }
}
