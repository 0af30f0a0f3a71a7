//! Settling a mutation whose outcome is not known — by reading, never by sending it again.
//!
//! Two moments need it. Inside a run, a Mold command whose answer was lost (or whose job
//! could not be read) is looked up as a job: by its id when Mold gave one, else among the
//! site's jobs (`listAsyncJobs`) by command and the thing it acts on; a job found is waited
//! for and its result is the command's. On `--resume`, a call the journal holds in doubt
//! (its intent without an outcome, or an outcome marked unknown) or failed is made again
//! *resolving* the earlier attempt: the host runs the primitive inside [`resolving`], and each
//! domain function, before its guards, looks for the earlier attempt's job and for its own
//! end state. Found done: it is done, nothing is sent. Found running: waited for. Found
//! failed, or provably never started (no job, the state untouched): the normal path runs,
//! guards first. Not readable: nothing is sent, and the error says what to inspect.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Dr, DrError};
use crate::mold::MoldErrorKind;
use crate::mold::job_runs;

/// How far Mold's clock may be behind drbook's: a job Mold lists as created up to this long
/// before the attempt's intent still counts as the attempt's (NTP keeps HCI sites within
/// milliseconds; a job of the same command on the same thing this close before is the
/// attempt's own in practice, the run holding the DR cluster's lock).
const CLOCK_TOLERANCE_SECS: i64 = 5;

tokio::task_local! {
    static RESOLVING: Option<DateTime<Utc>>;
}

/// Runs `fut` (a primitive's domain call) as the settling of an earlier attempt whose intent
/// was journaled at `since`.
pub async fn resolving<F: Future>(since: DateTime<Utc>, fut: F) -> F::Output {
    RESOLVING.scope(Some(since), fut).await
}

/// Runs `fut` as a first attempt, inside a call that settles an earlier one (a drill's parts
/// that the earlier attempt never reached).
pub(crate) async fn first_attempt<F: Future>(fut: F) -> F::Output {
    RESOLVING.scope(None, fut).await
}

/// When the current call settles an earlier attempt: that attempt's intent time.
pub(crate) fn earlier_attempt() -> Option<DateTime<Utc>> {
    RESOLVING.try_with(|since| *since).ok().flatten()
}

/// What became of an attempt, read from Mold's jobs.
#[derive(Debug)]
pub(crate) enum JobFound {
    /// Its job succeeded: its `jobresult`.
    Succeeded(Value),
    /// Its job failed (Mold's error): it did not take effect, and may be made again.
    Failed(DrError),
}

impl Dr {
    /// The newest job of `command` on `site` (acting on `instance` when given) created since
    /// `since`, waited for while it runs. `Ok(None)`: Mold lists no such job.
    pub(crate) async fn find_job(
        &self,
        site: &str,
        command: &str,
        instance: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Option<JobFound>, DrError> {
        let h = self.handle(site)?;
        let since = since - chrono::Duration::seconds(CLOCK_TOLERANCE_SECS);
        let jobs = h.mold.list_async_jobs(since).await?;
        let newest = jobs
            .into_iter()
            .filter(|j| j.cmd.as_deref().is_some_and(|c| job_runs(c, command)))
            .filter(|j| instance.is_none_or(|i| j.jobinstanceid.as_deref() == Some(i)))
            .max_by(|a, b| a.created.cmp(&b.created));
        match newest {
            None => Ok(None),
            Some(job) => self.await_job(site, command, &job.jobid).await.map(Some),
        }
    }

    /// Waits for a job already found (by id or in the list) and says what it came to.
    async fn await_job(&self, site: &str, command: &str, jobid: &str) -> Result<JobFound, DrError> {
        let h = self.handle(site)?;
        tracing::info!(
            site,
            command,
            jobid,
            "waiting for the earlier attempt's job"
        );
        match h.mold.wait_for_job(command, jobid).await {
            Ok(result) => Ok(JobFound::Succeeded(super::raw::redacted(result))),
            Err(e) if matches!(e.kind, MoldErrorKind::JobFailed { .. }) => {
                Ok(JobFound::Failed(e.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Inside a run, after `command` lost its answer (`lost`): its job, found by the id the
    /// error carries or among the site's jobs since `sent`. `Ok(None)`: no job is listed (the
    /// caller re-reads the state and reports the outcome as unknown).
    pub(crate) async fn job_of_lost_answer(
        &self,
        site: &str,
        command: &str,
        instance: Option<&str>,
        sent: DateTime<Utc>,
        lost: &DrError,
    ) -> Result<Option<JobFound>, DrError> {
        if let DrError::Mold(e) = lost
            && let MoldErrorKind::JobUnreadable { jobid, .. }
            | MoldErrorKind::JobTimeout { jobid, .. } = &e.kind
        {
            return self.await_job(site, command, jobid).await.map(Some);
        }
        self.find_job(site, command, instance, sent).await
    }

    /// On `--resume`, settling an earlier attempt: its job (`None` when this call settles
    /// nothing, or Mold lists no job of it).
    pub(crate) async fn earlier_job(
        &self,
        site: &str,
        command: &str,
        instance: Option<&str>,
    ) -> Result<Option<JobFound>, DrError> {
        match earlier_attempt() {
            None => Ok(None),
            Some(since) => self.find_job(site, command, instance, since).await,
        }
    }
}

/// An earlier attempt could not be settled: nothing is sent, and the error says what to read.
pub(crate) fn unsettled(action: &str, why: &DrError, inspect: &str) -> DrError {
    DrError::OutcomeUnknown {
        action: action.to_string(),
        cause: format!(
            "an earlier attempt's outcome could not be read ({})",
            why.without_source()
        ),
        found: "nothing".into(),
        advice: format!("{inspect}, then resume again"),
    }
}
