//! The simulated world behind both sites' APIs: Mold's records (VMs, volumes, offerings, DR
//! records and their VM maps, events, async jobs) per site, and the shared storage model.
//!
//! Everything lives in one [`World`] behind one lock; time moves forward through
//! [`World::advance`], which completes due jobs, runs Glue's snapshot scheduler and lets the
//! storage model progress. Nothing here does I/O but the storage backend (real Ceph does).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use serde_json::{Value, json};

use super::image_view::ImageView;
use crate::sim::config::{SimConfig, SiteSpec};
use crate::sim::mutations::Mutations;
use crate::sim::storage::Storage;

/// A Mold answer that is an error: HTTP status = `errorcode` (as Mold does), the text, and
/// CloudStack's `cserrorcode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub errorcode: u16,
    pub cserrorcode: Option<u16>,
    pub errortext: String,
}

impl ApiError {
    /// Mold's catch-all for DR service failures: 530 with `cserrorcode` 9999.
    pub fn internal(text: impl Into<String>) -> Self {
        Self {
            errorcode: 530,
            cserrorcode: Some(9999),
            errortext: text.into(),
        }
    }

    /// A framework-level parameter error (431, before the command runs).
    pub fn param(text: impl Into<String>) -> Self {
        Self {
            errorcode: 431,
            cserrorcode: Some(9999),
            errortext: text.into(),
        }
    }

    /// `Unable to execute API command <cmd> due to missing parameter <name>`.
    pub fn missing(command: &str, name: &str) -> Self {
        Self::param(format!(
            "Unable to execute API command {} due to missing parameter {name}",
            command.to_lowercase()
        ))
    }

    /// The framework's answer for an id that names nothing.
    pub fn unknown_id(name: &str, value: &str) -> Self {
        Self::param(format!(
            "Invalid parameter {name} value={value} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
        ))
    }
}

pub type ApiResult = Result<Value, ApiError>;

/// The network each site is seeded with for test failovers (no seeded VM is on it).
pub const DR_TEST_NETWORK: &str = "DR Test Network";

#[derive(Debug, Clone)]
pub struct Host {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub id: String,
    pub internal_id: u64,
    pub name: String,
    pub instance_name: String,
    pub state: String,
    pub host_id: Option<String>,
    pub last_host_id: Option<String>,
    pub service_offering_id: String,
    /// The networks of its NICs, in device order: the first is the default NIC's.
    pub network_ids: Vec<String>,
    pub created: DateTime<Local>,
    /// Resource tags, key → value: from the configuration, and Mold's `createTags` and
    /// `deleteTags` (`mold/tags.rs`).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub id: String,
    /// Mold's numeric id, which some of its error texts quote (`Vol[<id>|name=…]`).
    pub internal_id: u64,
    pub name: String,
    /// The RBD image name in pool `rbd` (a UUID, identical on both sites when mirrored).
    pub path: String,
    pub vm_id: Option<String>,
    pub kind: String,
    pub size_bytes: u64,
    pub disk_offering_id: String,
    /// Mold's volume state (`Ready`, or `Destroy` once destroyed but not expunged).
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct Offering {
    pub id: String,
    pub name: String,
    pub customized: bool,
    pub kvdo: bool,
    pub cpu: u32,
    pub memory_mb: u32,
}

#[derive(Debug, Clone)]
pub struct DiskOffering {
    pub id: String,
    pub name: String,
    pub customized: bool,
    pub shareable: bool,
    pub kvdo: bool,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// CloudStack's guest network type: `Isolated`, `L2` or `Shared`.
    pub kind: &'static str,
}

/// A DR record ("재해 복구 클러스터"): it describes the **peer** site.
#[derive(Debug, Clone)]
pub struct DrRecord {
    pub id: String,
    pub internal_id: u64,
    pub name: String,
    pub description: String,
    pub url: String,
    /// `secondary` on the protected site, `primary` on the DR site.
    pub cluster_type: String,
    pub status: String,
    pub agent_status: String,
    pub glue_ip: Option<String>,
    /// Stored details, secrets included (Mold echoes them; drbook drops them at decode).
    pub details: BTreeMap<String, String>,
    pub created: DateTime<Local>,
    pub map: Vec<MapRow>,
}

/// One mirrored volume of one mirrored VM (`drclustervmmap`), as stored on one site.
#[derive(Debug, Clone)]
pub struct MapRow {
    pub vm_id: String,
    pub mirror_vm_id: String,
    pub mirror_vm_name: String,
    pub mirror_vm_status: String,
    pub vol_type: String,
    pub vol_path: String,
    pub vol_status: String,
    pub mirror_vol_status: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    pub state: String,
    pub description: String,
    pub at: DateTime<Local>,
}

/// One simulated site's Mold records and its storage VMs.
#[derive(Debug, Clone)]
pub struct Site {
    pub spec: SiteSpec,
    /// Dark after `/disaster`: its Mold and Glue refuse connections.
    pub up: bool,
    /// Filled in once the servers are bound.
    pub mold_url: String,
    /// One address per storage VM (loopback, distinct per endpoint).
    pub glue_ips: Vec<IpAddr>,
    /// The storage VMs' own SSH private key (their `/root/.ssh/id_rsa`; here ECDSA P-256 in
    /// PKCS#8 PEM, which libssh2 and OpenSSH read): the key the peer's Glue must be given
    /// (`drclusterprivatekey`) to set mirroring up with this site, and the one key the
    /// storage VMs' sshd takes when the simulation serves SSH. Empty when not modelled: then
    /// any key is taken.
    pub scvm_private_key: String,
    pub zone_id: String,
    pub pool_id: String,
    pub domain_id: String,
    pub hosts: Vec<Host>,
    pub vms: Vec<Vm>,
    pub volumes: Vec<Volume>,
    pub offerings: Vec<Offering>,
    pub disk_offerings: Vec<DiskOffering>,
    pub networks: Vec<Network>,
    pub dr_records: Vec<DrRecord>,
    pub events: Vec<Event>,
}

impl Site {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn vm(&self, id: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.id == id)
    }

    pub fn vm_mut(&mut self, id: &str) -> Option<&mut Vm> {
        self.vms.iter_mut().find(|v| v.id == id)
    }

    pub fn vm_by_name(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn volumes_of<'a>(&'a self, vm_id: &'a str) -> impl Iterator<Item = &'a Volume> + 'a {
        // ROOT first, then data disks, as Mold lists them.
        let mut vols: Vec<&Volume> = self
            .volumes
            .iter()
            .filter(|v| v.vm_id.as_deref() == Some(vm_id))
            .collect();
        vols.sort_by_key(|v| v.kind != "ROOT");
        vols.into_iter()
    }

    pub fn record(&self, id: &str) -> Option<&DrRecord> {
        self.dr_records.iter().find(|r| r.id == id)
    }

    pub fn record_by_name(&self, name: &str) -> Option<&DrRecord> {
        self.dr_records.iter().find(|r| r.name == name)
    }

    pub fn record_by_name_mut(&mut self, name: &str) -> Option<&mut DrRecord> {
        self.dr_records.iter_mut().find(|r| r.name == name)
    }

    /// The Glue addresses as `listScvmIpAddress` gives them.
    pub fn scvm_ips(&self) -> String {
        self.glue_ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a mapped VM of this site exists in any DR record's map.
    pub fn is_mapped(&self, vm_id: &str) -> bool {
        self.dr_records
            .iter()
            .any(|r| r.map.iter().any(|m| m.vm_id == vm_id))
    }
}

/// A job's work, run when it is due. Mold's DR jobs sleep and poll between steps, so a step
/// may hand back the rest of the work to run later.
pub type JobWork = Box<dyn FnOnce(&mut World, Instant) -> Step + Send>;

/// What one step of a job's work came to.
pub enum Step {
    Done(ApiResult),
    Later(std::time::Duration, JobWork),
}

impl From<ApiResult> for Step {
    fn from(r: ApiResult) -> Self {
        Step::Done(r)
    }
}

/// The command that submitted a job, as the job shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCommand {
    /// The API name, as sent in `command=`.
    pub name: &'static str,
    /// The Java class, the job's `cmd` in `queryAsyncJobResult` and `listAsyncJobs`.
    pub class: &'static str,
}

/// An async job: pending until `due`, then its work runs once and its result is kept.
pub struct Job {
    pub id: String,
    pub site: String,
    /// The command that submitted it.
    pub command: JobCommand,
    pub instance_type: Option<String>,
    pub instance_id: Option<String>,
    pub created: DateTime<Local>,
    pub due: Instant,
    pub work: Option<JobWork>,
    pub completed: Option<DateTime<Local>>,
    pub result: Option<ApiResult>,
}

/// The whole simulation state.
pub struct World {
    pub config: SimConfig,
    /// Read through `sites()`/`site()`; changed only through `site_mut()`/`sites_mut()`, which
    /// count the change, so Glue's scheduler knows when the mapped VMs may differ.
    sites: Vec<Site>,
    /// How many times a site was handed out to change.
    site_changes: u64,
    pub storage: Box<dyn Storage>,
    pub jobs: BTreeMap<String, Job>,
    /// The jobs with work still to run, by when it is due (then id, as `jobs` orders them):
    /// a request advances the due ones without scanning every job ever submitted.
    pending_jobs: BTreeSet<(Instant, String)>,
    /// Mold requests per (site, command), for tests that count calls.
    pub calls: BTreeMap<(String, String), u64>,
    /// Glue requests per (site, "METHOD /path" as received) that were handled (no fault
    /// answered in their place; a lost answer's request was handled), likewise.
    pub glue_calls: BTreeMap<(String, String), u64>,
    /// Command lines received over SSH per (site, line as received, trimmed), reads and
    /// refusals too ([`super::ssh::shell`]).
    pub ssh_calls: BTreeMap<(String, String), u64>,
    /// Every mutating request that arrived, per site, API and command (faulted ones too).
    pub mutations: Mutations,
    /// The mutating requests of `mutations` that Mold refused outright — its answer an error
    /// (a guard, a bad parameter, a pre-check), or an async job its "Please try again later."
    /// pre-check failed: they changed nothing.
    pub refused: Mutations,
    pub partitioned: bool,
    /// When Glue's scheduler next snapshots each (site, VM id).
    pub next_snapshot: BTreeMap<(String, String), Instant>,
    /// The earliest of `next_snapshot`, and `site_changes` when the scheduler last looked:
    /// it looks again only when one is due or a site changed.
    schedule_checked: Option<(Option<Instant>, u64)>,
    next_id: u64,
    /// Volumes' numeric ids: a counter of their own, so that adding them moved no UUID the
    /// seeded world hands out.
    next_volume_id: u64,
}

impl World {
    /// The sites of `config` over `storage` (whose sites must carry the same names).
    pub fn new(config: SimConfig, storage: Box<dyn Storage>) -> Self {
        let mut world = Self {
            sites: Vec::new(),
            site_changes: 0,
            storage,
            jobs: BTreeMap::new(),
            pending_jobs: BTreeSet::new(),
            calls: BTreeMap::new(),
            glue_calls: BTreeMap::new(),
            ssh_calls: BTreeMap::new(),
            mutations: Mutations::default(),
            refused: Mutations::default(),
            partitioned: false,
            next_snapshot: BTreeMap::new(),
            schedule_checked: None,
            next_id: 0,
            next_volume_id: 0,
            config,
        };
        for (index, spec) in world.config.sites.clone().into_iter().enumerate() {
            let site = world.new_site(spec, index);
            world.sites.push(site);
        }
        world
    }

    /// A fresh UUID-shaped id, deterministic per run (tests can compare them).
    pub fn uuid(&mut self) -> String {
        self.next_id += 1;
        let n = self.next_id;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5157_0000 + (n >> 16),
            n & 0xffff,
            n % 0xfff,
            (n * 7) % 0xfff,
            n * 0x9e37
        )
    }

    pub fn next_internal_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The next volume's numeric id.
    pub fn next_volume_id(&mut self) -> u64 {
        self.next_volume_id += 1;
        self.next_volume_id
    }

    fn new_site(&mut self, spec: SiteSpec, index: usize) -> Site {
        let glue_ips = (0..spec.glue_endpoints)
            .map(|k| {
                IpAddr::from([
                    127,
                    0,
                    u8::try_from(index + 1).unwrap_or(1),
                    u8::try_from(k + 1).unwrap_or(1),
                ])
            })
            .collect();
        let mut site = Site {
            up: true,
            mold_url: String::new(),
            glue_ips,
            scvm_private_key: String::new(),
            zone_id: self.uuid(),
            pool_id: self.uuid(),
            domain_id: self.uuid(),
            hosts: Vec::new(),
            vms: Vec::new(),
            volumes: Vec::new(),
            offerings: Vec::new(),
            disk_offerings: Vec::new(),
            networks: Vec::new(),
            dr_records: Vec::new(),
            events: Vec::new(),
            spec,
        };
        for h in 1..=3 {
            site.hosts.push(Host {
                id: self.uuid(),
                name: format!("{}-kvm{h}", site.spec.name),
            });
        }
        for (name, customized, cpu, memory_mb) in [
            ("Small Instance", false, 1, 1024),
            ("Medium Instance", false, 2, 4096),
            ("Large Instance", false, 4, 8192),
            ("Custom", true, 0, 0),
        ] {
            site.offerings.push(Offering {
                id: self.uuid(),
                name: name.into(),
                customized,
                kvdo: false,
                cpu,
                memory_mb,
            });
        }
        for (name, customized, shareable) in [
            ("Small", false, false),
            ("Custom", true, false),
            ("Shared Custom", true, true),
        ] {
            site.disk_offerings.push(DiskOffering {
                id: self.uuid(),
                name: name.into(),
                customized,
                shareable,
                kvdo: false,
            });
        }
        for (name, kind) in [("Guest Network", "Isolated"), ("Service Network", "L2")] {
            site.networks.push(Network {
                id: self.uuid(),
                name: name.into(),
                kind,
            });
        }
        // An isolated network no seeded VM uses, where a test failover starts its copies
        // without touching production traffic. Its id is fixed per site, outside the counter's
        // sequence, so every id seeded before it was added stays as it was.
        site.networks.push(Network {
            id: format!("5157d7e5-{index:04x}-4000-8000-000000000001"),
            name: DR_TEST_NETWORK.into(),
            kind: "Isolated",
        });
        site
    }

    pub fn site_index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.spec.name == name)
    }

    pub fn site(&self, name: &str) -> &Site {
        &self.sites[self.site_index(name).expect("known site")]
    }

    pub fn site_mut(&mut self, name: &str) -> &mut Site {
        let i = self.site_index(name).expect("known site");
        self.site_changes += 1;
        &mut self.sites[i]
    }

    /// A site's DR records, to rewrite the statuses `getDisasterRecoveryClusterList` stores:
    /// not counted as a change, since no VM is mapped or unmapped by it (use `site_mut` for
    /// that).
    pub fn record_statuses_mut(&mut self, name: &str) -> &mut [DrRecord] {
        let i = self.site_index(name).expect("known site");
        &mut self.sites[i].dr_records
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn sites_mut(&mut self) -> &mut [Site] {
        self.site_changes += 1;
        &mut self.sites
    }

    /// The other site's name.
    pub fn peer_of(&self, name: &str) -> String {
        self.sites
            .iter()
            .find(|s| s.spec.name != name)
            .map(|s| s.spec.name.clone())
            .expect("two sites")
    }

    /// Whether `from` can reach the other site's Mold (it is up and not cut off).
    pub fn peer_reachable(&self, from: &str) -> bool {
        !self.partitioned && self.site(&self.peer_of(from)).up
    }

    /// Adds a VM with its volumes (and their RBD images) on `site`.
    pub fn add_vm(
        &mut self,
        site: &str,
        name: &str,
        running: bool,
        datadisks: &[u64],
        root_bytes: u64,
    ) -> String {
        let id = self.uuid();
        let internal_id = self.next_internal_id();
        let s = self.site(site);
        let offering = s.offerings[1].id.clone();
        let network = s.networks[0].id.clone();
        let host = s.hosts[usize::try_from(internal_id).unwrap_or(0) % s.hosts.len()]
            .id
            .clone();
        let small_disk = s.disk_offerings[0].id.clone();
        let vm = Vm {
            id: id.clone(),
            internal_id,
            name: name.into(),
            instance_name: format!("i-2-{internal_id}-VM"),
            state: if running { "Running" } else { "Stopped" }.into(),
            host_id: running.then(|| host.clone()),
            last_host_id: Some(host),
            service_offering_id: offering,
            network_ids: vec![network],
            created: Local::now(),
            tags: BTreeMap::new(),
        };
        self.site_mut(site).vms.push(vm);
        let mut disks = vec![("ROOT", root_bytes)];
        disks.extend(datadisks.iter().map(|b| ("DATADISK", *b)));
        for (n, (kind, bytes)) in disks.into_iter().enumerate() {
            let vol_id = self.uuid();
            let path = self.uuid();
            if let Err(e) = self.storage.create_image(site, &path, bytes) {
                tracing::warn!(site, image = path, "cannot create the volume's image: {e}");
            }
            let vol_internal_id = self.next_volume_id();
            self.site_mut(site).volumes.push(Volume {
                id: vol_id,
                internal_id: vol_internal_id,
                name: if kind == "ROOT" {
                    format!("ROOT-{internal_id}")
                } else {
                    format!("DATA-{internal_id}-{n}")
                },
                path,
                vm_id: Some(id.clone()),
                kind: kind.into(),
                size_bytes: bytes,
                disk_offering_id: small_disk.clone(),
                state: "Ready".into(),
            });
        }
        id
    }

    /// Records an event (`DR.DEMOTE`, …) as Mold's event log would.
    pub fn event(&mut self, site: &str, kind: &str, state: &str, description: &str) {
        self.site_mut(site).events.push(Event {
            kind: kind.into(),
            state: state.into(),
            description: description.into(),
            at: Local::now(),
        });
    }

    /// Starts `command`'s async job on `site`; `work` runs once `delay` has passed.
    pub fn submit_job(
        &mut self,
        site: String,
        command: JobCommand,
        instance: Option<(&str, String)>,
        now: Instant,
        delay: std::time::Duration,
        work: JobWork,
    ) -> String {
        let id = self.uuid();
        self.pending_jobs.insert((now + delay, id.clone()));
        self.jobs.insert(
            id.clone(),
            Job {
                id: id.clone(),
                site,
                command,
                instance_type: instance.as_ref().map(|(t, _)| (*t).to_string()),
                instance_id: instance.map(|(_, i)| i),
                created: Local::now(),
                due: now + delay,
                work: Some(work),
                completed: None,
                result: None,
            },
        );
        id
    }

    /// Moves time forward: storage first, then every due job in order, then Glue's
    /// scheduler.
    pub fn advance(&mut self, now: Instant) {
        self.storage.advance(now);
        while let Some((_, id)) = self
            .pending_jobs
            .first()
            .filter(|(due, _)| *due <= now)
            .cloned()
        {
            self.pending_jobs.pop_first();
            let Some(work) = self.jobs.get_mut(&id).and_then(|j| j.work.take()) else {
                continue;
            };
            // A job on a site that went dark never completes; its poller gets no answer.
            let site = self.jobs[&id].site.clone();
            if !self.site(&site).up {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.work = Some(work);
                    j.due = now + std::time::Duration::from_millis(200);
                    self.pending_jobs.insert((j.due, id.clone()));
                }
                continue;
            }
            match work(self, now) {
                Step::Done(result) => {
                    if let Err(e) = &result
                        && e.errortext.contains("Please try again later.")
                    {
                        // Mold's pre-check turned the job away before it changed anything.
                        let command = self.jobs[&id].command.name;
                        self.refused
                            .record(&site, crate::sim::faults::Api::Mold, command);
                    }
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.result = Some(result);
                        j.completed = Some(Local::now());
                    }
                }
                Step::Later(after, rest) => {
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.work = Some(rest);
                        j.due = now + after;
                        self.pending_jobs.insert((j.due, id.clone()));
                    }
                }
            }
        }
        self.run_snapshot_schedule(now);
    }

    /// When anything next happens on its own.
    pub fn next_event(&self) -> Option<Instant> {
        let jobs = self.pending_jobs.first().map(|(due, _)| *due);
        [
            jobs,
            self.storage.next_event(),
            self.schedule_checked.and_then(|(due, _)| due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sets Glue's snapshot interval from `now` on: every VM's next round is one new
    /// interval away. Tests that must not meet a scheduled delta mid-run (a guard that refuses
    /// while one copies would then pass or fail by timing) quiet the scheduler this way.
    pub fn set_snapshot_interval(&mut self, now: Instant, interval: Duration) {
        self.config.timing.snapshot_interval = interval;
        for due in self.next_snapshot.values_mut() {
            *due = now + interval;
        }
        self.schedule_checked = None;
    }

    /// Glue's scheduler (Glue spec §4): per mirrored VM whose images are primary here and healthy
    /// and in sync, a consistent round of mirror snapshots every interval. It looks only when a
    /// round is due or a site changed (a VM mapped or unmapped, a site lost): a request costs
    /// nothing here otherwise.
    fn run_snapshot_schedule(&mut self, now: Instant) {
        if let Some((due, changes)) = self.schedule_checked
            && changes == self.site_changes
            && due.is_none_or(|due| due > now)
        {
            return;
        }
        let interval = self.config.timing.snapshot_interval;
        let mut rounds = Vec::new();
        let mut keep = BTreeMap::new();
        for site in &self.sites {
            if !site.up {
                continue;
            }
            let mapped: HashSet<&str> = site
                .dr_records
                .iter()
                .flat_map(|r| r.map.iter().map(|m| m.vm_id.as_str()))
                .collect();
            // Each VM's volumes, ROOT first, as Mold lists them.
            let mut volumes: HashMap<&str, Vec<&Volume>> = HashMap::new();
            for v in &site.volumes {
                if let Some(vm) = v.vm_id.as_deref() {
                    volumes.entry(vm).or_default().push(v);
                }
            }
            for vm in &site.vms {
                if !mapped.contains(vm.id.as_str()) {
                    continue;
                }
                let key = (site.spec.name.clone(), vm.id.clone());
                let due = *self.next_snapshot.get(&key).unwrap_or(&(now + interval));
                if due > now {
                    keep.insert(key, due);
                    continue;
                }
                let mut vols = volumes.remove(vm.id.as_str()).unwrap_or_default();
                vols.sort_by_key(|v| v.kind != "ROOT");
                let images: Vec<String> = vols.iter().map(|v| v.path.clone()).collect();
                rounds.push((key, images));
            }
        }
        for ((site, vm), images) in rounds {
            let healthy = images.iter().all(|img| {
                self.storage
                    .image_status(now, &site, img)
                    .ok()
                    .and_then(|v| ImageView::from_json(&v))
                    .is_some_and(|s| s.in_sync())
            });
            if healthy {
                for img in &images {
                    let _ = self.storage.mirror_snapshot(now, &site, img);
                }
            }
            keep.insert((site, vm), now + interval);
        }
        self.schedule_checked = Some((keep.values().min().copied(), self.site_changes));
        self.next_snapshot = keep;
    }

    /// One image's status on one site, as ABLESTACK's code reads it.
    pub fn image_status(&mut self, now: Instant, site: &str, image: &str) -> Option<ImageView> {
        self.storage
            .image_status(now, site, image)
            .ok()
            .and_then(|v| ImageView::from_json(&v))
    }

    /// Mold's volume status (§5.3) from a Glue state string.
    pub fn volume_status(state: &str, local: bool) -> &'static str {
        if state.contains("replaying") {
            "SYNCING"
        } else if state.contains("error") {
            "ERROR"
        } else if state.contains("unknown") || (state.contains("down") && !local) {
            // A local `down+…` falls through to READY in Mold's code; the peer's does not.
            "UNKNOWN"
        } else {
            "READY"
        }
    }

    /// The JSON of a VM as `listVirtualMachines` shows it.
    pub fn vm_json(&self, site: &Site, vm: &Vm) -> Value {
        let host = vm
            .host_id
            .as_deref()
            .and_then(|h| site.hosts.iter().find(|x| x.id == h));
        let offering = site
            .offerings
            .iter()
            .find(|o| o.id == vm.service_offering_id);
        let mut v = json!({
            "id": vm.id,
            "name": vm.name,
            "displayname": vm.name,
            "instancename": vm.instance_name,
            "state": vm.state,
            "account": "admin",
            "domainid": site.domain_id,
            "domain": "ROOT",
            "zoneid": site.zone_id,
            "zonename": format!("{}-zone", site.spec.name),
            "hypervisor": "KVM",
            "created": vm.created.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
            "serviceofferingid": vm.service_offering_id,
            "serviceofferingname": offering.map(|o| o.name.clone()).unwrap_or_default(),
        });
        if let Some(h) = host {
            v["hostid"] = json!(h.id);
            v["hostname"] = json!(h.name);
        }
        // CloudStack's NicResponse, one per NIC in device order. A NIC's id is derived from
        // the VM's numeric id and the device number, so that it needs no id of its own.
        v["nic"] = vm
            .network_ids
            .iter()
            .enumerate()
            .map(|(device, network)| {
                let net = site.networks.iter().find(|n| &n.id == network);
                json!({
                    "id": format!("5157a1c0-{device:04x}-4000-8000-{:012x}", vm.internal_id),
                    "networkid": network,
                    "networkname": net.map(|n| n.name.clone()).unwrap_or_default(),
                    "type": net.map_or("Isolated", |n| n.kind),
                    "traffictype": "Guest",
                    "isdefault": device == 0,
                    "deviceid": device.to_string(),
                    "virtualmachineid": vm.id,
                })
            })
            .collect();
        // CloudStack's ResourceTagResponse; `[]` when the VM has none.
        v["tags"] = vm
            .tags
            .iter()
            .map(|(key, value)| {
                json!({
                    "key": key,
                    "value": value,
                    "resourcetype": "UserVm",
                    "resourceid": vm.id,
                    "account": "admin",
                    "domainid": site.domain_id,
                    "domain": "ROOT",
                })
            })
            .collect();
        v
    }
}

/// Glue's cluster-level flows (Glue spec §2.2), shared by the Glue routes and the Mold commands
/// that call them.
impl World {
    /// Setup / enable (`POST /mirror`, `POST /mirror/rbd`): pool mirroring on both sites.
    pub fn glue_mirror_setup(&mut self, now: Instant) {
        for site in self.site_names() {
            if let Err(e) = self.storage.set_pool_mirroring(now, &site, true) {
                tracing::warn!(site, "pool mirroring enable: {e}");
            }
        }
    }

    /// Teardown / disable (`DELETE /mirror`, `DELETE /mirror/rbd`): every image in either
    /// site's pool status has its mirroring disabled, then pool mirroring goes on both sites.
    pub fn glue_mirror_teardown(&mut self, now: Instant) {
        for site in self.site_names() {
            for image in self.mirrored_images(now, &site) {
                let _ = self.storage.disable_mirroring(now, &site, &image);
            }
        }
        for site in self.site_names() {
            let _ = self.storage.set_pool_mirroring(now, &site, false);
        }
    }

    /// Garbage (`DELETE /mirror/garbage`, local only, after the per-image disables): the
    /// peer and pool mirroring are gone on this site.
    pub fn glue_garbage(
        &mut self,
        now: Instant,
        site: &str,
    ) -> Result<(), super::storage::RbdError> {
        self.storage.set_pool_mirroring(now, site, false)
    }

    /// The images a site's verbose pool status lists.
    pub fn mirrored_images(&mut self, now: Instant, site: &str) -> Vec<String> {
        self.storage
            .pool_status(now, site)
            .get("images")
            .and_then(Value::as_array)
            .map(|imgs| {
                imgs.iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn site_names(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.spec.name.clone()).collect()
    }

    /// Makes a pending job fail with `text` when it is due (an injected fault).
    /// A failed VM job leaves the VM as it was, the way Mold's state machine rolls back a
    /// failed start (`Starting` → `Stopped`) or stop (`Stopping` → `Running`).
    pub fn fail_job(&mut self, jobid: &str, text: String) {
        if let Some(job) = self.jobs.get_mut(jobid)
            && job.work.is_some()
        {
            let site = job.site.clone();
            let vm = (job.instance_type.as_deref() == Some("VirtualMachine"))
                .then(|| job.instance_id.clone())
                .flatten();
            job.work = Some(Box::new(move |w: &mut World, _| {
                if let Some(vm) = vm.as_deref().and_then(|id| w.site_mut(&site).vm_mut(id)) {
                    match vm.state.as_str() {
                        "Starting" => vm.state = "Stopped".into(),
                        "Stopping" => vm.state = "Running".into(),
                        _ => {}
                    }
                }
                Step::Done(Err(ApiError::internal(text)))
            }));
        }
    }
}
