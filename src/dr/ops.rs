//! DR operations through Mold's own commands: the cluster operations that run on the DR site
//! (promote, resync, demote, clear, delete, the interval), the connection test, pairing two
//! sites (create a DR cluster), and the VM-level commands of the mirroring test, which run
//! on the protected site.
//!
//! Each one reads both sites at once, checks its guards on what it read, and only then sends
//! its one Mold command. A lost answer is never followed by a second send: the images (or,
//! for a pairing, both sites' records) are re-read and what they show is reported.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::cluster::ClusterRead;
use super::guards::{self, VolumeView, lit, mapped_vms, shown};
use super::reconcile::{self, JobFound};
use super::site::SiteHandle;
use super::status::{self, AtRisk, rows_of};
use super::unknown::{Api, Unreadable};
use super::{Dr, DrError};
use crate::glue::{MirrorSide, PoolStatus};
use crate::mold::MoldErrorKind;
use crate::mold::types::VmMapRow;
use crate::secret::Secret;

/// What a mutation did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What was done, in the operators' words (`promote DR cluster "DR"`).
    pub action: String,
    /// Where it ran.
    pub site: String,
    /// One line for the operator: what happened and what comes next.
    pub message: String,
    /// The command, ids, and what Mold or Glue answered (never a secret).
    pub detail: Value,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.site, self.action, self.message)
    }
}

/// A failover's outcome, with the writes it put at risk (computed before promoting).
#[derive(Debug, Clone, Serialize)]
pub struct PromoteOutcome {
    pub outcome: Outcome,
    pub at_risk: Vec<AtRisk>,
}

impl fmt::Display for PromoteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.outcome)?;
        if self.at_risk.is_empty() {
            write!(
                f,
                "\n  no write at risk: every promoted VM was stopped and synced"
            )?;
        }
        for r in &self.at_risk {
            write!(f, "\n  at risk: {r}")?;
        }
        Ok(())
    }
}

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

/// How a new DR cluster is made; anything left out comes from drbook.toml and the DR site.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DrClusterSpec {
    /// The records' description (default [`DEFAULT_DESCRIPTION`]).
    pub description: Option<String>,
    /// A file holding the DR site's storage-VM private key (its `/root/.ssh/id_rsa`, PEM),
    /// which Mold hands to Glue to set mirroring up; default the DR site's `ssh_key_file`.
    /// A relative path is relative to the current directory.
    pub private_key_file: Option<PathBuf>,
    /// The DR site's storage VM Mold pairs with (`drclusterglueipaddress`); default the
    /// first address of its `listScvmIpAddress`, else the host of its first `glue_urls`.
    pub glue_ip: Option<String>,
}

/// The description a DR cluster drbook creates gets unless told otherwise.
pub const DEFAULT_DESCRIPTION: &str = "created by drbook";

/// The DR site's storage-VM private key for `drclusterprivatekey`: the file of the
/// `private_key_file` option, else the DR site's `ssh_key_file`. Errors name the site, the
/// setting and the file, never the content.
async fn read_private_key(
    action: &str,
    dr: &str,
    options: &DrClusterSpec,
    d: &SiteHandle,
) -> Result<(PathBuf, Secret), DrError> {
    let (path, from) = match (&options.private_key_file, &d.ssh.key_file) {
        (Some(p), _) => (p.clone(), "the private_key_file option".to_string()),
        (None, Some(p)) => (p.clone(), format!("sites.{dr}.ssh_key_file")),
        (None, None) => {
            return Err(DrError::Config(format!(
                "{action}: Mold needs {dr}'s storage-VM private key (its /root/.ssh/id_rsa) to pair the sites, and neither the private_key_file option nor sites.{dr}.ssh_key_file in drbook.toml names one: set ssh_key_file for {dr}, or pass #{{private_key_file: \"…\"}}"
            )));
        }
    };
    let unreadable = |e: &dyn fmt::Display| {
        DrError::Config(format!(
            "{action}: cannot read {dr}'s storage-VM private key {} (from {from}): {e}",
            path.display()
        ))
    };
    // A key is a few kilobytes: anything far bigger is the wrong file, and is not read.
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| unreadable(&e))?
        .len();
    if size > 4 * guards::PRIVATE_KEY_MAX as u64 {
        return Err(unreadable(&format!(
            "it is {size} bytes, far more than a private key"
        )));
    }
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| unreadable(&e))?;
    guards::private_key_text(&text).map_err(|why| {
        DrError::Config(format!(
            "{action}: {dr}'s storage-VM private key {} (from {from}): {why}",
            path.display()
        ))
    })?;
    Ok((path, Secret::new(text)))
}

/// The refusal Mold's demote gives while a snapshot delta copies: its pre-check failed, so
/// nothing changed and asking again later is exactly what it says to do.
const TRY_AGAIN_LATER: &str = "Please try again later.";
/// How often a command is asked again after that refusal.
const LATER_ATTEMPTS: u32 = 5;

/// Whether Mold refused in a pre-check that asks to try again later. Mold's rate limiter
/// (HTTP 429) ends its text the same way, but it is no pre-check: the client already retried
/// it with backoff, and waiting for the copies would wait for nothing.
fn says_try_again_later(e: &DrError) -> bool {
    !e.is_rate_limited() && e.errortext().is_some_and(|t| t.ends_with(TRY_AGAIN_LATER))
}

/// Every mirrored volume of the cluster, as guards see it: the protected site's rows first,
/// then rows only the DR site knows; each image once.
pub(crate) fn volume_views(read: &ClusterRead) -> Vec<VolumeView<'_>> {
    volume_views_of(read, |_| true)
}

/// The volumes of the VMs `keep` accepts (by the protected VM's name).
pub(crate) fn volume_views_of<'a>(
    read: &'a ClusterRead,
    keep: impl Fn(&str) -> bool,
) -> Vec<VolumeView<'a>> {
    let p_pool = read.pools.get(read.protected());
    let d_pool = read.pools.get(read.dr());
    let from_protected = read
        .records
        .get(read.protected())
        .into_iter()
        .flat_map(|r| {
            r.vm_map.iter().map(|row| {
                (
                    row.vm_name
                        .as_deref()
                        .or(row.mirror_vm_name.as_deref())
                        .unwrap_or(&row.vm_id),
                    row.volume_path.as_str(),
                )
            })
        });
    let from_dr = read.records.get(read.dr()).into_iter().flat_map(|r| {
        r.vm_map.iter().map(|row| {
            (
                row.mirror_vm_name
                    .as_deref()
                    .or(row.vm_name.as_deref())
                    .unwrap_or(&row.vm_id),
                row.volume_path.as_str(),
            )
        })
    });
    let mut out: Vec<VolumeView<'a>> = Vec::new();
    for (vm, image) in from_protected.chain(from_dr) {
        if keep(vm) && !out.iter().any(|v| v.image == image) {
            out.push(VolumeView {
                vm,
                image,
                protected: p_pool.and_then(|p| p.image(image)),
                dr: d_pool.and_then(|p| p.image(image)),
            });
        }
    }
    out
}

/// Every image a DR record maps.
fn record_images(record: &crate::mold::types::DrClusterRecord) -> Vec<String> {
    record
        .vm_map
        .iter()
        .map(|r| r.volume_path.clone())
        .collect()
}

/// The images of `volumes`, for messages.
fn images_of(volumes: &[VolumeView<'_>]) -> Vec<String> {
    volumes.iter().map(|v| v.image.to_string()).collect()
}

/// How `pool` shows `images`, in a few words: `img state` for one or two, else how many
/// show each state (`18 up+stopped (local image is primary), 2 up+replaying (…)`), so that
/// an error about twenty images stays one readable line.
fn roles(pool: &PoolStatus, images: &[String]) -> String {
    if let [one] = images {
        return format!("the image is {}", shown(pool.image(one)));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for i in images {
        let state = shown(pool.image(i));
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} image(s) {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mold's pairing command.
const CREATE_PAIRING: &str = "createDisasterRecoveryCluster";

/// A pairing made (or found made by an earlier attempt): both records, `Enabled`. `extra`
/// adds to the detail what this attempt knows (description, URL, storage VM, Mold's answer).
fn paired(
    action: String,
    name: &str,
    protected: &str,
    dr: &str,
    records: &BTreeMap<String, crate::mold::types::DrClusterRecord>,
    extra: Value,
) -> Outcome {
    let interval = records
        .get(protected)
        .and_then(|r| r.mirror_schedule_interval.clone());
    let mut detail = json!({
        "command": CREATE_PAIRING,
        "name": name,
        "protected": protected,
        "dr": dr,
        "interval": interval,
        "record_ids": records.iter().map(|(s, r)| (s.clone(), r.id.clone())).collect::<BTreeMap<_, _>>(),
    });
    if let (Some(d), Value::Object(more)) = (detail.as_object_mut(), extra) {
        d.extend(more);
    }
    Outcome {
        action,
        site: protected.to_string(),
        message: format!(
            "{protected} (protected) and {dr} (DR) are paired as {name:?}, Enabled on both; next: protect each VM with create_mirror_vm({}, <vm>)",
            lit(name)
        ),
        detail,
    }
}

impl Dr {
    /// What `site`'s Glue shows for `images` now: the "found" of an unknown outcome.
    pub(crate) async fn found_images(&self, site: &str, images: &[String]) -> String {
        let glue = match self.handle(site).and_then(|h| h.glue()) {
            Ok(g) => g,
            Err(e) => return format!("nothing ({e})"),
        };
        match glue.pool_status().await {
            Ok(pool) => format!("on {site}: {}", roles(&pool, images)),
            Err(e) => format!("nothing (reading {site}'s Glue failed too: {e})"),
        }
    }

    /// Submits one of Mold's async DR commands on `site` and waits for its job. A lost
    /// answer becomes [`DrError::OutcomeUnknown`] with the images re-read.
    async fn dr_job(
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
                Err(e) if attempt < LATER_ATTEMPTS && says_try_again_later(&e) => {
                    tracing::info!(site = %dr, "{e}; waiting for the copy to finish");
                    self.wait_replicas_idle(&protected, &images).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls `site`'s Glue until every image there is a replica, replaying and idle.
    async fn wait_replicas_idle(&self, site: &str, images: &[String]) -> Result<(), DrError> {
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

    /// Reads the cluster with pools. A replica in the middle of copying a snapshot delta is a
    /// transient the guards would refuse (Glue's schedule can start one at any moment), so
    /// drbook waits up to `waits.settle` for such copies to finish and reads again; the
    /// guards then judge the fresh read.
    pub(crate) async fn read_settled(&self, cluster: &str) -> Result<ClusterRead, DrError> {
        let read = self.read_cluster(cluster, true).await?;
        let views = volume_views(&read);
        let copying_on = |protected_side: bool| {
            views
                .iter()
                .filter(|v| guards::copying(if protected_side { v.protected } else { v.dr }))
                .map(|v| v.image.to_string())
                .collect::<Vec<_>>()
        };
        let copying = [
            (read.protected(), copying_on(true)),
            (read.dr(), copying_on(false)),
        ];
        if copying.iter().all(|(_, images)| images.is_empty()) {
            return Ok(read);
        }
        for (site, images) in copying.iter().filter(|(_, i)| !i.is_empty()) {
            // A copy still running afterwards is the guards' to report.
            let _ = self
                .wait_images(
                    site,
                    images,
                    &format!("the copies on {site} to finish"),
                    self.waits.settle,
                    |_, st| !guards::copying(st),
                )
                .await;
        }
        self.read_cluster(cluster, true).await
    }

    /// Polls `site`'s Glue pool status until `ok(image, status)` holds for every image, for
    /// at most `limit`; returns the pool status that satisfied it. The timeout names each
    /// image still pending with its status.
    pub(crate) async fn wait_images(
        &self,
        site: &str,
        images: &[String],
        what: &str,
        limit: Duration,
        ok: impl Fn(&str, Option<&crate::glue::ImageStatus>) -> bool,
    ) -> Result<PoolStatus, DrError> {
        let glue = self.handle(site)?.glue()?;
        let started = Instant::now();
        loop {
            let pending: Vec<String> = match glue.pool_status().await {
                Ok(pool) => {
                    let pending: Vec<String> = images
                        .iter()
                        .filter(|i| !ok(i, pool.image(i)))
                        .map(|i| format!("{i} on {site} is {}", shown(pool.image(i))))
                        .collect();
                    if pending.is_empty() {
                        return Ok(pool);
                    }
                    pending
                }
                Err(e) => vec![format!("{site}'s Glue: {e}")],
            };
            if started.elapsed() >= limit {
                return Err(DrError::Timeout {
                    what: what.to_string(),
                    waited: started.elapsed(),
                    pending,
                });
            }
            self.report_wait(what, &pending, started, limit);
            tokio::time::sleep(self.waits.poll).await;
        }
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

    /// Mold's own connection test, run on the protected site against the DR site, as the UI
    /// does before pairing. Mold needs the DR site's admin keys for it; DR records never show
    /// them to drbook, so drbook sends the keys its own configuration holds for the DR site.
    /// `(false, Mold's reason)` when the test ran and failed.
    pub async fn connectivity_test(&self, cluster: &str) -> Result<(bool, String), DrError> {
        let action = format!("test the connection of DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, false).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let p_record = read.record(protected, &action)?;
        let d = self.handle(dr).map_err(|_| {
            DrError::Config(format!(
                "{action}: Mold on {protected} needs {dr}'s admin API and secret keys, and drbook.toml has no site {dr}: add it with its mold_url, api_key and secret_key"
            ))
        })?;
        let url = p_record
            .peer_url
            .clone()
            .unwrap_or_else(|| d.mold_base_url());
        let glue_ip = match &p_record.peer_glue_ip {
            Some(ip) => ip.clone(),
            None => d.mold.scvm_ip_addresses().await?.into_iter().next().ok_or_else(|| {
                DrError::guard(
                    &action,
                    format!("neither the record on {protected} nor {dr}'s Mold names a storage VM address"),
                    format!("check listScvmIpAddress on {dr}"),
                )
            })?,
        };
        tracing::info!(site = protected, peer = dr, "{action}");
        Ok(
            match self
                .mold_connection_test(protected, dr, &url, &glue_ip)
                .await?
            {
                None => (
                    true,
                    format!(
                        "{protected}'s Mold reached {dr}'s Mold at {url} and its Glue at {glue_ip}"
                    ),
                ),
                Some(text) => (
                    false,
                    format!(
                        "{text} ({protected} → {dr} at {url}, Glue {glue_ip}; the keys sent are drbook's for {dr})"
                    ),
                ),
            },
        )
    }

    /// Mold's `connectivityTestsDisasterRecovery` on `protected` toward `dr`'s Mold at `url`
    /// and its storage VM `glue_ip`, with drbook's admin keys for `dr`. `Ok(None)`: it
    /// passed; `Ok(Some(text))`: it ran and failed, with Mold's text.
    async fn mold_connection_test(
        &self,
        protected: &str,
        dr: &str,
        url: &str,
        glue_ip: &str,
    ) -> Result<Option<String>, DrError> {
        let p = self.handle(protected)?;
        let settings = self.handle(dr)?.mold.settings();
        let answer = p
            .mold
            .call(
                "connectivityTestsDisasterRecovery",
                &[
                    ("drclusterurl", url),
                    ("drclusterapikey", settings.api_key.expose()),
                    ("drclustersecretkey", settings.secret_key.expose()),
                    ("drclusterglueipaddress", glue_ip),
                ],
            )
            .await;
        match answer {
            Ok(_) => Ok(None),
            Err(e) => match e.errortext() {
                // Mold's answer is the test's verdict; its rate limiter's is not.
                Some(text)
                    if matches!(e.kind, MoldErrorKind::Api { .. }) && !e.is_rate_limited() =>
                {
                    Ok(Some(text.to_string()))
                }
                _ => Err(e.into()),
            },
        }
    }

    // ---- pairing ---------------------------------------------------------------------------

    /// Pairs two sites: `createDisasterRecoveryCluster` on the protected site makes its
    /// record of the DR site and, through the DR site's Mold, that site's record of it, then
    /// sets up pool mirroring on both Glues (the operator guide's "setup", §7).
    ///
    /// Mold needs what its own records never show drbook: the DR site's admin keys (drbook
    /// sends its own for that site) and the DR site's storage-VM private key (the file
    /// `options.private_key_file`, else the DR site's `ssh_key_file`). None of them reaches a
    /// log line, an error, the journal or the outcome.
    ///
    /// Guards, before anything is sent: two different configured sites; the key file reads
    /// as a PEM private key; both sites answer and neither holds a DR cluster of that name;
    /// Mold's own connection test from the protected site to the DR site passes. Afterwards
    /// both sites are read again until the pairing shows `Enabled` on both (the DR site's
    /// record turns `Enabled` only through the protected site's update), for at most
    /// `waits.settle`.
    pub async fn create_dr_cluster(
        &self,
        name: &str,
        protected: &str,
        dr: &str,
        options: &DrClusterSpec,
    ) -> Result<Outcome, DrError> {
        let action = format!("create DR cluster {name:?} ({protected} → {dr})");
        guards::new_pairing(&action, name, protected, dr)?;
        let p = self.handle(protected)?;
        let d = self.handle(dr)?;
        let (key_file, private_key) = read_private_key(&action, dr, options, d).await?;
        let description = options
            .description
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_string());
        let glue_ip_given = match options.glue_ip.as_deref().map(str::trim) {
            Some("") => {
                return Err(DrError::Config(format!(
                    "{action}: the glue_ip option is empty: give one of {dr}'s storage VM addresses, or leave it out"
                )));
            }
            other => other.map(str::to_string),
        };

        // Both sites' records of that name, and the DR site's storage VMs, read at once.
        let by_name = [("name", name)];
        let (p_read, d_read, scvms) = tokio::join!(
            p.mold.dr_clusters(&by_name),
            d.mold.dr_clusters(&by_name),
            async {
                match glue_ip_given {
                    Some(_) => None,
                    None => Some(d.mold.scvm_ip_addresses().await),
                }
            }
        );
        // Settling an earlier attempt: a record of this name on the protected site may be
        // its doing; its job, or the record, says.
        if reconcile::earlier_attempt().is_some()
            && let Some(record_id) = p_read
                .as_ref()
                .ok()
                .and_then(|r| r.first())
                .map(|r| r.id.clone())
        {
            let result = match self
                .earlier_job(protected, CREATE_PAIRING, Some(&record_id))
                .await
            {
                Ok(Some(JobFound::Succeeded(result))) => result,
                Ok(Some(JobFound::Failed(e))) => {
                    return Err(DrError::PartlyDone {
                        action,
                        found: self.pairing_found(name, protected, dr).await,
                        advice: "remove what is left (remove_dr_cluster, or Mold's UI) before pairing under this name again".into(),
                        error: Box::new(e),
                    });
                }
                Ok(None) => json!({"settled": "the record exists"}),
                Err(e) => {
                    return Err(reconcile::unsettled(
                        &action,
                        &e,
                        &format!("check dr_clusters() and {protected}'s jobs (listAsyncJobs)"),
                    ));
                }
            };
            let records = self.wait_paired(&action, name, protected, dr).await?;
            return Ok(paired(
                action,
                name,
                protected,
                dr,
                &records,
                json!({"description": description, "settled": result}),
            ));
        }
        for (site, read) in [(protected, p_read), (dr, d_read)] {
            // Pairing needs both sites' records read: one that cannot be is an unknown.
            let records = read.map_err(|e| {
                let u = Unreadable::new(
                    site,
                    Api::Mold,
                    "getDisasterRecoveryClusterList",
                    &DrError::from(e),
                );
                DrError::unknown(&action, &format!("{site}'s DR clusters"), &u)
            })?;
            guards::name_unused(&action, name, site, records.first())?;
        }
        // The DR site's storage VM: as given, else its Mold's first, else drbook's first.
        let listed = match scvms {
            Some(Ok(ips)) => ips.into_iter().next(),
            Some(Err(e)) => {
                tracing::debug!(site = dr, error = %e, "listScvmIpAddress failed; using glue_urls");
                None
            }
            None => None,
        };
        let glue_ip = glue_ip_given
            .or(listed)
            .or_else(|| d.ssh.hosts.first().cloned())
            .ok_or_else(|| {
                DrError::Config(format!(
                    "{action}: Mold needs the address of one of {dr}'s storage VMs, and neither {dr}'s listScvmIpAddress nor its glue_urls in drbook.toml name one: pass #{{glue_ip: \"…\"}} or add glue_urls for {dr}"
                ))
            })?;
        let url = d.mold_base_url();

        // Mold's own connection test, as its UI runs it before pairing.
        tracing::info!(site = protected, peer = dr, "{action}: connection test");
        if let Some(text) = self
            .mold_connection_test(protected, dr, &url, &glue_ip)
            .await?
        {
            return Err(DrError::guard(
                &action,
                format!(
                    "Mold's connection test from {protected} to {dr} failed: {text} ({dr}'s Mold at {url}, storage VM {glue_ip}, with drbook's keys for {dr})"
                ),
                format!(
                    "check sites.{dr}'s mold_url, api_key and secret_key in drbook.toml (Mold is given these), that {glue_ip} is one of {dr}'s storage VMs, and health({})",
                    lit(dr)
                ),
            ));
        }

        let keys = d.mold.settings();
        tracing::info!(site = protected, peer = dr, "{action}");
        let sent_at = Utc::now();
        let sent = p
            .mold
            .call_async(
                CREATE_PAIRING,
                &[
                    ("name", name),
                    ("description", description.as_str()),
                    ("drclustertype", "secondary"),
                    ("drclusterurl", url.as_str()),
                    ("drclusterapikey", keys.api_key.expose()),
                    ("drclustersecretkey", keys.secret_key.expose()),
                    ("drclusterprivatekey", private_key.expose()),
                    ("drclusterglueipaddress", glue_ip.as_str()),
                ],
            )
            .await;
        let result = match sent {
            Ok(result) => super::raw::redacted(result),
            Err(e) => {
                let mut e = DrError::from(e);
                if e.outcome_unknown() {
                    // Its job, once found, is the answer.
                    match self
                        .job_of_lost_answer(protected, CREATE_PAIRING, None, sent_at, &e)
                        .await
                    {
                        Ok(Some(JobFound::Succeeded(result))) => {
                            let records = self.wait_paired(&action, name, protected, dr).await?;
                            return Ok(paired(
                                action,
                                name,
                                protected,
                                dr,
                                &records,
                                json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "result": result}),
                            ));
                        }
                        Ok(Some(JobFound::Failed(failed))) => e = failed,
                        Ok(None) | Err(_) => {
                            // No job to read: both records Enabled is the pairing's end.
                            if let Ok(records) =
                                self.wait_paired(&action, name, protected, dr).await
                            {
                                return Ok(paired(
                                    action,
                                    name,
                                    protected,
                                    dr,
                                    &records,
                                    json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "answer": "lost; both records found Enabled"}),
                                ));
                            }
                        }
                    }
                }
                if e.outcome_unknown() {
                    return Err(DrError::OutcomeUnknown {
                        action: format!("{action} ({CREATE_PAIRING} on {protected})"),
                        cause: e.lost_answer(),
                        found: self.pairing_found(name, protected, dr).await,
                        advice: "it may be half made: check dr_clusters(); a resume settles it"
                            .into(),
                    });
                }
                if let DrError::Mold(m) = &e
                    && matches!(m.kind, MoldErrorKind::JobFailed { .. })
                {
                    // The job ran part-way: say what it left.
                    let found = self.pairing_found(name, protected, dr).await;
                    return Err(DrError::PartlyDone {
                        action,
                        found,
                        advice: "remove what is left (remove_dr_cluster, or Mold's UI) before pairing under this name again".into(),
                        error: Box::new(e),
                    });
                }
                // Refused in Mold's synchronous phase: nothing was stored.
                return Err(e.about(name));
            }
        };

        let records = self.wait_paired(&action, name, protected, dr).await?;
        Ok(paired(
            action,
            name,
            protected,
            dr,
            &records,
            json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "result": result}),
        ))
    }

    /// Reads both sites until each holds its record of the new pairing, `Enabled` (the DR
    /// site's turns so through the protected site's update), for at most `waits.settle`.
    async fn wait_paired(
        &self,
        action: &str,
        name: &str,
        protected: &str,
        dr: &str,
    ) -> Result<BTreeMap<String, crate::mold::types::DrClusterRecord>, DrError> {
        let started = Instant::now();
        loop {
            let (found, records) = self.pairing_read(name, protected, dr).await;
            let enabled = |site: &str, kind: &crate::mold::types::DrClusterType| {
                records.get(site).is_some_and(|r| {
                    &r.cluster_type == kind
                        && r.status
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case("enabled"))
                })
            };
            if enabled(protected, &crate::mold::types::DrClusterType::Secondary)
                && enabled(dr, &crate::mold::types::DrClusterType::Primary)
            {
                return Ok(records);
            }
            if started.elapsed() >= self.waits.settle {
                return Err(DrError::NotApplied {
                    action: action.to_string(),
                    found,
                    advice: format!(
                        "Mold's job succeeded but the pairing is not Enabled on both sites: check dr_clusters() and the DR.CREATE events on {protected}; a half-made pairing is removed with remove_dr_cluster({}, {})",
                        lit(name),
                        lit(protected)
                    ),
                });
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Both sites' records of `name`, and a phrase for messages: `site-a holds it
    /// (secondary, Enabled/Enabled); site-b holds none`.
    async fn pairing_read(
        &self,
        name: &str,
        protected: &str,
        dr: &str,
    ) -> (
        String,
        BTreeMap<String, crate::mold::types::DrClusterRecord>,
    ) {
        let read = |site: &str| {
            let h = self.handle(site);
            async move {
                match h {
                    Ok(h) => h
                        .mold
                        .dr_clusters(&[("name", name)])
                        .await
                        .map_err(DrError::from),
                    Err(e) => Err(e),
                }
            }
        };
        let (p, d) = tokio::join!(read(protected), read(dr));
        let mut records = BTreeMap::new();
        let mut phrases = Vec::new();
        for (site, r) in [(protected, p), (dr, d)] {
            match r.map(|rs| rs.into_iter().next()) {
                Ok(Some(r)) => {
                    phrases.push(format!(
                        "{site} holds it ({}, {}/{})",
                        r.cluster_type.as_str(),
                        r.status.as_deref().unwrap_or("no status"),
                        r.agent_status.as_deref().unwrap_or("no agent status")
                    ));
                    records.insert(site.to_string(), r);
                }
                Ok(None) => phrases.push(format!("{site} holds none")),
                Err(e) => phrases.push(format!("{site} cannot be read ({e})")),
            }
        }
        (phrases.join("; "), records)
    }

    /// What both sites show of a pairing now: the "found" of an unknown or failed outcome.
    async fn pairing_found(&self, name: &str, protected: &str, dr: &str) -> String {
        self.pairing_read(name, protected, dr).await.0
    }

    // ---- mirrored VMs ---------------------------------------------------------------------

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
                suggestions: super::vm::closest(vm, &names),
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
        Ok(Outcome {
            action,
            site: protected.to_string(),
            message: format!(
                "{} is mirrored to {dr} (offering {}, network {}); its first full copy runs now: wait_synced({}, …)",
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
                // The command may have run: a fresh read of both sites decides.
                if let Some(done) = done
                    && let Ok(fresh) = self.prepare_vm(&p.cluster, &p.name, "re-read").await
                    && done(&fresh)
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
            if attempt >= LATER_ATTEMPTS || !says_try_again_later(&e) {
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
            guards::demoted(&p.volumes()),
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
                Some(|p| guards::demoted(&p.volumes())),
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
                .all(|v| super::images::reached(v.dr, since.timestamp()).is_some());
            if let Some(done) = p.settled(
                "takeSnapshotDisasterRecoveryClusterVm",
                arrived,
                &format!("the snapshot reached {dr}"),
            ) {
                return Ok(done);
            }
        }
        guards::pair_healthy(&p.action, protected, dr, &volumes)?;
        let baseline =
            super::images::baseline(&volumes.iter().map(|v| (v.image, v.dr)).collect::<Vec<_>>());
        super::images::after_second_of(&baseline).await;
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
