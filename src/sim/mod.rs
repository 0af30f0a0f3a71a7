//! `drbook sim`: two ABLESTACK sites on loopback serving the real Mold and Glue APIs, with
//! Ceph's mirroring rules, a data ledger, data-movement accounting and fault injection.
//!
//! Production code never imports this module; tests, `drbook sim` and the demo do. Start one
//! with [`Sim::start`]; the returned handle offers the control API's abilities in-process.

pub mod ceph;
pub mod config;
pub mod control;
pub mod faults;
pub mod glue_api;
pub mod image_view;
pub mod ledger;
pub mod mold;
pub mod mutations;
pub mod params;
pub mod rbd;
pub mod server;
pub mod ssh;
pub mod storage;
pub mod world;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::sync::Locked as _;
pub use config::SimConfig;
use faults::{Api, FaultSpec};
pub use mutations::Mutations;
use server::{GlueCertificate, Server, Shared, SiteRoute};
use world::{DrRecord, World};

/// Why a simulation could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("cannot set up the simulated sites: {0}")]
    Setup(String),
}

/// Where one simulated site answers.
#[derive(Debug, Clone, Serialize)]
pub struct SiteEndpoints {
    /// `protected` or `dr`.
    pub role: &'static str,
    pub mold: String,
    pub glue: Vec<String>,
    #[serde(skip)]
    pub api_key: String,
    #[serde(skip)]
    pub secret_key: String,
    /// The storage VMs' SSH private key (PEM), which the peer's Mold needs to pair with this
    /// site (`drclusterprivatekey`).
    #[serde(skip)]
    pub glue_private_key: String,
    pub signature: String,
    /// The storage VMs' SSH (the same addresses as `glue`), when the simulation serves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<ssh::SiteSsh>,
}

/// Every endpoint of a running simulation.
#[derive(Debug, Clone, Serialize)]
pub struct SimEndpoints {
    pub sites: BTreeMap<String, SiteEndpoints>,
    pub control: String,
}

/// What the control API (and the in-process handle) can do to a running simulation.
pub struct Controls {
    pub shared: Arc<Shared>,
    servers: Arc<tokio::sync::Mutex<Vec<Server>>>,
    site_names: Vec<String>,
    /// The storage VMs' sshd, when served (set once they run, after the control API).
    ssh: std::sync::OnceLock<Arc<ssh::SshSites>>,
}

struct SimInner {
    controls: Arc<Controls>,
    endpoints: SimEndpoints,
    glue_ca_pem: Option<String>,
    /// How often a drbook pointed at this simulation should poll while it waits.
    poll_interval: std::time::Duration,
    ticker: Mutex<Option<JoinHandle<()>>>,
    ssh: Option<Arc<ssh::SshSites>>,
}

impl Drop for SimInner {
    /// The sshd processes are the one thing of a simulation outside this process that a
    /// dropped handle must not leave behind (they would outlive it, serving nothing).
    fn drop(&mut self) {
        if let Some(ssh) = &self.ssh {
            ssh.stop_all();
        }
    }
}

/// A handle on a running simulation.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<SimInner>,
}

impl Sim {
    /// Binds every server on ephemeral ports, seeds the world and starts the clock.
    pub async fn start(mut config: SimConfig) -> Result<Self, SimError> {
        if matches!(config.storage, config::StorageBackend::Ceph { .. }) {
            // Real Glue's schedule is whole minutes (`<int>d|h|m`), and every round costs real
            // rbd calls: no faster on real storage.
            config.timing.snapshot_interval =
                config.timing.snapshot_interval.max(Duration::from_secs(60));
        }
        let t0 = Instant::now();
        // Real Ceph takes tens of seconds to come up and copy: off the async threads.
        let seeding = config.clone();
        let (mut world, settled) = tokio::task::spawn_blocking(move || seeded_world(seeding, t0))
            .await
            .map_err(|e| SimError::Setup(format!("setting up the sites failed: {e}")))??;
        let glue_ips = glue_addresses(&config);
        for (site, ips) in world.sites_mut().iter_mut().zip(&glue_ips) {
            site.glue_ips.clone_from(ips);
        }
        let shared = Arc::new(Shared::new(world, settled - t0));
        let all_ips: Vec<IpAddr> = glue_ips.iter().flatten().copied().collect();
        let cert = if config.glue_tls {
            Some(GlueCertificate::generate(&all_ips).map_err(SimError::Setup)?)
        } else {
            None
        };
        let mut servers: Vec<Server> = Vec::new();
        let mut sites = BTreeMap::new();
        for (index, spec) in config.sites.iter().enumerate() {
            let mold_router = Router::new()
                .route("/client/api", axum::routing::any(mold::handle))
                .route("/client/api/", axum::routing::any(mold::handle))
                .with_state(SiteRoute {
                    shared: shared.clone(),
                    site: spec.name.clone(),
                    endpoint: 0,
                });
            let mold = start_server(
                Some(spec.name.clone()),
                SocketAddr::new(config.listen, 0),
                mold_router,
                None,
            )?;
            let mold_url = format!("http://{}", mold.addr);
            servers.push(mold);
            let mut glue_urls = Vec::new();
            for (k, ip) in glue_ips[index].iter().enumerate() {
                let router = Router::new()
                    .fallback(glue_api::handle)
                    .with_state(SiteRoute {
                        shared: shared.clone(),
                        site: spec.name.clone(),
                        endpoint: k,
                    });
                let tls = cert.as_ref().map(|c| c.acceptor.clone());
                let server = start_server(
                    Some(spec.name.clone()),
                    SocketAddr::new(*ip, 0),
                    router,
                    tls,
                )?;
                let scheme = if cert.is_some() { "https" } else { "http" };
                glue_urls.push(format!("{scheme}://{}", server.addr));
                servers.push(server);
            }
            let glue_private_key = {
                let mut w = shared.world();
                let site = w.site_mut(&spec.name);
                site.mold_url.clone_from(&mold_url);
                site.scvm_private_key.clone()
            };
            sites.insert(
                spec.name.clone(),
                SiteEndpoints {
                    role: if index == 0 { "protected" } else { "dr" },
                    mold: mold_url,
                    glue: glue_urls,
                    api_key: spec.api_key.clone(),
                    secret_key: spec.secret_key.clone(),
                    glue_private_key,
                    signature: spec.algorithm.to_string(),
                    ssh: None,
                },
            );
        }
        // The DR records point at each other's Mold now that the ports are known.
        {
            let mut w = shared.world();
            let urls: Vec<(String, String)> = w
                .sites()
                .iter()
                .map(|s| (s.spec.name.clone(), s.mold_url.clone()))
                .collect();
            for (name, _) in &urls {
                let peer = w.peer_of(name);
                let peer_url = urls
                    .iter()
                    .find(|(n, _)| *n == peer)
                    .map(|(_, u)| u.clone())
                    .unwrap_or_default();
                for r in &mut w.site_mut(name).dr_records {
                    r.url.clone_from(&peer_url);
                }
            }
        }
        let servers = Arc::new(tokio::sync::Mutex::new(servers));
        let controls = Arc::new(Controls {
            shared: shared.clone(),
            servers: servers.clone(),
            site_names: config.sites.iter().map(|s| s.name.clone()).collect(),
            ssh: std::sync::OnceLock::new(),
        });
        let control = start_server(
            None,
            SocketAddr::new(config.listen, 0),
            control::router(controls.clone()),
            None,
        )?;
        let control_url = format!("http://{}", control.addr);
        servers.lock().await.push(control);
        let ssh = match &config.ssh {
            None => None,
            Some(serve) => match start_ssh(serve, &shared, &control_url).await {
                Ok(ssh) => Some(ssh),
                Err(e) => {
                    abandon(&servers, &shared).await;
                    return Err(SimError::Setup(format!(
                        "cannot serve SSH on the storage VMs: {e}"
                    )));
                }
            },
        };
        if let Some(ssh) = &ssh {
            for (name, site) in &mut sites {
                site.ssh = ssh.site(name);
            }
            let _ = controls.ssh.set(ssh.clone());
        }
        let inner = Arc::new(SimInner {
            controls,
            endpoints: SimEndpoints {
                sites,
                control: control_url,
            },
            glue_ca_pem: cert.map(|c| c.pem),
            // A quarter of a Mold job: waits notice a change soon after it happens, without
            // flooding a slow simulation (2 s at most, drbook's own scale).
            poll_interval: (config.timing.job / 4).clamp(
                std::time::Duration::from_millis(50),
                std::time::Duration::from_secs(2),
            ),
            ticker: Mutex::new(Some(tokio::spawn(server::tick(shared)))),
            ssh,
        });
        Ok(Self { inner })
    }

    pub fn endpoints(&self) -> &SimEndpoints {
        &self.inner.endpoints
    }

    /// The one line `drbook sim` prints when ready.
    pub fn ready_line(&self) -> String {
        json!({"ready": true, "sites": self.inner.endpoints.sites, "control": self.inner.endpoints.control}).to_string()
    }

    /// A `drbook.toml` for this simulation, to be written at `config`: Glue's certificate is
    /// pinned from `<config>.glue-ca.pem` and each site's `ssh_key_file` is
    /// `<config>.<site>-glue-key.pem`; with SSH served, each site's `ssh_user` and `ssh_port`
    /// too, and `ssh_known_hosts` is `<config>.known_hosts` (see [`Sim::write_config`], which
    /// writes those files).
    pub fn drbook_toml(&self, config: &Path) -> String {
        let ca_file = ca_path(config);
        let mut out = String::from(
            "# Written by `drbook sim --write-config`: two simulated sites on loopback.\n# The keys are the simulator's own; the Glue certificate is pinned through glue_ca_file;\n# ssh_key_file is each site's storage-VM key, which pairing a DR cluster sends to Mold\n# and the storage VMs' sshd takes (when served: ssh_port, host keys in ssh_known_hosts).\n",
        );
        for (name, site) in &self.inner.endpoints.sites {
            let glue: Vec<String> = site.glue.iter().map(|u| format!("\"{u}\"")).collect();
            let _ = write!(
                out,
                "\n[sites.{name}]\nmold_url = \"{}\"\napi_key = \"{}\"\nsecret_key = \"{}\"\nsignature = \"{}\"\nglue_urls = [{}]\n",
                site.mold,
                site.api_key,
                site.secret_key,
                site.signature,
                glue.join(", ")
            );
            if self.inner.glue_ca_pem.is_some() {
                let _ = writeln!(out, "glue_ca_file = {:?}", ca_file.display().to_string());
            }
            let key = key_path(config, name);
            let _ = writeln!(out, "ssh_key_file = {:?}", key.display().to_string());
            if let Some(ssh) = &site.ssh {
                let _ = writeln!(
                    out,
                    "ssh_user = {:?}\nssh_port = {}\nssh_known_hosts = {:?}",
                    ssh.user,
                    ssh.port,
                    known_hosts_path(config).display().to_string()
                );
            }
        }
        let _ = write!(
            out,
            "\n[defaults]\npoll_interval = \"{}ms\"\n",
            self.inner.poll_interval.as_millis()
        );
        out
    }

    /// Writes `path` (mode 600: it holds keys), each site's storage-VM private key beside it
    /// as `<path>.<site>-glue-key.pem` (mode 600), for HTTPS Glue the certificate as
    /// `<path>.glue-ca.pem`, and with SSH served the storage VMs' host keys as
    /// `<path>.known_hosts`.
    pub fn write_config(&self, path: &Path) -> std::io::Result<()> {
        if let Some(pem) = &self.inner.glue_ca_pem {
            std::fs::write(ca_path(path), pem)?;
        }
        if let Some(known) = self.known_hosts() {
            std::fs::write(known_hosts_path(path), known)?;
        }
        for (name, site) in &self.inner.endpoints.sites {
            write_private(&key_path(path, name), &site.glue_private_key)?;
        }
        write_private(path, &self.drbook_toml(path))
    }

    pub fn state(&self) -> Value {
        self.inner.controls.state()
    }

    pub async fn disaster(&self, site: &str) -> Result<(), String> {
        self.inner.controls.disaster(site).await
    }

    pub async fn recover(&self, site: &str) -> Result<(), String> {
        self.inner.controls.recover(site).await
    }

    pub fn write(&self, vm: &str, site: &str, count: u64) -> Result<Value, String> {
        self.inner.controls.write(vm, site, count)
    }

    pub fn ledger(&self, vm: &str) -> Result<Value, String> {
        self.inner.controls.ledger(vm)
    }

    pub fn add_fault(&self, spec: FaultSpec) -> Result<(), String> {
        self.inner.controls.add_fault(spec)
    }

    pub fn clear_faults(&self) {
        self.inner.controls.shared.faults().clear();
    }

    pub fn set_partitioned(&self, partitioned: bool) -> Result<(), String> {
        self.inner.controls.set_partitioned(partitioned)
    }

    /// How many Mold requests named `command` reached `site`.
    pub fn mold_calls(&self, site: &str, command: &str) -> u64 {
        *self
            .inner
            .controls
            .shared
            .world()
            .calls
            .get(&(site.to_string(), command.to_string()))
            .unwrap_or(&0)
    }

    /// Every Mold request received so far, reads included, by (site, command): what a
    /// benchmark counts per VM.
    pub fn mold_call_counts(&self) -> BTreeMap<(String, String), u64> {
        self.inner.controls.shared.world().calls.clone()
    }

    /// Every Glue request received so far, reads included, by (site, `METHOD /route`): what
    /// a test counts to see that a batch reads a pool once, not once per image.
    pub fn glue_call_counts(&self) -> BTreeMap<(String, String), u64> {
        self.inner.controls.shared.world().glue_calls.clone()
    }

    /// Every command line the storage VMs received over SSH, reads and refusals included, by
    /// (site, line as received, trimmed).
    pub fn ssh_call_counts(&self) -> BTreeMap<(String, String), u64> {
        self.inner.controls.shared.world().ssh_calls.clone()
    }

    /// An OpenSSH `known_hosts` with every storage VM's host key (`[127.0.1.1]:PORT
    /// ssh-ed25519 …`), when the simulation serves SSH.
    pub fn known_hosts(&self) -> Option<String> {
        self.inner.ssh.as_ref().map(|s| s.known_hosts())
    }

    /// Every mutating request the sites received so far, per site, API and command,
    /// counted on arrival, faulted ones included (see [`mutations`](mod@mutations)). For
    /// "nothing reached site-b": `sim.mutations().on("site-b").is_empty()`; for what one step
    /// sent: `sim.mutations().since(&before)`.
    pub fn mutations(&self) -> Mutations {
        self.inner.controls.shared.world().mutations.clone()
    }

    /// The mutating requests Mold refused outright (an error answer: a pre-check, a guard, a
    /// bad parameter): `mutations().less(&refused())` is what was accepted.
    pub fn refused(&self) -> Mutations {
        self.inner.controls.shared.world().refused.clone()
    }

    /// How many mutating `command`s reached `site`'s `api`: a Mold command as sent
    /// (`promoteDisasterRecoveryCluster`), or a Glue `METHOD /route` without names
    /// (`POST /mirror/image/promote`).
    pub fn mutation_count(&self, site: &str, api: Api, command: &str) -> u64 {
        self.inner
            .controls
            .shared
            .world()
            .mutations
            .count(site, api, command)
    }

    /// Direct access to the world, for tests that inspect or arrange state.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World, Instant) -> T) -> T {
        let now = self.inner.controls.shared.now();
        let mut w = self.inner.controls.shared.world();
        w.advance(now);
        f(&mut w, now)
    }

    /// Stops every server, the clock, the storage VMs' sshd, and what the storage runs (real
    /// Ceph's daemons).
    pub async fn shutdown(&self) {
        for s in self.inner.controls.servers.lock().await.iter_mut() {
            s.go_dark();
        }
        if let Some(ssh) = self.inner.ssh.clone() {
            let _ = tokio::task::spawn_blocking(move || ssh.stop_all()).await;
        }
        if let Some(t) = self.inner.ticker.locked().take() {
            t.abort();
        }
        let shared = self.inner.controls.shared.clone();
        // Killing and reaping daemons blocks; off the async threads.
        let _ = tokio::task::spawn_blocking(move || shared.world().storage.shutdown()).await;
    }
}

/// `<path>.glue-ca.pem`.
pub fn ca_path(config: &Path) -> std::path::PathBuf {
    let mut name = config
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".glue-ca.pem");
    config.with_file_name(name)
}

/// `<path>.<site>-glue-key.pem`: a site's storage-VM private key beside the config.
pub fn key_path(config: &Path, site: &str) -> std::path::PathBuf {
    let mut name = config
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".{site}-glue-key.pem"));
    config.with_file_name(name)
}

/// `<path>.known_hosts`.
pub fn known_hosts_path(config: &Path) -> std::path::PathBuf {
    let mut name = config
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".known_hosts");
    config.with_file_name(name)
}

/// A fresh PEM private key standing in for a site's storage-VM `/root/.ssh/id_rsa`: ECDSA
/// P-256 in PKCS#8, which the peer's Mold passes on, and which libssh2 (drbook's `ssh()`)
/// and OpenSSH read, so the simulated storage VMs' sshd takes it
/// ([`ssh::public_key_line`]).
fn scvm_private_key() -> Result<String, String> {
    rcgen::KeyPair::generate()
        .map(|k| k.serialize_pem())
        .map_err(|e| format!("cannot generate a storage-VM key: {e}"))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text)
    }
}

/// Starts every site's sshd (blocking work: key making, sshd's start) once the control API,
/// which their commands go to, listens.
async fn start_ssh(
    serve: &config::SshServe,
    shared: &Arc<Shared>,
    control: &str,
) -> Result<Arc<ssh::SshSites>, String> {
    let sites: Vec<(String, Vec<IpAddr>, String)> = shared
        .world()
        .sites()
        .iter()
        .map(|s| {
            (
                s.spec.name.clone(),
                s.glue_ips.clone(),
                s.scvm_private_key.clone(),
            )
        })
        .collect();
    let serve = serve.clone();
    let control = control.to_string();
    tokio::task::spawn_blocking(move || {
        let keys: Vec<ssh::SiteKeys<'_>> = sites
            .iter()
            .map(|(site, addresses, private_key)| ssh::SiteKeys {
                site,
                addresses,
                private_key,
            })
            .collect();
        ssh::SshSites::start(&serve, &keys, &control).map(Arc::new)
    })
    .await
    .map_err(|e| format!("starting sshd failed: {e}"))?
}

/// A start that failed half-way: its servers go dark and its storage stops.
async fn abandon(servers: &tokio::sync::Mutex<Vec<Server>>, shared: &Arc<Shared>) {
    for s in servers.lock().await.iter_mut() {
        s.go_dark();
    }
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || shared.world().storage.shutdown()).await;
}

fn start_server(
    site: Option<String>,
    addr: SocketAddr,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<Server, SimError> {
    Server::start(site, addr, router, tls).map_err(|e| SimError::Bind {
        addr,
        reason: e.to_string(),
    })
}

/// One loopback address per storage VM (127.0.<site>.<vm>), so `listScvmIpAddress` lists
/// distinct addresses as a real site does; any other listen address is shared.
fn glue_addresses(config: &SimConfig) -> Vec<Vec<IpAddr>> {
    config
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (0..s.glue_endpoints)
                .map(|k| match config.listen {
                    IpAddr::V4(v4) if v4.is_loopback() => IpAddr::from([
                        127,
                        0,
                        u8::try_from(i + 1).unwrap_or(1),
                        u8::try_from(k + 1).unwrap_or(1),
                    ]),
                    other => other,
                })
                .collect()
        })
        .collect()
}

/// The world at start: storage brought up, the seed planted, the first copies finished.
fn seeded_world(config: SimConfig, t0: Instant) -> Result<(World, Instant), SimError> {
    let [a, b] = [config.sites[0].name.clone(), config.sites[1].name.clone()];
    let storage: Box<dyn storage::Storage> = match &config.storage {
        config::StorageBackend::Model => Box::new(rbd::ModelStorage::new(
            &a,
            &b,
            config.timing.storage.clone(),
        )),
        config::StorageBackend::Ceph { workdir } => {
            Box::new(ceph::CephStorage::start(workdir, &a, &b).map_err(SimError::Setup)?)
        }
    };
    let mut world = World::new(config, storage);
    for site in world.sites_mut() {
        site.scvm_private_key = scvm_private_key().map_err(SimError::Setup)?;
    }
    if let Err(e) = seed(&mut world, t0) {
        world.storage.shutdown();
        return Err(SimError::Setup(e));
    }
    // Let the initial full copies finish "before" the servers open.
    let images: std::collections::BTreeSet<String> = world
        .sites()
        .iter()
        .flat_map(|s| s.dr_records.iter().flat_map(|r| r.map.iter()))
        .map(|m| m.vol_path.clone())
        .collect();
    let images: Vec<String> = images.into_iter().collect();
    let settled = match world.storage.settle_initial_copies(t0, &images) {
        Ok(t) => t,
        Err(e) => {
            world.storage.shutdown();
            return Err(SimError::Setup(e));
        }
    };
    // Status timestamps read as the real clock now.
    world
        .storage
        .set_wall_clock(settled, chrono::Local::now().fixed_offset());
    Ok((world, settled))
}

/// The initial world: each VM on its home site, the DR cluster paired and enabled, the
/// mirrored VMs created on the other site of each (their first full copies are settled by the
/// caller). A VM at home on the DR site is protected through that site's record, as Mold's
/// API allows (its UI offers it on the protected site's only): one pairing, both directions.
fn seed(w: &mut World, now: Instant) -> Result<(), String> {
    let protected = w.config.sites[0].name.clone();
    let dr = w.config.sites[1].name.clone();
    let gib = 1u64 << 30;
    let mut vm_ids = Vec::new();
    for spec in w.config.vms.clone() {
        let home = spec.home.clone().unwrap_or_else(|| protected.clone());
        let disks = vec![spec.datadisk_gib * gib; spec.datadisks];
        let id = w.add_vm(&home, &spec.name, spec.running, &disks, spec.root_gib * gib);
        if let Some(vm) = w.site_mut(&home).vm_mut(&id) {
            vm.tags.clone_from(&spec.tags);
        }
        vm_ids.push((home, id, spec.mirrored, spec.tags));
    }
    let Some(cluster) = w.config.cluster.clone() else {
        return Ok(());
    };
    let (a, b) = (w.site(&protected).spec.clone(), w.site(&dr).spec.clone());
    let b_glue = w.site(&dr).glue_ips.first().map(ToString::to_string);
    for (site, kind, peer, glue_ip) in [
        (protected.clone(), "secondary", b, b_glue),
        (dr.clone(), "primary", a, None),
    ] {
        let mut details = BTreeMap::from([
            ("drclusterapikey".to_string(), peer.api_key.clone()),
            ("drclustersecretkey".to_string(), peer.secret_key.clone()),
            ("mirrorscheduleinterval".to_string(), "1h".to_string()),
        ]);
        if kind == "secondary" {
            details.insert(
                "drclusterprivatekey".into(),
                w.site(&dr).scvm_private_key.clone(),
            );
        }
        let id = w.uuid();
        let internal_id = w.next_internal_id();
        w.site_mut(&site).dr_records.push(DrRecord {
            id,
            internal_id,
            name: cluster.clone(),
            description: "disaster-recovery".into(),
            url: String::new(),
            cluster_type: kind.into(),
            status: "Enabled".into(),
            agent_status: "Enabled".into(),
            glue_ip,
            details,
            created: chrono::Local::now(),
            map: Vec::new(),
        });
    }
    w.glue_mirror_setup(now);
    for (home, vm_id, mirrored, tags) in vm_ids {
        if mirrored {
            let away = w.peer_of(&home);
            mold::create_mirror_vm(
                w,
                &home,
                &mold::MirrorVmRequest {
                    vm_id: vm_id.clone(),
                    cluster: cluster.clone(),
                    offering: "Medium Instance".into(),
                    network: "Guest Network".into(),
                },
                now,
            )
            .map_err(|e| e.errortext)?;
            // Mold does not copy tags to the mirrored VM (create_mirror_vm leaves it untagged):
            // the seeded world is as if the operator had tagged the DR copies too, the same way.
            let mirror_id = w
                .site(&home)
                .record_by_name(&cluster)
                .and_then(|r| r.map.iter().find(|m| m.vm_id == vm_id))
                .map(|m| m.mirror_vm_id.clone());
            if let Some(vm) = mirror_id.and_then(|id| w.site_mut(&away).vm_mut(&id)) {
                vm.tags = tags;
            }
        }
    }
    Ok(())
}

impl Controls {
    fn servers_of<'a>(
        servers: &'a mut [Server],
        site: &'a str,
    ) -> impl Iterator<Item = &'a mut Server> + 'a {
        servers
            .iter_mut()
            .filter(move |s| s.site.as_deref() == Some(site))
    }

    fn known(&self, site: &str) -> Result<(), String> {
        if self.site_names.iter().any(|s| s == site) {
            Ok(())
        } else {
            Err(format!(
                "no site {site:?} (sites: {})",
                self.site_names.join(", ")
            ))
        }
    }

    pub async fn disaster(&self, site: &str) -> Result<(), String> {
        self.known(site)?;
        {
            let now = self.shared.now();
            let mut w = self.shared.world();
            w.advance(now);
            w.site_mut(site).up = false;
            if let Err(e) = w.storage.set_site_up(now, site, false) {
                tracing::warn!(site, "storage disaster: {e}");
            }
        }
        let mut servers = self.servers.lock().await;
        for s in Self::servers_of(&mut servers, site) {
            s.go_dark();
        }
        drop(servers);
        if let Some(ssh) = self.ssh.get().cloned() {
            let site = site.to_string();
            tokio::task::spawn_blocking(move || ssh.stop(&site))
                .await
                .map_err(|e| format!("stopping sshd failed: {e}"))?;
        }
        tracing::info!(site, "site is dark");
        Ok(())
    }

    pub async fn recover(&self, site: &str) -> Result<(), String> {
        self.known(site)?;
        let mut servers = self.servers.lock().await;
        for s in Self::servers_of(&mut servers, site) {
            if !s.is_listening() {
                s.listen()
                    .map_err(|e| format!("cannot listen again on {}: {e}", s.addr))?;
            }
        }
        drop(servers);
        if let Some(ssh) = self.ssh.get().cloned() {
            let name = site.to_string();
            tokio::task::spawn_blocking(move || ssh.resume(&name))
                .await
                .map_err(|e| format!("starting sshd again failed: {e}"))?
                .map_err(|e| format!("{site}'s storage VMs cannot serve SSH again: {e}"))?;
        }
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        // The storage first: a Mold that answers over a cluster still starting would be a
        // site half back.
        w.storage
            .set_site_up(now, site, true)
            .map_err(|e| format!("{site}'s storage did not come back: {e}"))?;
        w.site_mut(site).up = true;
        tracing::info!(site, "site is back");
        Ok(())
    }

    pub fn set_partitioned(&self, partitioned: bool) -> Result<(), String> {
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        w.storage.set_partitioned(now, partitioned)?;
        w.partitioned = partitioned;
        Ok(())
    }

    pub fn add_fault(&self, spec: FaultSpec) -> Result<(), String> {
        self.known(&spec.site)?;
        self.shared.faults().add(spec)
    }

    /// Appends `count` writes to each image of a VM running on `site` on primary images.
    pub fn write(&self, vm: &str, site: &str, count: u64) -> Result<Value, String> {
        self.known(site)?;
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        let s = w.site(site);
        if !s.up {
            return Err(format!("site {site} is down"));
        }
        let Some(v) = s.vm_by_name(vm) else {
            return Err(format!("no VM {vm:?} on {site}"));
        };
        if v.state != "Running" {
            return Err(format!(
                "VM {vm} is {} on {site}: writes need it Running",
                v.state
            ));
        }
        let images: Vec<String> = s.volumes_of(&v.id).map(|x| x.path.clone()).collect();
        for img in &images {
            if w.storage.is_primary(site, img) == Some(false) {
                return Err(format!("VM {vm}'s image {img} is not primary on {site}"));
            }
        }
        let mut writes = serde_json::Map::new();
        for img in images {
            let seqs = w
                .storage
                .write(now, site, &img, count)
                .map_err(|e| e.to_string())?;
            writes.insert(img, json!(seqs));
        }
        Ok(json!({"vm": vm, "site": site, "writes": writes}))
    }

    /// One command line on `site`'s storage VM, as its sshd hands it over (`POST
    /// /ssh/{site}`): counted, then answered from the storage ([`ssh::shell`]). Blocking (on
    /// real Ceph, rbd runs). A dark site answers nothing: its sshd is stopped, and a command
    /// of a session opened just before is refused here.
    pub fn ssh_command(&self, site: &str, line: &str) -> Result<ssh::shell::Answer, String> {
        self.known(site)?;
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        if !w.site(site).up {
            return Err(format!("site {site} is dark"));
        }
        Ok(ssh::shell::answer(&mut w, now, site, line))
    }

    /// Per image of a VM, per site: the write sequence numbers held, and on real storage
    /// the SHA-256 of each copy's bytes (`rbd export`), which equal where the copies do.
    pub fn ledger(&self, vm: &str) -> Result<Value, String> {
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        let volumes: Vec<(String, String)> = w
            .sites()
            .iter()
            .find_map(|s| {
                s.vm_by_name(vm).map(|v| {
                    s.volumes_of(&v.id)
                        .map(|x| (x.path.clone(), x.kind.clone()))
                        .collect()
                })
            })
            .ok_or_else(|| format!("no VM {vm:?} on any site"))?;
        let images: Vec<Value> = volumes
            .into_iter()
            .map(|(path, kind)| {
                let content = w.storage.content(&path);
                let sites: BTreeMap<&String, &Vec<u64>> =
                    content.iter().map(|(s, c)| (s, &c.writes)).collect();
                let checksums: BTreeMap<&String, &String> = content
                    .iter()
                    .filter_map(|(s, c)| c.sha256.as_ref().map(|sum| (s, sum)))
                    .collect();
                let primary: BTreeMap<&String, Option<bool>> = content
                    .keys()
                    .map(|s| (s, w.storage.is_primary(s, &path)))
                    .collect();
                let mut image = json!({"image": path, "type": kind, "sites": sites,
                       "primary": primary,
                       "data_movement": w.storage.image_data_movement(&path)});
                if !checksums.is_empty() {
                    image["checksums"] = json!(checksums);
                }
                image
            })
            .collect();
        Ok(json!({"vm": vm, "storage": w.storage.backend(), "images": images}))
    }

    pub fn state(&self) -> Value {
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        let mut sites = serde_json::Map::new();
        for s in w.sites() {
            let vms: Vec<Value> = s
                .vms
                .iter()
                .map(|v| {
                    let host = v.host_id.as_deref().and_then(|h| s.hosts.iter().find(|x| x.id == h)).map(|h| h.name.clone());
                    json!({"id": v.id, "name": v.name, "state": v.state, "host": host,
                           "volumes": s.volumes_of(&v.id).map(|x| json!({"path": x.path, "type": x.kind})).collect::<Vec<_>>()})
                })
                .collect();
            let clusters: Vec<Value> = s
                .dr_records
                .iter()
                .map(|r| {
                    json!({"id": r.id, "name": r.name, "type": r.cluster_type, "status": r.status,
                                "agent_status": r.agent_status, "mirrored_volumes": r.map.len()})
                })
                .collect();
            sites.insert(
                s.spec.name.clone(),
                json!({"up": s.up, "mold": s.mold_url, "vms": vms, "dr_clusters": clusters}),
            );
        }
        let mut calls: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((site, cmd), n) in &w.calls {
            calls
                .entry(site.clone())
                .or_default()
                .insert(cmd.clone(), *n);
        }
        let mut ssh_calls: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((site, line), n) in &w.ssh_calls {
            ssh_calls
                .entry(site.clone())
                .or_default()
                .insert(line.clone(), *n);
        }
        let mutations = w.mutations.to_json(w.sites().iter().map(world::Site::name));
        let pending = w.jobs.values().filter(|j| j.work.is_some()).count();
        let storage = w.storage.state_json(now);
        json!({"sites": sites, "partitioned": w.partitioned, "storage": storage,
               "mold_calls": calls, "ssh_calls": ssh_calls, "mutations": mutations,
               "pending_jobs": pending})
    }
}
