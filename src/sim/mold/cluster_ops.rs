//! The cluster-level DR operations on the DR site (spec §3.8), each an async job over the
//! record's mapped volumes: promote (failover), resync and demote (failback), clear (the
//! primary lost for good).

use std::time::Instant;

use serde_json::json;

use super::command::{Command, Ctx, Kind};
use super::glue_reads::{check_synced, mold_step, peers_idle, status};
use super::records::record_id;
use crate::sim::image_view::ImageView;
use crate::sim::world::{ApiError, ApiResult, DrRecord, JobWork, Step, World};

pub static PROMOTE: Command = Command {
    name: "promoteDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.PromoteDisasterRecoveryClusterCmd",
        submit: |w, ctx| cluster_job(w, ctx, promote_cluster),
    },
    event: Some("DR.PROMOTE"),
};

/// Its event is what the start guard looks for (spec §5.6).
pub static DEMOTE: Command = Command {
    name: "demoteDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.DemoteDisasterRecoveryClusterCmd",
        submit: demote_cluster_job,
    },
    event: Some("DR.DEMOTE"),
};

pub static RESYNC: Command = Command {
    name: "resyncDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.ResyncDisasterRecoveryClusterCmd",
        submit: resync_cluster_job,
    },
    event: Some("DR.RESYNC"),
};

pub static CLEAR: Command = Command {
    name: "clearDisasterRecoveryCluster",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.admin.dr.ClearDisasterRecoveryClusterCmd",
        submit: |w, ctx| cluster_job(w, ctx, clear_cluster),
    },
    event: Some("DR.CLEAR"),
};

pub static COMMANDS: &[&Command] = &[&PROMOTE, &DEMOTE, &RESYNC, &CLEAR];

/// The description of a completed demote's event; the start guard needs it.
pub const DEMOTE_DONE: &str = "Successfully completed demoting disaster recovery cluster";

type ClusterWork = fn(&mut World, &str, &DrRecord, Instant) -> Step;

/// Submits a cluster operation as a job; the work runs after the site's DR job time.
fn cluster_job(world: &mut World, ctx: &Ctx<'_>, work: ClusterWork) -> ApiResult {
    let id = ctx.params.required(ctx.name(), "id")?.to_string();
    let record = record_id(world, &ctx.site, &id)?;
    let site = ctx.site.clone();
    let delay = world.config.timing.dr_job;
    let jobid = ctx.submit_job(
        world,
        Some(("DisasterRecoveryCluster", id.clone())),
        delay,
        Box::new(move |w: &mut World, now| {
            // Re-read the record: rows may have changed while the job waited.
            let record = w.site(&site).record(&record.id).cloned().unwrap_or(record);
            work(w, &site, &record, now)
        }),
    );
    Ok(json!({"jobid": jobid}))
}

/// The names of the mapped VMs of a record that are not `Stopped` on `site`.
fn running_vms(w: &World, site: &str, vm_ids: impl Iterator<Item = String>) -> Vec<String> {
    let s = w.site(site);
    vm_ids
        .filter_map(|id| s.vm(&id).map(|v| (v.name.clone(), v.state.clone())))
        .filter(|(_, state)| state != "Stopped")
        .map(|(n, _)| n)
        .collect()
}

fn promote_cluster(w: &mut World, site: &str, record: &DrRecord, now: Instant) -> Step {
    Step::Done((|| {
        let local_vms = record.map.iter().map(|m| m.vm_id.clone());
        if let Some(name) = running_vms(w, site, local_vms).first() {
            return Err(ApiError::internal(format!(
                "Forced promote functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : {name}"
            )));
        }
        if record.map.is_empty() {
            return Err(ApiError::internal("There are no images being mirrored."));
        }
        let mut promoted = 0;
        for m in &record.map {
            let Some(st) = status(w, now, site, &m.vol_path) else {
                return Err(ApiError::internal(
                    "Failed to request mirror image status Glue-API.",
                ));
            };
            if st.promote_not_needed() {
                continue;
            }
            if w.storage.promote(now, site, &m.vol_path, true).is_err() {
                return Err(ApiError::internal(format!(
                    "Failed to promote image, For volumes with a path of {}, You must manually promote local images and resync remote image, add a local image snapshots schedule.",
                    m.vol_path
                )));
            }
            promoted += 1;
        }
        if promoted == 0 {
            return Err(ApiError::internal(
                "Promote cannot be executed because the current image is in ready or force promote.",
            ));
        }
        PROMOTE.record_event(
            w,
            site,
            "Completed",
            "Successfully completed promoting disaster recovery cluster",
        );
        Ok(json!({"success": true}))
    })())
}

/// The preconditions resync and demote share (§3.8): VMs stopped on both sites, the peer
/// reachable, every mapped peer VM present.
fn check_both_sites_stopped(
    w: &World,
    site: &str,
    record: &DrRecord,
    verb: &str,
) -> Result<(), ApiError> {
    let local_vms = record.map.iter().map(|m| m.vm_id.clone());
    if let Some(name) = running_vms(w, site, local_vms).first() {
        return Err(ApiError::internal(format!(
            "{verb} functions cannot be executed because there is a running disaster recovery secondary cluster virtual machine : {name}"
        )));
    }
    if !w.peer_reachable(site) {
        return Err(ApiError::internal(format!(
            "{verb} functions cannot be executed because primary cluster Mold failed to request API."
        )));
    }
    let peer = w.site(&w.peer_of(site));
    for m in &record.map {
        match peer.vm_by_name(&m.mirror_vm_name) {
            None => {
                return Err(ApiError::internal(
                    "JSONObject[\"virtualmachine\"] not found.",
                ));
            }
            Some(vm) if vm.state != "Stopped" => {
                return Err(ApiError::internal(format!(
                    "{verb} functions cannot be executed because there is a running disaster recovery primary cluster virtual machine : {}",
                    vm.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn resync_cluster_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    cluster_job(world, ctx, |w, site, record, _now| {
        if let Err(e) = check_both_sites_stopped(w, site, record, "Resync") {
            return Step::Done(Err(e));
        }
        // Glue restarts rbd-mirror, then Mold sleeps 180 s (scaled).
        let record = record.clone();
        let site = site.to_string();
        let pause = mold_step(w);
        Step::Later(
            pause,
            Box::new(move |w: &mut World, now| {
                let peer = w.peer_of(&site);
                let mut flagged = 0;
                for m in &record.map {
                    let local = status(w, now, &site, &m.vol_path);
                    let both_primary = local.as_ref().is_some_and(ImageView::both_primary);
                    if !both_primary {
                        // Mold skips it silently; the simulator says what it read.
                        tracing::info!(
                            site = %site,
                            image = %m.vol_path,
                            status = ?local,
                            "resync skips an image that is not primary on both sites"
                        );
                        continue;
                    }
                    let _ = w.storage.demote(now, &peer, &m.vol_path);
                    if w.storage.resync(now, &peer, &m.vol_path).is_err() {
                        return Step::Done(Err(ApiError::internal(format!(
                            "Failed to resync primary cluster image, For volumes with a path of {}, You must manually resync primary cluster image.",
                            m.vol_path
                        ))));
                    }
                    flagged += 1;
                }
                if flagged == 0 {
                    return Step::Done(Err(ApiError::internal(
                        "Resync cannot be executed because the current image is not force promoting state.",
                    )));
                }
                // Then Mold sleeps 300 s (scaled) before it reports success.
                let pause = mold_step(w);
                Step::Later(
                    pause,
                    Box::new(move |w: &mut World, _| {
                        RESYNC.record_event(
                            w,
                            &site,
                            "Completed",
                            "Successfully completed resyncing disaster recovery cluster",
                        );
                        Step::Done(Ok(json!({"success": true})))
                    }),
                )
            }),
        )
    })
}

fn demote_cluster_job(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    DEMOTE.record_event(
        world,
        &ctx.site,
        "Started",
        "demoting disaster recovery cluster",
    );
    cluster_job(world, ctx, |w, site, record, now| {
        let fail = |w: &mut World, e: ApiError| {
            DEMOTE.record_event(
                w,
                site,
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            Step::Done(Err(e))
        };
        if let Err(e) = check_both_sites_stopped(w, site, record, "Forced demote") {
            return fail(w, e);
        }
        for m in &record.map {
            let st = status(w, now, site, &m.vol_path);
            if let Err(e) = check_synced(st.as_ref(), &m.vol_path, "Forced demote") {
                return fail(w, e);
            }
        }
        // The final snapshot of every VM's volumes, then wait until the peer is idle.
        for m in &record.map {
            let _ = w.storage.mirror_snapshot(now, site, &m.vol_path);
        }
        let record = record.clone();
        let site = site.to_string();
        Step::Later(mold_step(w), wait_idle_then_swap(site, record, 100))
    })
}

/// Polls until every peer image is idle (≤ `rounds`; a timeout is not an error), then swaps
/// roles volume by volume: demote here, promote the peer, resync here.
fn wait_idle_then_swap(site: String, record: DrRecord, rounds: u32) -> JobWork {
    Box::new(move |w: &mut World, now| {
        let idle = peers_idle(w, now, &site, &record.map);
        if !idle && rounds > 1 {
            let pause = mold_step(w);
            return Step::Later(pause, wait_idle_then_swap(site, record, rounds - 1));
        }
        let mut demoted = Vec::new();
        for m in &record.map {
            if w.storage.demote(now, &site, &m.vol_path).is_ok() {
                demoted.push(m.vol_path.clone());
            }
        }
        if demoted.is_empty() {
            DEMOTE.record_event(
                w,
                &site,
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            return Step::Done(Err(ApiError::internal(
                "Demote cannot be executed because the current image is in Syncing state.",
            )));
        }
        // Mold sleeps 10 s before each promote of the peer: the demotion propagates.
        let pause = mold_step(w);
        Step::Later(pause, promote_peer_then_resync(site, demoted, 100))
    })
}

fn promote_peer_then_resync(site: String, images: Vec<String>, tries: u32) -> JobWork {
    Box::new(move |w: &mut World, now| {
        let peer = w.peer_of(&site);
        let mut left = Vec::new();
        for img in &images {
            let promoted =
                w.peer_reachable(&site) && w.storage.promote(now, &peer, img, true).is_ok();
            if promoted {
                let _ = w.storage.resync(now, &site, img);
            } else {
                left.push(img.clone());
            }
        }
        if left.is_empty() {
            DEMOTE.record_event(w, &site, "Completed", DEMOTE_DONE);
            return Step::Done(Ok(json!({"success": true})));
        }
        if tries <= 1 {
            DEMOTE.record_event(
                w,
                &site,
                "Completed",
                "Error while demoting disaster recovery cluster",
            );
            return Step::Done(Err(ApiError::internal(format!(
                "Failed to promote remote image, For volumes with a path of {}, You must manually promote remote images and resync local image, add a remote image snapshots schedule.",
                left[0]
            ))));
        }
        let pause = mold_step(w);
        Step::Later(pause, promote_peer_then_resync(site, left, tries - 1))
    })
}

fn clear_cluster(w: &mut World, site: &str, record: &DrRecord, now: Instant) -> Step {
    for m in &record.map {
        if w.storage.disable_mirroring(now, site, &m.vol_path).is_err() {
            return Step::Done(Err(ApiError::internal(format!(
                "Clear cannot be executed because the current image failed to disable mirroring image. volume path : {}",
                m.vol_path
            ))));
        }
    }
    // DELETE /mirror/garbage: the peer, its key, pool mirroring and MOLD-DR go, locally;
    // the job's result is that call's (a JSON string).
    if let Err(e) = w.glue_garbage(now, site) {
        return Step::Done(Err(ApiError::internal(format!(
            "Failed to clear disaster recovery cluster ID: {} ({})",
            record.internal_id,
            e.output.lines().last().unwrap_or_default()
        ))));
    }
    CLEAR.record_event(
        w,
        site,
        "Completed",
        "Successfully completed clearing disaster recovery cluster",
    );
    Step::Done(Ok(json!("")))
}

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, dr_class, rows};
    use super::*;

    #[test]
    fn the_cluster_operations_as_the_spec_lists_them() {
        // Spec §3.0: all four are async jobs with their own event.
        assert_eq!(
            rows(COMMANDS),
            [
                (
                    "promoteDisasterRecoveryCluster",
                    Answer::Async,
                    Some("DR.PROMOTE")
                ),
                (
                    "demoteDisasterRecoveryCluster",
                    Answer::Async,
                    Some("DR.DEMOTE")
                ),
                (
                    "resyncDisasterRecoveryCluster",
                    Answer::Async,
                    Some("DR.RESYNC")
                ),
                (
                    "clearDisasterRecoveryCluster",
                    Answer::Async,
                    Some("DR.CLEAR")
                ),
            ]
        );
    }

    #[test]
    fn cluster_jobs_carry_the_dr_plugin_s_classes() {
        for c in COMMANDS {
            assert_eq!(c.job_class(), Some(dr_class(c.name).as_str()), "{}", c.name);
        }
    }
}
