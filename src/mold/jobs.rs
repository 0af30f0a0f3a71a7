//! Waiting for Mold's async jobs: `queryAsyncJobResult` polled with a backoff that starts small
//! (most jobs are quick) and settles at the site's poll interval, under an overall deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::client::MoldClient;
use super::envelope;
use super::error::{MoldError, MoldErrorKind};
use super::types::AsyncJob;
use crate::duration::Human;

/// The first pause between polls; it grows by half each time up to the poll interval.
const FIRST_POLL: Duration = Duration::from_millis(200);

impl MoldClient {
    /// Polls `jobid` (started by `command`) until it succeeds, fails, or the site's job
    /// timeout passes. Returns the job's `jobresult` (`{"success": true}`, the created
    /// object, …). A failed job's error carries Mold's `errortext`.
    pub async fn wait_for_job(
        &self,
        command: &str,
        jobid: &str,
    ) -> Result<serde_json::Value, MoldError> {
        let started = Instant::now();
        let deadline = started + self.settings().job_timeout;
        let cap = self.settings().poll_interval.max(FIRST_POLL);
        let mut pause = FIRST_POLL;
        loop {
            // The command was accepted: once its job cannot be read, whether it ran is
            // unknown (the caller re-reads the state; nothing is sent again).
            let job = self.query_job(jobid).await.map_err(|e| MoldError {
                site: e.site,
                command: command.to_string(),
                kind: MoldErrorKind::JobUnreadable {
                    jobid: jobid.to_string(),
                    reason: e.kind.brief(),
                },
            })?;
            match job.jobstatus {
                AsyncJob::SUCCEEDED => return Ok(job.jobresult.unwrap_or_default()),
                AsyncJob::FAILED => {
                    let result = job.jobresult.unwrap_or_default();
                    let errortext = result
                        .get("errortext")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("(Mold gave no error text)")
                        .to_string();
                    let errorcode = result
                        .get("errorcode")
                        .and_then(serde_json::Value::as_i64)
                        .or(job.jobresultcode)
                        .unwrap_or(530);
                    return Err(MoldError {
                        site: self.site().to_string(),
                        command: command.to_string(),
                        kind: MoldErrorKind::JobFailed {
                            jobid: jobid.to_string(),
                            errorcode,
                            errortext,
                        },
                    });
                }
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(MoldError {
                    site: self.site().to_string(),
                    command: command.to_string(),
                    kind: MoldErrorKind::JobTimeout {
                        jobid: jobid.to_string(),
                        waited: Human(now - started).to_string(),
                    },
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 3 / 2).min(cap);
        }
    }

    /// One `queryAsyncJobResult` (a read: retried on transient failures).
    pub async fn query_job(&self, jobid: &str) -> Result<AsyncJob, MoldError> {
        const COMMAND: &str = "queryAsyncJobResult";
        let body = self.call(COMMAND, &[("jobid", jobid)]).await?;
        envelope::typed(
            &serde_json::Value::Object(body),
            "queryasyncjobresultresponse",
        )
        .map_err(|d| self.decode_error(COMMAND, d))
    }
}
