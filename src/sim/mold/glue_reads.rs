//! What Mold reads of its Glue before and between Ceph steps, shared by the cluster
//! operations, the VM-level test commands and the start guard: an image's status, its peer's
//! state and description, the "synced" pre-check, whether every peer is idle, and Mold's
//! pause between two such reads.

use std::time::{Duration, Instant};

use crate::sim::image_view::ImageView;
use crate::sim::world::{ApiError, MapRow, World};

/// Glue's per-image status on a site, as Mold reads it.
pub fn status(world: &mut World, now: Instant, site: &str, image: &str) -> Option<ImageView> {
    world.image_status(now, site, image)
}

pub fn peer_desc(s: &ImageView) -> (String, String) {
    (s.peer_state.clone(), s.peer_description.clone())
}

/// Demote's pre-check of one volume (§3.8 step 3, §3.10): local primary, peer replaying and
/// idle. `prefix` is the command family's wording.
pub fn check_synced(st: Option<&ImageView>, image: &str, prefix: &str) -> Result<(), ApiError> {
    let Some(st) = st else {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because image mirror status glue-API request failed."
        )));
    };
    let (peer_state, peer_desc) = peer_desc(st);
    if !st.is_primary() || !peer_state.contains("replaying") {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because peer state is {peer_state}in volume path : {image}"
        )));
    }
    if !peer_desc.contains("idle") {
        return Err(ApiError::internal(format!(
            "{prefix} functions cannot be executed because peer state is syncing in volume path : {image}. Please try again later."
        )));
    }
    Ok(())
}

/// Whether every row's peer image shows `idle` (seen from `site`).
pub fn peers_idle(w: &mut World, now: Instant, site: &str, rows: &[MapRow]) -> bool {
    rows.iter().all(|m| {
        status(w, now, site, &m.vol_path).is_some_and(|s| s.peer_description.contains("idle"))
    })
}

/// Mold's own sleeps between Ceph steps (10 s, scaled), never shorter than the storage
/// needs to replay a demotion — Mold's real 10 s is long enough for that.
pub fn mold_step(w: &World) -> Duration {
    let st = &w.config.timing.storage;
    w.config
        .timing
        .dr_vm_command
        .max(st.demote_propagation + st.demote_settle + Duration::from_millis(20))
}
