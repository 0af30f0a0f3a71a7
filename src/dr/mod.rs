//! The domain layer: every DR primitive as a plain async Rust function over the configured
//! sites' Mold and Glue clients, with the guards that keep the data safe.
//!
//! A primitive checks its guards before it sends anything: a refusal ([`DrError::Guard`]) says
//! what is wrong, where, and what to do, and leaves every site as it was. Mutations are never
//! re-sent blindly: after a lost answer the state is re-read and reported
//! ([`DrError::OutcomeUnknown`]). Reads that need several calls make them concurrently, and a
//! dark site degrades a read (marked unreachable) instead of failing it.
//!
//! - [`site`]: site handles, roles, health;
//! - [`cluster`]: DR clusters resolved from both sites' records;
//! - [`status`]: mirroring status per VM and volume, lag, waiting for sync;
//! - [`vm`]: VM lookup, start/stop, batches;
//! - [`guards`]: the guard checks, one function each, on data already read;
//! - [`outcome`]: what a mutation returns ([`Outcome`], a failover's writes at risk, a drill's
//!   report);
//! - [`volumes`]: both sites' view of each mirrored volume, as the guards read it;
//! - [`waits`]: waiting for copies to settle, images to reach a state, a snapshot to arrive;
//! - [`cluster_ops`]: Mold's cluster operations (promote, resync, demote, clear, delete, the
//!   interval);
//! - [`pairing`]: Mold's connection test and pairing two sites into a DR cluster;
//! - [`mirrored_vm`]: protecting a VM, and the VM-level commands of the mirroring test;
//! - [`images`]: Glue image-level operations for orderly switchovers;
//! - [`drill`]: the 8-step mirroring test;
//! - [`raw`]: the escape hatches, with secrets redacted from what they return;
//! - [`storage_read`]: the status reads over SSH when no Glue endpoint of a site answers;
//! - [`reconcile`]: settling a mutation whose outcome is unknown by reading, never resending;
//! - [`unknown`]: what could not be read, as a value ([`Fact`]) with its reason.

pub mod by_direction;
pub mod cluster;
pub mod cluster_ops;
pub mod direction;
pub mod drill;
pub mod error;
pub mod guards;
pub mod home_tags;
pub mod image_batch;
pub mod images;
pub mod mirrored_vm;
pub mod outcome;
pub mod pairing;
pub mod raw;
pub mod reconcile;
pub mod site;
pub mod ssh;
pub mod status;
pub mod storage_read;
pub mod test_copy;
pub mod test_images;
pub mod two_way;
pub mod unknown;
pub mod vm;
pub mod volumes;
pub mod waits;

use std::sync::Arc;
use std::time::Duration;

pub use cluster::DrCluster;
pub use error::DrError;
pub use mirrored_vm::MirrorVmSpec;
pub use outcome::{DrillReport, DrillStep};
pub use outcome::{Outcome, PromoteOutcome};
pub use pairing::DrClusterSpec;
pub use site::{Health, Reach, SiteInfo, SiteRole};
pub use status::{
    AtRisk, MirrorStatus, MirrorSummary, PrimarySide, Role, VmMirror, VolumeMirror, WaitProgress,
};
pub use storage_read::{StorageRead, Via};
pub use unknown::{Api, Fact, Unreadable};
pub use vm::{Span, Vm};

use crate::config::Config;
use site::SiteHandle;

/// How long drbook waits for storage to move on its own, and how often it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// The pause between two reads while waiting.
    pub poll: Duration,
    /// For a mirror snapshot to reach the peer, or a role change to show (real sites copy
    /// deltas for minutes; Mold itself waits up to 100 minutes).
    pub replication: Duration,
    /// For the peer to replay a demotion before an image-level promote, and for a copy
    /// Mold's resync demoted to stop reporting primary (seconds on a real pair, Glue spec §6.6).
    pub settle: Duration,
}

impl Waits {
    fn from_config(config: &Config) -> Self {
        Self {
            poll: config.defaults.poll_interval,
            replication: Duration::from_secs(30 * 60),
            settle: Duration::from_secs(2 * 60),
        }
    }
}

/// One round of a wait that goes on: what it waits for, what is still missing (a site that
/// does not answer included), and for how long.
#[derive(Debug)]
pub struct WaitReport<'a> {
    pub what: &'a str,
    pub pending: &'a [String],
    pub waited: Duration,
    pub limit: Duration,
}

/// Whom a wait tells, each round, how it goes (the runtime prints it for the operator).
pub type WaitReporter = Arc<dyn Fn(&WaitReport<'_>) + Send + Sync>;

/// The DR context: one Mold client and an optional Glue client per configured site. Cheap to
/// clone; clones share connections.
#[derive(Clone)]
pub struct Dr {
    inner: Arc<Inner>,
    waits: Waits,
    reporter: Option<WaitReporter>,
}

struct Inner {
    sites: Vec<SiteHandle>,
    concurrency: usize,
}

impl Dr {
    /// Builds the clients for every configured site. Nothing is sent yet.
    pub fn new(config: &Config) -> Result<Dr, DrError> {
        let sites = config
            .sites
            .iter()
            .map(SiteHandle::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Dr {
            inner: Arc::new(Inner {
                sites,
                concurrency: config.defaults.concurrency.max(1),
            }),
            waits: Waits::from_config(config),
            reporter: None,
        })
    }

    /// The same context with someone to tell how its waits go.
    #[must_use]
    pub fn with_reporter(mut self, reporter: WaitReporter) -> Dr {
        self.reporter = Some(reporter);
        self
    }

    /// Tells the reporter, if any, how a wait goes.
    pub(crate) fn report_wait(
        &self,
        what: &str,
        pending: &[String],
        started: tokio::time::Instant,
        limit: Duration,
    ) {
        if let Some(r) = &self.reporter {
            r(&WaitReport {
                what,
                pending,
                waited: started.elapsed(),
                limit,
            });
        }
    }

    /// The same context with other waits (rehearsals and tests shorten them).
    #[must_use]
    pub fn with_waits(mut self, waits: Waits) -> Dr {
        self.waits = waits;
        self
    }

    pub fn waits(&self) -> Waits {
        self.waits
    }

    /// How many VMs a batch acts on at once unless told otherwise (`defaults.concurrency`).
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }
}

impl std::fmt::Debug for Dr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dr")
            .field("sites", &self.site_names())
            .field("waits", &self.waits)
            .finish_non_exhaustive()
    }
}

/// Serde helpers: durations as numbers of seconds, the unit scripts and JSON readers expect.
pub(crate) mod ser {
    use serde::Serializer;

    pub fn secs<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    #[allow(clippy::ref_option)] // serde's `serialize_with` hands over `&Option<_>`
    pub fn opt_secs<S: Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    /// A lag in whole seconds, `null` for none yet, `"unknown"` when it could not be read.
    pub fn fact_opt_delta_secs<S: Serializer>(
        d: &super::Fact<Option<chrono::Duration>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            super::Fact::Known(Some(d)) => s.serialize_some(&d.num_seconds()),
            super::Fact::Known(None) => s.serialize_none(),
            super::Fact::Unknown(_) => s.serialize_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every primitive's future is checked to be `Send` where it is handed to the host
    /// (`Host::read`, `Host::mutate` and `Host::block` take only `Send` futures), so no list
    /// of them is kept here.
    #[test]
    fn the_context_hides_its_keys() {
        let config = Config::parse(
            "[sites.site-a]\nmold_url = \"http://127.0.0.1:9\"\napi_key = \"AK-visible\"\nsecret_key = \"SK-hidden\"\nglue_urls = [\"http://127.0.0.1:9\"]\n",
            std::path::Path::new("drbook.toml"),
        )
        .unwrap();
        let dr = Dr::new(&config).unwrap();
        let shown = format!("{dr:?}");
        assert!(
            !shown.contains("AK-visible") && !shown.contains("SK-hidden"),
            "{shown}"
        );
    }
}
