//! The job commands: `queryAsyncJobResult` and `listAsyncJobs`, and a job as both show it
//! (spec §2.6).

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, SubsecRound, TimeZone};
use serde_json::{Value, json};

use super::command::{Command, Ctx, Kind};
use super::envelope::{list, page};
use super::signature::parse_expires;
use crate::sim::world::{ApiError, ApiResult, Job, World};

pub static QUERY_JOB: Command = Command {
    name: "queryAsyncJobResult",
    kind: Kind::Sync(|w, ctx| query_job(w, ctx)),
    event: None,
};

pub static LIST_JOBS: Command = Command {
    name: "listAsyncJobs",
    kind: Kind::Sync(|w, ctx| list_jobs(w, ctx)),
    event: None,
};

pub static COMMANDS: &[&Command] = &[&QUERY_JOB, &LIST_JOBS];

fn query_job(world: &World, ctx: &Ctx<'_>) -> ApiResult {
    let jobid = ctx.params.required(ctx.name(), "jobid")?;
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
        "cmd": job.command.class,
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
    use super::super::command::tests::{Answer, rows};
    use super::*;
    use chrono::Utc;

    #[test]
    fn the_job_commands_answer_at_once() {
        assert_eq!(
            rows(COMMANDS),
            [
                ("queryAsyncJobResult", Answer::Sync, None),
                ("listAsyncJobs", Answer::Sync, None),
            ]
        );
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
