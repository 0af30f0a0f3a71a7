//! An image's mirror status as ABLESTACK's own code reads Glue's JSON — Mold's DR plugin and
//! Glue's snapshot scheduler — with their checks written from the rules they follow (the Glue
//! notes, §3.6), not with drbook's Glue decoder: the simulator is what drbook's client is
//! judged against, so it does not borrow the client's reading.

use serde_json::Value;

/// `description` of a primary image.
pub const PRIMARY: &str = "local image is primary";
/// `description` of an image force-promoted while its peer is down.
const ORPHAN_FORCE_PROMOTING: &str = "orphan (force promoting)";

/// One image's status on one site, and its peer's as that site last heard it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageView {
    pub state: String,
    pub description: String,
    pub peer_state: String,
    pub peer_description: String,
}

impl ImageView {
    /// From Glue's `/mirror/image/status` JSON; `None` for anything without a `state` (an
    /// error text, an image being re-created). The peer is the last of `peer_sites`.
    pub fn from_json(v: &Value) -> Option<Self> {
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
        v.get("state")?.as_str()?;
        let peer = v["peer_sites"]
            .as_array()
            .and_then(|p| p.last())
            .cloned()
            .unwrap_or(Value::Null);
        Some(Self {
            state: text(v, "state"),
            description: text(v, "description"),
            peer_state: text(&peer, "state"),
            peer_description: text(&peer, "description"),
        })
    }

    /// `description == "local image is primary"`.
    pub fn is_primary(&self) -> bool {
        self.description == PRIMARY
    }

    /// Healthy and in sync: primary here, the peer's state `replaying` and its description
    /// `idle`.
    pub fn in_sync(&self) -> bool {
        self.is_primary()
            && self.peer_state.contains("replaying")
            && self.peer_description.contains("idle")
    }

    /// Both sides primary (a forced failover once the old primary is back).
    pub fn both_primary(&self) -> bool {
        self.is_primary() && self.peer_description == PRIMARY
    }

    /// Mold's failover skips an image already primary or being force-promoted.
    pub fn promote_not_needed(&self) -> bool {
        self.is_primary() || self.description.contains("force promoting")
    }

    /// Mold's start guard lets a VM start on this image.
    pub fn startable(&self) -> bool {
        self.is_primary() || self.description == ORPHAN_FORCE_PROMOTING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_read_the_fields_mold_reads() {
        let v = serde_json::json!({
            "name": "img", "state": "up+stopped", "description": "local image is primary",
            "peer_sites": [{"site_name": "remote", "state": "up+replaying",
                            "description": "replaying, {\"replay_state\":\"idle\"}"}],
        });
        let view = ImageView::from_json(&v).unwrap();
        assert!(view.is_primary() && view.in_sync() && view.startable());
        assert!(!view.both_primary());
        let orphan = ImageView {
            state: "up+stopping_replay".into(),
            description: ORPHAN_FORCE_PROMOTING.into(),
            ..ImageView::default()
        };
        assert!(orphan.startable() && orphan.promote_not_needed() && !orphan.in_sync());
        assert!(ImageView::from_json(&serde_json::json!("rbd: error opening image")).is_none());
    }
}
