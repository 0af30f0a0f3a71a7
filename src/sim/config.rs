//! What a simulation looks like: the two sites, their VMs, and every duration.
//!
//! `drbook sim` with no arguments gives [`SimConfig::default`]: `site-a` protected, `site-b`
//! DR, DR cluster `DR`, ten mirrored VMs running on `site-a` and synced, tagged `tier` = `db`,
//! `app` or `web` on both sites. A TOML file (`--config sim.toml`) can describe any other
//! topology; every key is optional.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::duration;
use crate::mold::SignatureAlgorithm;
use crate::sim::rbd::StorageTiming;

/// A whole simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The protected site first, the DR site second.
    pub sites: [SiteSpec; 2],
    /// The DR cluster paired at start, if any (`None`: the sites start unpaired).
    pub cluster: Option<String>,
    pub vms: Vec<VmSpec>,
    pub timing: SimTiming,
    /// Where every server listens (ports are ephemeral).
    pub listen: IpAddr,
    /// Serve Glue over HTTPS with a certificate generated at start (plain HTTP otherwise).
    pub glue_tls: bool,
    /// What holds the RBD images: the in-process model, or two real Ceph clusters.
    pub storage: StorageBackend,
    /// Real SSH on the storage VMs (an OpenSSH server per site, see [`crate::sim::ssh`]);
    /// `None`: nothing listens for SSH, and `ssh()` finds the storage VMs unreachable.
    pub ssh: Option<SshServe>,
}

/// How the storage VMs serve SSH: which OpenSSH server runs, and which drbook binary its
/// `ForceCommand` runs (`drbook sim exec`), which hands each command to the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshServe {
    /// The drbook binary: `std::env::current_exe()` in `drbook sim`,
    /// `env!("CARGO_BIN_EXE_drbook")` in the integration tests.
    pub drbook: std::path::PathBuf,
    /// The OpenSSH server ([`SshServe::SSHD`] unless told otherwise).
    pub sshd: std::path::PathBuf,
}

impl SshServe {
    /// Where Debian's openssh-server puts sshd.
    pub const SSHD: &str = "/usr/sbin/sshd";

    /// SSH served by [`SshServe::SSHD`], its commands run by `drbook`.
    pub fn new(drbook: impl Into<std::path::PathBuf>) -> Self {
        Self {
            drbook: drbook.into(),
            sshd: Self::SSHD.into(),
        }
    }
}

/// The storage behind the simulated Glue API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StorageBackend {
    /// The in-process model of Ceph's snapshot mirroring (fast, deterministic).
    #[default]
    Model,
    /// Two real single-node Ceph clusters with rbd-mirror, brought up under `workdir`.
    Ceph { workdir: std::path::PathBuf },
}

/// One simulated site.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub name: String,
    pub api_key: String,
    pub secret_key: String,
    pub algorithm: SignatureAlgorithm,
    /// Storage-VM (Glue) endpoints on this site.
    pub glue_endpoints: usize,
    /// `cloud.dr.service.enabled`.
    pub dr_enabled: bool,
    /// `enforce.post.requests.and.timestamps`.
    pub enforce_post: bool,
}

/// One production VM, on its home site.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub name: String,
    /// The site it runs on in normal operation, protected towards the other one over the same
    /// pairing (Active-Active when some VMs are at home on each site); `None`: the protected
    /// site (the first).
    pub home: Option<String>,
    pub datadisks: usize,
    /// Whether it is mirrored to the other site at start (a mirrored VM exists there, synced).
    pub mirrored: bool,
    pub running: bool,
    pub root_gib: u64,
    pub datadisk_gib: u64,
    /// Resource tags (key → value), on the VM and, when seeded mirrored, on its mirrored VM.
    pub tags: BTreeMap<String, String>,
}

/// Every duration of the simulation, so tests can run in milliseconds and rehearsals in
/// something close to real time.
#[derive(Debug, Clone)]
pub struct SimTiming {
    /// How long an ordinary async job (VM start/stop, create, delete, enable, disable) runs.
    pub job: Duration,
    /// How long a cluster-level DR job (promote, demote, resync, clear) runs at least.
    pub dr_job: Duration,
    /// How long a synchronous VM-level DR command holds its request (Mold sleeps 10–60 s).
    pub dr_vm_command: Duration,
    /// Glue's mirror-snapshot schedule (the DR record's `mirrorscheduleinterval` is ignored
    /// by the simulator so that tests can use seconds).
    pub snapshot_interval: Duration,
    pub storage: StorageTiming,
}

impl SimTiming {
    /// Close to a real site's pace, scaled so a demo finishes in well under a minute.
    pub fn demo() -> Self {
        Self {
            job: Duration::from_millis(800),
            dr_job: Duration::from_secs(2),
            dr_vm_command: Duration::from_secs(1),
            snapshot_interval: Duration::from_secs(10),
            storage: StorageTiming {
                // 100 GiB in about 2 s: a resync's full copy is visible, not tedious.
                bandwidth_bytes_per_sec: 50 << 30,
                min_transfer: Duration::from_millis(300),
                ..StorageTiming::fast()
            },
        }
    }

    /// Real Mold and Ceph pace: minutes per DR job, an hourly snapshot schedule.
    pub fn realistic() -> Self {
        Self {
            job: Duration::from_secs(5),
            dr_job: Duration::from_secs(60),
            dr_vm_command: Duration::from_secs(60),
            snapshot_interval: Duration::from_secs(3600),
            storage: StorageTiming::realistic(),
        }
    }

    /// As fast as correctness allows, for tests: a full copy of a 100 GiB image takes
    /// about 0.1 s.
    pub fn fast() -> Self {
        Self {
            job: Duration::from_millis(30),
            dr_job: Duration::from_millis(60),
            dr_vm_command: Duration::from_millis(20),
            snapshot_interval: Duration::from_millis(500),
            storage: StorageTiming {
                bandwidth_bytes_per_sec: 1 << 40,
                ..StorageTiming::fast()
            },
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        let vms = (1..=5)
            .map(|i| VmSpec {
                name: format!("dr-centos-{i}"),
                home: None,
                datadisks: usize::from(i == 1),
                mirrored: true,
                running: true,
                root_gib: 20,
                datadisk_gib: 50,
                tags: tier_tags(&format!("dr-centos-{i}")),
            })
            .chain((1..=5).map(|i| VmSpec {
                name: format!("dr-win-{i}"),
                home: None,
                datadisks: 1,
                mirrored: true,
                running: true,
                root_gib: 60,
                datadisk_gib: 100,
                tags: tier_tags(&format!("dr-win-{i}")),
            }))
            .collect();
        Self {
            sites: [SiteSpec::new("site-a"), SiteSpec::new("site-b")],
            cluster: Some("DR".into()),
            vms,
            timing: SimTiming::demo(),
            listen: IpAddr::from([127, 0, 0, 1]),
            glue_tls: true,
            storage: StorageBackend::Model,
            ssh: None,
        }
    }
}

impl SiteSpec {
    /// A site with fresh admin keys, shaped like Mold's (43 URL-safe characters).
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            api_key: random_key(),
            secret_key: random_key(),
            algorithm: SignatureAlgorithm::Sha256,
            glue_endpoints: 2,
            dr_enabled: true,
            enforce_post: false,
        }
    }
}

/// The default topology's tags, by VM name, so runbooks have something real to group by:
/// `dr-centos-1` and `-2` are `tier=db`, the other `dr-centos-N` `tier=app`, every `dr-win-N`
/// `tier=web`.
fn tier_tags(name: &str) -> BTreeMap<String, String> {
    let tier = match name {
        "dr-centos-1" | "dr-centos-2" => "db",
        n if n.starts_with("dr-centos-") => "app",
        n if n.starts_with("dr-win-") => "web",
        _ => return BTreeMap::new(),
    };
    BTreeMap::from([("tier".to_string(), tier.to_string())])
}

fn random_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

impl SimConfig {
    /// Active-Active: the `dr-win-*` VMs at home on the second site, protected towards the
    /// first over the same pairing; the `dr-centos-*` VMs stay at home on the first.
    #[must_use]
    pub fn active_active(mut self) -> Self {
        let second = self.sites[1].name.clone();
        for vm in &mut self.vms {
            if vm.name.starts_with("dr-win-") {
                vm.home = Some(second.clone());
            }
        }
        self
    }

    /// The default pair with `n` VMs: `dr-centos-1..5`, `dr-win-1..5`, then `dr-centos-6`,
    /// `dr-win-6`, … alternating; tagged by name as in the default (`dr-centos-6` is
    /// `tier=app`).
    #[must_use]
    pub fn with_vms(mut self, n: usize) -> Self {
        let template = SimConfig::default().vms;
        self.vms = (0..n)
            .map(|i| {
                if i < template.len() {
                    return template[i].clone();
                }
                let k = i - template.len();
                let (mut vm, kind) = if k % 2 == 0 {
                    (template[0].clone(), "centos")
                } else {
                    (template[5].clone(), "win")
                };
                vm.name = format!("dr-{kind}-{}", 6 + k / 2);
                vm.tags = tier_tags(&vm.name);
                vm
            })
            .collect();
        self
    }

    /// Both sites verify with `algorithm`.
    #[must_use]
    pub fn with_signature(mut self, algorithm: SignatureAlgorithm) -> Self {
        for s in &mut self.sites {
            s.algorithm = algorithm;
        }
        self
    }

    /// Reads a `sim.toml`; unknown keys and bad values are errors with file:line:column.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses `sim.toml` text; errors are `line:column: message`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawSim = toml::from_str(text).map_err(|e| {
            let (line, col) = crate::config::line_column(text, e.span().map_or(0, |s| s.start));
            format!(
                "{line}:{col}: {}",
                e.message().trim_end().replace('\n', " ")
            )
        })?;
        raw.resolve(&At(text))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    sites: Option<Spanned<Vec<RawSite>>>,
    cluster: Option<String>,
    vms: Option<usize>,
    #[serde(default)]
    vm: Vec<RawVm>,
    listen: Option<IpAddr>,
    glue_tls: Option<bool>,
    signature: Option<Spanned<String>>,
    #[serde(default)]
    timing: RawTiming,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    name: String,
    api_key: Option<String>,
    secret_key: Option<String>,
    signature: Option<Spanned<String>>,
    glue_endpoints: Option<Spanned<usize>>,
    dr_enabled: Option<bool>,
    enforce_post: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: String,
    home: Option<Spanned<String>>,
    datadisks: Option<usize>,
    mirrored: Option<bool>,
    running: Option<bool>,
    root_gib: Option<u64>,
    datadisk_gib: Option<u64>,
    tags: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    preset: Option<Spanned<String>>,
    job: Option<Spanned<String>>,
    dr_job: Option<Spanned<String>>,
    dr_vm_command: Option<Spanned<String>>,
    snapshot_interval: Option<Spanned<String>>,
    bandwidth: Option<Spanned<String>>,
    min_transfer: Option<Spanned<String>>,
    bootstrap_not_found: Option<Spanned<String>>,
    demote_propagation: Option<Spanned<String>>,
    demote_settle: Option<Spanned<String>>,
    peer_down_after: Option<Spanned<String>>,
    orphan_settle: Option<Spanned<String>>,
    split_brain_after: Option<Spanned<String>>,
    resync_absent: Option<Spanned<String>>,
    status_refresh: Option<Spanned<String>>,
}

/// Turns a span into the `line:column: ` prefix of an error.
struct At<'a>(&'a str);

impl At<'_> {
    fn err(&self, span: std::ops::Range<usize>, msg: impl std::fmt::Display) -> String {
        let (line, col) = crate::config::line_column(self.0, span.start);
        format!("{line}:{col}: {msg}")
    }
}

impl RawSim {
    fn resolve(self, at: &At<'_>) -> Result<SimConfig, String> {
        let mut c = SimConfig::default();
        if let Some(s) = &self.signature {
            c = c.with_signature(s.get_ref().parse().map_err(|e| at.err(s.span(), e))?);
        }
        let sites_span = self.sites.as_ref().map(Spanned::span).unwrap_or_default();
        let sites = self.sites.map(Spanned::into_inner).unwrap_or_default();
        match sites.len() {
            0 => {}
            2 => {
                for (spec, raw) in c.sites.iter_mut().zip(sites) {
                    spec.name = raw.name;
                    if let Some(k) = raw.api_key {
                        spec.api_key = k;
                    }
                    if let Some(k) = raw.secret_key {
                        spec.secret_key = k;
                    }
                    if let Some(s) = raw.signature {
                        spec.algorithm = s.get_ref().parse().map_err(|e| at.err(s.span(), e))?;
                    }
                    if let Some(n) = raw.glue_endpoints {
                        if !(1..=8).contains(n.get_ref()) {
                            return Err(at.err(
                                n.span(),
                                format!("site {}: glue_endpoints must be 1 to 8", spec.name),
                            ));
                        }
                        spec.glue_endpoints = n.into_inner();
                    }
                    spec.dr_enabled = raw.dr_enabled.unwrap_or(spec.dr_enabled);
                    spec.enforce_post = raw.enforce_post.unwrap_or(spec.enforce_post);
                }
                if c.sites[0].name == c.sites[1].name {
                    return Err(at.err(sites_span, "the two sites need different names"));
                }
            }
            n => {
                return Err(at.err(
                    sites_span,
                    format!("a simulation has exactly two [[sites]], not {n}"),
                ));
            }
        }
        if let Some(cluster) = self.cluster {
            c.cluster = (!cluster.is_empty()).then_some(cluster);
        }
        if let Some(n) = self.vms {
            c = c.with_vms(n);
        }
        if !self.vm.is_empty() {
            let sites: Vec<String> = c.sites.iter().map(|s| s.name.clone()).collect();
            c.vms = self
                .vm
                .into_iter()
                .map(|v| {
                    let tags = match v.tags {
                        None => BTreeMap::new(),
                        Some(t) => {
                            // Mold's createTags refuses a tag without a value; an empty key is no tag.
                            if t.get_ref()
                                .iter()
                                .any(|(k, val)| k.is_empty() || val.is_empty())
                            {
                                return Err(at.err(
                                    t.span(),
                                    format!("vm {}: a tag needs a key and a value", v.name),
                                ));
                            }
                            t.into_inner()
                        }
                    };
                    let home = match v.home {
                        None => None,
                        Some(h) if sites.iter().any(|s| s == h.get_ref()) => Some(h.into_inner()),
                        Some(h) => {
                            return Err(at.err(
                                h.span(),
                                format!(
                                    "vm {}: home {:?} is not one of the sites ({})",
                                    v.name,
                                    h.get_ref(),
                                    sites.join(", ")
                                ),
                            ));
                        }
                    };
                    Ok(VmSpec {
                        name: v.name,
                        home,
                        datadisks: v.datadisks.unwrap_or(0),
                        mirrored: v.mirrored.unwrap_or(true),
                        running: v.running.unwrap_or(true),
                        root_gib: v.root_gib.unwrap_or(20),
                        datadisk_gib: v.datadisk_gib.unwrap_or(50),
                        tags,
                    })
                })
                .collect::<Result<_, String>>()?;
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(t) = self.glue_tls {
            c.glue_tls = t;
        }
        c.timing = self.timing.resolve(at)?;
        Ok(c)
    }
}

impl RawTiming {
    fn resolve(self, at: &At<'_>) -> Result<SimTiming, String> {
        let preset_span = self.preset.as_ref().map(Spanned::span).unwrap_or_default();
        let mut t = match self.preset.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("demo") => SimTiming::demo(),
            Some("fast") => SimTiming::fast(),
            Some("realistic") => SimTiming::realistic(),
            Some(other) => {
                return Err(at.err(
                    preset_span,
                    format!("timing.preset {other:?}: use \"fast\", \"demo\" or \"realistic\""),
                ));
            }
        };
        let set = |slot: &mut Duration,
                   value: Option<Spanned<String>>,
                   key: &str|
         -> Result<(), String> {
            if let Some(v) = value {
                *slot = duration::parse(v.get_ref())
                    .map_err(|e| at.err(v.span(), format!("timing.{key}: {e}")))?;
            }
            Ok(())
        };
        set(&mut t.job, self.job, "job")?;
        set(&mut t.dr_job, self.dr_job, "dr_job")?;
        set(&mut t.dr_vm_command, self.dr_vm_command, "dr_vm_command")?;
        set(
            &mut t.snapshot_interval,
            self.snapshot_interval,
            "snapshot_interval",
        )?;
        let s = &mut t.storage;
        set(&mut s.min_transfer, self.min_transfer, "min_transfer")?;
        set(
            &mut s.bootstrap_not_found,
            self.bootstrap_not_found,
            "bootstrap_not_found",
        )?;
        set(
            &mut s.demote_propagation,
            self.demote_propagation,
            "demote_propagation",
        )?;
        set(&mut s.demote_settle, self.demote_settle, "demote_settle")?;
        set(
            &mut s.peer_down_after,
            self.peer_down_after,
            "peer_down_after",
        )?;
        set(&mut s.orphan_settle, self.orphan_settle, "orphan_settle")?;
        set(
            &mut s.split_brain_after,
            self.split_brain_after,
            "split_brain_after",
        )?;
        set(&mut s.resync_absent, self.resync_absent, "resync_absent")?;
        set(&mut s.status_refresh, self.status_refresh, "status_refresh")?;
        if let Some(b) = self.bandwidth {
            s.bandwidth_bytes_per_sec =
                parse_bandwidth(b.get_ref()).map_err(|e| at.err(b.span(), e))?;
        }
        Ok(t)
    }
}

/// `"100MiB/s"`, `"1GiB/s"`, `"500KiB/s"`, or bytes per second.
fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let v = s.trim().trim_end_matches("/s");
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("timing.bandwidth {s:?}: expected e.g. \"100MiB/s\""))?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "timing.bandwidth {s:?}: units are B, KiB, MiB, GiB per second"
            ));
        }
    };
    n.checked_mul(mult)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("timing.bandwidth {s:?}: out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pair() {
        let c = SimConfig::default();
        assert_eq!(c.sites[0].name, "site-a");
        assert_eq!(c.sites[1].name, "site-b");
        assert_eq!(c.cluster.as_deref(), Some("DR"));
        assert_eq!(c.vms.len(), 10);
        assert!(c.vms.iter().any(|v| v.datadisks > 0));
        assert_eq!(c.vms[0].name, "dr-centos-1");
        assert_eq!(c.vms[9].name, "dr-win-5");
        let tier = |c: &SimConfig, i: usize| c.vms[i].tags.get("tier").cloned();
        assert_eq!(tier(&c, 0).as_deref(), Some("db"));
        assert_eq!(tier(&c, 1).as_deref(), Some("db"));
        assert_eq!(tier(&c, 2).as_deref(), Some("app"));
        assert_eq!(tier(&c, 4).as_deref(), Some("app"));
        assert_eq!(tier(&c, 5).as_deref(), Some("web"));
        assert_eq!(tier(&c, 9).as_deref(), Some("web"));
        let more = SimConfig::default().with_vms(12);
        assert_eq!(more.vms[10].name, "dr-centos-6");
        assert_eq!(tier(&more, 10).as_deref(), Some("app"));
        assert_eq!(more.vms[11].name, "dr-win-6");
        assert_eq!(tier(&more, 11).as_deref(), Some("web"));
    }

    #[test]
    fn vm_count_and_names_stay_unique() {
        let c = SimConfig::default().with_vms(14);
        let mut names: Vec<_> = c.vms.iter().map(|v| v.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 14);
        assert_eq!(SimConfig::default().with_vms(3).vms.len(), 3);
    }

    #[test]
    fn toml_topology() {
        let c = SimConfig::parse(
            r#"
cluster = "PAIR"
signature = "sha1"
[[sites]]
name = "seoul"
glue_endpoints = 3
[[sites]]
name = "busan"
enforce_post = true
[[vm]]
name = "db-1"
datadisks = 2
tags = { tier = "db", owner = "dba" }
[[vm]]
name = "web-1"
[timing]
preset = "fast"
job = "10ms"
bandwidth = "10MiB/s"
"#,
        )
        .unwrap();
        assert_eq!(c.sites[0].name, "seoul");
        assert_eq!(c.sites[0].glue_endpoints, 3);
        assert_eq!(c.sites[0].algorithm, SignatureAlgorithm::Sha1);
        assert!(c.sites[1].enforce_post);
        assert_eq!(c.cluster.as_deref(), Some("PAIR"));
        assert_eq!(c.vms.len(), 2);
        assert_eq!(c.vms[0].datadisks, 2);
        assert_eq!(
            c.vms[0].tags,
            BTreeMap::from([
                ("owner".to_string(), "dba".to_string()),
                ("tier".to_string(), "db".to_string()),
            ])
        );
        assert!(c.vms[1].tags.is_empty());
        assert_eq!(c.timing.job, Duration::from_millis(10));
        assert_eq!(c.timing.storage.bandwidth_bytes_per_sec, 10 << 20);
    }

    #[test]
    fn bad_toml_points_at_the_line() {
        let e = SimConfig::parse("[timing]\njob = \"fast\"\n").unwrap_err();
        assert!(e.starts_with("2:7: timing.job"), "{e}");
        let e = SimConfig::parse("vmz = 3\n").unwrap_err();
        assert!(e.starts_with("1:1:"), "{e}");
        let e = SimConfig::parse("[[sites]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("exactly two"), "{e}");
        let e = SimConfig::parse("[[vm]]\nname = \"db-1\"\ntags = \"db\"\n").unwrap_err();
        assert!(
            e.starts_with("3:8: invalid type: string \"db\", expected a map"),
            "{e}"
        );
        let e = SimConfig::parse("[[vm]]\nname = \"db-1\"\ntags = { tier = 3 }\n").unwrap_err();
        assert!(e.starts_with("3:17: invalid type: integer"), "{e}");
        let e = SimConfig::parse("[[vm]]\nname = \"db-1\"\ntags = { tier = \"\" }\n").unwrap_err();
        assert!(e.starts_with("3:8: vm db-1: a tag needs"), "{e}");
    }
}
