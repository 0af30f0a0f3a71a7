//! A request's way through a site's Mold: counted on arrival, maybe spoiled by a fault, then
//! the checks Mold makes before any command runs, then the command's descriptor decides how
//! it is answered.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::Value;

use super::command::{Command, Ctx, Kind};
use super::envelope::{error, ok, unauthorized};
use super::records::CONNECTIVITY_TEST;
use super::signature::verify;
use super::{drill, find};
use crate::sim::faults::{Api, FaultAction, lose_answer, reset_response};
use crate::sim::params::Params;
use crate::sim::server::{Shared, SiteRoute};
use crate::sim::world::{ApiError, World};

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
    let (hold, found) = {
        let mut world = shared.world();
        world.advance(now);
        let found = match gate(&world, site, method, command, params) {
            Ok(found) => found,
            Err(refused) => return *refused,
        };
        (world.config.timing.dr_vm_command, found)
    };
    let handler = match found.kind {
        Kind::Sync(handler)
        | Kind::Async {
            submit: handler, ..
        } => handler,
        Kind::Long(work) => {
            // Mold holds these requests while it waits on Ceph (10–60 s sleeps, scaled).
            tokio::time::sleep(hold).await;
            return match drill::run(shared, site, found, work, params).await {
                Ok(inner) => ok(key, &inner),
                Err(e) => {
                    shared.world().refused.record(site, Api::Mold, command);
                    error(key, &e)
                }
            };
        }
    };
    let mut world = shared.world();
    let ctx = Ctx {
        site: site.to_string(),
        command: found,
        params,
        now,
    };
    let result = handler(&mut world, &ctx);
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
/// command exists (DR commands only while the DR service is enabled): its descriptor, or
/// the refusal.
fn gate(
    world: &World,
    site: &str,
    method: &Method,
    command: &str,
    params: &Params,
) -> Result<&'static Command, Box<Response>> {
    let key = format!("{}response", command.to_lowercase());
    let spec = &world.site(site).spec;
    if let Err(why) = verify(params, spec) {
        return Err(Box::new(unauthorized(&key, &why)));
    }
    if spec.enforce_post && method != Method::POST && !is_read(command) {
        return Err(Box::new(error(
            &key,
            &ApiError {
                errorcode: 400,
                cserrorcode: Some(9999),
                errortext: format!(
                    "State changing command {command} needs to be sent using POST request"
                ),
            },
        )));
    }
    find(command, spec.dr_enabled).ok_or_else(|| {
        Box::new(error(
            "errorresponse",
            &ApiError {
                errorcode: 432,
                cserrorcode: Some(9999),
                errortext: "The given command does not exist or it is not available for user"
                    .into(),
            },
        ))
    })
}

/// Mold's rule for a read: the name starts with `list`, `get`, `query` or `find` followed by
/// an upper-case letter (`listVirtualMachines`; not `listener`, not `ListVirtualMachines`).
/// Everything else changes state: it must be POSTed under enforcement, and it counts as a
/// mutation. The simulator's own rule, on the name as sent, so that drbook's client is
/// checked against it rather than against itself.
pub fn is_read(command: &str) -> bool {
    // Mold's connection test only looks at the peer (it records an event, nothing else).
    command == CONNECTIVITY_TEST.name
        || ["list", "get", "query", "find"].iter().any(|verb| {
            command
                .strip_prefix(verb)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
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
}
