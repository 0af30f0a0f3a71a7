//! The real storage backend: two single-node Ceph 16.2.15 clusters on loopback with
//! snapshot mirroring between them (`drbook sim --storage ceph`), answering the
//! [`Storage`] seam with the `rbd` commands real Glue runs (spec `glue-and-rbd.md` §2, §6.6)
//! and passing their output through.
//!
//! - The work directory holds one directory per site (conf, mon/mgr/osd data, logs, PID
//!   files). A start clears what an earlier run left there: its daemons, found by PID file
//!   and checked by command line, are killed, and its data removed.
//! - Every command has a deadline ([`cluster::COMMAND_DEADLINE`]); a command for a site this
//!   backend has taken down fails at once with rbd's own "couldn't connect" text.
//! - The images are real but small ([`content::IMAGE_BYTES`]), whatever size Mold reports;
//!   writes are real blocks ([`content`]), and the ledger is read back from `rbd export`.
//! - Time is real: Ceph's daemons progress on their own, statuses refresh about every 30 s
//!   (§6.6), so there is no `next_event`. Network partitions between the sites are not
//!   available (both clusters share loopback).

pub mod cluster;
pub mod content;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ledger::WriteCounter;
use super::storage::{DataMovement, RbdError, SiteContent, Storage};
use cluster::CephSite;

/// The file that marks a directory as a drbook Ceph work directory, so that a start only
/// ever clears a directory drbook made.
const MARKER: &str = ".drbook-ceph-workdir";

/// Two real clusters; see the module documentation.
#[derive(Debug)]
pub struct CephStorage {
    workdir: PathBuf,
    sites: [CephSite; 2],
    /// Whether each site's cluster runs (a disaster kills it).
    up: [bool; 2],
    writes: WriteCounter,
}

impl CephStorage {
    /// Brings up both clusters under `workdir` (created if missing; cleared if an earlier
    /// run left it), pairs them with rx-tx peers and starts one rbd-mirror per site. Blocks
    /// for the 30–40 s real Ceph takes.
    pub fn start(workdir: &Path, site_a: &str, site_b: &str) -> Result<Self, String> {
        cluster::check_installed()?;
        let workdir = prepare_workdir(workdir)?;
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| CephSite::create(&workdir.join(site_a), site_a, "local"));
            let b = CephSite::create(&workdir.join(site_b), site_b, "remote");
            let a = a
                .join()
                .unwrap_or_else(|_| Err(format!("bringing up {site_a} panicked")));
            (a, b)
        });
        let (mut a, mut b) = (a?, b?);
        bootstrap_peers(&a, &b).map_err(|e| e.to_string())?;
        a.start("rbd-mirror")?;
        b.start("rbd-mirror")?;
        tracing::info!(workdir = %workdir.display(), "two Ceph clusters up, mirroring paired");
        Ok(Self {
            workdir,
            sites: [a, b],
            up: [true, true],
            writes: WriteCounter::default(),
        })
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    fn ix(&self, site: &str) -> Result<usize, RbdError> {
        self.sites
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| RbdError {
                exit_status: 2,
                output: format!("no site named {site:?} in the Ceph backend"),
            })
    }

    /// The site's cluster, if it runs: a dead cluster would only hang (§6.6).
    fn live(&self, site: &str) -> Result<&CephSite, RbdError> {
        let ix = self.ix(site)?;
        if self.up[ix] {
            Ok(&self.sites[ix])
        } else {
            Err(RbdError::cluster_down())
        }
    }

    /// `rbd <args>` on a live site: stdout on success, rbd's exit status and output
    /// otherwise.
    fn rbd(&self, site: &str, args: &[&str]) -> Result<String, RbdError> {
        let out = rbd_output(self.live(site)?, args, None)?;
        Ok(out.stdout_text())
    }

    /// `rbd ... --format json`, decoded.
    fn rbd_json(&self, site: &str, args: &[&str]) -> Result<Value, RbdError> {
        let text = self.rbd(site, args)?;
        serde_json::from_str(&text).map_err(|e| RbdError {
            exit_status: 1,
            output: format!("rbd printed JSON drbook cannot read ({e}): {}", text.trim()),
        })
    }

    /// `rbd info` as rbd prints it (with `mirroring.primary`).
    fn rbd_info(&self, site: &str, image: &str) -> Result<Value, RbdError> {
        self.rbd_json(site, &["info", "--image", image, "--format", "json"])
    }

    fn image_args<'a>(verb: &[&'a str], image: &'a str) -> Vec<&'a str> {
        let mut args = verb.to_vec();
        args.extend(["--pool", "rbd", "--image", image]);
        args
    }
}

impl Storage for CephStorage {
    fn backend(&self) -> &'static str {
        "ceph"
    }

    fn create_image(&mut self, site: &str, image: &str, _size_bytes: u64) -> Result<(), RbdError> {
        let bytes = format!("{}B", content::IMAGE_BYTES);
        match self.rbd(site, &["create", "--size", &bytes, &format!("rbd/{image}")]) {
            Err(e) if e.output.contains("(17) File exists") => Ok(()),
            other => other.map(drop),
        }
    }

    /// The real `rbd`, with the site's cluster configuration.
    fn rbd_command(
        &mut self,
        _now: Instant,
        site: &str,
        args: &[String],
    ) -> Result<String, RbdError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.rbd(site, &args)
    }

    fn remove_image(&mut self, _now: Instant, site: &str, image: &str) -> Result<(), RbdError> {
        self.rbd(site, &["rm", &format!("rbd/{image}")]).map(drop)
    }

    fn enable_mirroring(
        &mut self,
        _now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        let mut args = Self::image_args(&["mirror", "image", "enable"], image);
        args.push("snapshot");
        self.rbd(site, &args)
    }

    fn disable_mirroring(
        &mut self,
        _now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        self.rbd(
            site,
            &Self::image_args(&["mirror", "image", "disable"], image),
        )
    }

    fn promote(
        &mut self,
        _now: Instant,
        site: &str,
        image: &str,
        force: bool,
    ) -> Result<String, RbdError> {
        let mut args = Self::image_args(&["mirror", "image", "promote"], image);
        if force {
            args.push("--force");
        }
        self.rbd(site, &args)
    }

    fn demote(&mut self, _now: Instant, site: &str, image: &str) -> Result<String, RbdError> {
        self.rbd(
            site,
            &Self::image_args(&["mirror", "image", "demote"], image),
        )
    }

    fn resync(&mut self, _now: Instant, site: &str, image: &str) -> Result<String, RbdError> {
        self.rbd(
            site,
            &Self::image_args(&["mirror", "image", "resync"], image),
        )
    }

    fn mirror_snapshot(
        &mut self,
        _now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        self.rbd(
            site,
            &["mirror", "image", "snapshot", &format!("rbd/{image}")],
        )
    }

    fn image_status(&mut self, _now: Instant, site: &str, image: &str) -> Result<Value, RbdError> {
        let mut args = Self::image_args(&["mirror", "image", "status"], image);
        args.extend(["--format", "json"]);
        let mut status = self.rbd_json(site, &args)?;
        as_glue_reencodes(&mut status);
        Ok(status)
    }

    fn pool_status(&mut self, _now: Instant, site: &str) -> Value {
        let args = [
            "mirror",
            "pool",
            "status",
            "rbd",
            "--verbose",
            "--format",
            "json",
        ];
        match self.rbd_json(site, &args) {
            Ok(mut pool) => {
                if let Some(daemons) = pool.get_mut("daemons").and_then(Value::as_array_mut) {
                    for d in daemons {
                        // Glue's struct has no place for them.
                        if let Some(d) = d.as_object_mut() {
                            d.remove("callouts");
                        }
                    }
                }
                if let Some(images) = pool.get_mut("images").and_then(Value::as_array_mut) {
                    images.iter_mut().for_each(as_glue_reencodes);
                }
                for key in ["daemons", "images"] {
                    if pool
                        .get(key)
                        .and_then(Value::as_array)
                        .is_some_and(Vec::is_empty)
                    {
                        pool[key] = Value::Null;
                    }
                }
                pool
            }
            Err(e) if e.output.contains("mirroring not enabled on the pool") => json!({
                "summary": {"health": "", "daemon_health": "", "image_health": "", "states": null},
                "daemons": null,
                "images": null,
            }),
            Err(e) => {
                tracing::warn!(site, "rbd mirror pool status: {e}");
                Value::Null
            }
        }
    }

    fn pool_summary(&mut self, _now: Instant, site: &str) -> Result<Value, RbdError> {
        let pool = self.rbd_json(
            site,
            &["mirror", "pool", "status", "rbd", "--format", "json"],
        )?;
        Ok(pool.get("summary").cloned().unwrap_or(Value::Null))
    }

    /// Glue decodes `rbd info` into its own struct and answers only that (spec §2.1).
    fn image_info(&self, site: &str, image: &str) -> Result<Value, RbdError> {
        let info = self.rbd_info(site, image)?;
        let parent = |key: &str| {
            info.pointer(&format!("/parent/{key}"))
                .cloned()
                .unwrap_or(json!(""))
        };
        Ok(json!({
            "name": info["name"],
            "id": info["id"],
            "size": info["size"],
            "snapshot_count": info["snapshot_count"],
            "features": info["features"],
            "parent": {"pool": parent("pool"), "image": parent("image"), "snapshot": parent("snapshot")},
        }))
    }

    fn is_primary(&self, site: &str, image: &str) -> Option<bool> {
        let info = self.rbd_info(site, image).ok()?;
        Some(
            info.pointer("/mirroring/primary")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        )
    }

    fn write(
        &mut self,
        _now: Instant,
        site: &str,
        image: &str,
        count: u64,
    ) -> Result<Vec<u64>, RbdError> {
        self.live(site)?;
        let seqs = self.writes.issue(count);
        let cluster = self.live(site)?;
        let target = format!("rbd/{image}");
        rbd_output(
            cluster,
            &["import-diff", "--no-progress", "-", &target],
            Some(content::diff_stream(&seqs)),
        )?;
        Ok(seqs)
    }

    fn content(&self, image: &str) -> BTreeMap<String, SiteContent> {
        let target = format!("rbd/{image}");
        let mut found = BTreeMap::new();
        for (ix, site) in self.sites.iter().enumerate() {
            if !self.up[ix] {
                continue;
            }
            match rbd_output(site, &["export", "--no-progress", &target, "-"], None) {
                Ok(out) => {
                    let (writes, sha256) = content::read_export(&out.stdout);
                    found.insert(
                        site.name.clone(),
                        SiteContent {
                            writes,
                            sha256: Some(sha256),
                        },
                    );
                }
                Err(e) => tracing::debug!(site = site.name, image, "no content: {e}"),
            }
        }
        found
    }

    fn image_data_movement(&self, _image: &str) -> Option<DataMovement> {
        None
    }

    fn set_site_up(&mut self, _now: Instant, site: &str, up: bool) -> Result<(), String> {
        let ix = self.ix(site).map_err(|e| e.output)?;
        let cluster = &mut self.sites[ix];
        if up {
            cluster.start_all()?;
            cluster.wait_for(
                "the monitor and the OSD after the restart",
                Duration::from_secs(90),
                CephSite::osd_up,
            )?;
        } else {
            cluster.kill_all();
        }
        self.up[ix] = up;
        Ok(())
    }

    fn set_daemon_up(&mut self, _now: Instant, site: &str, up: bool) -> Result<(), String> {
        let ix = self.ix(site).map_err(|e| e.output)?;
        if !self.up[ix] {
            return Err(format!("{site}'s cluster is down"));
        }
        let cluster = &mut self.sites[ix];
        if up {
            if !cluster.is_running("rbd-mirror") {
                cluster.start("rbd-mirror")?;
            }
        } else {
            cluster.kill("rbd-mirror");
        }
        Ok(())
    }

    fn set_partitioned(&mut self, _now: Instant, _partitioned: bool) -> Result<(), String> {
        Err("partitions are not available with --storage ceph: both clusters share loopback; use /disaster to take a whole site away".into())
    }

    fn set_pool_mirroring(
        &mut self,
        _now: Instant,
        site: &str,
        enabled: bool,
    ) -> Result<(), RbdError> {
        let ix = self.ix(site)?;
        let info = |s: &Self, site: &str| {
            s.rbd_json(site, &["mirror", "pool", "info", "rbd", "--format", "json"])
        };
        let here = info(self, site)?;
        let mode = here
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("disabled");
        let peers: Vec<String> = here
            .get("peers")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|peer| peer.get("uuid").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if enabled {
            if mode == "disabled" {
                let name = self.sites[ix].glue_name.clone();
                self.rbd(
                    site,
                    &[
                        "mirror",
                        "pool",
                        "enable",
                        "--site-name",
                        &name,
                        "rbd",
                        "image",
                    ],
                )?;
            }
            let other = &self.sites[1 - ix];
            let other_mode = info(self, &other.name)
                .ok()
                .and_then(|v| v.get("mode").and_then(Value::as_str).map(String::from));
            if peers.is_empty() && other_mode.as_deref() == Some("image") {
                bootstrap_peers(&self.sites[ix], other)?;
            }
        } else {
            for uuid in peers {
                self.rbd(site, &["mirror", "pool", "peer", "remove", "rbd", &uuid])?;
            }
            if mode != "disabled" {
                self.rbd(site, &["mirror", "pool", "disable", "rbd"])?;
            }
        }
        Ok(())
    }

    fn peer_reachable(&self, site: &str) -> bool {
        self.ix(site).is_ok_and(|ix| self.up[1 - ix])
    }

    fn advance(&mut self, _now: Instant) {}

    fn next_event(&self) -> Option<Instant> {
        None
    }

    /// Waits until every seeded image's replica reports its first snapshot synced
    /// (`up+replaying`, idle, with a `local_snapshot_timestamp`), as the model's start does.
    fn settle_initial_copies(
        &mut self,
        start: Instant,
        images: &[String],
    ) -> Result<Instant, String> {
        let limit = Duration::from_secs(300);
        let until = Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for image in images {
                let synced = self
                    .sites
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .iter()
                    .any(|site| {
                        self.image_status(start, site, image)
                            .ok()
                            .is_some_and(|status| {
                                status.get("description").and_then(Value::as_str)
                                    == Some("local image is primary")
                                    && status
                                        .get("peer_sites")
                                        .and_then(Value::as_array)
                                        .and_then(|p| p.last())
                                        .is_some_and(replica_synced)
                            })
                    });
                if !synced {
                    waiting.push(image.as_str());
                }
            }
            if waiting.is_empty() {
                // The copies took real time, which the simulation's clock already counts: no
                // time to skip, unlike the model's.
                return Ok(start);
            }
            if Instant::now() > until {
                return Err(format!(
                    "the first copies did not finish within {}s (still waiting for {}); rbd-mirror logs are in {}",
                    limit.as_secs(),
                    waiting.join(", "),
                    self.workdir.display()
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn state_json(&mut self, now: Instant) -> Value {
        let mut sites = serde_json::Map::new();
        for ix in 0..2 {
            let name = self.sites[ix].name.clone();
            let daemons: serde_json::Map<String, Value> = self.sites[ix]
                .pids()
                .into_iter()
                .map(|(d, pid)| (d, json!(pid)))
                .collect();
            let images: serde_json::Map<String, Value> = if self.up[ix] {
                self.pool_status(now, &name)
                    .get("images")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        Some((
                            i.get("name")?.as_str()?.to_string(),
                            json!({"state": i.get("state"), "description": i.get("description")}),
                        ))
                    })
                    .collect()
            } else {
                serde_json::Map::new()
            };
            sites.insert(
                name,
                json!({"up": self.up[ix], "daemons": daemons, "images": images}),
            );
        }
        json!({"backend": "ceph", "workdir": self.workdir.display().to_string(), "sites": sites})
    }

    fn cluster_status(&self, site: &str) -> Option<Value> {
        let out = self
            .live(site)
            .ok()?
            .ceph(&["-s", "-f", "json"], cluster::COMMAND_DEADLINE)
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn shutdown(&mut self) {
        for site in &mut self.sites {
            site.kill_all();
        }
        self.up = [false, false];
    }
}

/// Runs rbd; a failure keeps rbd's exit status and its output (stderr, then stdout), as Glue
/// passes them on.
fn rbd_output(
    site: &CephSite,
    args: &[&str],
    stdin: Option<Vec<u8>>,
) -> Result<process::Output, RbdError> {
    let out = site.rbd(args, stdin).map_err(|e| RbdError {
        exit_status: 127,
        output: e,
    })?;
    match out.status {
        Some(0) => Ok(out),
        Some(code) => {
            let mut output = out.stderr.clone();
            output.push_str(&out.stdout_text());
            Err(RbdError {
                exit_status: code,
                output: output.trim_end().to_string(),
            })
        }
        None => Err(RbdError {
            exit_status: 110,
            output: format!(
                "rbd {}: no answer within {}s; the command was killed (a cluster that does not answer makes rbd hang)",
                args.first().copied().unwrap_or_default(),
                cluster::COMMAND_DEADLINE.as_secs()
            ),
        }),
    }
}

/// Glue decodes rbd's JSON into its own struct and encodes it again: `daemon_service` is
/// always there, with empty strings when rbd left it out (spec §3.1).
fn as_glue_reencodes(status: &mut Value) {
    if let Some(obj) = status.as_object_mut() {
        obj.entry("daemon_service").or_insert_with(
            || json!({"service_id": "", "instance_id": "", "daemon_id": "", "hostname": ""}),
        );
    }
}

/// A replica's own report: replaying, idle, with its first snapshot synced.
fn replica_synced(peer: &Value) -> bool {
    let state = peer.get("state").and_then(Value::as_str).unwrap_or("");
    let description = peer
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    state == "up+replaying"
        && description.contains("\"replay_state\":\"idle\"")
        && description.contains("local_snapshot_timestamp")
}

/// A bootstrap token created on `a` and imported on `b`, two-way (§2.2 steps 3–7).
fn bootstrap_peers(a: &CephSite, b: &CephSite) -> Result<(), RbdError> {
    let token = rbd_output(
        a,
        &[
            "mirror",
            "pool",
            "peer",
            "bootstrap",
            "create",
            "--site-name",
            &a.glue_name,
            "rbd",
        ],
        None,
    )?
    .stdout;
    rbd_output(
        b,
        &[
            "mirror",
            "pool",
            "peer",
            "bootstrap",
            "import",
            "--site-name",
            &b.glue_name,
            "--direction",
            "rx-tx",
            "rbd",
            "-",
        ],
        Some(token),
    )?;
    Ok(())
}

/// Makes `dir` ready for two new clusters: created if missing; if it holds an earlier run
/// (it carries the marker), that run's daemons are killed and its files removed. A directory
/// with other contents is refused. Returns the absolute path.
fn prepare_workdir(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if !entries.is_empty() && !dir.join(MARKER).exists() {
        return Err(format!(
            "{} is not empty and was not made by `drbook sim --storage ceph`; give --workdir a new or empty directory (drbook clears only its own)",
            dir.display()
        ));
    }
    let marker = dir.display().to_string();
    let killed = process::kill_leftovers(&dir, &marker);
    if !killed.is_empty() {
        tracing::warn!(pids = ?killed, "stopped Ceph daemons an earlier run left behind");
    }
    for entry in entries {
        if entry.file_name().is_some_and(|n| n == MARKER) {
            continue;
        }
        let removed = if entry.is_dir() {
            std::fs::remove_dir_all(&entry)
        } else {
            std::fs::remove_file(&entry)
        };
        removed.map_err(|e| format!("cannot clear {}: {e}", entry.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "Two Ceph clusters of `drbook sim --storage ceph`; cleared at its next start.\n",
    )
    .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    Ok(dir)
}
