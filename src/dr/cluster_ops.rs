//! DR operations through Mold's own commands: the cluster operations that run on the DR site
//! (promote, resync, demote, clear, delete, the interval), the connection test, pairing two
//! sites (create a DR cluster), and the VM-level commands of the mirroring test, which run
//! on the protected site.
//!
//! Each one reads both sites at once, checks its guards on what it read, and only then sends
//! its one Mold command. A lost answer is never followed by a second send: the images (or,
//! for a pairing, both sites' records) are re-read and what they show is reported.

use super::cluster::ClusterRead;
use super::error::LATER_ATTEMPTS;
use super::guards::{self, lit, mapped_vms};
use super::outcome::{Outcome, PromoteOutcome};
use super::reconcile::{self, JobFound};
use super::status::{self};
use super::two_way;
use super::unknown::Fact;
use super::volumes::{images_of, record_images, volume_views};
use super::{Dr, DrError};
use crate::glue::MirrorSide;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::time::Instant;

impl Dr {
    /// Submits one of Mold's async DR commands on `site` and waits for its job. A lost
    /// answer becomes [`DrError::OutcomeUnknown`] with the images re-read.
    pub(crate) async fn dr_job(
        &self,
        site: &str,
        action: &str,
        command: &str,
        params: &[(&str, &str)],
        images: &[String],
    ) -> Result<Value, DrError> {
        let h = self.handle(site)?;
        tracing::info!(site, command, "{action}");
        let sent = Utc::now();
        match h.mold.call_async(command, params).await {
            Ok(result) => Ok(super::raw::redacted(result)),
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e);
                }
                // The command may have started a job: its job, once found, is the answer.
                let instance = params.iter().find(|(k, _)| *k == "id").map(|(_, v)| *v);
                match self
                    .job_of_lost_answer(site, command, instance, sent, &e)
                    .await
                {
                    Ok(Some(JobFound::Succeeded(result))) => return Ok(result),
                    Ok(Some(JobFound::Failed(failed))) => return Err(failed),
                    Ok(None) | Err(_) => {}
                }
                Err(DrError::OutcomeUnknown {
                    action: format!("{action} ({command} on {site})"),
                    cause: e.lost_answer(),
                    found: self.found_images(site, images).await,
                    advice: "a resume settles it by reading".to_string(),
                })
            }
        }
    }

    /// On `--resume`, what an earlier attempt of a cluster operation came to, read instead of
    /// sending it again: `Some` when it took effect — its job succeeded, or (no job listed)
    /// `end_state` holds. `None`: it did not (its job failed, or it never started), so the
    /// operation runs, guards first. Always `None` outside a resume.
    #[allow(clippy::too_many_arguments)]
    async fn earlier_record_job(
        &self,
        site: &str,
        action: &str,
        command: &str,
        record_id: &str,
        images: &[String],
        message: &str,
        end_state: bool,
    ) -> Result<Option<Outcome>, DrError> {
        if reconcile::earlier_attempt().is_none() {
            return Ok(None);
        }
        let found = match self.earlier_job(site, command, Some(record_id)).await {
            Ok(Some(JobFound::Succeeded(result))) => json!({"job": "succeeded", "result": result}),
            Ok(None) if end_state => {
                json!({"job": "none listed", "state": "already the end state"})
            }
            Ok(Some(JobFound::Failed(_)) | None) => return Ok(None),
            Err(e) => {
                return Err(reconcile::unsettled(
                    action,
                    &e,
                    &format!("check {site}'s jobs (listAsyncJobs) and mirror_status"),
                ));
            }
        };
        tracing::info!(
            site,
            command,
            "{action}: the earlier attempt took effect; not sent again"
        );
        Ok(Some(Outcome {
            action: action.to_string(),
            site: site.to_string(),
            message: format!("{message} (the earlier attempt took effect; not sent again)"),
            detail: json!({
                "command": command,
                "record_id": record_id,
                "images": images,
                "settled": found,
            }),
        }))
    }

    /// One of Mold's cluster operations on a DR record (`id`), as an [`Outcome`] whose detail
    /// names the command, the record, the images and Mold's answer.
    async fn record_job(
        &self,
        site: &str,
        action: String,
        command: &str,
        record_id: &str,
        images: Vec<String>,
        message: String,
    ) -> Result<Outcome, DrError> {
        let result = self
            .dr_job(site, &action, command, &[("id", record_id)], &images)
            .await?;
        Ok(Outcome {
            action,
            site: site.to_string(),
            message,
            detail: json!({
                "command": command,
                "record_id": record_id,
                "images": images,
                "result": result,
            }),
        })
    }

    /// The Active-Active guard of a cluster-level act (`two_way.rs`): every mapped VM's home
    /// read, and a refusal naming the VMs at home on the DR site it would `effect`.
    async fn one_direction_only(
        &self,
        read: &ClusterRead,
        action: &str,
        effect: &str,
        instead: &str,
    ) -> Result<(), DrError> {
        let homes = self.homes(read).await;
        let homes: Vec<(&str, &Fact<Option<String>>)> =
            homes.iter().map(|(vm, h)| (vm.as_str(), h)).collect();
        two_way::other_direction_untouched(
            action,
            &read.cluster.name,
            effect,
            instead,
            &homes,
            read.protected(),
            read.dr(),
        )
    }

    /// Failover: Mold's forced promote on the DR site (`promoteDisasterRecoveryCluster`).
    ///
    /// Guards: the mirrored VMs on the DR site are stopped; if the protected site still
    /// answers, its VMs are stopped too (otherwise both sites would write); some image is
    /// still a replica. The writes at risk are computed before anything is sent.
    pub async fn promote(&self, cluster: &str) -> Result<PromoteOutcome, DrError> {
        const COMMAND: &str = "promoteDisasterRecoveryCluster";
        let action = format!("promote DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, true).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let dr_record = read.record(dr, &action)?;
        let message = format!(
            "the images are primary on {dr}; next: start the mirrored VMs (start_vms({}, …))",
            lit(dr)
        );
        let volumes = volume_views(&read);
        if let Some(outcome) = self
            .earlier_record_job(
                dr,
                &action,
                COMMAND,
                &dr_record.id,
                &images_of(&volumes),
                &message,
                guards::promoted(&volumes),
            )
            .await?
        {
            return Ok(PromoteOutcome {
                outcome,
                at_risk: Vec::new(),
            });
        }
        self.one_direction_only(
            &read,
            &action,
            &format!("need these VMs stopped on {dr}, where they run production"),
            &format!(
                "fail over only the VMs at home on {protected}, image by image: promote({}, #{{home: {}}}), as drbook run failover does in such a pairing",
                lit(cluster),
                lit(protected)
            ),
        )
        .await?;
        guards::vms_stopped(&action, &[(dr, mapped_vms(dr_record))])?;
        if let Some(p_record) = read.records.get(protected) {
            guards::vms_stopped(
                &format!("{action} while {protected} still answers"),
                &[(protected, mapped_vms(p_record))],
            )?;
        }
        read.pool(dr, &action)?;
        guards::something_to_promote(&action, dr, &volumes)?;
        let at_risk = status::build(&read, Utc::now()).at_risk();
        let outcome = self
            .record_job(
                dr,
                action,
                COMMAND,
                &dr_record.id,
                images_of(&volumes),
                message,
            )
            .await?;
        Ok(PromoteOutcome { outcome, at_risk })
    }

    /// Failback, step 1: Mold's resync on the DR site — the protected site's copies, primary
    /// again after its return, are demoted and copied again in full from the DR site.
    ///
    /// Guards: VMs stopped on both sites; the protected site answers; some image is primary
    /// on both sites and none is still settling or in split-brain.
    pub async fn resync(&self, cluster: &str) -> Result<Outcome, DrError> {
        let action = format!("resync DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, true).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let dr_record = read.record(dr, &action)?;
        let p_record = read.record(protected, &action)?;
        let volumes = volume_views(&read);
        if let Some(outcome) = self
            .earlier_record_job(
                dr,
                &action,
                "resyncDisasterRecoveryCluster",
                &dr_record.id,
                &images_of(&volumes),
                &format!(
                    "the images on {protected} replay from {dr}; next: wait_synced({}, …), then demote",
                    lit(cluster)
                ),
                guards::resynced(&volumes),
            )
            .await?
        {
            return Ok(outcome);
        }
        self.one_direction_only(
            &read,
            &action,
            &format!("need these VMs stopped on {dr}, where they run production, and pause their mirroring (it restarts the rbd-mirror daemon of {dr})"),
            &format!(
                "resync only the copies on {protected} of the VMs at home there, image by image: resync({}, #{{home: {}}}), as drbook run failback does in such a pairing",
                lit(cluster),
                lit(protected)
            ),
        )
        .await?;
        guards::vms_stopped(
            &action,
            &[
                (protected, mapped_vms(p_record)),
                (dr, mapped_vms(dr_record)),
            ],
        )?;
        read.pool(dr, &action)?;
        read.pool(protected, &action)?;
        guards::resync_needed(&action, cluster, protected, dr, &volumes)?;
        let both_primary: Vec<String> = volumes
            .iter()
            .filter(|v| {
                v.protected.is_some_and(MirrorSide::is_primary)
                    && v.dr.is_some_and(MirrorSide::is_primary)
            })
            .map(|v| v.image.to_string())
            .collect();
        let message = format!(
            "{} image(s) on {protected} flagged for a full copy from {dr}; next: wait_synced({}, …), then demote",
            both_primary.len(),
            lit(cluster)
        );
        let mut outcome = self
            .record_job(
                dr,
                action,
                "resyncDisasterRecoveryCluster",
                &dr_record.id,
                images_of(&volumes),
                message,
            )
            .await?;
        // Mold skips, silently and with success, every image whose status it read as anything
        // but primary on both sites: read back which copies were really flagged. A real site
        // reports a demoted copy some seconds late, so the read-back waits for that first.
        let until = Instant::now() + self.waits.settle;
        let skipped = loop {
            let after = self.read_cluster(cluster, true).await?;
            let still_primary: Vec<String> = volume_views(&after)
                .iter()
                .filter(|v| both_primary.iter().any(|i| i == v.image))
                .filter(|v| v.protected.is_some_and(MirrorSide::is_primary))
                .map(|v| format!("{} of {}", v.image, v.vm))
                .collect();
            if still_primary.is_empty() || Instant::now() >= until {
                break still_primary;
            }
            self.report_wait(
                &format!("the copies {dr} demoted on {protected} to report it"),
                &still_primary,
                until - self.waits.settle,
                self.waits.settle,
            );
            tokio::time::sleep(self.waits.poll).await;
        };
        if !skipped.is_empty() {
            return Err(DrError::NotApplied {
                action: outcome.action,
                found: format!(
                    "{} image(s) still primary on {protected}, not flagged for the copy: {}",
                    skipped.len(),
                    skipped.join(", ")
                ),
                advice: format!(
                    "Mold's job succeeded but skipped them (it resyncs only images that {dr} reads as primary on both sites); run resync({}) again: it flags only what is left",
                    lit(cluster)
                ),
            });
        }
        outcome.detail["resynced"] = json!(both_primary);
        Ok(outcome)
    }

    /// Failback, step 2: Mold's demote on the DR site — a last snapshot, then the roles swap
    /// back image by image.
    ///
    /// Guards: VMs stopped on both sites; every image primary on the DR site and its
    /// protected copy replaying and idle. Mold's one "try again later" refusal (a snapshot
    /// delta started copying in between) is asked again once the copy is idle: its pre-check
    /// failed, so nothing had changed.
    pub async fn demote(&self, cluster: &str) -> Result<Outcome, DrError> {
        let action = format!("demote DR cluster {cluster:?}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let read = self.read_settled(cluster).await?;
            let (protected, dr) = (read.protected().to_string(), read.dr().to_string());
            let dr_record = read.record(&dr, &action)?;
            let p_record = read.record(&protected, &action)?;
            let message = format!(
                "the images are primary on {protected} again and replicas on {dr}; next: start the VMs on {protected} (start_vms({}, …))",
                lit(&protected)
            );
            if attempt == 1 {
                let volumes = volume_views(&read);
                if let Some(outcome) = self
                    .earlier_record_job(
                        &dr,
                        &action,
                        "demoteDisasterRecoveryCluster",
                        &dr_record.id,
                        &images_of(&volumes),
                        &message,
                        guards::demoted(&volumes),
                    )
                    .await?
                {
                    return Ok(outcome);
                }
            }
            self.one_direction_only(
                &read,
                &action,
                &format!(
                    "demote the images of these VMs on {dr}, after which they could not start there"
                ),
                &format!(
                    "fail back only the VMs at home on {protected}, image by image: demote({}, #{{home: {}}}), as drbook run failback does in such a pairing",
                    lit(cluster),
                    lit(&protected)
                ),
            )
            .await?;
            guards::vms_stopped(
                &action,
                &[
                    (&protected, mapped_vms(p_record)),
                    (&dr, mapped_vms(dr_record)),
                ],
            )?;
            read.pool(&dr, &action)?;
            read.pool(&protected, &action)?;
            let volumes = volume_views(&read);
            guards::demote_ready(&action, cluster, &protected, &dr, &volumes)?;
            let images = images_of(&volumes);
            let sent = self
                .record_job(
                    &dr,
                    action.clone(),
                    "demoteDisasterRecoveryCluster",
                    &dr_record.id,
                    images.clone(),
                    message,
                )
                .await;
            match sent {
                Ok(mut outcome) => {
                    outcome.detail["attempts"] = json!(attempt);
                    return Ok(outcome);
                }
                Err(e) if attempt < LATER_ATTEMPTS && e.says_try_again_later() => {
                    tracing::info!(site = %dr, "{e}; waiting for the copy to finish");
                    self.wait_replicas_idle(&protected, &images).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls `site`'s Glue until every image there is a replica, replaying and idle.
    pub(crate) async fn wait_replicas_idle(
        &self,
        site: &str,
        images: &[String],
    ) -> Result<(), DrError> {
        self.wait_images(
            site,
            images,
            &format!("the copies on {site} to be idle"),
            self.waits.replication,
            |_, st| st.is_some_and(MirrorSide::is_replaying_idle),
        )
        .await
        .map(drop)
    }

    /// Primary site lost for good: Mold's clear on the DR site removes mirroring there
    /// (images, peer, daemon). Next: `remove_dr_cluster(cluster, <DR site>)`.
    ///
    /// Guard: neither the protected site's Mold nor its Glue accepts a connection now.
    pub async fn clear_garbage(&self, cluster: &str) -> Result<Outcome, DrError> {
        let action = format!("clear DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, false).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let dr_record = read.record(dr, &action)?;
        let message = format!(
            "mirroring removed on {dr}; next: remove_dr_cluster({}, {})",
            lit(cluster),
            lit(dr)
        );
        if let Some(outcome) = self
            .earlier_record_job(
                dr,
                &action,
                "clearDisasterRecoveryCluster",
                &dr_record.id,
                &record_images(dr_record),
                &message,
                false,
            )
            .await?
        {
            return Ok(outcome);
        }
        let p = self.handle(protected)?;
        let glue = p.glue().map_err(|_| {
            DrError::guard(
                &action,
                format!("drbook.toml lists no Glue for {protected}, so drbook cannot check that its storage is gone too"),
                format!("add glue_urls for {protected} to drbook.toml"),
            )
        })?;
        let (mold, glue) = tokio::join!(p.mold.capabilities(), glue.health());
        let mold_lost = mold.is_err_and(|e| DrError::from(e).is_unreachable());
        let glue_lost = glue.is_err_and(|e| DrError::from(e).is_unreachable());
        guards::protected_site_lost(&action, protected, mold_lost, glue_lost)?;
        self.one_direction_only(
            &read,
            &action,
            &format!("disable the mirroring of these VMs on {dr}"),
            "drbook does not clear an Active-Active pairing yet: those VMs keep running where they are; clear it from Mold's UI once you have decided what becomes of their protection",
        )
        .await?;
        self.record_job(
            dr,
            action,
            "clearDisasterRecoveryCluster",
            &dr_record.id,
            record_images(dr_record),
            message,
        )
        .await
    }

    /// Deletes the pairing's record on `site` (`deleteDisasterRecoveryCluster`). On the
    /// protected site this tears mirroring down on both sites and destroys the mirrored VMs
    /// on the DR site; on the DR site it only deletes that site's record.
    ///
    /// Guards: on the protected site, the DR site must answer and must not hold the live copy
    /// (a mirrored VM running there or an image primary there); on the DR site, the
    /// protected site must no longer hold its record (else remove it there: that removes
    /// both).
    pub async fn remove_dr_cluster(&self, cluster: &str, site: &str) -> Result<Outcome, DrError> {
        const COMMAND: &str = "deleteDisasterRecoveryCluster";
        let action = format!("remove DR cluster {cluster:?} on {site}");
        let message = format!("the DR cluster record is gone from {site}");
        self.handle(site)?;
        let read = self.read_cluster(cluster, true).await;
        if reconcile::earlier_attempt().is_some() {
            // Settling an earlier attempt: a record no longer there is the end state.
            let gone = match &read {
                Err(DrError::NotFound { .. }) => true,
                Ok(r) => !r.records.contains_key(site) && !r.mold_down.contains_key(site),
                Err(_) => false,
            };
            if gone {
                return Ok(Outcome {
                    action,
                    site: site.to_string(),
                    message: format!("{message} (the earlier attempt took effect; not sent again)"),
                    detail: json!({"command": COMMAND, "settled": {"state": "no record on the site"}}),
                });
            }
        }
        let read = read?;
        let (protected, dr) = (read.protected(), read.dr());
        let record = read.record(site, &action)?;
        if let Some(outcome) = self
            .earlier_record_job(
                site,
                &action,
                COMMAND,
                &record.id,
                &record_images(record),
                &message,
                false,
            )
            .await?
        {
            return Ok(outcome);
        }
        if site == protected {
            let dr_record = read.record(dr, &action)?;
            self.one_direction_only(
                &read,
                &action,
                &format!("destroy and expunge these VMs on {dr}, where they run production"),
                &format!(
                    "drbook does not remove an Active-Active pairing: unprotect the VMs at home on {dr} first, from Mold's UI on {dr}'s record"
                ),
            )
            .await?;
            read.pool(dr, &action)?;
            guards::dr_copy_not_live(&action, dr, &mapped_vms(dr_record), &volume_views(&read))?;
        } else if read.records.contains_key(protected) {
            return Err(DrError::guard(
                &action,
                format!(
                    "{protected} still holds the pairing, and removing only {site}'s record leaves it mirroring to a peer without one"
                ),
                format!(
                    "remove it on {protected} instead (remove_dr_cluster({}, {})), which removes both; remove it here only once {protected} is lost (after clear_garbage)",
                    lit(cluster),
                    lit(protected)
                ),
            ));
        }
        self.record_job(
            site,
            action,
            COMMAND,
            &record.id,
            record_images(record),
            message,
        )
        .await
    }

    /// Sets `mirrorscheduleinterval` on both sites' records.
    ///
    /// `updateDisasterRecoveryCluster` with an `id` **replaces** every stored detail, and the
    /// protected site's record also stores the peer storage VM's private key, which drbook
    /// never holds: sending the interval with the `id` would erase that key (and teardown
    /// needs it). So drbook uses the other form Mold accepts — the record's `name` without an
    /// `id`, which merges only the interval — once on each site. Each Mold then pushes the
    /// interval to its own Glue (`PUT /mirror`). Both sites must answer; a site that already
    /// has the interval is not called.
    pub async fn set_mirror_interval(
        &self,
        cluster: &str,
        interval: &str,
    ) -> Result<Outcome, DrError> {
        let action = format!("set the mirror interval of DR cluster {cluster:?}");
        guards::mirror_interval(&action, interval)?;
        let read = self.read_cluster(cluster, false).await?;
        let sites = [read.protected().to_string(), read.dr().to_string()];
        let mut before = BTreeMap::new();
        for site in &sites {
            let r = read.record(site, &action)?;
            before.insert(site.clone(), r.mirror_schedule_interval.clone());
        }
        let mut updated = Vec::new();
        for site in &sites {
            if before[site].as_deref() == Some(interval) {
                continue;
            }
            let h = self.handle(site)?;
            tracing::info!(site, interval, "{action}");
            let sent = h
                .mold
                .call(
                    "updateDisasterRecoveryCluster",
                    &[
                        ("name", cluster),
                        ("details[0].mirrorscheduleinterval", interval),
                    ],
                )
                .await;
            if let Err(e) = sent {
                let e = DrError::from(e);
                let done = if updated.is_empty() {
                    "nothing was changed before".to_string()
                } else {
                    format!("{} already has {interval}", updated.join(" and "))
                };
                if e.outcome_unknown() {
                    let found = match self.read_cluster(cluster, false).await {
                        Ok(r) => r
                            .records
                            .iter()
                            .map(|(s, rec)| {
                                format!(
                                    "{s} has {}",
                                    rec.mirror_schedule_interval.as_deref().unwrap_or("none")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                        Err(e) => format!("nothing ({e})"),
                    };
                    return Err(DrError::OutcomeUnknown {
                        action: format!("{action} on {site}"),
                        cause: e.lost_answer(),
                        found,
                        advice: "running it again is safe: it only sets the interval".into(),
                    });
                }
                return Err(e.about(&format!("{cluster} ({done}; running it again is safe)")));
            }
            updated.push(site.clone());
        }
        let after = self.read_cluster(cluster, false).await?;
        let mismatched: Vec<String> = sites
            .iter()
            .filter_map(|s| {
                let now = after
                    .records
                    .get(s)
                    .and_then(|r| r.mirror_schedule_interval.clone());
                (now.as_deref() != Some(interval))
                    .then(|| format!("{s} shows {}", now.as_deref().unwrap_or("none")))
            })
            .collect();
        if !mismatched.is_empty() {
            return Err(DrError::NotApplied {
                action,
                found: format!(
                    "{} (an older Mold that only updates by id?)",
                    mismatched.join(", ")
                ),
                advice: "set it in Mold's UI (DR cluster → settings), which re-sends every detail"
                    .into(),
            });
        }
        Ok(Outcome {
            action,
            site: sites.join(", "),
            message: if updated.is_empty() {
                format!("already {interval} on both sites")
            } else {
                format!("{interval} on both sites (updated {})", updated.join(", "))
            },
            detail: json!({
                "command": "updateDisasterRecoveryCluster",
                "interval": interval,
                "before": before,
                "updated": updated,
            }),
        })
    }
}
