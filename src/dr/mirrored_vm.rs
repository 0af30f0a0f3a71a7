//! Mirrored VMs: protecting a VM (`createDisasterRecoveryClusterVm`), unprotecting it, and
//! the VM-level commands of the mirroring test (demote, promote, start, stop, snapshot), which
//! run on the protected site.

use super::cluster::ClusterRead;
use super::error::LATER_ATTEMPTS;
use super::guards::{self, VolumeView, lit, mapped_vms};
use super::outcome::Outcome;
use super::reconcile::{self, JobFound};
use super::status::rows_of;
use super::two_way::{self, Way};
use super::unknown::Fact;
use super::volumes::{images_of, volume_views_of};
use super::waits::{after_second_of, baseline, reached};
use super::{Dr, DrError};
use crate::mold::types::VmMapRow;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use std::fmt;
use tokio::time::Instant;

/// How the mirrored VM is made on the DR site; anything left out is chosen from the DR
/// cluster record's peer offerings and networks.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MirrorVmSpec {
    /// A service offering of the DR site (by name).
    pub offering: Option<String>,
    /// A network of the DR site (by name).
    pub network: Option<String>,
    /// For customised offerings.
    pub cpu: Option<u32>,
    /// For customised offerings, in GiB (sent to Mold in MiB).
    pub memory_gb: Option<u32>,
}

impl fmt::Display for MirrorVmSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(o) = &self.offering {
            parts.push(format!("offering {o}"));
        }
        if let Some(n) = &self.network {
            parts.push(format!("network {n}"));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("{c} CPU"));
        }
        if let Some(m) = self.memory_gb {
            parts.push(format!("{m} GiB"));
        }
        if parts.is_empty() {
            f.write_str("defaults from the DR cluster record")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A VM-level command's inputs, read once.
struct Prepared {
    cluster: String,
    action: String,
    /// The protected VM's name and id.
    name: String,
    vm_id: String,
    read: ClusterRead,
}

impl Prepared {
    /// On `--resume`, this VM-level command found already made by an earlier attempt
    /// (`end_state` holds): its outcome, with nothing sent. `None` otherwise.
    fn settled(&self, command: &str, end_state: bool, message: &str) -> Option<Outcome> {
        (reconcile::earlier_attempt().is_some() && end_state).then(|| {
            tracing::info!(vm = %self.name, command, "the earlier attempt took effect; not sent again");
            Outcome {
                action: self.action.clone(),
                site: self.read.protected().to_string(),
                message: format!("{message} (the earlier attempt took effect; not sent again)"),
                detail: json!({"command": command, "vm": self.name, "settled": {"state": "already the end state"}}),
            }
        })
    }

    fn volumes(&self) -> Vec<VolumeView<'_>> {
        volume_views_of(&self.read, |v| v == self.name)
    }

    fn states(&self) -> VmStates<'_> {
        let record = &self.read.records[self.read.protected()];
        VmStates::of(&self.read, &rows_of(record, &self.vm_id))
    }
}

/// Both copies of one mirrored VM, as (name, state) for the stop guards.
pub(crate) struct VmStates<'a> {
    pub protected: Vec<(&'a str, &'a str)>,
    pub dr: Vec<(&'a str, &'a str)>,
}

impl<'a> VmStates<'a> {
    fn of(read: &'a ClusterRead, rows: &[&'a VmMapRow]) -> Self {
        let row = rows[0];
        let name = row.vm_name.as_deref().unwrap_or(&row.vm_id);
        let protected = vec![(name, row.vm_state.as_deref().unwrap_or("unknown"))];
        // The DR site's own row is fresher than the protected site's copy of its state.
        let dr_row = read.records.get(read.dr()).and_then(|r| {
            r.vm_map
                .iter()
                .find(|d| d.mirror_vm_id.as_deref() == Some(row.vm_id.as_str()))
        });
        let dr = match dr_row {
            Some(d) => vec![(
                d.vm_name.as_deref().unwrap_or(&d.vm_id),
                d.vm_state.as_deref().unwrap_or("unknown"),
            )],
            None => vec![(
                row.mirror_vm_name.as_deref().unwrap_or(name),
                row.mirror_vm_state.as_deref().unwrap_or("unknown"),
            )],
        };
        Self { protected, dr }
    }
}

impl Dr {
    /// The map rows of one mirrored VM on the protected site's record.
    fn mirrored_rows<'a>(
        read: &'a ClusterRead,
        action: &str,
        vm: &str,
    ) -> Result<Vec<&'a VmMapRow>, DrError> {
        let record = read.record(read.protected(), action)?;
        let rows = rows_of(record, vm);
        if rows.is_empty() {
            let names: Vec<String> = mapped_vms(record)
                .iter()
                .map(|(n, _)| (*n).to_string())
                .collect();
            return Err(DrError::NotFound {
                what: format!(
                    "mirrored VM in DR cluster {:?} on {}",
                    read.cluster.name,
                    read.protected()
                ),
                name: vm.to_string(),
                suggestions: crate::suggest::closest(vm, &names),
            });
        }
        Ok(rows)
    }

    /// Protects a VM: `createDisasterRecoveryClusterVm` on the protected site makes a
    /// stopped mirrored VM on the DR site over mirrored images.
    pub async fn create_mirror_vm(
        &self,
        cluster: &str,
        vm: &str,
        spec: &MirrorVmSpec,
    ) -> Result<Outcome, DrError> {
        const COMMAND: &str = "createDisasterRecoveryClusterVm";
        let action = format!("create the mirrored VM of {vm} in DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, false).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let record = read.record(protected, &action)?;
        let target = self.find_vm(protected, vm).await?;
        let mirrored = !rows_of(record, &target.id).is_empty();
        if reconcile::earlier_attempt().is_some() {
            // Settling an earlier attempt: its job, or the VM found mirrored, says.
            let settled = match self.earlier_job(protected, COMMAND, Some(&target.id)).await {
                Ok(Some(JobFound::Succeeded(result))) => {
                    Some(json!({"job": "succeeded", "result": result}))
                }
                Ok(Some(JobFound::Failed(_))) => None,
                Ok(None) => mirrored.then(|| json!({"state": "already mirrored"})),
                Err(e) => {
                    return Err(reconcile::unsettled(
                        &action,
                        &e,
                        &format!(
                            "check mirror_status({}) and {protected}'s jobs (listAsyncJobs)",
                            lit(cluster)
                        ),
                    ));
                }
            };
            if let Some(settled) = settled {
                self.record_new_home(cluster, &action, &target.name, &target.id)
                    .await?;
                return Ok(Outcome {
                    action,
                    site: protected.to_string(),
                    message: format!(
                        "{} is mirrored to {dr} (the earlier attempt took effect; not sent again); its first full copy: wait_synced({}, …)",
                        target.name,
                        lit(cluster)
                    ),
                    detail: json!({"command": COMMAND, "vm": target.name, "vm_id": target.id, "settled": settled}),
                });
            }
        }
        if mirrored {
            return Err(DrError::guard(
                &action,
                format!(
                    "{} is already mirrored in DR cluster {cluster:?}",
                    target.name
                ),
                format!("see mirror_status({})", lit(cluster)),
            ));
        }
        let offering = guards::choose_offering(
            &action,
            dr,
            spec.offering.as_deref(),
            target.serviceofferingname.as_deref(),
            &record.peer_service_offerings,
        )?;
        let network =
            guards::choose_network(&action, dr, spec.network.as_deref(), &record.peer_networks)?;
        guards::custom_sizes(&action, offering, spec.cpu, spec.memory_gb)?;
        let cpu = spec.cpu.map(|c| c.to_string());
        let memory_mib = spec.memory_gb.map(|g| (u64::from(g) * 1024).to_string());
        let mut params = vec![
            ("virtualmachineid", target.id.as_str()),
            ("drclustername", cluster),
            ("serviceofferingname", offering.name.as_str()),
            ("networkname", network.name.as_str()),
        ];
        if let (Some(c), Some(m)) = (&cpu, &memory_mib) {
            params.push(("cpunumber", c));
            params.push(("memory", m));
        }
        let h = self.handle(protected)?;
        tracing::info!(site = protected, vm = %target.name, "{action}");
        let sent = Utc::now();
        let result = match h.mold.call_async(COMMAND, &params).await {
            Ok(result) => result,
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e.about(&target.name));
                }
                // Its job, once found, is the answer; else the outcome stays unknown.
                match self
                    .job_of_lost_answer(protected, COMMAND, Some(&target.id), sent, &e)
                    .await
                {
                    Ok(Some(JobFound::Succeeded(result))) => result,
                    Ok(Some(JobFound::Failed(failed))) => return Err(failed.about(&target.name)),
                    Ok(None) | Err(_) => return Err(e.about(&target.name)),
                }
            }
        };
        self.record_new_home(cluster, &action, &target.name, &target.id)
            .await?;
        Ok(Outcome {
            action,
            site: protected.to_string(),
            message: format!(
                "{} is mirrored to {dr} (offering {}, network {}), at home on {protected}; its first full copy runs now: wait_synced({}, …)",
                target.name,
                offering.name,
                network.name,
                lit(cluster)
            ),
            detail: json!({
                "command": COMMAND,
                "vm": target.name,
                "vm_id": target.id,
                "offering": offering.name,
                "network": network.name,
                "result": super::raw::redacted(result),
            }),
        })
    }

    /// Records the home of a VM just protected from the protected site: its copy there is at
    /// home, its new mirrored VM (found in the record's map) is the mirror. When this fails
    /// the VM is protected all the same; a resumed run or `record_homes()` finishes it.
    async fn record_new_home(
        &self,
        cluster: &str,
        action: &str,
        name: &str,
        vm_id: &str,
    ) -> Result<(), DrError> {
        let read = self.read_cluster(cluster, false).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let record = read.record(protected, action)?;
        let Some(mirror_id) = rows_of(record, vm_id)
            .iter()
            .find_map(|r| r.mirror_vm_id.clone())
        else {
            return Err(DrError::guard(
                action,
                format!(
                    "{name} is mirrored, but {protected}'s record does not name its mirrored VM yet, so its home was not recorded"
                ),
                format!(
                    "run record_homes({}) once mirror_status shows it",
                    lit(cluster)
                ),
            ));
        };
        self.record_home(action, name, (protected, vm_id), (dr, &mirror_id))
            .await
            .map(|_| ())
    }

    /// Unprotects a VM: `deleteDisasterRecoveryClusterVm` disables mirroring of its images and
    /// destroys its mirrored VM on the DR site.
    ///
    /// Guard: the DR site answers and does not hold the live copy (mirrored VM stopped, no
    /// image primary there).
    pub async fn remove_mirror_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        let action = format!("remove the mirrored VM of {vm} from DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, true).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let rows = Self::mirrored_rows(&read, &action, vm)?;
        let name = rows[0].vm_name.clone().unwrap_or_else(|| vm.to_string());
        read.record(dr, &action)?;
        read.pool(dr, &action)?;
        let homes = self.homes(&read).await;
        let homes: Vec<(&str, &Fact<Option<String>>)> =
            homes.iter().map(|(vm, h)| (vm.as_str(), h)).collect();
        let ways = two_way::ways(&homes, protected, dr);
        if let Some((_, way)) = ways.iter().find(|(vm, _)| *vm == name)
            && way.home() != Some(protected)
        {
            let (why, record) = match way {
                Way::Untold(why) => (
                    format!("which way {name} is protected cannot be told ({why})"),
                    format!(
                        ", or record its home first (record_homes({}))",
                        lit(cluster)
                    ),
                ),
                Way::Home(_) => (format!("{name} is at home on {dr}"), String::new()),
            };
            return Err(DrError::guard(
                &action,
                format!(
                    "{why}, and Mold's deleteDisasterRecoveryClusterVm sent on {protected} destroys and expunges the VM on {dr}: it could be its production"
                ),
                format!(
                    "drbook unprotects only VMs at home on {protected}; unprotect this one from Mold's UI on {dr}'s record{record}"
                ),
            ));
        }
        let dr_vms = VmStates::of(&read, &rows).dr;
        let volumes = volume_views_of(&read, |v| v == name);
        guards::dr_copy_not_live(&action, dr, &dr_vms, &volumes)?;
        let vm_id = rows[0].vm_id.clone();
        let result = self
            .dr_job(
                protected,
                &action,
                "deleteDisasterRecoveryClusterVm",
                &[("virtualmachineid", &vm_id), ("drclustername", cluster)],
                &images_of(&volumes),
            )
            .await
            .map_err(|e| e.about(&name))?;
        Ok(Outcome {
            action,
            site: protected.to_string(),
            message: format!("{name} is no longer mirrored; its mirrored VM on {dr} is destroyed"),
            detail: json!({
                "command": "deleteDisasterRecoveryClusterVm",
                "vm": name,
                "vm_id": vm_id,
                "result": result,
            }),
        })
    }

    /// Reads the cluster for a VM-level command (waiting out a delta copy, see
    /// [`Dr::read_settled`]) and finds the VM's rows on the protected site.
    async fn prepare_vm(&self, cluster: &str, vm: &str, verb: &str) -> Result<Prepared, DrError> {
        let action = format!("{verb} of {vm} in DR cluster {cluster:?}");
        let read = self.read_settled(cluster).await?;
        let rows = Self::mirrored_rows(&read, &action, vm)?;
        let name = rows[0].vm_name.clone().unwrap_or_else(|| vm.to_string());
        let vm_id = rows[0].vm_id.clone();
        Ok(Prepared {
            cluster: cluster.to_string(),
            action,
            name,
            vm_id,
            read,
        })
    }

    /// Sends one of the synchronous VM-level commands of the mirroring test on the protected
    /// site. Mold's "Please try again later." (its pre-check saw a delta copying, so nothing
    /// ran) is asked again once the copies are idle; a lost answer re-reads both sites'
    /// images and is never re-sent.
    ///
    /// `done` tells from a fresh read whether the command took effect: after a lost answer
    /// that read decides (`None`: only a later check can, as for a snapshot that must still
    /// arrive).
    async fn send_vm(
        &self,
        p: &Prepared,
        command: &str,
        done: Option<fn(&Prepared) -> bool>,
    ) -> Result<Outcome, DrError> {
        let protected = p.read.protected();
        let dr = p.read.dr();
        let images = images_of(&p.volumes());
        let mut params = vec![("virtualmachineid", p.vm_id.as_str())];
        if command != "takeSnapshotDisasterRecoveryClusterVm" {
            params.push(("drclustername", p.cluster.as_str()));
        }
        let h = self.handle(protected)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::info!(site = %protected, vm = %p.name, command, "{}", p.action);
            let Err(e) = h.mold.call(command, &params).await else {
                break;
            };
            let e = DrError::from(e);
            if e.outcome_unknown() {
                // The command may have run: fresh reads of both sites decide (for a short
                // while: a site reports a swap some seconds late).
                if let Some(done) = done
                    && self.took_effect(p, done).await
                {
                    tracing::info!(site = %protected, vm = %p.name, command, "its answer was lost, but a fresh read shows it took effect");
                    break;
                }
                let (here, there) = tokio::join!(
                    self.found_images(protected, &images),
                    self.found_images(dr, &images)
                );
                return Err(DrError::OutcomeUnknown {
                    action: format!("{} ({command} on {protected})", p.action),
                    cause: e.lost_answer(),
                    found: format!("{here}; {there}"),
                    advice: "a resume settles it by reading".into(),
                });
            }
            if attempt >= LATER_ATTEMPTS || !e.says_try_again_later() {
                return Err(e.about(&p.name));
            }
            tracing::info!(site = %protected, "{e}; waiting for the copy to finish");
            self.wait_replicas_idle(dr, &images).await?;
        }
        Ok(Outcome {
            action: p.action.clone(),
            site: protected.to_string(),
            message: String::new(),
            detail: json!({"command": command, "vm": p.name, "vm_id": p.vm_id, "images": images, "attempts": attempt}),
        })
    }

    /// Whether fresh reads show `done` within a few seconds (at most `waits.settle`): Mold
    /// answers these commands only once Ceph has acted, so an effect shows at once on the
    /// protected site and within seconds on the DR site; a command that never ran is not
    /// waited for long.
    async fn took_effect(&self, p: &Prepared, done: fn(&Prepared) -> bool) -> bool {
        let until = Instant::now() + self.waits.settle.min(std::time::Duration::from_secs(10));
        loop {
            if let Ok(fresh) = self.prepare_vm(&p.cluster, &p.name, "re-read").await
                && done(&fresh)
            {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Mirroring test step 3: demote the VM's images here and promote them on the DR site
    /// (`demoteDisasterRecoveryClusterVm`). Guards: the VM stopped; its images primary here
    /// with idle replicas.
    pub async fn demote_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        let p = self.prepare_vm(cluster, vm, "demote the images").await?;
        let (protected, dr) = (p.read.protected(), p.read.dr());
        if let Some(done) = p.settled(
            "demoteDisasterRecoveryClusterVm",
            guards::promoted(&p.volumes()),
            &format!("the images are primary on {dr}"),
        ) {
            return Ok(done);
        }
        guards::vms_stopped(&p.action, &[(protected, p.states().protected)])?;
        guards::pair_healthy(&p.action, protected, dr, &p.volumes())?;
        let mut outcome = self
            .send_vm(
                &p,
                "demoteDisasterRecoveryClusterVm",
                Some(|p| guards::promoted(&p.volumes())),
            )
            .await?;
        outcome.message = format!(
            "the images are primary on {dr}; next: start_mirror_vm, and promote_vm to swap back"
        );
        Ok(outcome)
    }

    /// Mirroring test step 7: swap the roles back (`promoteDisasterRecoveryClusterVm`); the DR
    /// copy is then re-copied in full. Guards: both VMs stopped; the images primary on the DR
    /// site (after `demote_vm`).
    pub async fn promote_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        let p = self
            .prepare_vm(cluster, vm, "promote the images back")
            .await?;
        let (protected, dr) = (p.read.protected(), p.read.dr());
        if let Some(done) = p.settled(
            "promoteDisasterRecoveryClusterVm",
            home_primary(&p.volumes()),
            &format!("the images are primary on {protected} again"),
        ) {
            return Ok(done);
        }
        let states = p.states();
        guards::vms_stopped(&p.action, &[(protected, states.protected), (dr, states.dr)])?;
        guards::dr_images_primary(
            &p.action,
            dr,
            &p.volumes(),
            "promote_vm swaps back what demote_vm swapped; these images were not swapped",
        )?;
        let mut outcome = self
            .send_vm(
                &p,
                "promoteDisasterRecoveryClusterVm",
                Some(|p| home_primary(&p.volumes())),
            )
            .await?;
        outcome.message =
            format!("the images are primary on {protected} again; {dr} re-copies them in full");
        Ok(outcome)
    }

    /// Mirroring test step 4: start the mirrored VM on the DR site
    /// (`startDisasterRecoveryClusterVm`). Guard: its images are primary there (else Mold
    /// waits up to 100 minutes and starts a VM that cannot run).
    pub async fn start_mirror_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        let p = self
            .prepare_vm(cluster, vm, "start the mirrored VM")
            .await?;
        let dr = p.read.dr();
        let running = p.states().dr.iter().all(|(_, st)| *st == "Running");
        if let Some(done) = p.settled(
            "startDisasterRecoveryClusterVm",
            running,
            &format!("the mirrored VM runs on {dr}"),
        ) {
            return Ok(done);
        }
        guards::dr_images_primary(
            &p.action,
            dr,
            &p.volumes(),
            "run demote_vm first: the mirrored VM can only run on primary images",
        )?;
        let mut outcome = self
            .send_vm(
                &p,
                "startDisasterRecoveryClusterVm",
                Some(|p| p.states().dr.iter().all(|(_, st)| *st == "Running")),
            )
            .await?;
        outcome.message = format!("the mirrored VM runs on {dr}");
        Ok(outcome)
    }

    /// Mirroring test steps 1 and 6: stop the mirrored VM on the DR site
    /// (`stopDisasterRecoveryClusterVm`, forced).
    pub async fn stop_mirror_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        let p = self.prepare_vm(cluster, vm, "stop the mirrored VM").await?;
        let stopped = p.states().dr.iter().all(|(_, st)| *st == "Stopped");
        if let Some(done) = p.settled(
            "stopDisasterRecoveryClusterVm",
            stopped,
            &format!("the mirrored VM is stopped on {}", p.read.dr()),
        ) {
            return Ok(done);
        }
        let mut outcome = self
            .send_vm(
                &p,
                "stopDisasterRecoveryClusterVm",
                Some(|p| p.states().dr.iter().all(|(_, st)| *st == "Stopped")),
            )
            .await?;
        outcome.message = format!("the mirrored VM is stopped on {}", p.read.dr());
        Ok(outcome)
    }

    /// Mirroring test step 2: a mirror snapshot of the VM now
    /// (`takeSnapshotDisasterRecoveryClusterVm`), then drbook checks that it reached the DR
    /// site — Mold answers success even when its own wait times out. Guard: the images are
    /// primary here with idle replicas.
    pub async fn snapshot_vm(&self, cluster: &str, vm: &str) -> Result<Outcome, DrError> {
        const SNAPSHOT: &str = "takeSnapshotDisasterRecoveryClusterVm";
        let p = self
            .prepare_vm(cluster, vm, "take a mirroring snapshot")
            .await?;
        let (protected, dr) = (p.read.protected(), p.read.dr());
        let volumes = p.volumes();
        if let Some(since) = reconcile::earlier_attempt() {
            // A snapshot that reached the DR site from a later second than the earlier
            // attempt is its snapshot (one of that very second is taken again: harmless).
            let arrived = volumes
                .iter()
                .all(|v| reached(v.dr, since.timestamp()).is_some());
            if let Some(done) = p.settled(
                "takeSnapshotDisasterRecoveryClusterVm",
                arrived,
                &format!("the snapshot reached {dr}"),
            ) {
                return Ok(done);
            }
        }
        guards::pair_healthy(&p.action, protected, dr, &volumes)?;
        let baseline = baseline(&volumes.iter().map(|v| (v.image, v.dr)).collect::<Vec<_>>());
        after_second_of(&baseline).await;
        let mut outcome = match self.send_vm(&p, SNAPSHOT, None).await {
            Ok(outcome) => outcome,
            Err(lost @ DrError::OutcomeUnknown { .. }) => {
                // It may have been taken: its arrival decides (a short look), not a second one.
                if self
                    .wait_reached(
                        dr,
                        &images_of(&volumes),
                        &baseline,
                        &p.action,
                        self.waits.settle,
                    )
                    .await
                    .is_err()
                {
                    return Err(lost);
                }
                Outcome {
                    action: p.action.clone(),
                    site: protected.to_string(),
                    message: String::new(),
                    detail: json!({"command": SNAPSHOT, "vm": p.name, "answer": "lost; the snapshot arrived"}),
                }
            }
            Err(e) => return Err(e),
        };
        let reached = self
            .wait_reached(
                dr,
                &images_of(&volumes),
                &baseline,
                &p.action,
                self.waits.replication,
            )
            .await?;
        outcome.message = format!("the snapshot reached {dr}");
        outcome.detail["reached"] = json!(reached);
        Ok(outcome)
    }
}

/// Every image of the VM primary on the protected site again: Mold's VM-level promote
/// demotes the DR copies first, so this is its end (the DR site may report its side late).
fn home_primary(volumes: &[VolumeView<'_>]) -> bool {
    !volumes.is_empty()
        && volumes
            .iter()
            .all(|v| v.protected.is_some_and(crate::glue::MirrorSide::is_primary))
}
