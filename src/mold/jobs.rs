//! Waiting for Mold's async jobs: `queryAsyncJobResult` polled with a backoff that starts small
//! (most jobs are quick) and settles at the site's poll interval, under an overall deadline.
//! And finding a job whose submit's answer was lost: `listAsyncJobs` since a moment, and
//! [`job_runs`] to tell which API command a job's `cmd` class belongs to.

use std::time::Duration;

use tokio::time::Instant;

use super::client::MoldClient;
use super::envelope;
use super::error::{MoldError, MoldErrorKind};
use super::types::AsyncJob;
use crate::duration::Human;

/// The first pause between polls; it grows by half each time up to the poll interval.
const FIRST_POLL: Duration = Duration::from_millis(200);

/// The pause after a first poll made at the learned job time: the job is due, so it is
/// asked again soon (and then less often, as above).
const DUE_POLL: Duration = Duration::from_millis(100);

/// The longest a first poll waits for the learned job time.
const MAX_FIRST_WAIT: Duration = Duration::from_secs(30);

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
        let expected = self.job_times.expected(command);
        let mut pause = FIRST_POLL;
        if let Some(due) = expected {
            // A little before the quickest recent job was seen done: a time learned is when
            // a poll saw the job done, not when it ended, so asking only then would never
            // learn that jobs end sooner; asking one pause early finds out (and costs one
            // more poll when they do not). Capped, so that a job failing at once is not
            // learned of a long job later.
            let first = due.saturating_sub(DUE_POLL).min(MAX_FIRST_WAIT);
            tokio::time::sleep(first.min(deadline - started)).await;
            pause = DUE_POLL;
        }
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
            // Only successes teach: a job refused at once says nothing of how long the work
            // takes.
            if job.jobstatus == AsyncJob::SUCCEEDED {
                self.job_times.record(command, started.elapsed());
            }
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

    /// `listAsyncJobs startdate=<since> listall=true` (a read: retried on transient failures):
    /// every job of this Mold created at or after `since`, to the second (Mold keeps
    /// `created` to the second), in the order Mold lists them. A created DR record in a
    /// job's result loses its `details` but for the interval: they hold the peer's keys.
    pub async fn list_async_jobs(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<AsyncJob>, MoldError> {
        let startdate = since.format("%Y-%m-%dT%H:%M:%S%z").to_string();
        let mut jobs: Vec<AsyncJob> = self
            .list(
                "listAsyncJobs",
                &[("startdate", &startdate), ("listall", "true")],
                "asyncjobs",
            )
            .await?;
        for job in &mut jobs {
            if let Some(result) = job.jobresult.as_mut() {
                drop_peer_keys(result);
            }
        }
        Ok(jobs)
    }
}

/// Whether a job's `cmd` (the Java class Mold ran, such as
/// `org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin`) is the job of API command
/// `api_command`. CloudStack names the VM power commands' classes `StartVM…`, `StopVM…` and
/// `DestroyVM…`; any other class is the command's name with its first letter upper-cased and
/// `Cmd` after it, `ByAdmin` optionally after that.
pub fn job_runs(cmd_class: &str, api_command: &str) -> bool {
    let class = cmd_class.rsplit('.').next().unwrap_or(cmd_class);
    let stem = match api_command {
        "startVirtualMachine" => "StartVM".to_string(),
        "stopVirtualMachine" => "StopVM".to_string(),
        "destroyVirtualMachine" => "DestroyVM".to_string(),
        other => {
            let mut chars = other.chars();
            let Some(first) = chars.next() else {
                return false;
            };
            first.to_uppercase().chain(chars).collect()
        }
    };
    class
        .strip_prefix(stem.as_str())
        .is_some_and(|rest| rest == "Cmd" || rest == "CmdByAdmin")
}

/// Removes a DR record's `details` from a job's result, keeping `mirrorscheduleinterval`
/// (the one detail that is not a credential), the way [`super::types::DrClusterRecord`] is
/// decoded.
fn drop_peer_keys(result: &mut serde_json::Value) {
    let Some(record) = result
        .get_mut("disasterrecoverycluster")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let interval = record
        .get("details")
        .and_then(|d| d.get("mirrorscheduleinterval"))
        .cloned();
    record.remove("details");
    if let Some(interval) = interval {
        record.insert(
            "details".into(),
            serde_json::json!({"mirrorscheduleinterval": interval}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_runs_knows_the_vm_power_classes() {
        let admin = "org.apache.cloudstack.api.command.admin.vm.";
        let user = "org.apache.cloudstack.api.command.user.vm.";
        for (class, command) in [
            ("StartVMCmdByAdmin", "startVirtualMachine"),
            ("StartVMCmd", "startVirtualMachine"),
            ("StopVMCmdByAdmin", "stopVirtualMachine"),
            ("StopVMCmd", "stopVirtualMachine"),
            ("DestroyVMCmdByAdmin", "destroyVirtualMachine"),
            ("DestroyVMCmd", "destroyVirtualMachine"),
        ] {
            assert!(job_runs(&format!("{admin}{class}"), command), "{class}");
            assert!(job_runs(&format!("{user}{class}"), command), "{class}");
            assert!(job_runs(class, command), "{class} without a package");
        }
        assert!(!job_runs(
            &format!("{admin}StopVMCmdByAdmin"),
            "startVirtualMachine"
        ));
        assert!(!job_runs(
            &format!("{admin}StartVMCmd"),
            "stopVirtualMachine"
        ));
        // The literal rule does not apply to them.
        assert!(!job_runs(
            &format!("{admin}StartVirtualMachineCmd"),
            "startVirtualMachine"
        ));
    }

    #[test]
    fn job_runs_by_the_command_name_otherwise() {
        let dr = "org.apache.cloudstack.api.command.admin.dr.";
        assert!(job_runs(
            &format!("{dr}PromoteDisasterRecoveryClusterCmd"),
            "promoteDisasterRecoveryCluster"
        ));
        assert!(job_runs(
            &format!("{dr}PromoteDisasterRecoveryClusterCmdByAdmin"),
            "promoteDisasterRecoveryCluster"
        ));
        assert!(job_runs(
            "CreateDisasterRecoveryClusterVmCmd",
            "createDisasterRecoveryClusterVm"
        ));
        // Another command's class, a prefix of one, or something after `Cmd` is not it.
        for (class, command) in [
            (
                "DemoteDisasterRecoveryClusterCmd",
                "promoteDisasterRecoveryCluster",
            ),
            (
                "PromoteDisasterRecoveryClusterVmCmd",
                "promoteDisasterRecoveryCluster",
            ),
            (
                "PromoteDisasterRecoveryClusterCmdX",
                "promoteDisasterRecoveryCluster",
            ),
            (
                "PromoteDisasterRecoveryCluster",
                "promoteDisasterRecoveryCluster",
            ),
            // Java's class names are upper camel case; Mold's command names are not.
            (
                "promoteDisasterRecoveryClusterCmd",
                "promoteDisasterRecoveryCluster",
            ),
            ("Cmd", ""),
            ("", "promoteDisasterRecoveryCluster"),
        ] {
            assert!(
                !job_runs(&format!("{dr}{class}"), command),
                "{class} {command}"
            );
        }
    }

    #[test]
    fn a_created_record_in_a_job_result_keeps_only_its_interval() {
        let mut result = serde_json::json!({"disasterrecoverycluster": {
            "id": "r1", "name": "DR",
            "details": {"drclusterapikey": "AK", "drclustersecretkey": "SK",
                        "drclusterprivatekey": "PK", "mirrorscheduleinterval": "1h"}}});
        drop_peer_keys(&mut result);
        assert_eq!(
            result,
            serde_json::json!({"disasterrecoverycluster": {"id": "r1", "name": "DR",
                "details": {"mirrorscheduleinterval": "1h"}}})
        );
        let mut success = serde_json::json!({"success": true});
        drop_peer_keys(&mut success);
        assert_eq!(success, serde_json::json!({"success": true}));
    }
}
