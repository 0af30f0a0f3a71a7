//! The JSON Glue answers with, decoded leniently.
//!
//! Glue decodes `rbd`/`ceph` JSON into Go structs and re-encodes it, so strings are always
//! present but lists may be `null` (Go nil slices) and unknown keys come and go between Ceph
//! releases. Every type here ignores unknown keys and reads `null` lists as empty.
//!
//! The status strings and the predicates on them are exactly those of the Glue spec §3: the
//! predicates are the ones Glue's scheduler and Mold use, so drbook judges an image the way
//! ABLESTACK itself does.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// The description of a primary image.
pub const PRIMARY: &str = "local image is primary";
/// The description of an image force-promoted while its peer is down (Pacific 16.2.15).
pub const ORPHAN_FORCE_PROMOTING: &str = "orphan (force promoting)";
/// The description of an old primary demoted after a forced failover.
pub const SPLIT_BRAIN: &str = "split-brain";
/// The description right after a resync was flagged.
pub const RESYNC_REQUESTED: &str = "resync requested";
/// The description the CLI synthesises for a site that never reported.
pub const STATUS_NOT_FOUND: &str = "status not found";
/// The descriptions of a side that has replayed its peer's demotion (the wording varies
/// between Ceph releases; spec §3.2, §6.6).
pub const PEER_DEMOTED: [&str; 3] = [
    "remote image demoted",
    "remote image is not primary",
    "remote image is non-primary",
];

/// `last_update`'s format: local time of the reporting site.
const LAST_UPDATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// One site's view of one mirrored image: what the local status and each `peer_sites[]`
/// entry have in common. The predicates live here once, for both.
pub trait MirrorSide {
    /// `up+replaying`, `down+unknown`, …
    fn state(&self) -> &str;
    /// `local image is primary`, `replaying, {...}`, `split-brain`, …
    fn description(&self) -> &str;

    /// Whether an rbd-mirror daemon reports for this site (`up+…`).
    fn up(&self) -> bool {
        self.state().starts_with("up+")
    }

    /// The state after the `+`: `replaying`, `stopped`, `unknown`, `error`, …
    fn state_kind(&self) -> &str {
        let state = self.state();
        state.split_once('+').map_or(state, |(_, kind)| kind)
    }

    /// The description before its JSON detail: `replaying` for
    /// `replaying, {...}`, the whole text otherwise.
    fn description_kind(&self) -> &str {
        split_description(self.description()).0
    }

    /// The replayer's JSON detail (`replaying, {...}`); `None` without one or when it is not
    /// the JSON expected.
    fn replay_detail(&self) -> Option<ReplayDetail> {
        split_description(self.description())
            .1
            .and_then(|tail| serde_json::from_str(tail).ok())
    }

    /// `description == "local image is primary"`.
    fn is_primary(&self) -> bool {
        self.description() == PRIMARY
    }

    /// The description mentions `force promoting` (`orphan (force promoting)`).
    fn is_force_promoting(&self) -> bool {
        self.description().contains("force promoting")
    }

    /// The state contains `replaying` and the description contains `idle`: a replica with
    /// nothing left to copy.
    fn is_replaying_idle(&self) -> bool {
        self.state().contains("replaying") && self.description().contains("idle")
    }

    /// `split-brain`: an old primary demoted without a common snapshot; needs a resync.
    fn is_split_brain(&self) -> bool {
        self.description_kind() == SPLIT_BRAIN
    }

    /// Mold's guard for starting a VM on this image: primary, or force-promoted while the
    /// peer is down.
    fn is_startable(&self) -> bool {
        matches!(self.description(), PRIMARY | ORPHAN_FORCE_PROMOTING)
    }

    /// This side has replayed its peer's demotion (`remote image demoted` or a variant).
    fn shows_peer_demoted(&self) -> bool {
        PEER_DEMOTED.contains(&self.description_kind())
    }

    /// `resync requested`: the image is about to be deleted and copied again in full.
    fn is_resync_requested(&self) -> bool {
        self.description_kind() == RESYNC_REQUESTED
    }

    /// The site never reported a status for this image (`down+unknown` / `status not
    /// found`).
    fn is_status_not_found(&self) -> bool {
        self.description_kind() == STATUS_NOT_FOUND
    }
}

/// Splits `replaying, {...}` on the first `", "` into its kind and its JSON tail.
fn split_description(description: &str) -> (&str, Option<&str>) {
    match description.split_once(", ") {
        Some((kind, tail)) => (kind, Some(tail)),
        None => (description, None),
    }
}

/// The JSON a replaying replica puts after `replaying, ` (spec §3.2). Which keys appear
/// depends on the Ceph release and on whether a copy is under way.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ReplayDetail {
    /// `idle` or `syncing`.
    pub replay_state: Option<String>,
    /// Unix time of the newest snapshot this replica holds; absent until one synced.
    pub local_snapshot_timestamp: Option<i64>,
    /// Unix time of the primary's newest mirror snapshot.
    pub remote_snapshot_timestamp: Option<i64>,
    /// Unix time of the snapshot being copied (only while syncing).
    pub syncing_snapshot_timestamp: Option<i64>,
    /// Progress of the snapshot being copied (only while syncing).
    pub syncing_percent: Option<f64>,
    pub bytes_per_second: Option<f64>,
    pub bytes_per_snapshot: Option<f64>,
    /// Only while snapshots are pending and the rate is positive.
    pub seconds_until_synced: Option<f64>,
    pub last_snapshot_bytes: Option<u64>,
    pub last_snapshot_sync_seconds: Option<f64>,
}

impl ReplayDetail {
    /// `replay_state == "idle"`.
    pub fn is_idle(&self) -> bool {
        self.replay_state.as_deref() == Some("idle")
    }

    /// When the newest snapshot this replica holds was taken on the primary: the point in
    /// time a failover to this replica would return to.
    pub fn local_snapshot_time(&self) -> Option<DateTime<Utc>> {
        self.local_snapshot_timestamp
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
    }
}

/// `GET /mirror/image/status/rbd/<img>`: one image's mirroring status on the site asked,
/// plus what it last heard from its peers. Also an entry of [`PoolStatus::images`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ImageStatus {
    #[serde(default)]
    pub name: String,
    /// The same on both sites.
    #[serde(default)]
    pub global_id: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub description: String,
    /// The reporting site's local time; `None` when never reported.
    #[serde(default, deserialize_with = "last_update")]
    pub last_update: Option<NaiveDateTime>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub peer_sites: Vec<PeerSite>,
    /// Mirror snapshots; only a primary lists them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub snapshots: Vec<MirrorSnapshot>,
}

impl MirrorSide for ImageStatus {
    fn state(&self) -> &str {
        &self.state
    }
    fn description(&self) -> &str {
        &self.description
    }
}

impl ImageStatus {
    /// The peer, as ABLESTACK picks it: the last `peer_sites[]` entry.
    pub fn peer(&self) -> Option<&PeerSite> {
        self.peer_sites.last()
    }

    /// Healthy and in sync: primary here, and the peer replaying and idle.
    pub fn is_healthy_in_sync(&self) -> bool {
        self.is_primary() && self.peer().is_some_and(MirrorSide::is_replaying_idle)
    }

    /// Still syncing: the peer's description lacks `idle`.
    pub fn is_still_syncing(&self) -> bool {
        self.peer()
            .is_some_and(|peer| !peer.description.contains("idle"))
    }

    /// Both sides primary: the state after a forced failover once the old primary is back;
    /// needs a failback resync.
    pub fn is_both_primary(&self) -> bool {
        self.is_primary() && self.peer().is_some_and(MirrorSide::is_primary)
    }

    /// Promoting here is not needed: already primary, or force promoting.
    pub fn promote_not_needed(&self) -> bool {
        self.is_primary() || self.is_force_promoting()
    }
}

/// Another site's last reported status of the image (`peer_sites[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PeerSite {
    /// Glue's site names: `local` for the site where setup ran, `remote` for the other.
    #[serde(default)]
    pub site_name: String,
    /// A single string despite the plural.
    #[serde(default)]
    pub mirror_uuids: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub description: String,
    /// Frozen while that site is down.
    #[serde(default, deserialize_with = "last_update")]
    pub last_update: Option<NaiveDateTime>,
}

impl MirrorSide for PeerSite {
    fn state(&self) -> &str {
        &self.state
    }
    fn description(&self) -> &str {
        &self.description
    }
}

/// A mirror snapshot of a primary image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MirrorSnapshot {
    #[serde(default)]
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// A primary-demoted snapshot (written by a demote).
    #[serde(default)]
    pub demoted: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub mirror_peer_uuids: Vec<String>,
}

/// `GET /mirror`: the pool's mirroring health. Health values are `OK` < `UNKNOWN` <
/// `WARNING` < `ERROR`; `health` is the worse of the other two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PoolSummary {
    #[serde(default)]
    pub health: String,
    #[serde(default)]
    pub daemon_health: String,
    #[serde(default)]
    pub image_health: String,
    /// Image count per bare replay state (`replaying`, `stopped`, `unknown`, `error`, …).
    #[serde(default, deserialize_with = "null_as_default")]
    pub states: BTreeMap<String, u64>,
}

/// `GET /mirror/image/rbd`: the verbose pool status. On a pool whose mirroring is disabled
/// Glue answers with empty strings and `null` lists.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "PoolStatusWire")]
pub struct PoolStatus {
    pub summary: PoolSummary,
    pub daemons: Vec<Daemon>,
    /// Read with `images()`/`image()`: kept beside its index.
    images: Vec<ImageStatus>,
    /// Each image's place in `images`: every volume of a thousand VMs is looked up by name,
    /// so a lookup must not scan the list.
    by_name: HashMap<String, usize>,
}

/// [`PoolStatus`] as Glue sends it.
#[derive(Deserialize)]
struct PoolStatusWire {
    #[serde(default)]
    summary: PoolSummary,
    #[serde(default, deserialize_with = "null_as_default")]
    daemons: Vec<Daemon>,
    #[serde(default, deserialize_with = "null_as_default")]
    images: Vec<ImageStatus>,
}

impl From<PoolStatusWire> for PoolStatus {
    fn from(wire: PoolStatusWire) -> Self {
        // The first of a repeated name, as a scan would find it.
        let mut by_name = HashMap::with_capacity(wire.images.len());
        for (i, image) in wire.images.iter().enumerate() {
            by_name.entry(image.name.clone()).or_insert(i);
        }
        Self {
            summary: wire.summary,
            daemons: wire.daemons,
            images: wire.images,
            by_name,
        }
    }
}

impl PoolStatus {
    /// Every image's status, in Glue's order.
    pub fn images(&self) -> &[ImageStatus] {
        &self.images
    }

    /// The status of one image, by name (Mold matches volumes by `path` this way).
    pub fn image(&self, name: &str) -> Option<&ImageStatus> {
        self.by_name.get(name).map(|&i| &self.images[i])
    }

    /// Glue's answer for a pool whose mirroring is disabled: no health at all.
    pub fn is_mirroring_disabled(&self) -> bool {
        self.summary.health.is_empty() && self.images.is_empty()
    }
}

/// An rbd-mirror daemon serving the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Daemon {
    #[serde(default)]
    pub service_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub ceph_version: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub health: String,
}

/// `GET /mirror/image/info/rbd/<img>`: `rbd info` of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    #[serde(default)]
    pub name: String,
    /// Changes when a resync re-creates the image.
    #[serde(default)]
    pub id: String,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub snapshot_count: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: Vec<String>,
    /// The template image a clone was made from; mirrored together with it.
    #[serde(default, deserialize_with = "parent")]
    pub parent: Option<ImageParent>,
}

/// Where a clone comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ImageParent {
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub snapshot: String,
}

/// `GET /glue`: the cluster's health as `ceph -s` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterHealth {
    pub fsid: String,
    /// `HEALTH_OK`, `HEALTH_WARN`, `HEALTH_ERR`.
    pub status: String,
    /// Active health checks: name (`MON_DISK_LOW`) → summary message.
    pub checks: BTreeMap<String, String>,
}

impl ClusterHealth {
    /// Whether the cluster serves I/O, by the test Mold's connectivity check uses:
    /// `HEALTH_OK` or `HEALTH_WARN`.
    pub fn is_usable(&self) -> bool {
        matches!(self.status.as_str(), "HEALTH_OK" | "HEALTH_WARN")
    }
}

impl<'de> Deserialize<'de> for ClusterHealth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            fsid: String,
            health: Health,
        }
        #[derive(Deserialize)]
        struct Health {
            status: String,
            #[serde(default, deserialize_with = "null_as_default")]
            checks: BTreeMap<String, Check>,
        }
        #[derive(Deserialize, Default)]
        struct Check {
            #[serde(default)]
            summary: Summary,
        }
        #[derive(Deserialize, Default)]
        struct Summary {
            #[serde(default)]
            message: String,
        }
        let status = Status::deserialize(deserializer)?;
        Ok(Self {
            fsid: status.fsid,
            status: status.health.status,
            checks: status
                .health
                .checks
                .into_iter()
                .map(|(name, check)| (name, check.summary.message))
                .collect(),
        })
    }
}

/// A mutation's success body as text: Glue answers `{"Message": "..."}` (capital M),
/// `{"message": "..."}` or a bare JSON string, depending on the handler. Trailing newlines of
/// the CLI output are dropped.
pub(crate) fn decode_message(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let text = match &value {
        serde_json::Value::String(text) => Some(text.as_str()),
        serde_json::Value::Object(map) => map
            .get("Message")
            .or_else(|| map.get("message"))
            .and_then(serde_json::Value::as_str),
        _ => None,
    };
    text.map(|t| t.trim_end().to_string())
        .ok_or_else(|| "neither a message object nor a string".to_string())
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

fn last_update<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NaiveDateTime>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDateTime::parse_from_str(&text, LAST_UPDATE_FORMAT)
        .map(Some)
        .map_err(|e| {
            serde::de::Error::custom(format!(
                "last_update {text:?} is not YYYY-MM-DD HH:MM:SS: {e}"
            ))
        })
}

fn parent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ImageParent>, D::Error> {
    Ok(Option::<ImageParent>::deserialize(deserializer)?.filter(|p| !p.image.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The replica description of spec §3.2 (ABLESTACK's real example, 7 keys).
    const IDLE: &str = r#"replaying, {"bytes_per_second":0.0,"bytes_per_snapshot":0.0,"last_snapshot_bytes":0,"last_snapshot_sync_seconds":2,"local_snapshot_timestamp":1719214141,"remote_snapshot_timestamp":1719214141,"replay_state":"idle"}"#;
    /// A replica copying a snapshot delta.
    const SYNCING: &str = r#"replaying, {"bytes_per_second":1048576.0,"bytes_per_snapshot":2097152.0,"local_snapshot_timestamp":1719214141,"remote_snapshot_timestamp":1719217741,"replay_state":"syncing","seconds_until_synced":1,"syncing_percent":42,"syncing_snapshot_timestamp":1719217741}"#;
    /// Right after enabling: no snapshot synced yet (spec §6.6).
    const IDLE_NO_LOCAL: &str = r#"replaying, {"bytes_per_second":0.0,"bytes_per_snapshot":0.0,"remote_snapshot_timestamp":1719214141,"replay_state":"idle"}"#;

    fn peer(site: &str, state: &str, description: &str, last_update: &str) -> Value {
        json!({
            "site_name": site,
            "mirror_uuids": "c3a1e6c2-8f4e-4d0b-9a55-0d2f4f2b6e11",
            "state": state,
            "description": description,
            "last_update": last_update,
        })
    }

    /// A status body as Glue renders `rbd mirror image status` (daemon_service always there,
    /// unknown keys kept to prove they are ignored).
    fn status_body(state: &str, description: &str, peers: &Value) -> String {
        json!({
            "name": "6f1c1d8e-1b0e-4c1e-9d1b-3a3d4d7b2f10",
            "global_id": "0d5b2c6a-7a55-4e1f-8f0a-5c9e3b1a2d44",
            "state": state,
            "description": description,
            "daemon_service": {"service_id": "4161", "instance_id": "4163", "daemon_id": "scvm1.abc", "hostname": "scvm1"},
            "last_update": "2024-06-24 16:09:31",
            "peer_sites": peers,
            "an_unknown_key": [1, 2, 3],
        })
        .to_string()
    }

    fn status(state: &str, description: &str, peers: &Value) -> ImageStatus {
        serde_json::from_str(&status_body(state, description, peers)).expect("decodes")
    }

    #[test]
    fn healthy_primary() {
        let mut body: Value = serde_json::from_str(&status_body(
            "up+stopped",
            PRIMARY,
            &json!([peer("remote", "up+replaying", IDLE, "2024-06-24 16:09:20")]),
        ))
        .unwrap();
        body["snapshots"] = json!([
            {"id": 12, "name": ".mirror.primary.0d5b.1", "demoted": false, "mirror_peer_uuids": ["c3a1"]},
            {"id": 15, "name": ".mirror.primary.0d5b.2", "demoted": false, "mirror_peer_uuids": null},
        ]);
        let s: ImageStatus = serde_json::from_value(body).unwrap();
        assert!(s.up());
        assert_eq!(s.state_kind(), "stopped");
        assert!(s.is_primary());
        assert!(s.is_startable());
        assert!(s.promote_not_needed());
        assert!(s.is_healthy_in_sync());
        assert!(!s.is_still_syncing());
        assert!(!s.is_both_primary());
        assert!(!s.is_split_brain());
        assert_eq!(s.replay_detail(), None);
        assert_eq!(
            s.last_update,
            NaiveDateTime::parse_from_str("2024-06-24 16:09:31", LAST_UPDATE_FORMAT).ok()
        );
        assert_eq!(s.snapshots.len(), 2);
        assert_eq!(s.snapshots[0].id, 12);
        assert_eq!(s.snapshots[0].mirror_peer_uuids, ["c3a1"]);
        assert!(s.snapshots[1].mirror_peer_uuids.is_empty());
        let p = s.peer().unwrap();
        assert_eq!(p.site_name, "remote");
        assert!(p.is_replaying_idle());
    }

    #[test]
    fn healthy_replica_with_the_real_seven_key_description() {
        let s = status(
            "up+replaying",
            IDLE,
            &json!([peer("local", "up+stopped", PRIMARY, "2024-06-24 16:09:25")]),
        );
        assert!(s.up());
        assert_eq!(s.state_kind(), "replaying");
        assert_eq!(s.description_kind(), "replaying");
        assert!(s.is_replaying_idle());
        assert!(!s.is_primary());
        assert!(!s.is_startable());
        assert!(!s.promote_not_needed());
        assert!(
            !s.is_healthy_in_sync(),
            "the replica side is not the primary"
        );
        assert!(s.snapshots.is_empty());
        let d = s.replay_detail().expect("the JSON tail parses");
        assert!(d.is_idle());
        assert_eq!(
            d,
            ReplayDetail {
                replay_state: Some("idle".into()),
                local_snapshot_timestamp: Some(1_719_214_141),
                remote_snapshot_timestamp: Some(1_719_214_141),
                bytes_per_second: Some(0.0),
                bytes_per_snapshot: Some(0.0),
                last_snapshot_bytes: Some(0),
                last_snapshot_sync_seconds: Some(2.0),
                ..ReplayDetail::default()
            }
        );
        assert_eq!(
            d.local_snapshot_time().unwrap().to_rfc3339(),
            "2024-06-24T07:29:01+00:00"
        );
        assert!(s.peer().unwrap().is_primary());
    }

    #[test]
    fn replica_right_after_enabling_has_no_local_snapshot_yet() {
        let s = status("up+replaying", IDLE_NO_LOCAL, &json!([]));
        let d = s.replay_detail().unwrap();
        assert!(d.is_idle());
        assert_eq!(d.local_snapshot_timestamp, None);
        assert_eq!(d.local_snapshot_time(), None);
        assert!(s.is_replaying_idle());
    }

    #[test]
    fn delta_syncing_replica_and_its_primary() {
        let replica = status(
            "up+replaying",
            SYNCING,
            &json!([peer("local", "up+stopped", PRIMARY, "")]),
        );
        assert!(!replica.is_replaying_idle());
        let d = replica.replay_detail().unwrap();
        assert!(!d.is_idle());
        assert_eq!(d.replay_state.as_deref(), Some("syncing"));
        assert_eq!(d.syncing_percent, Some(42.0));
        assert_eq!(d.syncing_snapshot_timestamp, Some(1_719_217_741));
        assert_eq!(d.seconds_until_synced, Some(1.0));
        assert_eq!(d.bytes_per_second, Some(1_048_576.0));

        let primary = status(
            "up+stopped",
            PRIMARY,
            &json!([peer(
                "remote",
                "up+replaying",
                SYNCING,
                "2024-06-24 16:10:01"
            )]),
        );
        assert!(primary.is_still_syncing());
        assert!(!primary.is_healthy_in_sync());
        assert!(primary.promote_not_needed());
    }

    #[test]
    fn starting_replay_during_bootstrap() {
        let s = status(
            "up+starting_replay",
            "starting replay",
            &json!([peer("local", "up+stopped", PRIMARY, "2024-06-24 16:09:25")]),
        );
        assert!(s.up());
        assert_eq!(s.state_kind(), "starting_replay");
        assert_eq!(s.description_kind(), "starting replay");
        assert_eq!(s.replay_detail(), None);
        assert!(!s.is_replaying_idle());
        assert!(!s.is_primary());
    }

    #[test]
    fn both_sides_demoted_in_an_orderly_switchover() {
        for description in [
            "remote image demoted",
            "remote image is not primary",
            "remote image is non-primary",
        ] {
            let s = status(
                "up+unknown",
                description,
                &json!([peer(
                    "local",
                    "up+unknown",
                    "remote image is not primary",
                    "2024-06-24 16:11:00"
                )]),
            );
            assert!(s.up());
            assert_eq!(s.state_kind(), "unknown");
            assert!(s.shows_peer_demoted(), "{description}");
            assert!(!s.is_primary());
            assert!(!s.promote_not_needed());
            assert!(!s.is_startable());
            assert!(s.peer().unwrap().shows_peer_demoted());
        }
        // The demoted side's description while the peer has not replayed it yet is not
        // confirmed (spec §6.2 DEMOTE_PENDING): no predicate may claim anything about it.
        let pending = status(
            "up+unknown",
            "",
            &json!([peer("remote", "up+replaying", SYNCING, "")]),
        );
        assert!(!pending.shows_peer_demoted());
        assert!(!pending.is_primary());
        assert!(pending.is_still_syncing());
    }

    #[test]
    fn split_brain_after_demoting_a_returned_old_primary() {
        let s = status(
            "up+error",
            SPLIT_BRAIN,
            &json!([peer("remote", "up+stopped", PRIMARY, "2024-06-24 17:00:00")]),
        );
        assert!(s.up());
        assert_eq!(s.state_kind(), "error");
        assert!(s.is_split_brain());
        assert!(!s.is_primary());
        assert!(!s.is_startable());
        assert!(!s.is_both_primary());
        assert!(s.peer().unwrap().is_primary());
    }

    #[test]
    fn two_primaries_after_the_old_primary_returns() {
        let s = status(
            "up+stopped",
            PRIMARY,
            &json!([peer("remote", "up+stopped", PRIMARY, "2024-06-24 17:00:00")]),
        );
        assert!(s.is_both_primary());
        assert!(!s.is_healthy_in_sync());
        assert!(s.is_still_syncing(), "the peer's description lacks idle");
    }

    #[test]
    fn orphan_force_promoting_while_the_peer_is_down() {
        for state in ["up+stopping_replay", "up+stopped"] {
            let s = status(
                state,
                ORPHAN_FORCE_PROMOTING,
                &json!([peer(
                    "local",
                    "down+stopped",
                    PRIMARY,
                    "2024-06-24 16:30:00"
                )]),
            );
            assert!(s.is_force_promoting());
            assert!(s.is_startable());
            assert!(s.promote_not_needed());
            assert!(!s.is_primary());
            assert_eq!(s.description_kind(), ORPHAN_FORCE_PROMOTING);
            assert_eq!(s.replay_detail(), None);
        }
    }

    #[test]
    fn force_promoted_transient_is_not_force_promoting() {
        // §3.6 tests `contains "force promoting"`; `force promoted` does not contain it.
        let s = status("up+stopped", "force promoted", &json!([]));
        assert!(!s.is_force_promoting());
        assert!(!s.promote_not_needed());
        assert!(!s.is_startable());
        assert_eq!(s.state_kind(), "stopped");
    }

    #[test]
    fn resync_requested() {
        let s = status(
            "up+stopped",
            RESYNC_REQUESTED,
            &json!([peer("remote", "up+stopped", PRIMARY, "2024-06-24 17:05:00")]),
        );
        assert!(s.is_resync_requested());
        assert!(!s.is_primary());
        assert!(!s.is_split_brain());
    }

    #[test]
    fn never_reported_site_is_down_unknown_with_no_last_update() {
        let body = json!({
            "name": "img", "global_id": "g", "state": "down+unknown",
            "description": STATUS_NOT_FOUND, "daemon_service": {"service_id": "", "instance_id": "", "daemon_id": "", "hostname": ""},
            "last_update": "",
            "peer_sites": [peer("local", "down+unknown", STATUS_NOT_FOUND, "")],
        });
        let s: ImageStatus = serde_json::from_value(body).unwrap();
        assert!(!s.up());
        assert_eq!(s.state_kind(), "unknown");
        assert!(s.is_status_not_found());
        assert_eq!(s.last_update, None);
        let p = s.peer().unwrap();
        assert!(!p.up());
        assert!(p.is_status_not_found());
        assert_eq!(p.last_update, None);
    }

    #[test]
    fn null_peer_sites_and_snapshots_read_as_empty() {
        let body = r#"{"name":"img","global_id":"g","state":"up+stopped","description":"local image is primary","daemon_service":null,"last_update":"2024-06-24 16:09:31","peer_sites":null,"snapshots":null}"#;
        let s: ImageStatus = serde_json::from_str(body).unwrap();
        assert!(s.peer_sites.is_empty());
        assert!(s.snapshots.is_empty());
        assert_eq!(s.peer(), None);
        assert!(!s.is_healthy_in_sync());
        assert!(!s.is_still_syncing());
        assert!(!s.is_both_primary());
    }

    #[test]
    fn dead_peer_site_keeps_a_frozen_last_update() {
        let s = status(
            "up+replaying",
            IDLE,
            &json!([peer(
                "local",
                "down+stopped",
                PRIMARY,
                "2024-06-24 16:09:25"
            )]),
        );
        // Nothing in the survivor's own status shows the outage (spec §6.6).
        assert!(s.up());
        assert!(s.is_replaying_idle());
        let p = s.peer().unwrap();
        assert!(!p.up());
        assert_eq!(p.state_kind(), "stopped");
        assert!(p.is_primary());
        assert_eq!(p.last_update.unwrap().to_string(), "2024-06-24 16:09:25");
    }

    #[test]
    fn the_peer_is_the_last_entry() {
        let s = status(
            "up+stopped",
            PRIMARY,
            &json!([
                peer("old", "down+unknown", STATUS_NOT_FOUND, ""),
                peer("remote", "up+replaying", IDLE, "2024-06-24 16:09:20"),
            ]),
        );
        assert_eq!(s.peer().unwrap().site_name, "remote");
        assert!(s.is_healthy_in_sync());
    }

    #[test]
    fn description_without_json_tail_or_with_a_broken_one() {
        let s = status("up+replaying", "replaying", &json!([]));
        assert_eq!(s.description_kind(), "replaying");
        assert_eq!(s.replay_detail(), None);
        let s = status("up+replaying", "replaying, {not json", &json!([]));
        assert_eq!(s.description_kind(), "replaying");
        assert_eq!(s.replay_detail(), None);
        let s = status(
            "up+replaying",
            r#"replaying, {"replay_state":"idle","a_future_key":{"x":1}}"#,
            &json!([]),
        );
        assert!(s.replay_detail().unwrap().is_idle());
    }

    #[test]
    fn a_malformed_last_update_is_a_decode_error_that_says_so() {
        let body = r#"{"name":"img","state":"up+stopped","description":"","last_update":"2024-06-24T16:09:31"}"#;
        let err = serde_json::from_str::<ImageStatus>(body).unwrap_err();
        assert!(err.to_string().contains("last_update"), "{err}");
    }

    #[test]
    fn pool_summary() {
        let body = r#"{"health":"WARNING","daemon_health":"OK","image_health":"WARNING","states":{"replaying":1,"unknown":1}}"#;
        let s: PoolSummary = serde_json::from_str(body).unwrap();
        assert_eq!(s.health, "WARNING");
        assert_eq!(s.daemon_health, "OK");
        assert_eq!(s.image_health, "WARNING");
        assert_eq!(s.states.get("replaying"), Some(&1));
        assert_eq!(s.states.get("unknown"), Some(&1));
        let split: PoolSummary = serde_json::from_str(
            r#"{"health":"ERROR","daemon_health":"OK","image_health":"ERROR","states":{"error":1}}"#,
        )
        .unwrap();
        assert_eq!(split.states.get("error"), Some(&1));
    }

    #[test]
    fn verbose_pool_status() {
        let body = json!({
            "summary": {"health": "OK", "daemon_health": "OK", "image_health": "OK", "states": {"replaying": 1, "stopped": 1}},
            "daemons": [{"service_id": "4161", "instance_id": "4163", "client_id": "rbd-mirror.scvm1.abc", "hostname": "scvm1", "ceph_version": "16.2.15", "leader": true, "health": "OK"}],
            "images": [
                {"name": "vol-a", "global_id": "ga", "state": "up+stopped", "description": PRIMARY,
                 "daemon_service": "", "last_update": "2024-06-24 16:09:31",
                 "peer_sites": [peer("remote", "up+replaying", IDLE, "2024-06-24 16:09:20")]},
                {"name": "vol-b", "global_id": "gb", "state": "up+replaying", "description": IDLE,
                 "daemon_service": "", "last_update": "2024-06-24 16:09:30", "peer_sites": null},
            ],
        })
        .to_string();
        let p: PoolStatus = serde_json::from_str(&body).unwrap();
        assert!(!p.is_mirroring_disabled());
        assert_eq!(p.summary.health, "OK");
        assert_eq!(p.daemons.len(), 1);
        assert!(p.daemons[0].leader);
        assert_eq!(p.daemons[0].hostname, "scvm1");
        assert_eq!(p.images().len(), 2);
        assert!(p.image("vol-a").unwrap().is_healthy_in_sync());
        assert!(p.image("vol-b").unwrap().is_replaying_idle());
        assert_eq!(p.image("vol-c"), None);
    }

    #[test]
    fn pool_status_of_a_pool_without_mirroring() {
        let body = r#"{"summary":{"health":"","daemon_health":"","image_health":"","states":null},"daemons":null,"images":null}"#;
        let p: PoolStatus = serde_json::from_str(body).unwrap();
        assert!(p.is_mirroring_disabled());
        assert!(p.daemons.is_empty());
        assert!(p.images().is_empty());
        assert!(p.summary.states.is_empty());
    }

    #[test]
    fn image_entry_not_found_has_empty_fields() {
        let body = r#"{"name":"","global_id":"","state":"","description":"","daemon_service":null,"last_update":"","peer_sites":null}"#;
        let s: ImageStatus = serde_json::from_str(body).unwrap();
        assert_eq!(s, ImageStatus::default());
        assert!(!s.up());
        assert_eq!(s.state_kind(), "");
    }

    #[test]
    fn image_info_with_and_without_parent() {
        let clone = r#"{"name":"vol-a","id":"5e2a6b8c1d3f","size":53687091200,"snapshot_count":3,
            "features":["layering","exclusive-lock","object-map","fast-diff","deep-flatten"],
            "parent":{"pool":"rbd","image":"tmpl-1","snapshot":"cloudstack-base-snap"}}"#;
        let i: ImageInfo = serde_json::from_str(clone).unwrap();
        assert_eq!(i.size, 53_687_091_200);
        assert_eq!(i.snapshot_count, 3);
        assert_eq!(i.features.len(), 5);
        let p = i.parent.unwrap();
        assert_eq!((p.pool.as_str(), p.image.as_str()), ("rbd", "tmpl-1"));
        assert_eq!(p.snapshot, "cloudstack-base-snap");

        let plain = r#"{"name":"vol-b","id":"77aa","size":1073741824,"snapshot_count":0,
            "features":null,"parent":{"pool":"","image":"","snapshot":""}}"#;
        let i: ImageInfo = serde_json::from_str(plain).unwrap();
        assert_eq!(i.parent, None);
        assert!(i.features.is_empty());
        let absent: ImageInfo = serde_json::from_str(r#"{"name":"x","id":"y","size":1}"#).unwrap();
        assert_eq!(absent.parent, None);
    }

    #[test]
    fn cluster_health_from_ceph_status() {
        let warn = json!({
            "fsid": "9980ffe8-4bc1-11ee-9b1f-002481004170",
            "health": {
                "status": "HEALTH_WARN",
                "checks": {"MON_DISK_LOW": {"severity": "HEALTH_WARN", "summary": {"message": "mon scvm1 is low on available space", "count": 1}, "muted": false}},
                "mutes": [],
            },
            "election_epoch": 148,
            "quorum_names": ["scvm1"],
            "monmap": {"epoch": 3, "min_mon_release_name": "pacific", "num_mons": 1},
        });
        let h: ClusterHealth = serde_json::from_value(warn).unwrap();
        assert_eq!(h.status, "HEALTH_WARN");
        assert_eq!(h.fsid, "9980ffe8-4bc1-11ee-9b1f-002481004170");
        assert!(h.is_usable());
        assert_eq!(
            h.checks.get("MON_DISK_LOW").map(String::as_str),
            Some("mon scvm1 is low on available space")
        );
        let ok: ClusterHealth =
            serde_json::from_str(r#"{"health":{"status":"HEALTH_OK","checks":null}}"#).unwrap();
        assert!(ok.is_usable());
        assert!(ok.checks.is_empty());
        let err: ClusterHealth =
            serde_json::from_str(r#"{"health":{"status":"HEALTH_ERR","checks":{}}}"#).unwrap();
        assert!(!err.is_usable());
        assert!(serde_json::from_str::<ClusterHealth>(r#"{"fsid":"x"}"#).is_err());
    }

    #[test]
    fn success_bodies_in_all_three_shapes() {
        assert_eq!(
            decode_message(b"{\n    \"Message\": \"Image promoted to primary\\n\"\n}").unwrap(),
            "Image promoted to primary"
        );
        assert_eq!(
            decode_message(br#"{"message":"Mirroring disabled"}"#).unwrap(),
            "Mirroring disabled"
        );
        assert_eq!(
            decode_message(br#""Snapshot ID: 17\n""#).unwrap(),
            "Snapshot ID: 17"
        );
        assert!(decode_message(b"<html>").is_err());
        assert!(decode_message(br#"{"Other":"x"}"#).is_err());
        assert!(decode_message(b"42").is_err());
    }
}
