//! The mirroring simulation test ("미러링 모의시험", Mold spec §6) of one VM: the same eight
//! steps as Mold's wizard, through drbook's guarded primitives, with drbook's own waits (it
//! watches the images and the VM) instead of the wizard's fixed sleeps. Like the wizard it
//! stops at the first failed step; unlike it, it then returns the VM where it started, and
//! it refuses to start anywhere else. Production ends where it began, or the error says
//! precisely what is left and the calls that finish it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::guards::lit;
use super::outcome::{DrillReport, DrillStep};
use super::reconcile;
use super::status::Role;
use super::unknown::Fact;
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

/// Where a drill records its steps as they begin and end (the host journals them), so that
/// a run resumed after a crash continues the drill where it was instead of starting over.
pub trait DrillLog: Send + Sync {
    /// How far an earlier attempt of this drill got: the steps it finished in a row, and when
    /// it began the next one (`None`: not begun). `None`: nothing to continue.
    fn resume_point(&self) -> Option<(u32, Option<DateTime<Utc>>)>;
    /// Step `n` (from 0) begun (`ok: None`) or ended.
    fn step(&self, n: u32, ok: Option<bool>);
}

/// The steps recorded so far.
struct Steps {
    done: Vec<DrillStep>,
    log: Option<Arc<dyn DrillLog>>,
    /// How far an earlier attempt got (see [`DrillLog::resume_point`]).
    resume: Option<(u32, Option<DateTime<Utc>>)>,
}

impl Steps {
    /// Runs step number `done.len()`, recording its timing and error. A step an earlier
    /// attempt finished is not run again; the one it began is settled by reading first
    /// (each act in it looks whether it already took effect); the ones after run afresh.
    async fn run<T>(&mut self, work: impl Future<Output = Result<T, DrError>>) -> Option<()> {
        let n = u32::try_from(self.done.len()).unwrap_or(u32::MAX);
        let name = STEPS[self.done.len()].to_string();
        let started = Utc::now();
        if let Some((finished, _)) = self.resume
            && n < finished
        {
            self.done.push(DrillStep {
                name: format!("{name} (done before the resume)"),
                started,
                took: Duration::ZERO,
                ok: true,
                error: None,
            });
            return Some(());
        }
        let begun = match self.resume {
            Some((finished, Some(at))) if n == finished => Some(at),
            _ => None,
        };
        if let Some(log) = &self.log {
            log.step(n, None);
        }
        let clock = Instant::now();
        let result = match begun {
            Some(at) => reconcile::resolving(at, work).await,
            None => reconcile::first_attempt(work).await,
        };
        let (ok, error) = match result {
            Ok(_) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        if let Some(log) = &self.log {
            log.step(n, Some(ok));
        }
        tracing::info!(step = %name, ok, "drill");
        self.done.push(DrillStep {
            name,
            started,
            took: clock.elapsed(),
            ok,
            error,
        });
        ok.then_some(())
    }
}

/// Who the drill is about, found before anything is touched.
struct Subject {
    protected: String,
    dr: String,
    name: String,
    id: String,
    mirror_id: String,
    images: Vec<String>,
}

/// Where one mirrored VM is, from one fresh read of both sites.
struct Placement {
    /// Per image: its role on the protected site and on the DR site.
    roles: Vec<(String, Fact<Role>, Fact<Role>)>,
    vm_state: String,
    mirror_state: String,
}

impl Placement {
    fn images_home(&self) -> bool {
        self.roles
            .iter()
            .all(|(_, p, d)| p.known() == Some(&Role::Primary) && d.known() == Some(&Role::Replica))
    }

    fn images_away(&self) -> bool {
        self.roles
            .iter()
            .all(|(_, p, d)| p.known() == Some(&Role::Replica) && d.known() == Some(&Role::Primary))
    }

    /// What differs from where a drill starts and ends, in words; empty when home.
    fn away_from_home(&self, s: &Subject) -> Vec<String> {
        let mut out = Vec::new();
        if !self.images_home() {
            let roles: Vec<String> = self
                .roles
                .iter()
                .map(|(i, p, d)| format!("{i} {p} on {}, {d} on {}", s.protected, s.dr))
                .collect();
            out.push(format!(
                "its images are not primary on {} alone ({})",
                s.protected,
                roles.join("; ")
            ));
        }
        if self.vm_state != "Running" {
            out.push(format!(
                "{} is {} on {}",
                s.name, self.vm_state, s.protected
            ));
        }
        if self.mirror_state != "Stopped" {
            out.push(format!(
                "its mirrored VM is {} on {}",
                self.mirror_state, s.dr
            ));
        }
        out
    }
}

impl Dr {
    /// Runs the 8-step mirroring test of `vm` (on the protected site of `cluster`), keeping
    /// the mirrored VM running on the DR site for `observe` in step 5.
    ///
    /// It starts only from where a drill belongs — the VM's images primary on the protected
    /// site and replicas on the DR site, the VM running there, its mirrored VM stopped — and
    /// refuses otherwise before touching anything. With `restore`, a VM a failed drill of the
    /// same run left behind is first returned there (the caller vouches that it was home when
    /// the run began). A step that fails returns the VM where it started; a drill passes only
    /// when every step succeeded and a fresh read shows the VM home. Otherwise the error is
    /// [`DrError::DrillFailed`], whose report says what is left and the calls that finish it.
    pub async fn drill(
        &self,
        cluster: &str,
        vm: &str,
        observe: Duration,
        restore: bool,
        log: Option<Arc<dyn DrillLog>>,
    ) -> Result<DrillReport, DrError> {
        let started = Instant::now();
        let action = format!("run the mirroring test of {vm}");
        let subject = self.drill_subject(cluster, vm, &action).await?;
        let resume = log.as_ref().and_then(|l| l.resume_point());
        let mut report = DrillReport {
            cluster: cluster.to_string(),
            vm: subject.name.clone(),
            ok: false,
            steps: Vec::new(),
            rto: None,
            returned: false,
            left: Vec::new(),
        };
        // A drill an earlier attempt left half-way is away from home by design: it goes on.
        let away = match resume {
            Some(_) => Vec::new(),
            None => self
                .placement(cluster, &subject, &action)
                .await?
                .away_from_home(&subject),
        };
        if !away.is_empty() {
            if !restore {
                return Err(DrError::guard(
                    &action,
                    format!(
                        "{} is not where a drill starts: {}",
                        subject.name,
                        away.join("; ")
                    ),
                    format!(
                        "a drill starts from {} with the VM running there; after a switchover or failover move it back first (drbook run switchover, or failback), or start it (start_vm({}, {}))",
                        subject.protected,
                        lit(&subject.protected),
                        lit(&subject.name)
                    ),
                ));
            }
            tracing::info!(vm = %subject.name, "a drill of this run left it away: returning it first");
            report.left = self.return_home(cluster, &subject).await;
            if !report.left.is_empty() {
                return Err(DrError::DrillFailed(Box::new(report)));
            }
        }
        if let Some((finished, begun)) = resume {
            tracing::info!(vm = %subject.name, finished, begun = begun.is_some(), "continuing the drill an earlier attempt left");
        }
        let mut steps = Steps {
            done: Vec::new(),
            log,
            resume,
        };
        let completed = self
            .drill_steps(
                cluster,
                &subject,
                observe,
                &mut steps,
                &mut report.rto,
                started,
            )
            .await
            .is_some();
        report.steps = steps.done;
        if completed {
            // Passed only if the VM really ended where it started.
            match self.placement(cluster, &subject, &action).await {
                Ok(p) => report.left = p.away_from_home(&subject),
                Err(e) => {
                    report.left = vec![format!(
                        "where {} ended could not be read: {e}",
                        subject.name
                    )];
                }
            }
            report.ok = report.left.is_empty();
        } else {
            report.left = self.return_home(cluster, &subject).await;
            report.returned = report.left.is_empty();
        }
        if report.ok {
            Ok(report)
        } else {
            Err(DrError::DrillFailed(Box::new(report)))
        }
    }

    /// The VM's rows in the DR cluster: who the drill is about. Reads only.
    async fn drill_subject(
        &self,
        cluster: &str,
        vm: &str,
        action: &str,
    ) -> Result<Subject, DrError> {
        let read = self.read_cluster(cluster, false).await?;
        let record = read.record(read.protected(), action)?;
        let rows = super::status::rows_of(record, vm);
        let Some(row) = rows.first() else {
            return Err(DrError::NotFound {
                what: format!("mirrored VM in DR cluster {cluster:?}"),
                name: vm.to_string(),
                suggestions: crate::suggest::closest(
                    vm,
                    &super::guards::mapped_vms(record)
                        .iter()
                        .map(|(n, _)| (*n).to_string())
                        .collect::<Vec<_>>(),
                ),
            });
        };
        Ok(Subject {
            protected: read.protected().to_string(),
            dr: read.dr().to_string(),
            name: row.vm_name.clone().unwrap_or_else(|| vm.to_string()),
            id: row.vm_id.clone(),
            mirror_id: row.mirror_vm_id.clone().unwrap_or_default(),
            images: rows.iter().map(|r| r.volume_path.clone()).collect(),
        })
    }

    /// Where the VM is now: both sites' image roles and both VMs' states, read fresh. What
    /// cannot be read is an unknown error, never a guess.
    async fn placement(
        &self,
        cluster: &str,
        s: &Subject,
        action: &str,
    ) -> Result<Placement, DrError> {
        let read = self.read_cluster(cluster, true).await?;
        let (p_pool, d_pool) = (read.pool(&s.protected, action)?, read.pool(&s.dr, action)?);
        let role = |pool: &crate::glue::PoolStatus, image: &str| {
            Fact::Known(match pool.image(image) {
                None => Role::Absent,
                Some(st) if super::status::acts_as_primary(st.description_kind()) => Role::Primary,
                Some(_) => Role::Replica,
            })
        };
        let roles = s
            .images
            .iter()
            .map(|i| (i.clone(), role(p_pool, i), role(d_pool, i)))
            .collect();
        let (vm, mirror) = tokio::join!(self.vm(&s.protected, &s.id), self.vm(&s.dr, &s.mirror_id));
        Ok(Placement {
            roles,
            vm_state: vm?.state,
            mirror_state: mirror?.state,
        })
    }

    /// Brings the VM back where a drill starts, from wherever a failed drill left it: the
    /// mirrored VM stopped, the images swapped back (Mold's VM-level promote, then drbook
    /// waits until they report primary at home), the VM started. Each act follows a fresh
    /// read; nothing is sent that the read does not call for. Returns what is still left,
    /// each with the call that finishes it (empty: the VM is home).
    async fn return_home(&self, cluster: &str, s: &Subject) -> Vec<String> {
        let action = format!("return {} where its drill started", s.name);
        let (c, v) = (lit(cluster), lit(&s.name));
        let resume = "or resume this run once the cause is fixed (it returns the VM first)";
        let read = |what: &'static str| {
            let action = action.clone();
            async move {
                self.placement(cluster, s, &action).await.map_err(|e| {
                    format!("where {} is could not be read {what}: {e}; check with drbook run status, {resume}", s.name)
                })
            }
        };
        let p = match read("before returning it").await {
            Ok(p) => p,
            Err(left) => return vec![left],
        };
        if p.mirror_state != "Stopped"
            && let Err(e) = self.stop_mirror_vm(cluster, &s.name).await
        {
            return vec![format!(
                "its mirrored VM is {} on {}: {e}; finish with stop_mirror_vm({c}, {v}), {resume}",
                p.mirror_state, s.dr
            )];
        }
        let p = match read("after stopping its mirrored VM").await {
            Ok(p) => p,
            Err(left) => return vec![left],
        };
        if !p.images_home() {
            if !p.images_away() {
                return vec![format!(
                    "{} (neither all home nor all on {}): a person must look before anything is swapped (drbook run status)",
                    p.away_from_home(s).join("; "),
                    s.dr
                )];
            }
            if p.vm_state != "Stopped" {
                return vec![format!(
                    "{} is {} on {} while its images are primary on {}: stop it (stop_vm({}, {v}, #{{force: true}})), then promote_vm({c}, {v}), {resume}",
                    s.name,
                    p.vm_state,
                    s.protected,
                    s.dr,
                    lit(&s.protected)
                )];
            }
            if let Err(e) = self.swap_back(cluster, s).await {
                return vec![format!(
                    "its images are still primary on {}: {e}; finish with promote_vm({c}, {v}), {resume}",
                    s.dr
                )];
            }
        }
        let p = match read("after swapping its images back").await {
            Ok(p) => p,
            Err(left) => return vec![left],
        };
        if p.vm_state != "Running" {
            let started = async {
                let vm = self.find_vm(&s.protected, &s.id).await?;
                self.start_vm_considering_last_host(&s.protected, &vm).await
            };
            if let Err(e) = started.await {
                return vec![format!(
                    "{} is {} on {}: {e}; finish with start_vm({}, {v}), {resume}",
                    s.name,
                    p.vm_state,
                    s.protected,
                    lit(&s.protected)
                )];
            }
        }
        match read("at the end").await {
            Ok(p) => p
                .away_from_home(s)
                .into_iter()
                .map(|what| format!("{what}: check with drbook run status, {resume}"))
                .collect(),
            Err(left) => vec![left],
        }
    }

    async fn drill_steps(
        &self,
        cluster: &str,
        s: &Subject,
        observe: Duration,
        steps: &mut Steps,
        rto: &mut Option<Duration>,
        started: Instant,
    ) -> Option<()> {
        steps
            .run(async {
                self.stop_vm(&s.protected, &s.id, true).await?;
                // The mirrored VM is stopped where a drill starts; it is stopped here only if
                // it is not (nothing is sent that a read does not call for).
                if self.vm(&s.dr, &s.mirror_id).await?.state != "Stopped" {
                    self.stop_mirror_vm(cluster, &s.name).await?;
                }
                Ok::<(), DrError>(())
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
        steps.run(self.swap_back(cluster, s)).await?;
        steps
            .run(async {
                let vm = self.find_vm(&s.protected, &s.id).await?;
                self.start_vm_considering_last_host(&s.protected, &vm)
                    .await
                    .map(drop)
            })
            .await?;
        Some(())
    }

    /// Step 7, and the way home after a failure: Mold's VM-level promote swaps the images
    /// back, then drbook waits until the protected site reports them primary.
    async fn swap_back(&self, cluster: &str, s: &Subject) -> Result<(), DrError> {
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
