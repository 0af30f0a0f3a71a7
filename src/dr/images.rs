//! Image-level operations through Glue, for orderly switchovers (Glue spec §5.3): stop the
//! VM, take a last mirror snapshot and let it arrive, demote the image where it is primary,
//! wait until the other site has replayed the demotion, promote it there. The old primary
//! then simply replays from the new one: no resync, no full copy.
//!
//! Glue promotes with `--force` always, so a promote issued before the demotion was replayed
//! — or on both sides — silently makes two primaries (§6.6). `promote_image` therefore
//! re-reads both sides just before it sends anything.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::guards::{self, PromoteImage, describe, lit};
use super::outcome::Outcome;
use super::reconcile;
use super::site::SiteHandle;
use super::storage_read::{self, StorageRead};
use super::waits::{after_second_of, baseline, reached};
use super::{Dr, DrError};
use crate::glue::{GlueClient, ImageStatus, MirrorSide, PeerSite};
use crate::mold::types::{DrClusterRecord, VmMapRow};

/// A peer's status as this site last heard it, in the shape of its own status (for guards
/// that prefer the peer's own report but can live with this one).
pub(super) fn as_status(peer: &PeerSite) -> ImageStatus {
    ImageStatus {
        state: peer.state.clone(),
        description: peer.description.clone(),
        ..ImageStatus::default()
    }
}

/// One image on one site, as the demote and resync guards see it.
struct ImageAt<'a> {
    glue: &'a GlueClient,
    /// Its status on the site.
    local: ImageStatus,
    /// The site across the pairing.
    peer: String,
    /// The peer's own status of it, else what the site last heard from the peer.
    peer_own: Option<ImageStatus>,
    /// The mirrored VM using it on the site: (name, state).
    vm: Option<(String, String)>,
}

fn vm_ref(vm: Option<&(String, String)>) -> Option<(&str, &str)> {
    vm.map(|(n, s)| (n.as_str(), s.as_str()))
}

/// The DR records of one site and where a VM or image appears in them.
pub(super) struct SiteMap {
    records: Vec<DrClusterRecord>,
}

impl SiteMap {
    pub(super) fn rows_of_image<'a>(
        &'a self,
        image: &str,
    ) -> Vec<(&'a DrClusterRecord, &'a VmMapRow)> {
        self.records
            .iter()
            .flat_map(|r| r.vm_map.iter().map(move |row| (r, row)))
            .filter(|(_, row)| row.volume_path == image)
            .collect()
    }

    pub(super) fn rows_of_vm<'a>(
        &'a self,
        vm_id: &str,
    ) -> Vec<(&'a DrClusterRecord, &'a VmMapRow)> {
        self.records
            .iter()
            .flat_map(|r| r.vm_map.iter().map(move |row| (r, row)))
            .filter(|(_, row)| row.vm_id == vm_id)
            .collect()
    }
}

/// An image operation an earlier attempt already made (`now`: what the image is on `site`).
pub(super) fn settled_image(
    action: &str,
    site: &str,
    image: &str,
    peer: &str,
    now: &str,
) -> Outcome {
    Outcome {
        action: action.to_string(),
        site: site.to_string(),
        message: format!(
            "{image} is {now} on {site} already (the earlier attempt took effect; not sent again)"
        ),
        detail: json!({"image": image, "peer": peer, "settled": {"state": now}}),
    }
}

impl Dr {
    /// Glue's own status of one image on one site (state, description, peers, last update).
    pub async fn image_status(&self, site: &str, image: &str) -> Result<ImageStatus, DrError> {
        Ok(self.handle(site)?.glue()?.image_status(image).await?)
    }

    /// [`Dr::image_status`] for the status reads: where no Glue endpoint of the site answers,
    /// `rbd mirror image status` over SSH (`storage_read.rs`), and where it was read from.
    pub async fn image_status_read(
        &self,
        site: &str,
        image: &str,
    ) -> Result<(ImageStatus, StorageRead), DrError> {
        let h = self.handle(site)?;
        let glue = h.glue()?.image_status(image).await;
        let command = storage_read::image_status_command(image);
        self.glue_or_ssh(site, glue, command, storage_read::decode_image_status)
            .await
    }

    pub(super) async fn site_map(&self, h: &SiteHandle) -> Result<SiteMap, DrError> {
        Ok(SiteMap {
            records: h.mold.dr_clusters(&[]).await?,
        })
    }

    /// The site across the pairing from `site` for an image mapped by `record`, or, for an
    /// unmapped image, the other site when exactly two are configured.
    pub(super) fn peer_for(
        &self,
        site: &str,
        record: Option<&DrClusterRecord>,
    ) -> Result<String, DrError> {
        let peer = match record {
            Some(r) => self.peer_site(site, r),
            None => match self.site_names().as_slice() {
                [a, b] if a == site => Some(b.clone()),
                [a, b] if b == site => Some(a.clone()),
                _ => None,
            },
        };
        peer.ok_or_else(|| {
            DrError::Config(format!(
                "cannot tell which configured site mirrors with {site}: add the peer site to drbook.toml with the mold_url its DR record names"
            ))
        })
    }

    /// A mirror snapshot of the VM's images on `site` now, through Glue (one consistent
    /// round), and returns once the peer holds it.
    ///
    /// Guards: the VM's images are primary on `site`, and their copies on the peer replay.
    pub async fn mirror_snapshot(&self, site: &str, vm: &str) -> Result<Outcome, DrError> {
        let action = format!("take a mirror snapshot of {vm} on {site}");
        let h = self.handle(site)?;
        let glue = h.glue()?;
        let (target, map, pool) =
            tokio::join!(self.find_vm(site, vm), self.site_map(h), glue.pool_status());
        let (target, map, pool) = (target?, map?, pool?);
        let rows = map.rows_of_vm(&target.id);
        let Some((record, _)) = rows.first() else {
            return Err(DrError::guard(
                &action,
                format!(
                    "{} is not mirrored in any DR cluster on {site}",
                    target.name
                ),
                "protect it first with create_mirror_vm",
            ));
        };
        let images: Vec<String> = rows.iter().map(|(_, r)| r.volume_path.clone()).collect();
        let peer = self.peer_for(site, Some(record))?;
        let peer_pool = self
            .handle(&peer)?
            .glue()?
            .pool_status()
            .await
            .map_err(|e| {
                DrError::guard(
                    &action,
                    format!("{peer}'s Glue cannot be read ({e}), so the snapshot could not be seen arriving"),
                    format!("check health({})", lit(&peer)),
                )
            })?;
        guards::snapshot_possible(
            &action,
            site,
            &peer,
            &images
                .iter()
                .map(|i| (i.as_str(), pool.image(i), peer_pool.image(i)))
                .collect::<Vec<_>>(),
        )?;
        if let Some(since) = reconcile::earlier_attempt() {
            // Settling an earlier attempt: a snapshot that reached the peer from a later
            // second than its intent is the one it asked for (or a newer one: it holds every
            // write made before). One of that very second cannot be told from an older one:
            // another is taken, which is harmless.
            let since: BTreeMap<String, i64> = images
                .iter()
                .map(|i| (i.clone(), since.timestamp()))
                .collect();
            let arrived: BTreeMap<String, DateTime<Utc>> = images
                .iter()
                .filter_map(|i| Some((i.clone(), reached(peer_pool.image(i), since[i])?)))
                .collect();
            if arrived.len() == images.len() {
                return Ok(Outcome {
                    action,
                    site: site.to_string(),
                    message: format!(
                        "the snapshot of {} reached {peer} (the earlier attempt's; not taken again)",
                        target.name
                    ),
                    detail: json!({"vm": target.name, "images": images, "peer": peer, "reached": arrived}),
                });
            }
        }
        let base = baseline(
            &images
                .iter()
                .map(|i| (i.as_str(), peer_pool.image(i)))
                .collect::<Vec<_>>(),
        );
        after_second_of(&base).await;
        let instance = target
            .instancename
            .clone()
            .unwrap_or_else(|| target.name.clone());
        let refs: Vec<&str> = images.iter().map(String::as_str).collect();
        tracing::info!(site, vm = %target.name, "{action}");
        if let Err(e) = glue.mirror_snapshot(&instance, &refs).await {
            let e = DrError::from(e);
            if !e.outcome_unknown() {
                return Err(e);
            }
            // It may have been taken: look for it for a short while instead of taking another.
            if let Err(wait) = self
                .wait_reached(&peer, &images, &base, &action, self.waits.settle)
                .await
            {
                return Err(DrError::OutcomeUnknown {
                    action: format!("{action} (Glue mirror snapshot)"),
                    cause: e.lost_answer(),
                    found: wait.to_string(),
                    advice: "run mirror_snapshot again: an extra snapshot is harmless".into(),
                });
            }
        }
        let reached = self
            .wait_reached(&peer, &images, &base, &action, self.waits.replication)
            .await?;
        Ok(Outcome {
            action,
            site: site.to_string(),
            message: format!("the snapshot of {} reached {peer}", target.name),
            detail: json!({"vm": target.name, "images": images, "peer": peer, "reached": reached}),
        })
    }

    /// Demotes one image on `site` (Glue `DELETE /mirror/image/demote`). The peer then
    /// replays the demotion; `promote_image` on the peer completes the switchover.
    ///
    /// Guards: the image is primary on `site`; the mirrored VM using it is stopped; the
    /// peer's copy is replaying and idle (nothing unsynced, so the demote loses nothing).
    pub async fn demote_image(&self, site: &str, image: &str) -> Result<Outcome, DrError> {
        let action = format!("demote image {image} on {site}");
        let ImageAt {
            glue,
            local,
            peer,
            mut peer_own,
            vm,
        } = self.image_at(site, image).await?;
        if reconcile::earlier_attempt().is_some() && !local.is_primary() {
            return Ok(settled_image(&action, site, image, &peer, "not primary"));
        }
        if guards::copying(peer_own.as_ref()) {
            // A delta on its way (Glue's schedule may have just taken one): let it land, then
            // judge a fresh read. A copy still running afterwards is refused below.
            let _ = self
                .wait_images(
                    &peer,
                    &[image.to_string()],
                    &format!("{image} to finish copying to {peer}"),
                    self.waits.settle,
                    |_, st| !guards::copying(st),
                )
                .await;
            peer_own = self.peer_image(&peer, image, &local).await;
        }
        guards::demote_image_ready(
            &action,
            site,
            image,
            &local,
            vm_ref(vm.as_ref()),
            peer_own.as_ref(),
        )?;
        tracing::info!(site, image, "{action}");
        let sent = glue.demote(image).await;
        let found = self
            .after_image_mutation(site, image, sent, &action, |st| !st.is_primary())
            .await?;
        Ok(Outcome {
            action,
            site: site.to_string(),
            message: format!(
                "demoted; next: promote_image({}, {}) once {peer} has replayed the demotion (it waits for that)",
                lit(&peer),
                lit(image)
            ),
            detail: json!({"image": image, "peer": peer, "now": found}),
        })
    }

    /// Promotes one image on `site` (Glue `POST /mirror/image/promote`, always forced by Glue)
    /// to complete an orderly switchover.
    ///
    /// Guards, on both sides re-read just before: the image is not primary on `site`; it is
    /// not primary (nor force promoting) on the peer; `site` is up and shows the peer's
    /// demotion replayed (`remote image demoted` / `remote image is not primary`). While the
    /// demotion is still on its way this waits up to `waits.settle`.
    pub async fn promote_image(&self, site: &str, image: &str) -> Result<Outcome, DrError> {
        let action = format!("promote image {image} on {site}");
        let h = self.handle(site)?;
        let glue = h.glue()?;
        let map = self.site_map(h).await?;
        let rows = map.rows_of_image(image);
        let peer = self.peer_for(site, rows.first().map(|(r, _)| *r))?;
        let peer_glue = self.handle(&peer)?.glue()?;
        let started = Instant::now();
        loop {
            let (local, theirs) =
                tokio::join!(glue.image_status(image), peer_glue.image_status(image));
            let local = local?;
            if reconcile::earlier_attempt().is_some() && local.is_primary() {
                return Ok(settled_image(&action, site, image, &peer, "primary"));
            }
            let theirs = theirs.map_err(|e| {
                DrError::guard(
                    &action,
                    format!("{peer}'s copy cannot be read ({e}), so drbook cannot rule out that it is still primary"),
                    format!(
                        "an image-level promote needs both sides; if {peer} is lost, fail over with promote(<DR cluster>) instead"
                    ),
                )
            })?;
            match guards::promote_image_ready(&action, site, &peer, image, &local, &theirs)? {
                PromoteImage::Ready => break,
                PromoteImage::NotYet(why) if started.elapsed() >= self.waits.settle => {
                    return Err(DrError::guard(
                        &action,
                        why,
                        format!(
                            "wait until {site} shows `remote image demoted` or `remote image is not primary` (image_status({}, {})), then retry",
                            lit(site),
                            lit(image)
                        ),
                    ));
                }
                PromoteImage::NotYet(_) => tokio::time::sleep(self.waits.poll).await,
            }
        }
        tracing::info!(site, image, "{action}");
        let sent = glue.promote(image).await;
        let found = self
            .after_image_mutation(site, image, sent, &action, MirrorSide::is_primary)
            .await?;
        Ok(Outcome {
            action,
            site: site.to_string(),
            message: format!("primary on {site}; {peer}'s copy now replays from it (no full copy)"),
            detail: json!({"image": image, "peer": peer, "now": found}),
        })
    }

    /// Flags `site`'s copy of an image for a full re-copy from the peer (Glue
    /// `PUT /mirror/image/resync`): the repair for a split-brain copy. Whatever only this copy
    /// holds is discarded.
    ///
    /// Guards: the image is not primary on `site`; the peer's copy is primary; the VM using it
    /// is stopped. The outcome says how much will be copied.
    pub async fn resync_image(&self, site: &str, image: &str) -> Result<Outcome, DrError> {
        let action = format!("resync image {image} on {site}");
        let ImageAt {
            glue,
            local,
            peer,
            peer_own,
            vm,
        } = self.image_at(site, image).await?;
        guards::resync_image_ready(
            &action,
            site,
            image,
            &local,
            peer_own.as_ref(),
            vm_ref(vm.as_ref()),
        )?;
        let bytes = self.image_size(&peer, image).await;
        let bytes = match bytes {
            Some(b) => Some(b),
            None => self.image_size(site, image).await,
        };
        tracing::info!(site, image, "{action}");
        let sent = glue.resync(image).await;
        let found = self
            .after_image_mutation(site, image, sent, &action, |st| {
                st.is_resync_requested() || st.replay_detail().is_some() || st.is_status_not_found()
            })
            .await?;
        let copied = bytes.map_or_else(|| "the whole image (size unknown)".to_string(), gib);
        Ok(Outcome {
            action,
            site: site.to_string(),
            message: format!(
                "flagged: {copied} will be copied in full from {peer}; watch it with mirror_status or image_status"
            ),
            detail: json!({"image": image, "peer": peer, "bytes_to_copy": bytes, "now": found}),
        })
    }

    /// What the demote and resync guards need about one image on one site.
    async fn image_at(&self, site: &str, image: &str) -> Result<ImageAt<'_>, DrError> {
        let h = self.handle(site)?;
        let glue = h.glue()?;
        let (local, map) = tokio::join!(glue.image_status(image), self.site_map(h));
        let (local, map) = (local?, map?);
        let rows = map.rows_of_image(image);
        let peer = self.peer_for(site, rows.first().map(|(r, _)| *r))?;
        let peer_own = self.peer_image(&peer, image, &local).await;
        let vm = rows.first().map(|(_, row)| {
            (
                row.vm_name.clone().unwrap_or_else(|| row.vm_id.clone()),
                row.vm_state.clone().unwrap_or_else(|| "unknown".into()),
            )
        });
        Ok(ImageAt {
            glue,
            local,
            peer,
            peer_own,
            vm,
        })
    }

    /// `rbd info`'s size of `image` on `site`, if it can be read.
    async fn image_size(&self, site: &str, image: &str) -> Option<u64> {
        let glue = self.handle(site).and_then(SiteHandle::glue).ok()?;
        glue.image_info(image).await.ok().map(|i| i.size)
    }

    /// The peer's own status of `image`, else what `local` last heard from it.
    async fn peer_image(
        &self,
        peer: &str,
        image: &str,
        local: &ImageStatus,
    ) -> Option<ImageStatus> {
        let own = match self.handle(peer).and_then(SiteHandle::glue) {
            Ok(g) => g.image_status(image).await.ok(),
            Err(_) => None,
        };
        own.or_else(|| local.peer().map(as_status))
    }

    /// After an image mutation: its status now when it succeeded; when its answer was lost,
    /// the status re-read, accepted if `done` holds, else an unknown-outcome error.
    pub(crate) async fn after_image_mutation(
        &self,
        site: &str,
        image: &str,
        sent: Result<String, crate::glue::GlueError>,
        action: &str,
        done: impl Fn(&ImageStatus) -> bool,
    ) -> Result<String, DrError> {
        let glue = self.handle(site)?.glue()?;
        match sent {
            Ok(_) => Ok(glue
                .image_status(image)
                .await
                .map_or_else(|e| format!("not re-read: {e}"), |st| describe(&st))),
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e);
                }
                match glue.image_status(image).await {
                    Ok(st) if done(&st) => Ok(describe(&st)),
                    Ok(st) => Err(DrError::OutcomeUnknown {
                        action: action.to_string(),
                        cause: e.lost_answer(),
                        found: format!("it is {} on {site}", describe(&st)),
                        advice: "a resume settles it by reading".to_string(),
                    }),
                    Err(read) => Err(DrError::OutcomeUnknown {
                        action: action.to_string(),
                        cause: e.lost_answer(),
                        found: format!("nothing (the re-read failed too: {read})"),
                        advice: format!("check health({}); a resume settles it", lit(site)),
                    }),
                }
            }
        }
    }
}

/// Bytes as GiB with one decimal.
fn gib(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / (1 << 30);
    format!("{}.{} GiB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(state: &str, description: &str) -> ImageStatus {
        serde_json::from_value(json!({"name": "img", "state": state, "description": description}))
            .unwrap()
    }

    #[test]
    fn a_snapshot_has_arrived_when_the_replica_is_idle_on_a_newer_one() {
        let before = st(
            "up+replaying",
            r#"replaying, {"local_snapshot_timestamp":100,"remote_snapshot_timestamp":100,"replay_state":"idle"}"#,
        );
        let base = baseline(&[("img", Some(&before))]);
        assert_eq!(base["img"], 100);
        assert_eq!(reached(Some(&before), 100), None);
        let copying = st(
            "up+replaying",
            r#"replaying, {"local_snapshot_timestamp":100,"remote_snapshot_timestamp":105,"replay_state":"syncing","syncing_percent":10}"#,
        );
        assert_eq!(reached(Some(&copying), 100), None);
        let arrived = st(
            "up+replaying",
            r#"replaying, {"local_snapshot_timestamp":105,"remote_snapshot_timestamp":105,"replay_state":"idle"}"#,
        );
        assert_eq!(
            reached(Some(&arrived), 100),
            DateTime::from_timestamp(105, 0)
        );
        assert_eq!(reached(None, 100), None);
        assert_eq!(baseline(&[("x", None)])["x"], 0);
    }

    #[test]
    fn sizes_in_gib() {
        assert_eq!(gib(20 << 30), "20.0 GiB");
        assert_eq!(gib((1 << 30) + (1 << 29)), "1.5 GiB");
        assert_eq!(gib(0), "0.0 GiB");
    }
}
