//! The Glue REST API of one ABLESTACK site: Ceph RBD mirroring status and the image-level
//! promote, demote, resync and mirror-snapshot calls Mold makes (spec `glue-and-rbd.md`).
//!
//! [`GlueClient`] fails over between the site's storage VMs and never re-sends a mutation;
//! [`types`] decodes Glue's JSON and holds the status predicates ABLESTACK itself uses.

pub mod client;
pub mod error;
pub mod types;

pub use client::{GlueClient, GlueSettings, POOL};
pub use error::{GlueError, GlueErrorKind};
pub use types::{
    ClusterHealth, Daemon, ImageInfo, ImageParent, ImageStatus, MirrorSide, MirrorSnapshot,
    PeerSite, PoolStatus, PoolSummary, ReplayDetail,
};
