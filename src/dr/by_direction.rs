//! The failover and failback acts for the VMs of one direction — `promote`, `resync` and
//! `demote` with `#{home: SITE}`. In a pairing that protects one way they are Mold's
//! cluster-level commands (`cluster_ops.rs`). In an Active-Active pairing Mold's commands
//! would act on both directions (`two_way.rs`), so drbook does the same work image by image
//! through Glue, on the images of the VMs at home on `home` only: the other direction's VMs
//! are never stopped, demoted or resynced.
//!
//! Each act reads first, checks the same guards the cluster-level act does (on a read turned
//! round so that `home` is its protected site), and settles an image whose answer was lost by
//! reading it again; run again, it skips what is done.

use chrono::Utc;
use serde_json::json;

use super::cluster::{ClusterRead, Pools};
use super::guards::{self, lit, mapped_vms};
use super::outcome::{Outcome, PromoteOutcome};
use super::reconcile;
use super::status;
use super::two_way::{self, Way};
use super::unknown::Fact;
use super::volumes::{images_of, volume_views};
use super::{Dr, DrError};
use crate::glue::{ImageStatus, MirrorSide};

/// A cluster read turned round so that `home` is its protected site, and restricted to the
/// VMs at home there.
pub(crate) struct Directed {
    pub read: ClusterRead,
    /// The pairing's protected site, as Mold's records say (`read` may be turned round).
    pub protected: String,
    /// The VMs at home on `home`, with their recorded home and their way.
    pub vms: Vec<(String, Fact<Option<String>>, Way)>,
    /// Some VM of the pairing is at home on the other site.
    pub two_way: bool,
}

impl Directed {
    fn names(&self) -> Vec<&str> {
        self.vms.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    /// Mold's cluster-level command does exactly this act: one way, from the protected site.
    fn is_whole_pairing(&self) -> bool {
        !self.two_way && self.read.protected() == self.protected
    }
}

impl ClusterRead {
    /// This read seen from `home` (its protected site) and holding only the rows of `vms`.
    fn directed(&self, home: &str, vms: &[String]) -> ClusterRead {
        let mut read = ClusterRead {
            cluster: self.cluster.clone(),
            records: self.records.clone(),
            pools: self.pools.clone(),
            mold_down: self.mold_down.clone(),
            glue_down: self.glue_down.clone(),
            storage_read: self.storage_read.clone(),
        };
        if home != read.cluster.primary_site {
            std::mem::swap(&mut read.cluster.primary_site, &mut read.cluster.dr_site);
        }
        let mine = |name: Option<&String>| name.is_some_and(|n| vms.contains(n));
        for record in read.records.values_mut() {
            record
                .vm_map
                .retain(|row| mine(row.vm_name.as_ref()) || mine(row.mirror_vm_name.as_ref()));
        }
        read
    }
}

fn acts_as_primary(st: Option<&ImageStatus>) -> bool {
    st.is_some_and(|s| s.is_primary() || s.is_force_promoting())
}

impl Dr {
    /// Reads the cluster and the homes of its mirrored VMs, and picks those at home on
    /// `home`. Refuses a site not of the pairing, a VM whose direction cannot be told in a
    /// two-way pairing (it could belong to either), and a direction with no VM.
    /// With `settled`, a snapshot delta being copied is waited out first (as the cluster
    /// demote does, [`Dr::read_settled`]): the guards then judge a fresh read.
    pub(crate) async fn directed(
        &self,
        cluster: &str,
        home: &str,
        action: &str,
        settled: bool,
    ) -> Result<Directed, DrError> {
        let read = if settled {
            self.read_settled(cluster).await?
        } else {
            self.read_cluster(cluster, true).await?
        };
        self.direct(read, cluster, home, action).await
    }

    /// [`Dr::directed`] on a cluster already read.
    async fn direct(
        &self,
        read: ClusterRead,
        cluster: &str,
        home: &str,
        action: &str,
    ) -> Result<Directed, DrError> {
        let (protected, dr) = (read.protected().to_string(), read.dr().to_string());
        if home != protected && home != dr {
            return Err(DrError::guard(
                action,
                format!("{home} is not a site of DR cluster {cluster:?} ({protected}, {dr})"),
                format!("name {} or {}", lit(&protected), lit(&dr)),
            ));
        }
        let homes = self.homes(&read).await;
        let homes: Vec<(&str, &Fact<Option<String>>)> =
            homes.iter().map(|(vm, h)| (vm.as_str(), h)).collect();
        let ways = two_way::ways(&homes, &protected, &dr);
        let untold = two_way::untold(&ways);
        if !untold.is_empty() {
            return Err(DrError::guard(
                action,
                format!(
                    "DR cluster {cluster:?} protects VMs both ways and drbook cannot tell which way {} go",
                    untold.join(", ")
                ),
                format!(
                    "record their homes first (record_homes({}), at steady state), or act on them one image at a time",
                    lit(cluster)
                ),
            ));
        }
        let names: Vec<String> = ways
            .iter()
            .filter(|(_, w)| w.home() == Some(home))
            .map(|(vm, _)| (*vm).to_string())
            .collect();
        if names.is_empty() {
            return Err(DrError::guard(
                action,
                format!("no mirrored VM of DR cluster {cluster:?} is at home on {home}"),
                "see each VM's direction with mirror_status(…) (its direction field)",
            ));
        }
        let two_way = ways
            .iter()
            .any(|(_, w)| w.home().is_some_and(|h| h != home));
        let vms = homes
            .iter()
            .zip(&ways)
            .filter(|((vm, _), _)| names.iter().any(|n| n == vm))
            .map(|((vm, h), (_, w))| ((*vm).to_string(), (*h).clone(), w.clone()))
            .collect();
        Ok(Directed {
            read: read.directed(home, &names),
            protected,
            vms,
            two_way,
        })
    }

    /// `mirror_status(cluster, #{home})`: the VMs at home on `home`, seen from there (its
    /// `primary_site` is `home`, its `dr_site` where they fail over to).
    pub async fn mirror_status_of(
        &self,
        cluster: &str,
        home: &str,
    ) -> Result<status::MirrorStatus, DrError> {
        let action = format!("read the VMs of DR cluster {cluster:?} at home on {home}");
        // A read: where no Glue endpoint answers, the pool status is read over SSH.
        let read = self.read_cluster_with(cluster, Pools::GlueOrSsh).await?;
        let d = self.direct(read, cluster, home, &action).await?;
        let mut s = status::build(&d.read, Utc::now());
        for vm in &mut s.vms {
            if let Some((_, h, w)) = d.vms.iter().find(|(n, _, _)| *n == vm.name) {
                vm.home = h.clone();
                vm.way = w.clone();
            }
        }
        Ok(s)
    }

    /// `wait_synced(cluster, #{home})`: waits until every volume of the VMs at home on
    /// `home` is synced (the other direction's own schedule does not hold it up).
    pub async fn wait_synced_of(
        &self,
        cluster: &str,
        home: &str,
        timeout: std::time::Duration,
        poll: std::time::Duration,
        progress: &(dyn Fn(&status::WaitProgress<'_>) + Sync),
    ) -> Result<status::MirrorStatus, DrError> {
        self.wait_synced_with(cluster, timeout, poll, progress, || {
            self.mirror_status_of(cluster, home)
        })
        .await
    }

    /// `promote(cluster, #{home})`: a failover of the VMs at home on `home` to the other
    /// site. One-way pairing, `home` its protected site: Mold's cluster promote. Two-way:
    /// each of their images promoted (forced, as Glue always does) on the other site.
    pub async fn promote_home(&self, cluster: &str, home: &str) -> Result<PromoteOutcome, DrError> {
        let action = format!("promote the VMs of DR cluster {cluster:?} at home on {home}");
        let d = self.directed(cluster, home, &action, false).await?;
        if d.is_whole_pairing() {
            return self.promote(cluster).await;
        }
        let read = &d.read;
        let away = read.dr();
        let volumes = volume_views(read);
        if reconcile::earlier_attempt().is_some() && guards::promoted(&volumes) {
            return Ok(PromoteOutcome {
                outcome: settled(&action, away, &images_of(&volumes), "primary"),
                at_risk: Vec::new(),
            });
        }
        guards::vms_stopped(&action, &[(away, mapped_vms(read.record(away, &action)?))])?;
        if let Some(at_home) = read.records.get(home) {
            guards::vms_stopped(
                &format!("{action} while {home} still answers"),
                &[(home, mapped_vms(at_home))],
            )?;
        }
        read.pool(away, &action)?;
        guards::something_to_promote(&action, away, &volumes)?;
        let at_risk = status::build(read, Utc::now()).at_risk();
        let glue = self.handle(away)?.glue()?;
        let mut promoted = Vec::new();
        for v in volumes.iter().filter(|v| !acts_as_primary(v.dr)) {
            tracing::info!(site = away, image = v.image, "{action}");
            let sent = glue.promote(v.image).await;
            self.after_image_mutation(away, v.image, sent, &action, |st| {
                st.is_primary() || st.is_force_promoting()
            })
            .await
            .map_err(|e| e.about(v.vm))?;
            promoted.push(v.image.to_string());
        }
        Ok(PromoteOutcome {
            outcome: Outcome {
                action,
                site: away.to_string(),
                message: format!(
                    "the images of {} VM(s) at home on {home} are primary on {away}; the VMs at home on {away} were not touched; next: start them (start_vms({}, …))",
                    d.names().len(),
                    lit(away)
                ),
                detail: json!({"command": "POST /mirror/image/promote", "vms": d.names(), "promoted": promoted}),
            },
            at_risk,
        })
    }

    /// `resync(cluster, #{home})`: failback step 1 for the VMs at home on `home`, back after
    /// a failover: each copy there that is primary on both sites is demoted and flagged for a
    /// full copy from the other site (what Mold's cluster resync does, image by image).
    pub async fn resync_home(&self, cluster: &str, home: &str) -> Result<Outcome, DrError> {
        let action = format!("resync the VMs of DR cluster {cluster:?} at home on {home}");
        let d = self.directed(cluster, home, &action, false).await?;
        if d.is_whole_pairing() {
            return self.resync(cluster).await;
        }
        let read = &d.read;
        let away = read.dr();
        let volumes = volume_views(read);
        if reconcile::earlier_attempt().is_some() && guards::resynced(&volumes) {
            return Ok(settled(
                &action,
                home,
                &images_of(&volumes),
                &format!("replaying from {away}"),
            ));
        }
        guards::vms_stopped(
            &action,
            &[
                (home, mapped_vms(read.record(home, &action)?)),
                (away, mapped_vms(read.record(away, &action)?)),
            ],
        )?;
        read.pool(home, &action)?;
        read.pool(away, &action)?;
        if let Some(v) = volumes
            .iter()
            .find(|v| v.dr.is_some_and(ImageStatus::is_force_promoting))
        {
            return Err(DrError::guard(
                &action,
                format!(
                    "image {} of {} is still {} on {away}: the promote there has not settled",
                    v.image,
                    v.vm,
                    guards::shown(v.dr)
                ),
                "wait until it shows `local image is primary` (seconds to a minute), then resync again",
            ));
        }
        // Primary on both sites (the home copy came back primary), or a home copy an earlier
        // attempt demoted, now split from the primary: each needs the full copy.
        let needed: Vec<_> = volumes
            .iter()
            .filter(|v| {
                v.dr.is_some_and(ImageStatus::is_primary)
                    && v.protected
                        .is_some_and(|p| p.is_primary() || p.is_split_brain())
            })
            .copied()
            .collect();
        if needed.is_empty() {
            guards::resync_needed(&action, cluster, home, away, &volumes)?;
        }
        let glue = self.handle(home)?.glue()?;
        let mut flagged = Vec::new();
        for v in &needed {
            let image = v.image;
            if v.protected.is_some_and(ImageStatus::is_primary) {
                let sent = glue.demote(image).await;
                self.after_image_mutation(home, image, sent, &action, |st| !st.is_primary())
                    .await
                    .map_err(|e| e.about(v.vm))?;
            }
            let sent = glue.resync(image).await;
            self.after_image_mutation(home, image, sent, &action, |st| {
                st.is_resync_requested() || st.replay_detail().is_some() || st.is_status_not_found()
            })
            .await
            .map_err(|e| e.about(v.vm))?;
            flagged.push(image.to_string());
        }
        Ok(Outcome {
            action,
            site: home.to_string(),
            message: format!(
                "{} image(s) on {home} flagged for a full copy from {away}; the VMs at home on {away} were not touched; next: wait_synced({}, …), then demote({}, #{{home: {}}})",
                flagged.len(),
                lit(cluster),
                lit(cluster),
                lit(home)
            ),
            detail: json!({"command": "PUT /mirror/image/resync", "vms": d.names(), "resynced": flagged}),
        })
    }

    /// `demote(cluster, #{home})`: failback step 2 for the VMs at home on `home`: each image
    /// demoted on the other site and promoted at home once the demotion has replayed there
    /// (the orderly switchover of `demote_image`/`promote_image`, no copy).
    pub async fn demote_home(&self, cluster: &str, home: &str) -> Result<Outcome, DrError> {
        let action = format!("demote the VMs of DR cluster {cluster:?} at home on {home}");
        let d = self.directed(cluster, home, &action, true).await?;
        if d.is_whole_pairing() {
            return self.demote(cluster).await;
        }
        let read = &d.read;
        let away = read.dr();
        let volumes = volume_views(read);
        if reconcile::earlier_attempt().is_some() && guards::demoted(&volumes) {
            return Ok(settled(&action, home, &images_of(&volumes), "primary"));
        }
        guards::vms_stopped(
            &action,
            &[
                (home, mapped_vms(read.record(home, &action)?)),
                (away, mapped_vms(read.record(away, &action)?)),
            ],
        )?;
        read.pool(home, &action)?;
        read.pool(away, &action)?;
        // Images an earlier attempt moved already are left; the rest must be ready.
        let to_move: Vec<_> = volumes
            .iter()
            .filter(|v| !guards::demoted(&[**v]))
            .copied()
            .collect();
        let half_done = |v: &&guards::VolumeView<'_>| {
            reconcile::earlier_attempt().is_some()
                && v.dr
                    .is_some_and(|st| !st.is_primary() && !st.is_force_promoting())
        };
        let ready: Vec<_> = to_move.iter().filter(|v| !half_done(v)).copied().collect();
        guards::demote_ready(&action, cluster, home, away, &ready)?;
        let mut moved = Vec::new();
        for v in &to_move {
            if !half_done(&v) {
                self.demote_image(away, v.image)
                    .await
                    .map_err(|e| e.about(v.vm))?;
            }
            self.promote_image(home, v.image)
                .await
                .map_err(|e| e.about(v.vm))?;
            moved.push(v.image.to_string());
        }
        Ok(Outcome {
            action,
            site: away.to_string(),
            message: format!(
                "the images of {} VM(s) are primary on {home} again and replicas on {away}; the VMs at home on {away} were not touched; next: start them on {home} (start_vms({}, …))",
                d.vms.len(),
                lit(home)
            ),
            detail: json!({"command": "DELETE /mirror/image/demote, POST /mirror/image/promote", "vms": d.names(), "moved": moved}),
        })
    }
}

/// An act an earlier attempt completed: found by reading, not sent again.
fn settled(action: &str, site: &str, images: &[String], now: &str) -> Outcome {
    Outcome {
        action: action.to_string(),
        site: site.to_string(),
        message: format!(
            "every image is {now} on {site} already (the earlier attempt took effect; not sent again)"
        ),
        detail: json!({"images": images, "settled": {"state": now}}),
    }
}
