//! The mirroring simulation test ("미러링 모의시험", Mold spec §6) of one VM: the same eight
//! steps as Mold's wizard, through drbook's guarded primitives, with drbook's own waits (it
//! watches the images and the VM) instead of the wizard's fixed sleeps. Like the wizard it
//! stops at the first failed step, and it never errors: the report says what happened.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::{Dr, DrError};
use crate::duration::Human;
use crate::glue::MirrorSide;

/// The wizard's step labels (its English text).
const STEPS: [&str; 8] = [
    "Stop virtual machine and mirroring virtual machine",
    "Take a virtual machine mirroring snapshot",
    "Image demote and mirroring image promote",
    "Start mirroring virtual machine",
    "Virtual machine status check",
    "Stop mirroring virtual machine",
    "Mirroring image demote and image promote",
    "Start virtual machine",
];

/// One step of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillStep {
    pub name: String,
    pub started: DateTime<Utc>,
    #[serde(serialize_with = "super::ser::secs")]
    pub took: Duration,
    pub ok: bool,
    pub error: Option<String>,
}

/// What a drill did.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub cluster: String,
    pub vm: String,
    /// Every step ran and succeeded.
    pub ok: bool,
    pub steps: Vec<DrillStep>,
    /// From the start of the drill until the mirrored VM ran on the DR site (step 4).
    #[serde(serialize_with = "super::ser::opt_secs")]
    pub rto: Option<Duration>,
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mirroring test of {} in DR cluster {}: {}",
            self.vm,
            self.cluster,
            if self.ok { "OK" } else { "FAILED" }
        )?;
        if let Some(rto) = self.rto {
            write!(f, " (running on the DR site after {})", Human(rto))?;
        }
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "\n  {}. {s}", i + 1)?;
        }
        Ok(())
    }
}

impl fmt::Display for DrillStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} — {} in {}",
            self.name,
            if self.ok { "ok" } else { "FAILED" },
            Human(self.took)
        )?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

/// The steps recorded so far.
struct Steps {
    done: Vec<DrillStep>,
}

impl Steps {
    /// Runs step number `done.len()`, recording its timing and error.
    async fn run<T>(&mut self, work: impl Future<Output = Result<T, DrError>>) -> Option<T> {
        let name = STEPS[self.done.len()].to_string();
        let started = Utc::now();
        let clock = Instant::now();
        let result = work.await;
        let (ok, error, value) = match result {
            Ok(v) => (true, None, Some(v)),
            Err(e) => (false, Some(e.to_string()), None),
        };
        tracing::info!(step = %name, ok, "drill");
        self.done.push(DrillStep {
            name,
            started,
            took: clock.elapsed(),
            ok,
            error,
        });
        value
    }
}

/// Who the drill is about, found in step 1.
struct Subject {
    protected: String,
    dr: String,
    name: String,
    id: String,
    mirror_id: String,
    images: Vec<String>,
    was_running: bool,
}

impl Dr {
    /// Runs the 8-step mirroring test of `vm` (on the protected site of `cluster`), keeping
    /// the mirrored VM running on the DR site for `observe` in step 5. The VM ends where it
    /// started: images primary on the protected site, running again if it ran before.
    pub async fn drill(&self, cluster: &str, vm: &str, observe: Duration) -> DrillReport {
        let started = Instant::now();
        let mut steps = Steps { done: Vec::new() };
        let mut rto = None;
        let subject = self
            .drill_steps(cluster, vm, observe, &mut steps, &mut rto, started)
            .await;
        let ok =
            subject.is_some() && steps.done.len() == STEPS.len() && steps.done.iter().all(|s| s.ok);
        DrillReport {
            cluster: cluster.to_string(),
            vm: subject.map_or_else(|| vm.to_string(), |s| s.name),
            ok,
            steps: steps.done,
            rto,
        }
    }

    async fn drill_steps(
        &self,
        cluster: &str,
        vm: &str,
        observe: Duration,
        steps: &mut Steps,
        rto: &mut Option<Duration>,
        started: Instant,
    ) -> Option<Subject> {
        let s = steps
            .run(async {
                let read = self.read_cluster(cluster, false).await?;
                let action = format!("run the mirroring test of {vm}");
                let record = read.record(read.protected(), &action)?;
                let rows = super::status::rows_of(record, vm);
                let Some(row) = rows.first() else {
                    return Err(DrError::NotFound {
                        what: format!("mirrored VM in DR cluster {cluster:?}"),
                        name: vm.to_string(),
                        suggestions: super::vm::closest(
                            vm,
                            &super::guards::mapped_vms(record)
                                .iter()
                                .map(|(n, _)| (*n).to_string())
                                .collect::<Vec<_>>(),
                        ),
                    });
                };
                let subject = Subject {
                    protected: read.protected().to_string(),
                    dr: read.dr().to_string(),
                    name: row.vm_name.clone().unwrap_or_else(|| vm.to_string()),
                    id: row.vm_id.clone(),
                    mirror_id: row.mirror_vm_id.clone().unwrap_or_default(),
                    images: rows.iter().map(|r| r.volume_path.clone()).collect(),
                    was_running: row.vm_state.as_deref() == Some("Running"),
                };
                self.stop_vm(&subject.protected, &subject.id, true).await?;
                self.stop_mirror_vm(cluster, &subject.name).await?;
                Ok(subject)
            })
            .await?;
        steps.run(self.snapshot_vm(cluster, &s.name)).await?;
        steps
            .run(async {
                self.demote_vm(cluster, &s.name).await?;
                // The wizard polls until the VM's row reads SYNCING: the local copy replays.
                self.wait_images(
                    &s.protected,
                    &s.images,
                    &format!(
                        "{}'s images on {} to replay from {}",
                        s.name, s.protected, s.dr
                    ),
                    self.waits.replication,
                    |_, st| st.is_some_and(|st| st.state.contains("replaying")),
                )
                .await
                .map(drop)
            })
            .await?;
        steps.run(self.start_mirror_vm(cluster, &s.name)).await?;
        *rto = Some(started.elapsed());
        steps
            .run(self.observe_running(&s.dr, &s.mirror_id, observe))
            .await?;
        steps.run(self.stop_mirror_vm(cluster, &s.name)).await?;
        steps
            .run(async {
                self.promote_vm(cluster, &s.name).await?;
                self.wait_images(
                    &s.protected,
                    &s.images,
                    &format!("{}'s images to be primary on {} again", s.name, s.protected),
                    self.waits.replication,
                    |_, st| st.is_some_and(MirrorSide::is_primary),
                )
                .await
                .map(drop)
            })
            .await?;
        steps
            .run(async {
                if s.was_running {
                    let vm = self.find_vm(&s.protected, &s.id).await?;
                    self.start_vm_considering_last_host(&s.protected, &vm)
                        .await?;
                }
                Ok(())
            })
            .await?;
        Some(s)
    }

    /// Step 5: the mirrored VM must be Running now and stay so for `observe`.
    async fn observe_running(
        &self,
        site: &str,
        id: &str,
        observe: Duration,
    ) -> Result<(), DrError> {
        let started = Instant::now();
        loop {
            let vm = self.vm(site, id).await?;
            if !vm.is_running() {
                return Err(DrError::guard(
                    "check the mirrored VM",
                    format!(
                        "{} is {} on {site} after {}",
                        vm.name,
                        vm.state,
                        Human(started.elapsed())
                    ),
                    "look at the VM's console and events on the DR site",
                ));
            }
            let left = observe.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(self.waits.poll.min(left)).await;
        }
    }
}
