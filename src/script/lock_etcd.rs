//! The run lock every operator shares, in etcd (`[coordination]` of drbook.toml): one key per
//! DR cluster, `<prefix>lock/<cluster>-<digest>` (the same identity as a lock file's name),
//! created in a transaction only if absent (`create_revision == 0`) and tied to a lease, its
//! value the holder (user, host, PID, run, since, what it runs) as JSON.
//!
//! - **Fencing token.** The key's create revision: etcd's revisions only grow, so each new
//!   holder's token is greater than every earlier one's. The host journals it.
//! - **Renewal.** A task on the shared runtime renews the lease [`EtcdSettings::renew_every`]
//!   (a third of the TTL), each request within its deadline (well under the TTL).
//! - **Losing it.** A holder counts its lock lost at `last renewal sent + TTL − margin`
//!   ([`EtcdSettings::margin`]), on its own clock, whether etcd answers or not, so it gives the
//!   lock up before etcd could give it to anyone else. [`Held::check`] reads that deadline
//!   (no round trip); the host asks it before each mutation. A holder that dies holds the lock
//!   until its lease expires.
//! - **Release.** Dropping the last handle deletes the key (only while it is still this
//!   holder's: compared by create revision) and revokes the lease, waiting two request
//!   deadlines at most (none once the lock is lost); if that fails the lease expires by itself.
//! - **One run, one hold.** A nested run (the same lock owner) shares its parent's lease in
//!   this process instead of meeting its own lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::lock::{Held, Holder, LockError, LockKey, Locks};
use crate::etcd::{Created, Etcd, EtcdError, EtcdSettings};
use crate::sync::Locked as _;

/// DR cluster locks in etcd.
pub struct EtcdLocks {
    etcd: Arc<Etcd>,
    rt: tokio::runtime::Handle,
    /// The leases this process holds, by key.
    held: Mutex<HashMap<String, Weak<Lease>>>,
}

impl EtcdLocks {
    pub fn new(settings: EtcdSettings, rt: tokio::runtime::Handle) -> Result<Self, EtcdError> {
        Ok(Self {
            etcd: Arc::new(Etcd::new(settings)?),
            rt,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The etcd key of a DR cluster's lock.
    pub fn key_of(settings: &EtcdSettings, key: &LockKey) -> String {
        format!("{}lock/{}", settings.prefix, key.id())
    }
}

impl Locks for EtcdLocks {
    fn take(&self, key: &LockKey, me: &Holder) -> Result<Box<dyn Held>, LockError> {
        let name = Self::key_of(self.etcd.settings(), key);
        if let Some(lease) = self.held.locked().get(&name).and_then(Weak::upgrade)
            && lease.owner == me.run
        {
            lease.check()?;
            return Ok(Box::new(EtcdHeld(lease)));
        }
        let etcd = self.etcd.clone();
        let cluster = key.cluster.clone();
        let taken = {
            let (name, me) = (name.clone(), me.clone());
            self.rt
                .block_on(async move { acquire(&etcd, &cluster, &name, &me).await })?
        };
        let (release, on_release) = tokio::sync::oneshot::channel();
        let lease = Arc::new(Lease {
            cluster: key.cluster.clone(),
            owner: me.run.clone(),
            token: taken.token,
            state: Arc::new(LeaseState {
                valid_until: Mutex::new(taken.valid_until),
                lost: Mutex::new(None),
            }),
            release: Mutex::new(Some(release)),
            wait: self.etcd.settings().request_timeout * 2,
        });
        self.rt.spawn(keep(
            self.etcd.clone(),
            lease.state.clone(),
            taken.lease,
            name.clone(),
            taken.token,
            on_release,
        ));
        tracing::info!(
            cluster = key.cluster,
            "lock taken in etcd ({name}, fencing token {})",
            taken.token
        );
        let mut held = self.held.locked();
        held.retain(|_, l| l.strong_count() > 0);
        held.insert(name, Arc::downgrade(&lease));
        Ok(Box::new(EtcdHeld(lease)))
    }
}

/// What taking a lock got.
struct Taken {
    lease: i64,
    token: i64,
    valid_until: Instant,
}

async fn acquire(etcd: &Etcd, cluster: &str, key: &str, me: &Holder) -> Result<Taken, LockError> {
    let settings = etcd.settings();
    let unavailable = |e: EtcdError| LockError::Unavailable {
        cluster: cluster.to_string(),
        reason: e.to_string(),
    };
    // The lease counts from before it was asked for: etcd's starts later than this.
    let sent = Instant::now();
    let (lease, ttl) = etcd.grant(settings.lease_ttl).await.map_err(unavailable)?;
    let value = serde_json::to_vec(me).unwrap_or_default();
    let created = etcd.create(key, &value, lease).await;
    let token = match created {
        Ok(Created::Created { revision }) => revision,
        // An earlier try of this transaction went through before its answer was lost.
        Ok(Created::Exists(kv)) if kv.lease == lease => kv.create_revision,
        Ok(Created::Exists(kv)) => {
            let _ = etcd.revoke(lease).await;
            let holder = serde_json::from_slice::<Holder>(&kv.value).unwrap_or_else(|_| Holder {
                pid: 0,
                run: "?".into(),
                host: "?".into(),
                since: "?".into(),
                user: String::new(),
                runs: String::new(),
            });
            return Err(LockError::HeldElsewhere {
                cluster: cluster.to_string(),
                holder: Box::new(holder),
                key: key.to_string(),
                ttl: settings.lease_ttl,
            });
        }
        Err(e) => {
            // Revoking deletes the key too, if the transaction went through unseen.
            let _ = etcd.revoke(lease).await;
            return Err(unavailable(e));
        }
    };
    Ok(Taken {
        lease,
        token,
        valid_until: sent + ttl.saturating_sub(settings.margin()),
    })
}

/// What the renewal task and the holder share.
#[derive(Debug)]
struct LeaseState {
    /// Until when the lock is surely held: last renewal sent + TTL − margin.
    valid_until: Mutex<Instant>,
    /// Why it was lost, once it was: for good.
    lost: Mutex<Option<String>>,
}

impl LeaseState {
    fn lose(&self, why: String) {
        let mut lost = self.lost.locked();
        if lost.is_none() {
            tracing::warn!("run lock lost: {why}");
            *lost = Some(why);
        }
    }

    /// A renewal's answer: only while the lock is not lost.
    fn renewed(&self, until: Instant) {
        if self.lost.locked().is_none() {
            let mut valid = self.valid_until.locked();
            *valid = (*valid).max(until);
        }
    }

    fn deadline(&self) -> Instant {
        *self.valid_until.locked()
    }

    /// Why the lock is no longer held, if it is not.
    fn lost(&self) -> Option<String> {
        if let Some(why) = self.lost.locked().clone() {
            return Some(why);
        }
        if Instant::now() >= self.deadline() {
            let why = "its lease was not renewed in time (TTL − margin passed)".to_string();
            self.lose(why.clone());
            return Some(why);
        }
        None
    }
}

/// Renews the lease until told to release it, then releases it.
async fn keep(
    etcd: Arc<Etcd>,
    state: Arc<LeaseState>,
    lease: i64,
    key: String,
    token: i64,
    mut on_release: tokio::sync::oneshot::Receiver<std::sync::mpsc::Sender<()>>,
) {
    let settings = etcd.settings().clone();
    let every = settings.renew_every();
    let mut wait = every;
    loop {
        if state.lost().is_some() {
            break;
        }
        tokio::select! {
            done = &mut on_release => {
                return release(&etcd, &key, token, lease, done.ok()).await;
            }
            () = tokio::time::sleep(wait) => {}
        }
        let sent = Instant::now();
        let deadline = tokio::time::Instant::from_std(state.deadline());
        match tokio::time::timeout_at(deadline, etcd.keep_alive(lease)).await {
            Ok(Ok(Some(ttl))) => {
                state.renewed(sent + ttl.saturating_sub(settings.margin()));
                wait = every;
            }
            Ok(Ok(None)) => state.lose("its lease expired in etcd".into()),
            Ok(Err(e)) => {
                tracing::warn!("cannot renew the run lock's lease: {e}");
                // Again soon: the deadline decides when it is lost.
                wait = settings.request_timeout / 2;
            }
            Err(_) => state.lose(format!(
                "its lease could not be renewed within TTL − margin ({} − {})",
                crate::duration::Human(settings.lease_ttl),
                crate::duration::Human(settings.margin())
            )),
        }
    }
    // Lost: nothing to renew; still delete what may be left once released.
    let done = on_release.await.ok();
    release(&etcd, &key, token, lease, done).await;
}

async fn release(
    etcd: &Etcd,
    key: &str,
    token: i64,
    lease: i64,
    done: Option<std::sync::mpsc::Sender<()>>,
) {
    if let Err(e) = etcd.delete_if_created(key, token).await {
        tracing::warn!("cannot delete the run lock {key}: {e} (its lease ends it)");
    }
    if let Err(e) = etcd.revoke(lease).await {
        tracing::warn!("cannot revoke the run lock's lease: {e} (it expires by itself)");
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

/// One lease in etcd, shared by the handles of one run.
#[derive(Debug)]
struct Lease {
    cluster: String,
    /// The run holding it.
    owner: String,
    token: i64,
    state: Arc<LeaseState>,
    release: Mutex<Option<tokio::sync::oneshot::Sender<std::sync::mpsc::Sender<()>>>>,
    /// How long a release is waited for.
    wait: Duration,
}

impl Lease {
    fn check(&self) -> Result<(), LockError> {
        match self.state.lost() {
            None => Ok(()),
            Some(reason) => Err(LockError::Lost {
                cluster: self.cluster.clone(),
                reason,
                token: self.token,
            }),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.locked().take() {
            let (done, released) = std::sync::mpsc::channel();
            // A lock already lost is released without waiting: etcd is out of reach, and
            // its lease ends by itself.
            let wait = self.state.lost.locked().is_none();
            if release.send(done).is_ok() && wait {
                let _ = released.recv_timeout(self.wait);
            }
        }
    }
}

/// A handle on a held etcd lock.
#[derive(Debug)]
struct EtcdHeld(Arc<Lease>);

impl Held for EtcdHeld {
    fn check(&self) -> Result<(), LockError> {
        self.0.check()
    }

    fn fencing_token(&self) -> Option<i64> {
        Some(self.0.token)
    }
}
