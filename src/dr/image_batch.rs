//! Many VMs' mirror snapshots, or many images' demotes and promotes, at once: what a
//! switchover of hundreds of VMs needs. The guards and Glue calls are those of the one-image
//! acts (`images.rs`), but each site's pool status and DR records are read once for the whole
//! batch instead of several times per image (a read of a 1,000-VM site is itself large), the
//! sends go `concurrency` at a time, and one poll loop waits for all. Every item gets its own
//! result, in input order; a refusal or failure of one never stops the others.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::time::Instant;

use super::guards::{self, PromoteImage, describe, lit, shown};
use super::images::{SiteMap, as_status, settled_image};
use super::outcome::Outcome;
use super::reconcile;
use super::site::SiteHandle;
use super::vm::pick;
use super::waits::{after_second_of, baseline, reached};
use super::{Dr, DrError};
use crate::glue::{GlueClient, GlueError, ImageStatus, MirrorSide, PoolStatus};

/// One result per item (a VM or an image), in input order.
pub type BatchResults = Vec<(String, Result<Outcome, DrError>)>;

/// Every item refused with the same reason (a read the batch needed failed: nothing sent).
fn refuse_all(
    items: &[String],
    action: impl Fn(&str) -> String,
    why: &str,
    advice: &str,
) -> BatchResults {
    items
        .iter()
        .map(|i| (i.clone(), Err(DrError::guard(action(i), why, advice))))
        .collect()
}

/// A VM of a snapshot batch once its guards passed.
struct Snapshot {
    vm: String,
    instance: String,
    images: Vec<String>,
    peer: String,
    action: String,
}

impl Dr {
    /// A mirror snapshot of each VM's images on `site` (one consistent Glue round per VM),
    /// `concurrency` at a time; each returns once the peer holds it. The guards and the
    /// settling of an earlier attempt are [`Dr::mirror_snapshot`]'s.
    pub async fn mirror_snapshots(
        &self,
        site: &str,
        vms: &[String],
        concurrency: usize,
    ) -> BatchResults {
        let action_of = |vm: &str| format!("take a mirror snapshot of {vm} on {site}");
        let (h, glue) = match self.handle(site).and_then(|h| Ok((h, h.glue()?))) {
            Ok(hg) => hg,
            Err(e) => return refuse_all(vms, action_of, &e.to_string(), "check drbook.toml"),
        };
        let (listed, map, pool) =
            tokio::join!(self.list_vms(h), self.site_map(h), glue.pool_status());
        let (listed, map, pool) = match (listed, map, pool) {
            (Ok(l), Ok(m), Ok(p)) => (l, m, p),
            (l, m, p) => {
                let why = [l.err(), m.err(), p.err().map(DrError::from)]
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return refuse_all(
                    vms,
                    action_of,
                    &format!("{site} could not be read ({why}), so nothing was sent"),
                    &format!("check health({})", lit(site)),
                );
            }
        };
        let mut results: BTreeMap<usize, Result<Outcome, DrError>> = BTreeMap::new();
        let mut planned: Vec<(usize, Snapshot)> = Vec::new();
        for (i, name) in vms.iter().enumerate() {
            let action = action_of(name);
            match self.snapshot_target(site, name, &listed, &map, action) {
                Ok(s) => planned.push((i, s)),
                Err(e) => {
                    results.insert(i, Err(e));
                }
            }
        }
        let peers: BTreeSet<String> = planned.iter().map(|(_, s)| s.peer.clone()).collect();
        let peer_pools = self.pools(&peers).await;
        // Guards per VM, on the one read of each side.
        let mut ready: Vec<(usize, Snapshot)> = Vec::new();
        for (i, s) in planned {
            let guarded = match &peer_pools[&s.peer] {
                Err(e) => Err(DrError::guard(
                    &s.action,
                    format!(
                        "{}'s Glue cannot be read ({e}), so the snapshot could not be seen arriving",
                        s.peer
                    ),
                    format!("check health({})", lit(&s.peer)),
                )),
                Ok(peer_pool) => guards::snapshot_possible(
                    &s.action,
                    site,
                    &s.peer,
                    &s.images
                        .iter()
                        .map(|i| (i.as_str(), pool.image(i), peer_pool.image(i)))
                        .collect::<Vec<_>>(),
                ),
            };
            match guarded {
                Ok(()) => ready.push((i, s)),
                Err(e) => {
                    results.insert(i, Err(e));
                }
            }
        }
        let peer_pool = |peer: &str| peer_pools[peer].as_ref().ok();
        if let Some(since) = reconcile::earlier_attempt() {
            // As for one VM: a snapshot that reached the peer after the intent's second is
            // the one asked for (or newer); only the others are taken now.
            ready.retain(|(i, s)| {
                let arrived: BTreeMap<&String, DateTime<Utc>> = s
                    .images
                    .iter()
                    .filter_map(|im| {
                        Some((im, reached(peer_pool(&s.peer)?.image(im), since.timestamp())?))
                    })
                    .collect();
                if arrived.len() < s.images.len() {
                    return true;
                }
                results.insert(
                    *i,
                    Ok(Outcome {
                        action: s.action.clone(),
                        site: site.to_string(),
                        message: format!(
                            "the snapshot of {} reached {} (the earlier attempt's; not taken again)",
                            s.vm, s.peer
                        ),
                        detail: json!({"vm": s.vm, "images": s.images, "peer": s.peer, "reached": arrived}),
                    }),
                );
                false
            });
        }
        let base: BTreeMap<String, i64> = ready
            .iter()
            .flat_map(|(_, s)| {
                let pool = peer_pool(&s.peer);
                baseline(
                    &s.images
                        .iter()
                        .map(|i| (i.as_str(), pool.and_then(|p| p.image(i))))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        after_second_of(&base).await;
        // The sends, `concurrency` at a time; a lost answer is looked for, never sent again.
        let sent: Vec<(usize, Snapshot, Option<DrError>)> = stream::iter(ready)
            .map(|(i, s)| async move {
                tracing::info!(site, vm = %s.vm, "{}", s.action);
                let refs: Vec<&str> = s.images.iter().map(String::as_str).collect();
                let r = glue.mirror_snapshot(&s.instance, &refs).await;
                (i, s, r.err().map(DrError::from))
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut waiting: Vec<(usize, Snapshot, Option<DrError>)> = Vec::new();
        for (i, s, e) in sent {
            match e {
                Some(e) if !e.outcome_unknown() => {
                    results.insert(i, Err(e));
                }
                lost => waiting.push((i, s, lost)),
            }
        }
        for (i, r) in self.wait_snapshots(site, waiting, &base).await {
            results.insert(i, r);
        }
        vms.iter().cloned().zip(results.into_values()).collect()
    }

    /// A VM of a snapshot batch resolved against the batch's one read of `site`.
    fn snapshot_target(
        &self,
        site: &str,
        name: &str,
        listed: &[crate::mold::types::VirtualMachine],
        map: &SiteMap,
        action: String,
    ) -> Result<Snapshot, DrError> {
        let target = pick(site, name, listed)?;
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
        Ok(Snapshot {
            vm: target.name.clone(),
            instance: target
                .instancename
                .clone()
                .unwrap_or_else(|| target.name.clone()),
            images: rows.iter().map(|(_, r)| r.volume_path.clone()).collect(),
            peer: self.peer_for(site, Some(record))?,
            action,
        })
    }

    /// Each site's pool status, read concurrently; a failed read kept as its text.
    async fn pools(
        &self,
        sites: &BTreeSet<String>,
    ) -> BTreeMap<String, Result<PoolStatus, String>> {
        let reads = sites.iter().map(|s| async move {
            let read = match self.handle(s).and_then(SiteHandle::glue) {
                Ok(g) => g.pool_status().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (s.clone(), read)
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    /// One poll loop over the peers until every sent snapshot arrived: `waits.replication`
    /// for those Glue acknowledged, `waits.settle` for a lost answer (then it is unknown, as
    /// for one VM).
    async fn wait_snapshots(
        &self,
        site: &str,
        mut waiting: Vec<(usize, Snapshot, Option<DrError>)>,
        base: &BTreeMap<String, i64>,
    ) -> Vec<(usize, Result<Outcome, DrError>)> {
        let started = Instant::now();
        let mut out = Vec::new();
        let base_of = |image: &str| base.get(image).copied().unwrap_or(0);
        while !waiting.is_empty() {
            let peers: BTreeSet<String> = waiting.iter().map(|(_, s, _)| s.peer.clone()).collect();
            let pools = self.pools(&peers).await;
            let elapsed = started.elapsed();
            let mut still = Vec::new();
            let mut pending_text = Vec::new();
            for (i, s, lost) in waiting {
                let pool = pools[&s.peer].as_ref().ok();
                let arrived: BTreeMap<&String, DateTime<Utc>> = s
                    .images
                    .iter()
                    .filter_map(|im| Some((im, reached(pool?.image(im), base_of(im))?)))
                    .collect();
                if arrived.len() == s.images.len() {
                    out.push((
                        i,
                        Ok(Outcome {
                            action: s.action.clone(),
                            site: site.to_string(),
                            message: format!("the snapshot of {} reached {}", s.vm, s.peer),
                            detail: json!({"vm": s.vm, "images": s.images, "peer": s.peer, "reached": arrived}),
                        }),
                    ));
                    continue;
                }
                let missing: Vec<String> = s
                    .images
                    .iter()
                    .filter(|im| !arrived.contains_key(im))
                    .map(|im| match &pools[&s.peer] {
                        Ok(p) => format!("{im} on {} is {}", s.peer, shown(p.image(im))),
                        Err(e) => format!("{}'s Glue: {e}", s.peer),
                    })
                    .collect();
                let limit = if lost.is_some() {
                    self.waits.settle
                } else {
                    self.waits.replication
                };
                if elapsed >= limit {
                    let e = match lost {
                        Some(e) => DrError::OutcomeUnknown {
                            action: format!("{} (Glue mirror snapshot)", s.action),
                            cause: e.lost_answer(),
                            found: format!(
                                "not arrived after {}s: {}",
                                elapsed.as_secs(),
                                missing.join("; ")
                            ),
                            advice: "run mirror_snapshot again: an extra snapshot is harmless"
                                .into(),
                        },
                        None => DrError::Timeout {
                            what: format!(
                                "the snapshot ({}) to reach {} — it was requested and acknowledged, but until it arrives treat the replica as older than it",
                                s.action, s.peer
                            ),
                            waited: elapsed,
                            pending: missing,
                        },
                    };
                    out.push((i, Err(e)));
                    continue;
                }
                pending_text.extend(missing);
                still.push((i, s, lost));
            }
            waiting = still;
            if !waiting.is_empty() {
                self.report_wait(
                    &format!("{} mirror snapshot(s) to arrive", waiting.len()),
                    &pending_text,
                    started,
                    self.waits.replication,
                );
                tokio::time::sleep(self.waits.poll).await;
            }
        }
        out
    }

    /// Demotes each image on `site`, `concurrency` at a time, with [`Dr::demote_image`]'s
    /// guards judged on one read of each side; the images whose copy on the peer is still
    /// taking a delta are waited for together first.
    pub async fn demote_images(
        &self,
        site: &str,
        images: &[String],
        concurrency: usize,
    ) -> BatchResults {
        let action_of = |image: &str| format!("demote image {image} on {site}");
        let (h, glue) = match self.handle(site).and_then(|h| Ok((h, h.glue()?))) {
            Ok(hg) => hg,
            Err(e) => return refuse_all(images, action_of, &e.to_string(), "check drbook.toml"),
        };
        let (pool, map) = tokio::join!(glue.pool_status(), self.site_map(h));
        let (pool, map) = match (pool, map) {
            (Ok(p), Ok(m)) => (p, m),
            (p, m) => {
                let why = [p.err().map(DrError::from), m.err()]
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                return refuse_all(
                    images,
                    action_of,
                    &format!("{site} could not be read ({why}), so nothing was sent"),
                    &format!("check health({})", lit(site)),
                );
            }
        };
        let mut results: BTreeMap<usize, Result<Outcome, DrError>> = BTreeMap::new();
        let mut each: Vec<(usize, String, String)> = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let rows = map.rows_of_image(image);
            match self.peer_for(site, rows.first().map(|(r, _)| *r)) {
                Ok(peer) => each.push((i, image.clone(), peer)),
                Err(e) => {
                    results.insert(i, Err(e));
                }
            }
        }
        let peers: BTreeSet<String> = each.iter().map(|(_, _, p)| p.clone()).collect();
        let mut peer_pools = self.pools(&peers).await;
        // A delta on its way to the peer is let land first (as for one image), all at once.
        for peer in &peers {
            let copying: Vec<String> = each
                .iter()
                .filter(|(_, image, p)| {
                    p == peer
                        && guards::copying(Self::peer_view(&peer_pools, p, image, &pool).as_ref())
                })
                .map(|(_, image, _)| image.clone())
                .collect();
            if !copying.is_empty() {
                let _ = self
                    .wait_images(
                        peer,
                        &copying,
                        &format!("{} image(s) to finish copying to {peer}", copying.len()),
                        self.waits.settle,
                        |_, st| !guards::copying(st),
                    )
                    .await;
                peer_pools.extend(self.pools(&BTreeSet::from([peer.clone()])).await);
            }
        }
        let mut to_send: Vec<(usize, String, String, String)> = Vec::new();
        for (i, image, peer) in each {
            let action = action_of(&image);
            let Some(local) = pool.image(&image) else {
                results.insert(i, Err(not_in_pool(&action, site, &image)));
                continue;
            };
            if reconcile::earlier_attempt().is_some() && !local.is_primary() {
                results.insert(
                    i,
                    Ok(settled_image(&action, site, &image, &peer, "not primary")),
                );
                continue;
            }
            let rows = map.rows_of_image(&image);
            let vm = rows.first().map(|(_, row)| {
                (
                    row.vm_name.clone().unwrap_or_else(|| row.vm_id.clone()),
                    row.vm_state.clone().unwrap_or_else(|| "unknown".into()),
                )
            });
            let peer_own = Self::peer_view(&peer_pools, &peer, &image, &pool);
            match guards::demote_image_ready(
                &action,
                site,
                &image,
                local,
                vm.as_ref().map(|(n, s)| (n.as_str(), s.as_str())),
                peer_own.as_ref(),
            ) {
                Ok(()) => to_send.push((i, image, peer, action)),
                Err(e) => {
                    results.insert(i, Err(e));
                }
            }
        }
        let sent = self
            .send_all(glue, to_send, concurrency, |g, image| {
                Box::pin(async move { g.demote(&image).await })
            })
            .await;
        for (i, r) in self
            .settle_sent(site, glue, sent, |st| !st.is_primary(), |peer, image| {
                format!(
                    "demoted; next: promote_image({}, {}) once {peer} has replayed the demotion (it waits for that)",
                    lit(peer),
                    lit(image)
                )
            })
            .await
        {
            results.insert(i, r);
        }
        images.iter().cloned().zip(results.into_values()).collect()
    }

    /// The peer's own status of `image` from its pool read, else what `pool` (this site)
    /// last heard from it.
    fn peer_view(
        peer_pools: &BTreeMap<String, Result<PoolStatus, String>>,
        peer: &str,
        image: &str,
        pool: &PoolStatus,
    ) -> Option<ImageStatus> {
        peer_pools
            .get(peer)
            .and_then(|p| p.as_ref().ok())
            .and_then(|p| p.image(image))
            .cloned()
            .or_else(|| pool.image(image).and_then(ImageStatus::peer).map(as_status))
    }

    /// Promotes each image on `site` once the peer's demotion of it has replayed there, with
    /// [`Dr::promote_image`]'s guards on both sides re-read each round (one pool read per
    /// side per round for the whole batch); an image is sent as soon as it is ready.
    pub async fn promote_images(
        &self,
        site: &str,
        images: &[String],
        concurrency: usize,
    ) -> BatchResults {
        let action_of = |image: &str| format!("promote image {image} on {site}");
        let (h, glue) = match self.handle(site).and_then(|h| Ok((h, h.glue()?))) {
            Ok(hg) => hg,
            Err(e) => return refuse_all(images, action_of, &e.to_string(), "check drbook.toml"),
        };
        let map = match self.site_map(h).await {
            Ok(m) => m,
            Err(e) => {
                return refuse_all(
                    images,
                    action_of,
                    &format!("{site} could not be read ({e}), so nothing was sent"),
                    &format!("check health({})", lit(site)),
                );
            }
        };
        let mut results: BTreeMap<usize, Result<Outcome, DrError>> = BTreeMap::new();
        let mut pending: Vec<(usize, String, String)> = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let rows = map.rows_of_image(image);
            match self.peer_for(site, rows.first().map(|(r, _)| *r)) {
                Ok(peer) => pending.push((i, image.clone(), peer)),
                Err(e) => {
                    results.insert(i, Err(e));
                }
            }
        }
        let peers: BTreeSet<String> = pending.iter().map(|(_, _, p)| p.clone()).collect();
        let started = Instant::now();
        let mut sent = Vec::new();
        while !pending.is_empty() {
            let (pool, peer_pools) = tokio::join!(glue.pool_status(), self.pools(&peers));
            let mut ready = Vec::new();
            let mut still = Vec::new();
            for (i, image, peer) in pending {
                let action = action_of(&image);
                let local = match &pool {
                    Ok(p) => {
                        let Some(st) = p.image(&image) else {
                            results.insert(i, Err(not_in_pool(&action, site, &image)));
                            continue;
                        };
                        st
                    }
                    Err(e) => {
                        results.insert(
                            i,
                            Err(DrError::guard(
                                &action,
                                format!("{site}'s Glue cannot be read ({e}), so nothing was sent"),
                                format!("check health({})", lit(site)),
                            )),
                        );
                        continue;
                    }
                };
                if reconcile::earlier_attempt().is_some() && local.is_primary() {
                    results.insert(
                        i,
                        Ok(settled_image(&action, site, &image, &peer, "primary")),
                    );
                    continue;
                }
                let theirs = match &peer_pools[&peer] {
                    Ok(p) => {
                        let Some(st) = p.image(&image) else {
                            results.insert(i, Err(not_in_pool(&action, &peer, &image)));
                            continue;
                        };
                        st.clone()
                    }
                    Err(e) => {
                        results.insert(
                            i,
                            Err(DrError::guard(
                                &action,
                                format!("{peer}'s copy cannot be read ({e}), so drbook cannot rule out that it is still primary"),
                                "an image-level promote needs both sides; if the peer is lost, fail over with promote(<DR cluster>) instead",
                            )),
                        );
                        continue;
                    }
                };
                match guards::promote_image_ready(&action, site, &peer, &image, local, &theirs) {
                    Ok(PromoteImage::Ready) => ready.push((i, image, peer, action)),
                    Ok(PromoteImage::NotYet(why)) if started.elapsed() >= self.waits.settle => {
                        results.insert(
                            i,
                            Err(DrError::guard(
                                &action,
                                why,
                                format!(
                                    "wait until {site} shows `remote image demoted` or `remote image is not primary` (image_status({}, {})), then retry",
                                    lit(site),
                                    lit(&image)
                                ),
                            )),
                        );
                    }
                    Ok(PromoteImage::NotYet(_)) => still.push((i, image, peer)),
                    Err(e) => {
                        results.insert(i, Err(e));
                    }
                }
            }
            sent.extend(
                self.send_all(glue, ready, concurrency, |g, image| {
                    Box::pin(async move { g.promote(&image).await })
                })
                .await,
            );
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(self.waits.poll).await;
            }
        }
        for (i, r) in self
            .settle_sent(site, glue, sent, MirrorSide::is_primary, |peer, _| {
                format!("primary on {site}; {peer}'s copy now replays from it (no full copy)")
            })
            .await
        {
            results.insert(i, r);
        }
        images.iter().cloned().zip(results.into_values()).collect()
    }

    /// Sends one image mutation per item, `concurrency` at a time.
    async fn send_all<'g>(
        &self,
        glue: &'g GlueClient,
        items: Vec<(usize, String, String, String)>,
        concurrency: usize,
        send: impl Fn(
            &'g GlueClient,
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<String, GlueError>> + Send + 'g>,
        >,
    ) -> Vec<Sent> {
        stream::iter(items)
            .map(|(i, image, peer, action)| {
                tracing::info!(image, "{action}");
                let call = send(glue, image.clone());
                async move {
                    Sent {
                        index: i,
                        image,
                        peer,
                        action,
                        answer: call.await,
                    }
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    /// The sent mutations' outcomes from one re-read of `site`'s pool: an acknowledged one
    /// says what the image is now; a lost answer is accepted only when `done` holds, else
    /// it is an unknown outcome (never sent again).
    async fn settle_sent(
        &self,
        site: &str,
        glue: &GlueClient,
        sent: Vec<Sent>,
        done: impl Fn(&ImageStatus) -> bool,
        message: impl Fn(&str, &str) -> String,
    ) -> Vec<(usize, Result<Outcome, DrError>)> {
        if sent.is_empty() {
            return Vec::new();
        }
        let pool = glue.pool_status().await;
        sent.into_iter()
            .map(|s| {
                let now = pool.as_ref().map(|p| p.image(&s.image));
                let r = match s.answer {
                    Ok(_) => Ok(now.map_or_else(
                        |e| format!("not re-read: {e}"),
                        |st| st.map_or_else(|| "not in the pool status".into(), describe),
                    )),
                    Err(e) => {
                        let e = DrError::from(e);
                        if e.outcome_unknown() {
                            match now {
                                Ok(Some(st)) if done(st) => Ok(describe(st)),
                                Ok(st) => Err(DrError::OutcomeUnknown {
                                    action: s.action.clone(),
                                    cause: e.lost_answer(),
                                    found: format!("it is {} on {site}", shown(st)),
                                    advice: "a resume settles it by reading".to_string(),
                                }),
                                Err(read) => Err(DrError::OutcomeUnknown {
                                    action: s.action.clone(),
                                    cause: e.lost_answer(),
                                    found: format!("nothing (the re-read failed too: {read})"),
                                    advice: format!(
                                        "check health({}); a resume settles it",
                                        lit(site)
                                    ),
                                }),
                            }
                        } else {
                            Err(e)
                        }
                    }
                };
                (
                    s.index,
                    r.map(|found| Outcome {
                        message: message(&s.peer, &s.image),
                        action: s.action,
                        site: site.to_string(),
                        detail: json!({"image": s.image, "peer": s.peer, "now": found}),
                    }),
                )
            })
            .collect()
    }
}

/// One image mutation sent, with Glue's answer.
struct Sent {
    index: usize,
    image: String,
    peer: String,
    action: String,
    answer: Result<String, GlueError>,
}

fn not_in_pool(action: &str, site: &str, image: &str) -> DrError {
    DrError::guard(
        action,
        format!("image {image} is not in {site}'s mirroring pool status"),
        format!("look at image_status({}, {})", lit(site), lit(image)),
    )
}
