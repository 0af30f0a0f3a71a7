//! Scenarios of spec §6, stepped through with explicit instants (never sleeping): the ledger
//! invariants first, then every status string and error text, read back through drbook's own
//! Glue decoder (`crate::glue::types`) so that the model and the client agree.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{DataMovement, ModelStorage, RbdError, StorageTiming};
use crate::glue::types::{ImageInfo, ImageStatus, MirrorSide, PoolStatus, PoolSummary};
use crate::sim::storage::Storage as _;

mod user_snapshots;

const A: &str = "site-a";
const B: &str = "site-b";
const IMG: &str = "vol-1";
const SIZE: u64 = 64 << 20;

/// A scenario: the model and the instant it has reached.
struct Run {
    model: ModelStorage,
    now: Instant,
}

impl Run {
    /// Two sites with fast timing and one 64 MiB plain image on site A.
    fn new() -> Self {
        let mut model = ModelStorage::new(A, B, StorageTiming::fast());
        model.create_image(A, IMG, SIZE).unwrap();
        Self {
            model,
            now: Instant::now(),
        }
    }

    fn timing(&self) -> StorageTiming {
        self.model.timing().clone()
    }

    fn write_size(&self) -> u64 {
        self.model.timing().write_size_bytes
    }

    fn after(&mut self, duration: Duration) {
        self.now += duration;
        self.model.advance(self.now);
    }

    /// Steps from one `next_event` to the next, as a server sleeping until then would, until
    /// `done` holds. Fails if the model goes quiet first.
    fn until(&mut self, what: &str, done: impl Fn(&mut Self) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            let next = self.model.next_event().unwrap_or_else(|| {
                panic!(
                    "nothing more happens, and still not {what}: {:#}",
                    self.model.state_json(self.now)
                )
            });
            assert!(next > self.now, "next_event lies in the future");
            self.now = next;
            self.model.advance(next);
        }
        panic!("never {what}");
    }

    /// Runs until nothing is under way any more.
    fn quiet(&mut self) {
        self.until("quiet", |run| run.model.next_event().is_none());
    }

    fn raw(&mut self, site: &str) -> Value {
        // Every status read also checks that the states Mold's DR list takes without the
        // JSON are the verbose pool status's.
        let pool = self.model.pool_status(self.now, site);
        assert_eq!(
            self.model.pool_states(self.now, site),
            crate::sim::storage::pool_states_of(&pool),
            "pool states on {site}"
        );
        self.model
            .image_status(self.now, site, IMG)
            .unwrap_or_else(|e| panic!("status on {site}: {e}"))
    }

    /// The image status, decoded the way drbook's Glue client decodes it.
    fn status(&mut self, site: &str) -> ImageStatus {
        serde_json::from_value(self.raw(site)).expect("the status decodes with glue::types")
    }

    fn state(&mut self, site: &str) -> (String, String) {
        let status = self.status(site);
        (status.state, status.description)
    }

    fn peer_state(&mut self, site: &str) -> (String, String) {
        let status = self.status(site);
        let peer = status.peer().expect("a peer site").clone();
        (peer.state, peer.description)
    }

    fn summary(&mut self, site: &str) -> PoolSummary {
        serde_json::from_value(self.model.pool_summary(self.now, site).unwrap()).unwrap()
    }

    fn write(&mut self, site: &str, count: u64) -> Vec<u64> {
        self.model.write(self.now, site, IMG, count).unwrap()
    }

    fn snapshot(&mut self, site: &str) {
        let out = self.model.mirror_snapshot(self.now, site, IMG).unwrap();
        assert!(
            out.starts_with("Snapshot ID: ") && out.ends_with('\n'),
            "{out}"
        );
    }

    fn ledger(&self, site: &str) -> Vec<u64> {
        self.model.ledger(IMG).remove(site).unwrap_or_default()
    }

    fn enable(&mut self) {
        assert_eq!(
            self.model.enable_mirroring(self.now, A, IMG).unwrap(),
            "Mirroring enabled\n"
        );
    }

    fn enable_and_sync(&mut self) {
        self.enable();
        self.until("site B replays idle", |run| {
            run.status(B).is_replaying_idle() && run.status(A).is_healthy_in_sync()
        });
    }

    fn promote(&mut self, site: &str, force: bool) {
        assert_eq!(
            self.model.promote(self.now, site, IMG, force).unwrap(),
            "Image promoted to primary\n"
        );
    }

    fn demote(&mut self, site: &str) {
        assert_eq!(
            self.model.demote(self.now, site, IMG).unwrap(),
            "Image demoted to non-primary\n"
        );
    }
}

fn failed(result: Result<String, RbdError>) -> RbdError {
    result.expect_err("the command fails")
}

fn state(state: &str, description: &str) -> (String, String) {
    (state.to_string(), description.to_string())
}

fn concat(parts: &[&[u64]]) -> Vec<u64> {
    parts.concat()
}

fn movement(full: u64, deltas: u64, bytes_full: u64, bytes_delta: u64) -> DataMovement {
    DataMovement {
        full_copies: full,
        delta_transfers: deltas,
        bytes_full,
        bytes_delta,
    }
}

fn minus(total: DataMovement, before: DataMovement) -> DataMovement {
    movement(
        total.full_copies - before.full_copies,
        total.delta_transfers - before.delta_transfers,
        total.bytes_full - before.bytes_full,
        total.bytes_delta - before.bytes_delta,
    )
}

/// The keys of the JSON tail of `replaying, {...}`.
fn detail_keys(description: &str) -> BTreeSet<String> {
    let (kind, tail) = description.split_once(", ").expect("a JSON tail");
    assert_eq!(kind, "replaying");
    assert!(!tail.contains(' '), "compact JSON: {tail}");
    let tail: Value = serde_json::from_str(tail).unwrap();
    tail.as_object().unwrap().keys().cloned().collect()
}

fn keys(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(ToString::to_string).collect()
}

#[test]
fn the_model_can_be_shared_across_threads() {
    // The HTTP layer keeps it behind a mutex shared by its handlers.
    fn shareable<T: Send + Sync>() {}
    shareable::<ModelStorage>();
}

// ---- the ledger ----------------------------------------------------------------------------

#[test]
fn steady_state_replica_holds_exactly_the_primary_writes() {
    let mut run = Run::new();
    let before_enabling = run.write(A, 3);
    run.enable_and_sync();
    // The full copy carried what the image held when mirroring was enabled.
    assert_eq!(run.ledger(B), before_enabling);

    let delta = run.write(A, 5);
    run.snapshot(A);
    run.quiet();
    assert_eq!(run.ledger(A), concat(&[&before_enabling, &delta]));
    assert_eq!(run.ledger(B), run.ledger(A));
    let ws = run.write_size();
    assert_eq!(
        run.model.image_data_movement(IMG),
        movement(1, 1, SIZE, 5 * ws)
    );

    // Writes after the last snapshot stay on the primary until the next one.
    let late = run.write(A, 2);
    run.quiet();
    assert!(!run.ledger(B).contains(&late[0]));
    run.snapshot(A);
    run.quiet();
    assert_eq!(run.ledger(B), run.ledger(A));
    assert_eq!(run.model.data_movement(), movement(1, 2, SIZE, 7 * ws));
}

#[test]
fn snapshots_taken_during_a_copy_are_queued_and_delivered_in_order() {
    let mut run = Run::new();
    run.enable_and_sync();
    let first = run.write(A, 2);
    run.snapshot(A);
    let second = run.write(A, 3);
    run.snapshot(A);
    let detail = run.status(B).replay_detail().unwrap();
    assert_eq!(detail.replay_state.as_deref(), Some("syncing"));

    // The first snapshot lands alone, exactly as captured.
    run.until("the first snapshot is delivered", |run| {
        !run.ledger(B).is_empty()
    });
    assert_eq!(run.ledger(B), first);
    assert!(!run.status(B).replay_detail().unwrap().is_idle());
    run.quiet();
    assert_eq!(run.ledger(B), concat(&[&first, &second]));
    let ws = run.write_size();
    assert_eq!(
        run.model.image_data_movement(IMG),
        movement(1, 2, SIZE, 5 * ws)
    );
}

#[test]
fn forced_promote_after_a_disaster_loses_exactly_the_writes_after_the_last_delivered_snapshot() {
    let mut run = Run::new();
    run.enable_and_sync();
    let delivered = run.write(A, 4);
    run.snapshot(A);
    run.quiet();
    assert_eq!(run.ledger(B), delivered);

    // A snapshot still copying when disaster strikes, and writes no snapshot captured.
    let in_flight = run.write(A, 3);
    run.snapshot(A);
    run.after(Duration::from_millis(1));
    assert_eq!(
        run.status(B)
            .replay_detail()
            .unwrap()
            .replay_state
            .as_deref(),
        Some("syncing")
    );
    let unsnapshotted = run.write(A, 2);
    run.model.set_site_up(run.now, A, false).unwrap();
    run.after(Duration::from_millis(500));
    assert_eq!(run.ledger(B), delivered, "nothing arrives from a dead site");

    run.promote(B, true);
    assert_eq!(run.ledger(B), delivered);
    let kept: BTreeSet<u64> = run.ledger(B).into_iter().collect();
    let lost: Vec<u64> = run
        .ledger(A)
        .into_iter()
        .filter(|seq| !kept.contains(seq))
        .collect();
    assert_eq!(lost, concat(&[&in_flight, &unsnapshotted]));
    // The snapshot in flight never completed: it moved nothing.
    let ws = run.write_size();
    assert_eq!(
        run.model.image_data_movement(IMG),
        movement(1, 1, SIZE, 4 * ws)
    );
    // The promoted image takes writes at once.
    let after = run.write(B, 1);
    assert_eq!(run.ledger(B), concat(&[&delivered, &after]));
}

#[test]
fn full_failback_keeps_every_dr_write_and_drops_the_old_primarys_divergent_writes() {
    let mut run = Run::new();
    let t = run.timing();
    run.enable_and_sync();
    let shared = run.write(A, 4);
    run.snapshot(A);
    run.quiet();
    let divergent = run.write(A, 3);

    // Disaster on A; fail over to B.
    run.model.set_site_up(run.now, A, false).unwrap();
    run.promote(B, true);
    assert_eq!(
        run.state(B),
        state("up+stopping_replay", "orphan (force promoting)")
    );
    let dr_1 = run.write(B, 5);
    run.snapshot(B);
    run.after(t.peer_down_after * 4);
    assert_eq!(
        run.state(B),
        state("up+stopping_replay", "orphan (force promoting)"),
        "for the whole outage"
    );

    // A returns, still primary: two primaries once the orphan settles.
    run.model.set_site_up(run.now, A, true).unwrap();
    assert_eq!(run.state(A), state("up+stopped", "local image is primary"));
    assert_eq!(
        run.peer_state(A),
        state("up+stopping_replay", "orphan (force promoting)")
    );
    run.until("both sides are primary", |run| {
        run.status(A).is_both_primary() && run.status(B).is_both_primary()
    });
    assert_eq!(run.state(B), state("up+stopped", "local image is primary"));
    assert_eq!(run.summary(A).health, "OK");
    assert_eq!(run.ledger(A), concat(&[&shared, &divergent]));

    // Demote the stale copy: split-brain after a while.
    run.demote(A);
    assert_eq!(run.state(A), state("up+starting_replay", "starting replay"));
    run.until("site A reports split-brain", |run| {
        run.status(A).is_split_brain()
    });
    assert_eq!(run.state(A), state("up+error", "split-brain"));
    assert_eq!(run.peer_state(B), state("up+error", "split-brain"));
    for site in [A, B] {
        let summary = run.summary(site);
        assert_eq!(
            (summary.health.as_str(), summary.image_health.as_str()),
            ("ERROR", "ERROR")
        );
        assert_eq!(summary.states.get("error"), Some(&1), "{site}");
    }

    // Resync it: flagged, deleted, re-created, copied in full from B.
    let old_id = run.model.image_info(A, IMG).unwrap()["id"].clone();
    assert_eq!(
        run.model.resync(run.now, A, IMG).unwrap(),
        "Flagged image for resync from primary\n"
    );
    assert_eq!(run.state(A), state("up+stopped", "resync requested"));
    assert!(run.status(A).is_resync_requested());
    run.until("site A's image is gone", |run| {
        !run.model.image_exists(A, IMG)
    });
    let absent = run.model.image_status(run.now, A, IMG).unwrap_err();
    assert_eq!(absent.exit_status, 2);
    assert_eq!(
        absent.output,
        "rbd: error opening image vol-1: (2) No such file or directory"
    );
    assert_eq!(run.peer_state(B), state("down+unknown", "status not found"));
    run.until("site A's image is back", |run| {
        run.model.image_exists(A, IMG)
    });
    assert_ne!(run.model.image_info(A, IMG).unwrap()["id"], old_id);
    assert!(run.status(A).is_status_not_found());
    run.until("site A reports its replay", |run| {
        run.status(A).replay_detail().is_some()
    });
    let full_copy = run.status(A).replay_detail().unwrap();
    assert_eq!(full_copy.replay_state.as_deref(), Some("syncing"));
    assert!(full_copy.syncing_percent.is_some());
    assert!(run.status(B).is_still_syncing());
    run.until("site A is in sync", |run| {
        run.status(A).is_replaying_idle() && run.status(B).is_healthy_in_sync()
    });
    assert_eq!(run.ledger(A), concat(&[&shared, &dr_1]));
    assert_eq!(run.model.image_data_movement(IMG).full_copies, 2);

    // More DR writes, one snapshot round, then some the switchover itself must carry.
    let dr_2 = run.write(B, 2);
    run.snapshot(B);
    run.quiet();
    let dr_3 = run.write(B, 3);
    let before = run.model.image_data_movement(IMG);

    // Orderly switchover back: demote B, wait for A to replay it, promote A.
    run.demote(B);
    run.until("site A replayed the demotion", |run| {
        run.status(A).shows_peer_demoted()
    });
    run.promote(A, false);
    run.until("site B replays idle", |run| {
        run.status(B).is_replaying_idle() && run.status(A).is_healthy_in_sync()
    });

    let every_dr_write = concat(&[&dr_1, &dr_2, &dr_3]);
    let ledger_a = run.ledger(A);
    assert!(every_dr_write.iter().all(|seq| ledger_a.contains(seq)));
    assert!(divergent.iter().all(|seq| !ledger_a.contains(seq)));
    assert_eq!(ledger_a, concat(&[&shared, &every_dr_write]));
    assert_eq!(run.ledger(B), ledger_a);
    let switchover = minus(run.model.image_data_movement(IMG), before);
    assert_eq!(switchover.full_copies, 0, "no full copy on the way back");
    assert_eq!(switchover.bytes_delta, 3 * run.write_size());
}

#[test]
fn orderly_switchover_moves_only_the_final_delta() {
    let mut run = Run::new();
    let t = run.timing();
    run.enable_and_sync();
    let synced = run.write(A, 4);
    run.snapshot(A);
    run.quiet();
    let last = run.write(A, 3);
    let before = run.model.data_movement();

    let demoted = run.now;
    run.demote(A);
    // The demoted side stops being primary at once; the peer copies the demotion snapshot.
    assert_eq!(
        run.state(A),
        state("up+unknown", "remote image is not primary")
    );
    assert_eq!(
        run.status(B)
            .replay_detail()
            .unwrap()
            .replay_state
            .as_deref(),
        Some("syncing")
    );
    let err = failed(run.model.promote(run.now, B, IMG, false));
    assert_eq!(err.exit_status, 16, "demotion not propagated yet");
    run.until("site B replayed the demotion", |run| {
        run.state(B) == state("up+unknown", "remote image demoted")
    });
    // Shown once the demotion propagated (§6.6: ~2 s), settled by ~4 s.
    assert!(run.now >= demoted + t.demote_propagation);
    assert!(run.now < demoted + t.demote_settle);
    assert_eq!(
        run.peer_state(A),
        state("up+unknown", "remote image demoted")
    );
    run.until("both sides settled", |run| {
        run.state(B) == state("up+unknown", "remote image is not primary")
    });
    assert_eq!(run.now, demoted + t.demote_settle);
    assert_eq!(
        run.state(A),
        state("up+unknown", "remote image is not primary")
    );
    assert!(run.status(A).shows_peer_demoted() && run.status(B).shows_peer_demoted());
    assert_eq!(run.summary(A).states.get("unknown"), Some(&1));
    assert_eq!(run.summary(A).health, "WARNING");

    run.promote(B, false);
    assert_eq!(run.state(B), state("up+stopped", "local image is primary"));
    let detail = run.status(A).replay_detail().unwrap();
    assert_eq!(detail.replay_state.as_deref(), Some("syncing"));
    assert!(detail.syncing_percent.is_some() && detail.syncing_snapshot_timestamp.is_some());
    run.until("site A replays idle", |run| {
        run.status(A).is_replaying_idle() && run.status(B).is_healthy_in_sync()
    });

    assert_eq!(run.ledger(B), concat(&[&synced, &last]));
    assert_eq!(run.ledger(A), run.ledger(B));
    let moved = minus(run.model.data_movement(), before);
    // The demotion snapshot carries the last writes; the promotion snapshot nothing.
    assert_eq!(moved, movement(0, 2, 0, 3 * run.write_size()));
}

// ---- statuses --------------------------------------------------------------------------------

#[test]
fn a_new_replica_shows_status_not_found_then_copies_in_full_then_idles() {
    let mut run = Run::new();
    let t = run.timing();
    assert_eq!(run.model.next_event(), None, "nothing under way yet");
    run.enable();
    assert!(run.model.next_event().is_some());
    assert!(
        run.model.image_exists(B, IMG),
        "the daemon created the replica"
    );
    assert_eq!(run.model.is_primary(B, IMG), Some(false));
    assert_eq!(run.model.is_primary(A, IMG), Some(true));

    let b = run.status(B);
    assert_eq!(
        (b.state.as_str(), b.description.as_str()),
        ("down+unknown", "status not found")
    );
    assert!(b.is_status_not_found());
    assert_eq!(b.last_update, None);
    assert_eq!(run.state(A), state("up+stopped", "local image is primary"));
    assert_eq!(run.peer_state(A), state("down+unknown", "status not found"));
    let summary = run.summary(A);
    assert_eq!(summary.states.get("unknown"), Some(&1));
    assert_eq!(summary.health, "WARNING");

    run.after(t.bootstrap_not_found);
    let b = run.status(B);
    assert_eq!(b.state, "up+replaying");
    let detail = b.replay_detail().unwrap();
    assert_eq!(detail.replay_state.as_deref(), Some("syncing"));
    assert!(detail.syncing_percent.unwrap() < 100.0);
    assert!(detail.syncing_snapshot_timestamp.is_some());
    assert!(run.status(A).is_still_syncing());
    assert_eq!(
        detail_keys(&b.description),
        keys(&[
            "bytes_per_second",
            "bytes_per_snapshot",
            "last_snapshot_bytes",
            "last_snapshot_sync_seconds",
            "remote_snapshot_timestamp",
            "replay_state",
            "syncing_percent",
            "syncing_snapshot_timestamp",
        ])
    );
    run.until("the full copy completes", |run| {
        run.status(B).is_replaying_idle()
    });
    // Seen on real Ceph: the first report after a copy lacks local_snapshot_timestamp; the
    // next one carries it.
    let idle = run.status(B);
    assert_eq!(
        detail_keys(&idle.description),
        keys(&[
            "bytes_per_second",
            "bytes_per_snapshot",
            "last_snapshot_bytes",
            "last_snapshot_sync_seconds",
            "remote_snapshot_timestamp",
            "replay_state",
        ])
    );
    assert_eq!(
        idle.replay_detail().unwrap().last_snapshot_bytes,
        Some(SIZE)
    );
    assert!(run.status(A).is_healthy_in_sync());
    let summary = run.summary(B);
    assert_eq!(
        summary.states.get("replaying"),
        Some(&1),
        "counted as replaying on both sites"
    );
    assert_eq!(summary.health, "OK");

    run.after(t.status_refresh);
    assert!(
        detail_keys(&run.status(B).description).contains("local_snapshot_timestamp"),
        "the next report names the snapshot the replica holds"
    );

    run.write(A, 1);
    run.snapshot(A);
    run.quiet();
    run.after(t.status_refresh);
    let synced = run.status(B);
    // The real example's key set (spec §3.2).
    assert_eq!(
        detail_keys(&synced.description),
        keys(&[
            "bytes_per_second",
            "bytes_per_snapshot",
            "last_snapshot_bytes",
            "last_snapshot_sync_seconds",
            "local_snapshot_timestamp",
            "remote_snapshot_timestamp",
            "replay_state",
        ])
    );
    let detail = synced.replay_detail().unwrap();
    assert_eq!(
        detail.local_snapshot_timestamp,
        detail.remote_snapshot_timestamp
    );
    assert!(
        synced
            .description
            .starts_with(r#"replaying, {"bytes_per_second":0.0,"#)
    );
}

#[test]
fn the_survivor_keeps_its_status_and_sees_the_dead_peer_go_down_with_a_frozen_last_update() {
    let mut run = Run::new();
    let t = run.timing();
    run.enable_and_sync();
    let heard = run.status(B).peer().unwrap().last_update;
    run.model.set_site_up(run.now, A, false).unwrap();
    assert!(!run.model.peer_reachable(B));
    let gone = run.model.image_status(run.now, A, IMG).unwrap_err();
    assert_eq!(gone.exit_status, 110);

    run.after(t.peer_down_after / 2);
    assert!(
        run.status(B).is_replaying_idle(),
        "nothing shows the outage"
    );
    assert_eq!(
        run.peer_state(B),
        state("up+stopped", "local image is primary")
    );
    run.after(t.peer_down_after);
    assert_eq!(
        run.peer_state(B),
        state("down+stopped", "local image is primary")
    );
    let peer = run.status(B).peer().unwrap().clone();
    assert!(!peer.up() && peer.is_primary());
    assert_eq!(peer.last_update, heard, "frozen when the site died");
    // `last_update` has whole seconds: let a few pass.
    run.after(Duration::from_secs(3));
    let b = run.status(B);
    assert!(b.is_replaying_idle());
    assert!(b.last_update > heard, "the survivor still reports");
    assert_eq!(b.peer().unwrap().last_update, heard);
    assert_eq!(run.model.next_event(), None);
}

#[test]
fn a_forced_promote_with_the_peer_up_gives_two_primaries_at_once_and_rolls_back() {
    let mut run = Run::new();
    run.enable_and_sync();
    let delivered = run.write(A, 2);
    run.snapshot(A);
    run.quiet();
    run.write(A, 2);
    run.snapshot(A);
    assert!(run.status(A).is_still_syncing());
    run.promote(B, true);
    assert_eq!(
        run.ledger(B),
        delivered,
        "rolled back to the last complete snapshot"
    );
    assert!(run.status(A).is_both_primary() && run.status(B).is_both_primary());
    assert_eq!(run.state(B), state("up+stopped", "local image is primary"));
    run.quiet();
    assert_eq!(
        run.ledger(B),
        delivered,
        "nothing replicates between two primaries"
    );
}

#[test]
fn a_forced_promote_before_the_demotion_propagated_ends_in_split_brain() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.write(A, 2);
    run.demote(A);
    run.promote(B, true);
    assert_eq!(run.state(B), state("up+stopped", "local image is primary"));
    run.until("the demoted side reports split-brain", |run| {
        run.status(A).is_split_brain()
    });
    assert!(run.status(B).peer().unwrap().is_split_brain());
}

#[test]
fn the_just_demoted_old_primary_may_be_promoted_again_without_force() {
    // §6.5: the newest snapshot is a demotion snapshot, so librbd allows it.
    let mut run = Run::new();
    run.enable_and_sync();
    run.demote(A);
    run.promote(A, false);
    assert_eq!(run.state(A), state("up+stopped", "local image is primary"));
    run.until("site B replays again", |run| {
        run.status(A).is_healthy_in_sync()
    });
}

#[test]
fn a_stopped_daemon_copies_nothing_and_reports_down() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.model.set_daemon_up(run.now, B, false).unwrap();
    run.write(A, 2);
    run.snapshot(A);
    run.quiet();
    assert!(run.ledger(B).is_empty());
    let b = run.status(B);
    assert_eq!(b.state, "down+replaying");
    let raw = run.raw(B);
    assert_eq!(
        raw["daemon_service"],
        json!({"service_id": "", "instance_id": "", "daemon_id": "", "hostname": ""})
    );
    assert_eq!(run.peer_state(A).0, "down+replaying");
    let pool: PoolStatus = serde_json::from_value(run.model.pool_status(run.now, B)).unwrap();
    // No daemon: its image counts as unknown (WARNING), which outranks UNKNOWN (§3.3).
    assert_eq!(pool.summary.daemon_health, "UNKNOWN");
    assert_eq!(pool.summary.image_health, "WARNING");
    assert_eq!(pool.summary.health, "WARNING");
    assert!(pool.daemons.is_empty());
    assert_eq!(run.model.pool_status(run.now, B)["daemons"], Value::Null);

    run.model.set_daemon_up(run.now, B, true).unwrap();
    run.quiet();
    assert_eq!(run.ledger(B), run.ledger(A));
    assert!(run.status(B).is_replaying_idle());
}

#[test]
fn a_partition_pauses_a_copy_and_it_resumes_after_healing() {
    let mut run = Run::new();
    run.enable_and_sync();
    let writes = run.write(A, 3);
    run.snapshot(A);
    run.after(Duration::from_millis(1));
    run.model.set_partitioned(run.now, true).unwrap();
    assert!(!run.model.peer_reachable(A) && !run.model.peer_reachable(B));
    run.quiet();
    assert!(run.ledger(B).is_empty());
    let stalled = run.status(B).replay_detail().unwrap();
    assert_eq!(
        stalled.replay_state.as_deref(),
        Some("syncing"),
        "its status stays as it was"
    );
    assert!(!run.status(A).peer().unwrap().up());

    run.model.set_partitioned(run.now, false).unwrap();
    run.quiet();
    assert_eq!(run.ledger(B), writes);
    assert_eq!(run.model.image_data_movement(IMG).delta_transfers, 1);
    assert!(run.status(A).is_healthy_in_sync());
}

#[test]
fn disabling_mirroring_on_the_primary_removes_the_replica_once_its_daemon_runs() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.model.set_daemon_up(run.now, B, false).unwrap();
    assert_eq!(
        run.model.disable_mirroring(run.now, A, IMG).unwrap(),
        "Mirroring disabled\n"
    );
    run.quiet();
    assert!(
        run.model.image_exists(B, IMG),
        "the deletion waits for the daemon"
    );
    run.model.set_daemon_up(run.now, B, true).unwrap();
    assert!(!run.model.image_exists(B, IMG));
    assert!(run.model.image_exists(A, IMG));
    let err = run.model.image_status(run.now, A, IMG).unwrap_err();
    assert_eq!(
        (err.exit_status, err.output.as_str()),
        (22, "rbd: mirroring not enabled on the image")
    );
    assert_eq!(run.model.is_primary(A, IMG), Some(true));
    assert_eq!(run.model.is_primary(B, IMG), None);
    // Disabling again is harmless; the accounting survives.
    assert_eq!(
        run.model.disable_mirroring(run.now, A, IMG).unwrap(),
        "Mirroring disabled\n"
    );
    assert_eq!(run.model.data_movement().full_copies, 1);
    run.model.remove_image(run.now, A, IMG).unwrap();
    assert!(!run.model.image_exists(A, IMG));
    assert_eq!(
        run.model.data_movement().full_copies,
        1,
        "kept for removed images"
    );
}

#[test]
fn removing_a_mirrored_primary_removes_its_replica_too() {
    let mut run = Run::new();
    run.enable_and_sync();
    let err = run.model.remove_image(run.now, B, IMG).unwrap_err();
    assert_eq!(err.exit_status, 22, "a replica is not removed directly");
    run.model.remove_image(run.now, A, IMG).unwrap();
    run.quiet();
    assert!(!run.model.image_exists(A, IMG) && !run.model.image_exists(B, IMG));
    assert!(run.model.ledger(IMG).is_empty());
    let err = run.model.remove_image(run.now, A, IMG).unwrap_err();
    assert_eq!(err.exit_status, 2);
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn commands_fail_with_the_cli_texts_and_exit_statuses() {
    let mut run = Run::new();
    let now = run.now;

    let absent = run.model.image_status(now, A, "nope").unwrap_err();
    assert_eq!(absent.exit_status, 2);
    assert_eq!(
        absent.output,
        "rbd: error opening image nope: (2) No such file or directory"
    );
    assert_eq!(
        absent.to_string(),
        "exit status 2: rbd: error opening image nope: (2) No such file or directory"
    );
    assert_eq!(
        run.model.image_status(now, B, IMG).unwrap_err().exit_status,
        2
    );

    // A plain image: every mirroring command says so.
    let not_mirrored = RbdError {
        exit_status: 22,
        output: "rbd: mirroring not enabled on the image".to_string(),
    };
    assert_eq!(
        run.model.image_status(now, A, IMG).unwrap_err(),
        not_mirrored
    );
    assert_eq!(
        run.model.promote(now, A, IMG, true).unwrap_err(),
        not_mirrored
    );
    assert_eq!(run.model.demote(now, A, IMG).unwrap_err(), not_mirrored);
    assert_eq!(run.model.resync(now, A, IMG).unwrap_err(), not_mirrored);
    assert_eq!(
        run.model.mirror_snapshot(now, A, IMG).unwrap_err(),
        not_mirrored
    );

    run.enable();
    assert_eq!(
        run.model.enable_mirroring(now, A, IMG).unwrap(),
        "Mirroring enabled\n",
        "enabling twice succeeds (§6.5)"
    );
    run.until("site B's replica exists", |run| {
        run.model.image_exists(B, IMG)
    });

    // Real rbd's lines (the differential test holds them to real Ceph): librbd's reason, its
    // API's summary, the CLI's own line.
    let has_line = |output: &str, line: &str| output.lines().any(|l| l.ends_with(line));
    let err = failed(run.model.promote(run.now, A, IMG, true));
    assert_eq!(err.exit_status, 22);
    assert!(has_line(
        &err.output,
        "rbd: error promoting image to primary"
    ));
    assert!(has_line(
        &err.output,
        "librbd::api::Mirror: image_promote: failed to promote image"
    ));
    assert!(
        err.output
            .contains("handle_get_info: image is already primary")
    );

    let err = failed(run.model.promote(run.now, B, IMG, false));
    assert_eq!(err.exit_status, 16);
    assert!(has_line(
        &err.output,
        "rbd: error promoting image to primary"
    ));
    assert!(err.output.contains(
        "handle_get_info: image is primary within a remote cluster or demotion is not propagated yet"
    ));

    let err = failed(run.model.demote(run.now, B, IMG));
    assert_eq!(err.exit_status, 22);
    assert!(has_line(
        &err.output,
        "rbd: error demoting image to non-primary"
    ));
    assert!(has_line(
        &err.output,
        "librbd::api::Mirror: image_demote: failed to demote image"
    ));

    let err = failed(run.model.resync(run.now, A, IMG));
    assert_eq!(err.exit_status, 22);
    assert!(has_line(&err.output, "rbd: error flagging image resync"));

    let err = failed(run.model.mirror_snapshot(run.now, B, IMG));
    assert_eq!(
        (err.exit_status, err.output.as_str()),
        (22, "rbd: error creating snapshot: (22) Invalid argument")
    );

    let err = failed(run.model.disable_mirroring(run.now, B, IMG));
    assert_eq!(err.exit_status, 22);
    assert!(err.output.contains("mirrored image is not primary"));

    let err = run.model.write(run.now, B, IMG, 1).unwrap_err();
    assert_eq!(err.exit_status, 30);
    assert!(err.output.contains("non-primary"), "{err}");

    let err = run.model.write(run.now, "site-z", IMG, 1).unwrap_err();
    assert!(err.output.contains("site-z"));
}

#[test]
fn a_pool_without_mirroring_answers_as_glue_does() {
    let mut model = ModelStorage::new(A, B, StorageTiming::fast());
    let now = Instant::now();
    model.create_image(A, IMG, SIZE).unwrap();
    model.set_pool_mirroring(now, A, false).unwrap();
    let err = model.pool_summary(now, A).unwrap_err();
    assert_eq!(err.output, "rbd: mirroring not enabled on the pool");
    let pool = model.pool_status(now, A);
    assert_eq!(
        pool,
        json!({"summary":{"health":"","daemon_health":"","image_health":"","states":null},"daemons":null,"images":null})
    );
    let decoded: PoolStatus = serde_json::from_value(pool).unwrap();
    assert!(decoded.is_mirroring_disabled());
    let err = model.enable_mirroring(now, A, IMG).unwrap_err();
    assert_eq!(err.exit_status, 22);
    assert!(
        err.output
            .contains("cannot enable mirroring in the current pool mirroring mode")
    );

    model.set_pool_mirroring(now, A, true).unwrap();
    model.enable_mirroring(now, A, IMG).unwrap();
    let err = model.set_pool_mirroring(now, A, false).unwrap_err();
    assert!(
        err.output
            .contains("mirroring is enabled on one or more images")
    );
    let summary: PoolSummary = serde_json::from_value(model.pool_summary(now, A).unwrap()).unwrap();
    assert_eq!(summary.daemon_health, "OK");
}

// ---- the JSON as drbook's client reads it ----------------------------------------------------

#[test]
fn status_json_has_glues_shape_and_decodes_with_the_client_types() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.write(A, 1);
    run.snapshot(A);
    run.quiet();
    let refresh = run.timing().status_refresh;
    run.after(refresh);

    let a = run.raw(A);
    let b = run.raw(B);
    assert_eq!(a["global_id"], b["global_id"]);
    assert!(!a["global_id"].as_str().unwrap().is_empty());
    assert_eq!(a["peer_sites"][0]["site_name"], "remote");
    assert_eq!(b["peer_sites"][0]["site_name"], "local");
    assert!(a["peer_sites"][0]["mirror_uuids"].is_string());
    let service = a["daemon_service"].as_object().unwrap();
    assert_eq!(
        service.keys().collect::<Vec<_>>(),
        ["daemon_id", "hostname", "instance_id", "service_id"]
    );
    assert!(service.values().all(|v| !v.as_str().unwrap().is_empty()));
    let last_update = a["last_update"].as_str().unwrap();
    assert_eq!(last_update.len(), "2024-06-24 16:00:00".len());
    assert!(last_update.starts_with("2024-06-24 16:00:"));
    assert!(
        b.get("snapshots").is_none(),
        "only primaries list snapshots"
    );

    let status: ImageStatus = serde_json::from_value(a).unwrap();
    assert!(status.is_primary() && status.is_startable() && status.promote_not_needed());
    assert!(status.is_healthy_in_sync() && !status.is_both_primary());
    assert!(!status.snapshots.is_empty());
    assert!(
        status
            .snapshots
            .iter()
            .all(|s| !s.demoted && s.name.starts_with(".mirror.primary."))
    );

    let replica: ImageStatus = serde_json::from_value(b).unwrap();
    assert!(replica.is_replaying_idle() && !replica.is_primary() && !replica.is_startable());
    let detail = replica.replay_detail().unwrap();
    assert!(detail.is_idle());
    assert!(detail.local_snapshot_time().is_some());

    let pool: PoolStatus = serde_json::from_value(run.model.pool_status(run.now, A)).unwrap();
    assert_eq!(pool.summary.health, "OK");
    assert_eq!(pool.daemons.len(), 1);
    assert!(pool.daemons[0].leader);
    assert_eq!(pool.daemons[0].ceph_version, "16.2.15");
    assert!(pool.image(IMG).unwrap().is_healthy_in_sync());
    assert!(pool.image(IMG).unwrap().snapshots.is_empty());

    let info: ImageInfo = serde_json::from_value(run.model.image_info(A, IMG).unwrap()).unwrap();
    assert_eq!((info.name.as_str(), info.size), (IMG, SIZE));
    assert!(info.parent.is_none() && info.snapshot_count > 0);

    // A demoted primary lists no snapshots; the promoted side lists its demotion copy's
    // successor.
    run.demote(A);
    run.quiet();
    assert!(run.raw(A).get("snapshots").is_none());
}

#[test]
fn the_wall_clock_can_follow_a_real_one() {
    let mut run = Run::new();
    let wall = chrono::DateTime::parse_from_rfc3339("2025-03-01T09:30:00+09:00").unwrap();
    run.model.set_wall_clock(run.now, wall);
    run.enable_and_sync();
    let status = run.status(A);
    let seen = status.last_update.unwrap().to_string();
    assert!(seen.starts_with("2025-03-01 09:30:0"), "{seen}");
    let detail = run.status(B).replay_detail().unwrap();
    let remote = detail.remote_snapshot_timestamp.unwrap();
    assert!((wall.timestamp()..wall.timestamp() + 5).contains(&remote));
}

#[test]
fn state_json_shows_roles_statuses_ledger_heads_and_movement() {
    let mut run = Run::new();
    run.enable_and_sync();
    let writes = run.write(A, 2);
    let state = run.model.state_json(run.now);
    assert_eq!(state["sites"][A]["up"], true);
    assert_eq!(state["sites"][B]["glue_site_name"], "remote");
    let a = &state["images"][IMG]["sites"][A];
    assert_eq!(a["primary"], true);
    assert_eq!(a["state"], "up+stopped");
    assert_eq!(a["ledger_head"], json!(writes[1]));
    assert_eq!(a["ledger_count"], 2);
    let b = &state["images"][IMG]["sites"][B];
    assert_eq!(b["primary"], false);
    assert_eq!(b["state"], "up+replaying");
    assert_eq!(b["ledger_head"], Value::Null);
    assert_eq!(state["images"][IMG]["data_movement"]["full_copies"], 1);
    assert_eq!(state["data_movement"]["bytes_full"], json!(SIZE));
    assert_eq!(state["last_write"], json!(writes[1]));
}
