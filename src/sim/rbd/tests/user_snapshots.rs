//! User snapshots, clones and the trash (what a DR test without an outage runs on), driven
//! through the rbd command line the storage VMs answer over SSH.

use serde_json::Value;

use super::{A, B, IMG, Run, failed};
use crate::glue::types::MirrorSide as _;
use crate::sim::rbd::RbdError;
use crate::sim::storage::Storage as _;

const CLONE: &str = "vol-1-drtest";

impl Run {
    /// One rbd command line on `site`, words split at spaces.
    fn rbd(&mut self, site: &str, line: &str) -> Result<String, RbdError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        self.model.rbd_command(self.now, site, &args)
    }

    fn rbd_ok(&mut self, site: &str, line: &str) -> String {
        self.rbd(site, line)
            .unwrap_or_else(|e| panic!("rbd {line} on {site}: {e}"))
    }

    fn rbd_json(&mut self, site: &str, line: &str) -> Value {
        serde_json::from_str(&self.rbd_ok(site, line)).expect("rbd printed JSON")
    }

    /// `rbd snap ls --all`: (namespace, name) per snapshot, in id order.
    fn snaps(&mut self, site: &str, image: &str) -> Vec<(String, String)> {
        let rows = self.rbd_json(site, &format!("snap ls --all rbd/{image} --format json"));
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let namespace = row["namespace"]["type"].as_str().unwrap().to_string();
                let name = if namespace == "trash" {
                    row["namespace"]["original_name"]
                        .as_str()
                        .unwrap()
                        .to_string()
                } else {
                    row["name"].as_str().unwrap().to_string()
                };
                (namespace, name)
            })
            .filter(|(namespace, _)| namespace != "mirror")
            .collect()
    }

    /// The newest non-primary mirror snapshot on `site`: (complete, primary_snap_id).
    fn newest_replica_snap(&mut self, site: &str) -> (bool, u64) {
        let rows = self.rbd_json(site, &format!("snap ls --all rbd/{IMG} --format json"));
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|row| row["namespace"]["state"] == "non-primary")
            .expect("a non-primary mirror snapshot");
        (
            row["namespace"]["complete"].as_bool().unwrap(),
            row["namespace"]["primary_snap_id"].as_u64().unwrap(),
        )
    }

    /// A user snapshot `t1` on A, carried to B by one mirror snapshot, and B quiet again.
    fn user_snapshot_on_both(&mut self) -> Vec<u64> {
        self.rbd_ok(A, &format!("snap create rbd/{IMG}@t1"));
        self.snapshot(A);
        self.quiet();
        self.ledger(A)
    }

    fn clone_on_b(&mut self) {
        self.rbd_ok(
            B,
            &format!("clone --rbd-default-clone-format 2 rbd/{IMG}@t1 rbd/{CLONE}"),
        );
    }

    fn clone_ledger(&self) -> Vec<u64> {
        self.model.ledger(CLONE).remove(B).unwrap_or_default()
    }
}

#[test]
fn only_a_primary_takes_a_user_snapshot() {
    let mut run = Run::new();
    run.enable_and_sync();
    let err = failed(run.rbd(B, &format!("snap create rbd/{IMG}@t1")));
    assert_eq!(
        (err.exit_status, err.output.as_str()),
        (
            30,
            "rbd: failed to create snapshot: (30) Read-only file system"
        )
    );
    assert_eq!(run.rbd_ok(A, &format!("snap create rbd/{IMG}@t1")), "");
    let err = failed(run.rbd(A, &format!("snap create rbd/{IMG}@t1")));
    assert_eq!(
        (err.exit_status, err.output.as_str()),
        (17, "rbd: failed to create snapshot: (17) File exists")
    );
    assert_eq!(run.snaps(A, IMG), [("user".to_string(), "t1".to_string())]);
    assert!(
        run.snaps(B, IMG).is_empty(),
        "nothing travels before a mirror snapshot"
    );
}

#[test]
fn a_user_snapshot_shows_on_the_replica_before_its_data_and_is_complete_with_the_mirror_snapshot() {
    let mut run = Run::new();
    run.write(A, 2);
    run.enable_and_sync();
    let synced = run.ledger(B);
    run.write(A, 3);
    run.rbd_ok(A, &format!("snap create rbd/{IMG}@t1"));
    let at_snapshot = run.ledger(A);
    run.write(A, 1); // after the user snapshot: not in it
    run.snapshot(A);
    run.until("the copy has started", |run| !run.snaps(B, IMG).is_empty());
    let (complete, _) = run.newest_replica_snap(B);
    assert!(
        !complete,
        "the carrying mirror snapshot is still being copied"
    );
    // Listed, but a clone of it now holds the previous sync point.
    run.clone_on_b();
    assert_eq!(run.clone_ledger(), synced);
    run.rbd_ok(B, &format!("rm rbd/{CLONE}"));

    run.quiet();
    let (complete, primary_snap_id) = run.newest_replica_snap(B);
    let user_id = run.rbd_json(A, &format!("snap ls rbd/{IMG} --format json"))[0]["id"]
        .as_u64()
        .unwrap();
    assert!(complete && primary_snap_id > user_id);
    run.clone_on_b();
    assert_eq!(run.clone_ledger(), at_snapshot);
}

#[test]
fn a_clone_is_writable_unmirrored_and_moves_no_data() {
    let mut run = Run::new();
    run.write(A, 4);
    run.enable_and_sync();
    let at_snapshot = run.user_snapshot_on_both();
    let before = run.model.data_movement();

    let err = failed(run.rbd(B, &format!("clone rbd/{IMG}@t1 rbd/{CLONE}")));
    assert_eq!(err.exit_status, 22);
    assert!(
        err.output.contains("parent snapshot must be protected")
            && err
                .output
                .ends_with("rbd: clone error: (22) Invalid argument"),
        "{}",
        err.output
    );
    run.clone_on_b();
    let err = failed(run.rbd(
        B,
        &format!("clone --rbd-default-clone-format 2 rbd/{IMG}@t1 rbd/{CLONE}"),
    ));
    assert_eq!(err.exit_status, 17);

    assert_eq!(run.clone_ledger(), at_snapshot);
    let info = run.rbd_json(B, &format!("info rbd/{CLONE} --format json"));
    assert_eq!(info["parent"]["image"], IMG);
    assert!(!run.model.image_exists(A, CLONE), "a clone is not mirrored");
    let written = run.model.write(run.now, B, CLONE, 2).unwrap();
    assert_eq!(run.clone_ledger(), [at_snapshot.clone(), written].concat());
    run.write(A, 1);
    run.snapshot(A);
    run.quiet();
    assert_eq!(run.model.data_movement().full_copies, before.full_copies);
    assert_eq!(
        run.model.data_movement().delta_transfers,
        before.delta_transfers + 1,
        "mirroring kept replaying with the clone there"
    );
    let images = run.rbd_json(B, "ls --format json");
    assert_eq!(images, serde_json::json!([IMG, CLONE]));
}

#[test]
fn a_snapshot_removed_on_the_primary_goes_to_the_replicas_trash_while_a_clone_reads_it() {
    let mut run = Run::new();
    run.enable_and_sync();
    let at_snapshot = run.user_snapshot_on_both();
    run.clone_on_b();
    run.rbd_ok(A, &format!("snap rm rbd/{IMG}@t1"));
    assert!(
        run.snaps(A, IMG).is_empty(),
        "no clone on A: removed outright"
    );
    run.snapshot(A);
    run.quiet();
    assert_eq!(run.snaps(B, IMG), [("trash".to_string(), "t1".to_string())]);
    assert_eq!(run.clone_ledger(), at_snapshot, "the clone stays readable");
    let err = failed(run.rbd(
        B,
        &format!("clone --rbd-default-clone-format 2 rbd/{IMG}@t1 rbd/x"),
    ));
    assert_eq!(err.exit_status, 2, "a trashed snapshot cannot be named");

    run.rbd_ok(B, &format!("rm rbd/{CLONE}"));
    assert!(run.snaps(B, IMG).is_empty(), "purged with its last clone");
    assert!(!run.model.image_exists(B, CLONE));
}

#[test]
fn a_resync_parks_the_old_replica_in_the_trash_until_the_clone_is_gone() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.user_snapshot_on_both();
    run.clone_on_b();
    let old_id = run.rbd_json(B, &format!("info rbd/{IMG} --format json"))["id"].clone();
    run.model.resync(run.now, B, IMG).unwrap();
    run.quiet();
    let trash = run.rbd_json(B, "trash ls --all --format json");
    assert_eq!(trash.as_array().unwrap().len(), 1);
    assert_eq!(trash[0]["id"], old_id);
    assert_eq!(trash[0]["name"], IMG);
    assert!(
        run.status(B).is_replaying_idle(),
        "the re-created replica replays"
    );

    run.rbd_ok(B, &format!("rm rbd/{CLONE}"));
    assert_eq!(
        run.rbd_json(B, "trash ls --all --format json"),
        serde_json::json!([])
    );
}

#[test]
fn a_replica_deleted_with_its_primary_stays_in_the_trash_while_a_clone_reads_it() {
    let mut run = Run::new();
    run.enable_and_sync();
    let at_snapshot = run.user_snapshot_on_both();
    run.clone_on_b();
    run.rbd_ok(A, &format!("snap rm rbd/{IMG}@t1"));
    run.rbd_ok(A, &format!("rm rbd/{IMG}"));
    run.quiet();
    assert!(!run.model.image_exists(A, IMG));
    assert!(
        !run.model.image_exists(B, IMG),
        "the daemon deleted the replica"
    );
    let trash = run.rbd_json(B, "trash ls --all --format json");
    assert_eq!(trash.as_array().unwrap().len(), 1, "{trash}");
    assert_eq!(trash[0]["name"], IMG);
    assert_eq!(run.clone_ledger(), at_snapshot, "the clone still reads it");

    run.rbd_ok(B, &format!("rm rbd/{CLONE}"));
    assert_eq!(
        run.rbd_json(B, "trash ls --all --format json"),
        serde_json::json!([])
    );
}

#[test]
fn a_forced_promote_works_with_a_clone_present_and_the_clone_survives() {
    let mut run = Run::new();
    run.enable_and_sync();
    let at_snapshot = run.user_snapshot_on_both();
    run.clone_on_b();
    run.model.set_site_up(run.now, A, false).unwrap();
    run.promote(B, true);
    assert_eq!(run.clone_ledger(), at_snapshot);
    assert_eq!(run.model.is_primary(B, IMG), Some(true));
}

#[test]
fn an_image_with_snapshots_or_clones_is_not_removed() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.user_snapshot_on_both();
    let err = failed(run.rbd(A, &format!("rm rbd/{IMG}")));
    assert_eq!(err.exit_status, 39, "{}", err.output);
    run.clone_on_b();
    run.model.set_site_up(run.now, A, false).unwrap();
    run.promote(B, true);
    let err = failed(run.rbd(B, &format!("rm rbd/{IMG}")));
    assert_eq!(err.exit_status, 39, "user snapshots are looked at first");
    run.rbd_ok(B, &format!("snap rm rbd/{IMG}@t1"));
    let err = failed(run.rbd(B, &format!("rm rbd/{IMG}")));
    assert_eq!(err.exit_status, 16, "{}", err.output);
    assert!(run.model.image_exists(B, IMG));
}

#[test]
fn a_replica_is_not_removed_and_says_why_in_librbds_order() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.user_snapshot_on_both();
    let err = failed(run.rbd(B, &format!("rm rbd/{IMG}")));
    assert_eq!(err.exit_status, 39, "{}", err.output);
    run.rbd_ok(A, &format!("snap rm rbd/{IMG}@t1"));
    run.snapshot(A);
    run.quiet();
    let err = failed(run.rbd(B, &format!("rm rbd/{IMG}")));
    assert_eq!(err.exit_status, 22);
    assert!(
        err.output
            .contains("mirrored image is not primary, add force option")
            && err
                .output
                .ends_with("rbd: delete error: (22) Invalid argument"),
        "{}",
        err.output
    );
    assert!(run.model.image_exists(B, IMG));
}

#[test]
fn rbd_info_names_a_clones_parent_snapshot_and_an_images_mirroring_as_the_cli_prints_them() {
    let mut run = Run::new();
    run.enable_and_sync();
    run.user_snapshot_on_both();
    let replica = run.rbd_json(B, &format!("info rbd/{IMG} --format json"));
    assert!(replica.get("parent").is_none(), "{replica}");
    assert_eq!(replica["mirroring"]["mode"], "snapshot");
    assert_eq!(replica["mirroring"]["primary"], false);
    let primary = run.rbd_json(A, &format!("info rbd/{IMG} --format json"));
    assert_eq!(primary["mirroring"]["primary"], true);
    assert_eq!(
        primary["mirroring"]["global_id"],
        replica["mirroring"]["global_id"]
    );

    run.clone_on_b();
    let clone = run.rbd_json(B, &format!("info rbd/{CLONE} --format json"));
    assert!(clone.get("mirroring").is_none(), "{clone}");
    assert_eq!(clone["parent"]["image"], IMG);
    assert_eq!(clone["parent"]["snapshot"], "t1");
    assert_eq!(clone["parent"]["trash"], false);
    assert_eq!(clone["parent"]["id"], replica["id"]);

    run.rbd_ok(A, &format!("snap rm rbd/{IMG}@t1"));
    run.snapshot(A);
    run.quiet();
    let clone = run.rbd_json(B, &format!("info rbd/{CLONE} --format json"));
    let rows = run.rbd_json(B, &format!("snap ls --all rbd/{IMG} --format json"));
    let trashed = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["namespace"]["type"] == "trash")
        .expect("the snapshot is in the trash namespace");
    assert_eq!(
        clone["parent"]["snapshot"], trashed["name"],
        "a trashed snapshot is named by its uuid"
    );
    assert_eq!(
        clone["parent"]["trash"], false,
        "`trash` is the parent image's"
    );
    let glue = run.model.image_info(B, CLONE).unwrap();
    assert_eq!(glue["parent"]["snapshot"], trashed["name"]);
}

#[test]
fn the_command_line_refuses_what_rbd_refuses() {
    let mut run = Run::new();
    let err = failed(run.rbd(A, "frobnicate rbd/vol-1"));
    assert_eq!(err.exit_status, 1);
    assert!(
        err.output
            .starts_with("rbd: error parsing command 'frobnicate")
    );
    let err = failed(run.rbd(A, "snap create rbd/vol-1"));
    assert_eq!(err.output, "rbd: snapshot name was not specified");
    let err = failed(run.rbd(A, "snap ls other/vol-1 --format json"));
    assert_eq!(err.exit_status, 2);
    let err = failed(run.rbd(A, "snap create rbd/nope@t1"));
    assert_eq!(err.exit_status, 2);
    let err = failed(run.rbd(A, "ls --bogus"));
    assert_eq!(err.output, "rbd: unrecognised option '--bogus'");
}
