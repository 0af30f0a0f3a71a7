//! The VM-level test commands of the mirroring test ("미러링 모의시험", spec §3.10, §6):
//! synchronous and long — Mold holds the request while it stops or starts the mirrored VM,
//! snapshots, or swaps the image roles, waiting on Ceph between rounds.

use std::time::{Duration, Instant};

use serde_json::json;

use super::command::{Command, Drill, Kind};
use super::envelope::INTERNAL;
use super::glue_reads::{check_synced, mold_step, peer_desc, peers_idle, status};
use super::standard::{finish_start, finish_stop};
use crate::sim::params::Params;
use crate::sim::server::Shared;
use crate::sim::world::{ApiError, ApiResult, MapRow, World};

impl Drill {
    /// The verb of Mold's generic failure text.
    fn verb(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::TakeSnapshot => "take snapshot",
            Self::Demote => "demote",
            Self::Promote => "promote",
        }
    }

    /// Whether the command takes `drclustername` (all but the snapshot).
    fn names_cluster(self) -> bool {
        self != Self::TakeSnapshot
    }
}

pub static STOP: Command = Command {
    name: "stopDisasterRecoveryClusterVm",
    kind: Kind::Long(Drill::Stop),
    event: Some("DR.VM.STOP"),
};

pub static START: Command = Command {
    name: "startDisasterRecoveryClusterVm",
    kind: Kind::Long(Drill::Start),
    event: Some("DR.VM.START"),
};

pub static PROMOTE: Command = Command {
    name: "promoteDisasterRecoveryClusterVm",
    kind: Kind::Long(Drill::Promote),
    event: Some("DR.VM.PROMOTE"),
};

pub static DEMOTE: Command = Command {
    name: "demoteDisasterRecoveryClusterVm",
    kind: Kind::Long(Drill::Demote),
    event: Some("DR.VM.DEMOTE"),
};

pub static TAKE_SNAPSHOT: Command = Command {
    name: "takeSnapshotDisasterRecoveryClusterVm",
    kind: Kind::Long(Drill::TakeSnapshot),
    event: Some("DR.VM.SNAPSHOT"),
};

pub static COMMANDS: &[&Command] = &[&START, &STOP, &PROMOTE, &DEMOTE, &TAKE_SNAPSHOT];

/// Runs one of the long synchronous commands. The request is held (the caller already
/// slept the command's base time); waits release the lock between rounds.
pub async fn run(
    shared: &Shared,
    site: &str,
    command: &'static Command,
    drill: Drill,
    params: &Params,
) -> ApiResult {
    let name = command.name;
    let vm_id = params.required(name, "virtualmachineid")?.to_string();
    let cluster = if drill.names_cluster() {
        Some(params.required(name, "drclustername")?.to_string())
    } else {
        None
    };
    let (rows, internal_id) = {
        let w = shared.world();
        let s = w.site(site);
        let Some(vm) = s.vm(&vm_id) else {
            return Err(ApiError::unknown_id("virtualmachineid", &vm_id));
        };
        let rows: Vec<MapRow> = s
            .dr_records
            .iter()
            .filter(|r| cluster.as_deref().is_none_or(|c| r.name == c))
            .flat_map(|r| r.map.iter().filter(|m| m.vm_id == vm_id).cloned())
            .collect();
        (rows, vm.internal_id)
    };
    let Some(first) = rows.first().cloned() else {
        return Err(ApiError::internal(INTERNAL));
    };
    let generic = |verb: &str| {
        ApiError::internal(format!(
            "Failed to {verb} disaster recovery cluster virtual machine ID: {internal_id}"
        ))
    };
    let result = match drill {
        Drill::Stop => peer_vm_power(shared, site, &first.mirror_vm_id, false).await,
        Drill::Start => {
            wait_start_ready(shared, site, &rows).await;
            peer_vm_power(shared, site, &first.mirror_vm_id, true).await
        }
        Drill::TakeSnapshot => take_snapshot(shared, site, &rows).await,
        Drill::Demote => demote_vm(shared, site, &rows).await,
        Drill::Promote => promote_vm(shared, site, &rows).await,
    };
    match result {
        Ok(true) => {
            command.record_event(
                &mut shared.world(),
                site,
                "Completed",
                "Successfully completed",
            );
            Ok(json!({"success": true}))
        }
        Ok(false) => Err(generic(drill.verb())),
        Err(e) => Err(e),
    }
}

/// The pause between Mold's rounds inside a long command.
fn round_pause(shared: &Shared) -> Duration {
    mold_step(&shared.world())
}

/// Stops or starts the mirrored VM on the peer (`stopVirtualMachine forced=true` /
/// `startVirtualMachine`, polled): true when the peer's job succeeded.
async fn peer_vm_power(
    shared: &Shared,
    site: &str,
    peer_vm: &str,
    start: bool,
) -> Result<bool, ApiError> {
    let (peer, job) = {
        let w = shared.world();
        (w.peer_of(site), w.config.timing.job)
    };
    if !shared.world().peer_reachable(site) {
        return Err(ApiError::internal(if start {
            "Failed to request StartVirtualMachine Mold-API."
        } else {
            "Failed to request StopVirtualMachine Mold-API."
        }));
    }
    let was = {
        let mut w = shared.world();
        let Some(vm) = w.site_mut(&peer).vm_mut(peer_vm) else {
            return Ok(false);
        };
        let was = vm.state.clone();
        vm.state = if start { "Starting" } else { "Stopping" }.into();
        was
    };
    tokio::time::sleep(job).await;
    let now = shared.now();
    let mut w = shared.world();
    w.advance(now);
    let done = if start {
        finish_start(&mut w, &peer, peer_vm, &was, now)
    } else {
        finish_stop(&mut w, &peer, peer_vm)
    };
    Ok(done.is_ok())
}

/// startDisasterRecoveryClusterVm's rounds: wait while the DR side's image is still the
/// primary and ours not yet idle; after the last round it starts anyway (§3.10).
async fn wait_start_ready(shared: &Shared, site: &str, rows: &[MapRow]) {
    for _ in 0..100 {
        let ready = {
            let now = shared.now();
            let mut w = shared.world();
            w.advance(now);
            rows.iter().all(|m| {
                status(&mut w, now, site, &m.vol_path).is_some_and(|st| {
                    let (_, peer_desc) = peer_desc(&st);
                    peer_desc != crate::sim::image_view::PRIMARY || st.description.contains("idle")
                })
            })
        };
        if ready {
            return;
        }
        tokio::time::sleep(round_pause(shared)).await;
    }
}
/// The VM-level pre-check every volume must pass (local primary, peer replaying and idle),
/// then `act` on each volume's image — all under one look at the world.
fn prechecked(
    shared: &Shared,
    site: &str,
    rows: &[MapRow],
    act: impl Fn(&mut World, Instant, &str),
) -> Result<(), ApiError> {
    let now = shared.now();
    let mut w = shared.world();
    w.advance(now);
    for m in rows {
        let st = status(&mut w, now, site, &m.vol_path);
        check_synced(st.as_ref(), &m.vol_path, "Simulation test")?;
    }
    for m in rows {
        act(&mut w, now, &m.vol_path);
    }
    Ok(())
}

async fn take_snapshot(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    prechecked(shared, site, rows, |w, now, image| {
        let _ = w.storage.mirror_snapshot(now, site, image);
    })?;
    // Poll until every peer is idle; a timeout still answers success.
    for _ in 0..100 {
        tokio::time::sleep(round_pause(shared)).await;
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        if peers_idle(&mut w, now, site, rows) {
            break;
        }
    }
    Ok(true)
}

/// Step 3 of the mirroring test: the DR side's images become primary, ours replicas.
async fn demote_vm(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    prechecked(shared, site, rows, |w, now, image| {
        let _ = w.storage.demote(now, site, image);
    })?;
    for m in rows {
        swap_with_retries(shared, site, &m.vol_path, SwapDirection::PeerBecomesPrimary).await?;
    }
    Ok(true)
}

/// Step 7: roles swap back — the peer is demoted, ours promoted, the peer resynced.
async fn promote_vm(shared: &Shared, site: &str, rows: &[MapRow]) -> Result<bool, ApiError> {
    {
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        let peer = w.peer_of(site);
        for m in rows {
            let _ = w.storage.demote(now, &peer, &m.vol_path);
        }
    }
    for m in rows {
        swap_with_retries(
            shared,
            site,
            &m.vol_path,
            SwapDirection::LocalBecomesPrimary,
        )
        .await?;
    }
    Ok(true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SwapDirection {
    PeerBecomesPrimary,
    LocalBecomesPrimary,
}

/// Mold's loop: sleep 10 s (scaled), promote (Glue forces it), up to 100 tries; then resync
/// the side that was demoted.
async fn swap_with_retries(
    shared: &Shared,
    site: &str,
    image: &str,
    dir: SwapDirection,
) -> Result<(), ApiError> {
    for _ in 0..100 {
        tokio::time::sleep(round_pause(shared)).await;
        let now = shared.now();
        let mut w = shared.world();
        w.advance(now);
        let peer = w.peer_of(site);
        let (promote_on, resync_on) = match dir {
            SwapDirection::PeerBecomesPrimary => (peer.clone(), site.to_string()),
            SwapDirection::LocalBecomesPrimary => (site.to_string(), peer.clone()),
        };
        let reachable = promote_on == site || w.peer_reachable(site);
        if reachable && w.storage.promote(now, &promote_on, image, true).is_ok() {
            let resynced = (resync_on == site || w.peer_reachable(site))
                && w.storage.resync(now, &resync_on, image).is_ok();
            if !resynced && dir == SwapDirection::LocalBecomesPrimary {
                return Err(ApiError::internal(format!(
                    "The image was promoted successfully, but resyncing the image failed. For volumes with a path of {image}, Manually set image resync."
                )));
            }
            return Ok(());
        }
    }
    Err(ApiError::internal(match dir {
        SwapDirection::PeerBecomesPrimary => {
            format!("Failed to promote remote image, For volumes with a path of {image}.")
        }
        SwapDirection::LocalBecomesPrimary => {
            format!("Failed to promote image, For volumes with a path of {image}.")
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::command::tests::{Answer, rows};
    use super::*;

    #[test]
    fn the_vm_level_test_commands_are_long_and_log_their_event() {
        // Spec §3.0: sync, long, DR.VM.<verb>.
        assert_eq!(
            rows(COMMANDS),
            [
                (
                    "startDisasterRecoveryClusterVm",
                    Answer::Long,
                    Some("DR.VM.START")
                ),
                (
                    "stopDisasterRecoveryClusterVm",
                    Answer::Long,
                    Some("DR.VM.STOP")
                ),
                (
                    "promoteDisasterRecoveryClusterVm",
                    Answer::Long,
                    Some("DR.VM.PROMOTE")
                ),
                (
                    "demoteDisasterRecoveryClusterVm",
                    Answer::Long,
                    Some("DR.VM.DEMOTE")
                ),
                (
                    "takeSnapshotDisasterRecoveryClusterVm",
                    Answer::Long,
                    Some("DR.VM.SNAPSHOT")
                ),
            ]
        );
    }

    #[test]
    fn each_command_does_its_own_work_and_names_its_cluster_but_the_snapshot() {
        for c in COMMANDS {
            let Kind::Long(drill) = c.kind else {
                panic!("{} is not long", c.name);
            };
            // The work is the command's own: its name says the verb of its failure text.
            let verb = drill.verb().replace(' ', "").to_lowercase();
            assert!(c.name.to_lowercase().starts_with(&verb), "{}", c.name);
            assert_eq!(
                drill.names_cluster(),
                c.name != TAKE_SNAPSHOT.name,
                "{}",
                c.name
            );
        }
    }
}
