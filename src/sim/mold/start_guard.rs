//! Mold's guards on a VM start while the DR service is on (spec §5.6): after a forced demote
//! the DR site's mirrored VMs wait for it to complete and for the images to sync, and no VM
//! starts on replica images.

use std::time::Instant;

use chrono::Local;

use super::cluster_ops::{DEMOTE, DEMOTE_DONE};
use super::glue_reads::{peer_desc, status};
use crate::sim::world::World;

/// Whether Mold lets `vm_id` start on `site`; the error is Mold's text.
pub fn start_guard(w: &mut World, site: &str, vm_id: &str, now: Instant) -> Result<(), String> {
    let s = w.site(site);
    let under_primary_record = s
        .dr_records
        .iter()
        .any(|r| r.cluster_type == "primary" && r.map.iter().any(|m| m.vm_id == vm_id));
    let today = Local::now().date_naive();
    let demote_events: Vec<_> = s
        .events
        .iter()
        .filter(|e| Some(e.kind.as_str()) == DEMOTE.event && e.at.date_naive() == today)
        .cloned()
        .collect();
    let images: Vec<String> = s.volumes_of(vm_id).map(|v| v.path.clone()).collect();
    if under_primary_record && !demote_events.is_empty() {
        let completed = demote_events
            .iter()
            .any(|e| e.state == "Completed" && e.description == DEMOTE_DONE);
        if !completed {
            return Err(
                "The virtual machine cannot be started because the forced demote is not completed."
                    .into(),
            );
        }
        for img in &images {
            if let Some(st) = status(w, now, site, img) {
                let (peer_state, peer_desc) = peer_desc(&st);
                if st.is_primary()
                    && peer_state.contains("replaying")
                    && !peer_desc.contains("idle")
                {
                    return Err("The virtual machine cannot be started because the image syncing process for the mirroring virtual machine has not completed.".into());
                }
            }
        }
    }
    // Any VM whose images are replicas cannot start: Mold checks mapped VMs, and a VM on
    // non-primary images could not write anyway.
    for img in &images {
        let Some(st) = status(w, now, site, img) else {
            continue;
        };
        if !st.startable() {
            return Err("The virtual machine cannot be started because the mirroring image not ready status.".into());
        }
    }
    Ok(())
}
