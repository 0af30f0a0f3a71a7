//! The seam between the simulated Mold and Glue and the RBD images behind them.
//!
//! Two backends answer it: [`ModelStorage`](super::rbd::ModelStorage), the in-process model of
//! Ceph's snapshot mirroring (the default: fast, deterministic, steppable), and
//! [`CephStorage`](super::ceph::CephStorage), two real single-node Ceph clusters driven with
//! the `rbd` commands real Glue runs (`drbook sim --storage ceph`). Mold's records, the Glue
//! routes and the control API only ever talk to this trait, so the same scenario can run on
//! both and be compared (`tests/integration/ceph.rs`).
//!
//! Every rbd-shaped operation answers what the CLI prints: stdout on success, the exit status
//! and output on failure ([`RbdError`]), which Glue wraps into its 500 body.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

pub use super::ledger::DataMovement;

/// An rbd CLI failure as Glue reports it: Glue answers 500
/// `{"code":500,"message":"exit status N\n<output>"}`. `output` is the CLI's stderr without
/// its final newline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exit status {exit_status}: {output}")]
pub struct RbdError {
    pub exit_status: i32,
    pub output: String,
}

impl RbdError {
    pub fn new(exit_status: i32, output: impl Into<String>) -> Self {
        Self {
            exit_status,
            output: output.into(),
        }
    }
}

/// What one site's copy of an image holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteContent {
    /// The write sequence numbers the copy holds, ascending.
    pub writes: Vec<u64>,
    /// SHA-256 of the copy's bytes (`rbd export`), where the backend has real bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// RBD images on two sites with snapshot mirroring between them; see the module
/// documentation. `now` is the simulation's clock: the model advances to it, real Ceph runs on
/// its own.
pub trait Storage: Send {
    /// `model` or `ceph`.
    fn backend(&self) -> &'static str;

    /// Mold creates a plain (unmirrored) image for a volume on one site; an existing image is
    /// left as it is.
    fn create_image(&mut self, site: &str, image: &str, size_bytes: u64) -> Result<(), RbdError>;

    /// `rbd rm rbd/<image>` on one site: what Mold does when it deletes or expunges a volume.
    /// A non-primary copy, an image with snapshots and an absent one are refused as rbd
    /// refuses them.
    fn remove_image(&mut self, now: Instant, site: &str, image: &str) -> Result<(), RbdError>;

    /// One `rbd` command line on a site's storage VM (the words after `rbd`), as an operator
    /// or drbook types it over SSH: user snapshots, clones, the pool's trash and the statuses
    /// Glue has no route for. Stdout on success.
    fn rbd_command(
        &mut self,
        now: Instant,
        site: &str,
        args: &[String],
    ) -> Result<String, RbdError>;

    /// `rbd mirror image enable <img> snapshot`.
    fn enable_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError>;

    /// `rbd mirror image disable`.
    fn disable_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError>;

    /// `rbd mirror image promote [--force]`.
    fn promote(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        force: bool,
    ) -> Result<String, RbdError>;

    /// `rbd mirror image demote`.
    fn demote(&mut self, now: Instant, site: &str, image: &str) -> Result<String, RbdError>;

    /// `rbd mirror image resync`.
    fn resync(&mut self, now: Instant, site: &str, image: &str) -> Result<String, RbdError>;

    /// `rbd mirror image snapshot`.
    fn mirror_snapshot(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError>;

    /// `rbd mirror image status --format json`, as Glue returns it.
    fn image_status(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<serde_json::Value, RbdError>;

    /// `rbd mirror pool status --verbose --format json` as Glue's `GET /mirror/image/rbd`
    /// returns it; `null` for an unknown site, and what Glue shows for an unmirrored pool.
    fn pool_status(&mut self, now: Instant, site: &str) -> serde_json::Value;

    /// Per mirrored image, its state here and its peer's as this site sees it — `state` and
    /// `peer_sites[-1].state` of [`pool_status`](Self::pool_status), all that Mold's DR list
    /// reads of it. Empty where the pool status has no images.
    fn pool_states(&mut self, now: Instant, site: &str) -> BTreeMap<String, (String, String)> {
        pool_states_of(&self.pool_status(now, site))
    }

    /// Glue's `GET /mirror`: the pool summary only.
    fn pool_summary(&mut self, now: Instant, site: &str) -> Result<serde_json::Value, RbdError>;

    /// `rbd info --format json`.
    fn image_info(&self, site: &str, image: &str) -> Result<serde_json::Value, RbdError>;

    /// Whether the image takes writes there: `None` when it does not exist there.
    fn is_primary(&self, site: &str, image: &str) -> Option<bool>;

    /// Appends `count` writes to a primary image and returns their sequence numbers.
    fn write(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        count: u64,
    ) -> Result<Vec<u64>, RbdError>;

    /// Per site holding the image: its writes (and checksum, on real bytes).
    fn content(&self, image: &str) -> BTreeMap<String, SiteContent>;

    /// What mirroring copied for one image, where the backend can count it.
    fn image_data_movement(&self, image: &str) -> Option<DataMovement>;

    /// A disaster (`up = false`) or a recovery of one site's whole cluster.
    fn set_site_up(&mut self, now: Instant, site: &str, up: bool) -> Result<(), String>;

    /// Stops or starts one site's rbd-mirror daemon.
    fn set_daemon_up(&mut self, now: Instant, site: &str, up: bool) -> Result<(), String>;

    /// Cuts (or restores) the traffic between the two sites.
    fn set_partitioned(&mut self, now: Instant, partitioned: bool) -> Result<(), String>;

    /// Pool mirroring on one site (part of Glue's setup and teardown).
    fn set_pool_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        enabled: bool,
    ) -> Result<(), RbdError>;

    /// For Glue's `/peer` routes: whether this site can reach the other one's cluster.
    fn peer_reachable(&self, site: &str) -> bool;

    /// Processes everything due up to `now` (a no-op where time is real).
    fn advance(&mut self, now: Instant);

    /// When the backend next changes by itself; `None` when nothing is scheduled (or when
    /// time is real and nobody can know).
    fn next_event(&self) -> Option<Instant>;

    /// Which wall-clock time `at` stands for (status timestamps). Real Ceph keeps its own.
    fn set_wall_clock(&mut self, _at: Instant, _wall: DateTime<FixedOffset>) {}

    /// Lets the first full copies of the seeded images finish before the servers open;
    /// returns the instant they were done, or why they did not finish.
    fn settle_initial_copies(
        &mut self,
        start: Instant,
        images: &[String],
    ) -> Result<Instant, String>;

    /// The whole storage state for the control API's `/state`.
    fn state_json(&mut self, now: Instant) -> serde_json::Value;

    /// `ceph -s -f json` for Glue's `GET /glue`, where the backend has a real cluster.
    fn cluster_status(&self, _site: &str) -> Option<serde_json::Value> {
        None
    }

    /// Stops whatever the backend runs outside this process.
    fn shutdown(&mut self) {}
}

/// Each image's `state` and its peer's (`peer_sites[-1].state`) in a verbose pool status.
pub fn pool_states_of(pool: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    pool.get("images")
        .and_then(serde_json::Value::as_array)
        .map(|images| {
            images
                .iter()
                .filter_map(|i| {
                    let name = i.get("name")?.as_str()?.to_string();
                    let state = i.get("state")?.as_str().unwrap_or("").to_string();
                    let peer_state = i
                        .get("peer_sites")
                        .and_then(serde_json::Value::as_array)
                        .and_then(|p| p.last())
                        .and_then(|p| p.get("state"))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    Some((name, (state, peer_state)))
                })
                .collect()
        })
        .unwrap_or_default()
}
