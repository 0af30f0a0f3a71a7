//! The modelled storage held to real Ceph: one scenario (steady state, a delta, an orderly
//! switchover and back, a disaster with a forced promote, the return with both primary, a
//! demote into split-brain, the resync) runs through Glue's routes on `drbook sim
//! --storage model` and on `drbook sim --storage ceph`, and at every settled step each site
//! must show the same on both: `state`, the description's kind, `replay_state`, who is
//! primary, what each site last heard from the other, which writes each copy holds, and the
//! exit status and texts of the rbd commands that succeed or fail.
//!
//! Before the delta, a DR test without an outage runs its storage side as drbook does, with
//! `rbd` over SSH on the storage VMs (the control API's `POST /ssh/{site}`, where the
//! simulated sshd hands each line): a user snapshot on the primary, carried to the replica by
//! the next mirror snapshot, a format-2 clone of it on the DR site, the snapshot removed on
//! the primary (trashed on the replica while the clone reads it) and the clone removed (the
//! trashed snapshot goes with it); the delta after it shows mirroring unharmed.
//!
//! A step is settled when its transition is over (its `done` test) and, while both sites
//! answer, each site's view of its peer agrees with what the peer shows itself: real
//! rbd-mirror rewrites a status only every ~30 s, so the test waits on state, never on time.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Test;
use crate::sim_process::{GlueAnswer, SimProcess, until, writes};

/// The VM whose ROOT image the scenario drives; a second, unmirrored VM gives an image that
/// exists but is not mirrored.
const VM: &str = "dr-centos-1";
const PLAIN_VM: &str = "plain-1";

/// Both backends start from the same topology. No scheduled snapshots: every mirror
/// snapshot is the scenario's own, so both see the same sequence.
const SIM_TOML: &str = r#"
cluster = "DR"

[[vm]]
name = "dr-centos-1"

[[vm]]
name = "plain-1"
mirrored = false

[timing]
preset = "fast"
snapshot_interval = "1h"
"#;

/// An rbd command's outcome as Glue passes it on, reduced to what must agree: the exit
/// status and the `rbd:` and librbd lines (librbd's timestamps and pointers dropped; Glue
/// repeats a failed promote's output, and librbd's lines come in varying order).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ok(String),
    Failed {
        /// Glue's HTTP status; `None` over SSH.
        http: Option<u16>,
        exit_status: Option<u32>,
        lines: BTreeSet<String>,
    },
    Unreachable,
}

impl Answer {
    fn of(answer: GlueAnswer) -> Self {
        match answer {
            GlueAnswer::Unreachable => Self::Unreachable,
            GlueAnswer::Answered { status: 200, body } => {
                let text = body
                    .get("message")
                    .or_else(|| body.get("Message"))
                    .and_then(Value::as_str)
                    .or_else(|| body.as_str())
                    .unwrap_or_default()
                    .trim();
                // Snapshot ids count every snapshot in the pool: which number is not behaviour.
                Self::Ok(match text.strip_prefix("Snapshot ID: ") {
                    Some(_) => "Snapshot ID: <id>".to_string(),
                    None => text.to_string(),
                })
            }
            GlueAnswer::Answered { status, body } => {
                Self::failed(Some(status), body["message"].as_str().unwrap_or_default())
            }
        }
    }

    /// A command line's answer over SSH: `{"status", "stdout", "stderr"}`. A success is its
    /// stdout; a failure as Glue's (`exit status N` and the output).
    fn of_ssh(answer: &Value) -> Self {
        let stdout = answer["stdout"].as_str().unwrap_or_default();
        match answer["status"].as_i64() {
            Some(0) => Self::Ok(stdout.trim().to_string()),
            status => Self::failed(
                None,
                &format!(
                    "exit status {}\n{}{stdout}",
                    status.unwrap_or(-1),
                    answer["stderr"].as_str().unwrap_or_default()
                ),
            ),
        }
    }

    fn failed(http: Option<u16>, message: &str) -> Self {
        let mut exit_status = None;
        let mut lines = BTreeSet::new();
        for line in rbd_lines(message) {
            if let Some(n) = line.strip_prefix("exit status ") {
                exit_status = n.trim().parse().ok();
            } else if line.starts_with("rbd:") {
                lines.insert(line.trim().to_string());
            } else if let Some(at) = line.find("librbd::") {
                lines.insert(
                    line[at..]
                        .split_whitespace()
                        .filter(|w| !w.starts_with("0x"))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
        Self::Failed {
            http,
            exit_status,
            lines,
        }
    }

    /// A success's text, for a step's `done`.
    fn text(&self) -> &str {
        match self {
            Self::Ok(text) => text,
            _ => "",
        }
    }
}

/// rbd's output split into its lines. The CLI and librbd's log threads share stderr, so on
/// real Ceph a line can run into the next: a new line also starts at each `rbd:` and each
/// librbd timestamp (`2026-11-25T…`).
fn rbd_lines(output: &str) -> Vec<&str> {
    let starts_line = |rest: &str| {
        let b = rest.as_bytes();
        rest.starts_with("rbd: ")
            || (b.len() > 11
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T')
    };
    let mut lines = Vec::new();
    for line in output.lines() {
        let mut start = 0;
        for (at, _) in line.char_indices().skip(1) {
            if starts_line(&line[at..]) {
                lines.push(&line[start..at]);
                start = at;
            }
        }
        lines.push(&line[start..]);
    }
    lines
        .into_iter()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// What [`snapshot_rows`] says of a replica whose newest mirror snapshot is a complete copy
/// of the primary's newest: the mirror snapshot taken last has synced.
const COPIED_NEWEST: &str = "complete true, copies the primary's newest true";

/// What [`snapshot_rows`] shows for a mirror snapshot on its way out.
const PRUNING: &str = "a mirror snapshot being removed";

/// A replica's `rbd snap ls --all` as far as it is behaviour, in id order: each user or
/// trash snapshot (a trashed one is named by a uuid and keeps its `original_name`), and of
/// the mirror snapshots only the newest — its state, whether it is complete and, read against
/// the primary's listing `peer`, whether it copies the primary's newest mirror snapshot and
/// which of the primary's user snapshots it comes after (ids themselves differ).
fn snapshot_rows(here: &Value, peer: &Value) -> String {
    let rows = |list: &Value| {
        let mut rows: Vec<Value> = list.as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["id"].as_u64());
        rows
    };
    let kind = |r: &Value| {
        r["namespace"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (here, peer) = (rows(here), rows(peer));
    let newest_mirror = |rows: &[Value]| {
        rows.iter()
            .filter(|r| kind(r) == "mirror")
            .filter_map(|r| r["id"].as_u64())
            .max()
    };
    let newest = newest_mirror(&here);
    let mut shown = Vec::new();
    for row in &here {
        let ns = &row["namespace"];
        let name = row["name"].as_str().unwrap_or_default();
        match kind(row).as_str() {
            "mirror" if row["id"].as_u64() == newest => {
                let mut text = format!(
                    "newest mirror snapshot {}, complete {}",
                    ns["state"], ns["complete"]
                );
                if let Some(source) = ns["primary_snap_id"].as_u64() {
                    let after: Vec<&str> = peer
                        .iter()
                        .filter(|r| kind(r) == "user" && r["id"].as_u64() < Some(source))
                        .filter_map(|r| r["name"].as_str())
                        .collect();
                    let _ = write!(
                        text,
                        ", copies the primary's newest {}, after its user snapshots {after:?}",
                        newest_mirror(&peer) == Some(source)
                    );
                }
                shown.push(text);
            }
            "mirror" => {}
            // Real librbd removes every snapshot through the trash namespace: a pruned mirror
            // snapshot shows there for a moment (the step waits until it is gone).
            "trash"
                if ns["original_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(".mirror.")) =>
            {
                shown.push(PRUNING.to_string());
            }
            "trash" => shown.push(format!(
                "trash {} named by a uuid {}, protected {}",
                ns["original_name"],
                is_uuid(name),
                row["protected"]
            )),
            other => shown.push(format!("{other} {name:?}, protected {}", row["protected"])),
        }
    }
    shown.join("; ")
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a step's read `n` (a [`snapshot_rows`] listing) shows the newest mirror snapshot
/// synced and the older ones pruned.
fn synced(o: &Observation, n: usize) -> bool {
    o.reads
        .get(n)
        .is_some_and(|r| r.text().contains(COPIED_NEWEST) && !r.text().contains(PRUNING))
}

/// What one site shows for the image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SiteView {
    /// `state` and the description's kind (`replaying` for `replaying, {...}`).
    own: Result<(String, String), Answer>,
    replay_state: Option<String>,
    /// Whether the replica's newest snapshot is the newest the primary announced.
    caught_up: Option<bool>,
    /// What it last heard from the other site: its `peer_sites[0]` state and kind.
    peer: Option<(String, String)>,
    /// Whether this copy is primary (librbd's `mirroring.primary`); `None` when it cannot
    /// be read.
    primary: Option<bool>,
}

impl SiteView {
    fn own(&self) -> Option<(&str, &str)> {
        self.own
            .as_ref()
            .ok()
            .map(|(s, k)| (s.as_str(), k.as_str()))
    }

    fn kind(&self) -> &str {
        self.own().map_or("", |(_, k)| k)
    }

    fn idle(&self) -> bool {
        self.kind() == "replaying" && self.replay_state.as_deref() == Some("idle")
    }

    /// A replica with nothing to copy whose report names the snapshot it holds: the first
    /// report after a copy does not yet.
    fn replica_settled(&self) -> bool {
        self.idle() && self.caught_up == Some(true)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observation {
    a: SiteView,
    b: SiteView,
    writes_a: Vec<u64>,
    writes_b: Vec<u64>,
    /// The step's reads, in order.
    reads: Vec<Answer>,
}

impl Observation {
    /// While both sites answer, each one's view of the other is what the other shows.
    fn views_agree(&self) -> bool {
        let (Some(a), Some(b)) = (self.a.own(), self.b.own()) else {
            return true;
        };
        heard(self.a.peer.as_ref()) == Some(b) && heard(self.b.peer.as_ref()) == Some(a)
    }
}

fn heard(peer: Option<&(String, String)>) -> Option<(&str, &str)> {
    peer.map(|(s, k)| (s.as_str(), k.as_str()))
}

impl fmt::Display for SiteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.own {
            Ok((state, kind)) => write!(f, "{state} / {kind}")?,
            Err(e) => write!(f, "{e:?}")?,
        }
        if let Some(r) = &self.replay_state {
            write!(f, " ({r}, caught up {:?})", self.caught_up)?;
        }
        write!(f, "; hears {:?}; primary {:?}", self.peer, self.primary)
    }
}

#[derive(Clone, Copy)]
enum Act {
    Write(&'static str, u64),
    Snapshot(&'static str),
    /// A Glue route on a site: method and path, `{img}` standing for the image.
    Glue(&'static str, &'static str, &'static str),
    Disaster(&'static str),
    Recover(&'static str),
    /// One command line on a site's storage VM over SSH, `{img}` standing for the image.
    Rbd(&'static str, &'static str),
    /// `rbd snap ls --all --format json` of the image on a site, read beside the other
    /// site's listing ([`snapshot_rows`]).
    Snapshots(&'static str),
}

struct Step {
    name: &'static str,
    acts: Vec<Act>,
    done: fn(&Observation) -> bool,
    /// Reads answered with each observation: part of what settles the step (`done` sees
    /// them) and of what must agree.
    reads: Vec<Act>,
    /// Calls that must not change anything (each is refused), answered after the step
    /// settled.
    probes: Vec<Act>,
}

const DEMOTE: &str = "mirror/image/demote/rbd/{img}";
const PROMOTE: &str = "mirror/image/promote/rbd/{img}";
const RESYNC: &str = "mirror/image/resync/rbd/{img}";
/// A DR test's storage side over SSH, as `src/dr/test_images.rs` sends it.
const SNAP_CREATE: &str = "rbd snap create rbd/{img}@drtest-x";
const CLONE: &str = "rbd clone --rbd-default-clone-format 2 rbd/{img}@drtest-x rbd/{img}-drtest-x";
const CLONE_INFO: &str = "rbd info rbd/{img}-drtest-x --format json";

/// The scenario. A is site-a (primary at start), B is site-b.
fn scenario() -> Vec<Step> {
    let neither_primary = |o: &Observation| {
        o.a.primary == Some(false)
            && o.b.primary == Some(false)
            && [&o.a, &o.b].iter().all(|s| {
                !matches!(
                    s.kind(),
                    "" | "local image is primary" | "replaying" | "remote image demoted"
                )
            })
    };
    vec![
        Step {
            name: "steady state",
            acts: vec![],
            done: |o| o.a.primary == Some(true) && o.b.replica_settled(),
            reads: vec![],
            probes: vec![
                Act::Glue("site-a", "POST", PROMOTE),
                Act::Glue("site-b", "DELETE", DEMOTE),
                Act::Glue("site-a", "PUT", RESYNC),
                Act::Glue("site-a", "GET", "mirror/image/status/rbd/no-such-image"),
                Act::Glue("site-a", "GET", "mirror/image/status/rbd/{plain}"),
            ],
        },
        Step {
            name: "DR test: a user snapshot on the primary reaches the replica",
            acts: vec![
                Act::Rbd("site-a", SNAP_CREATE),
                Act::Rbd("site-b", SNAP_CREATE),
                Act::Snapshot("site-a"),
            ],
            done: |o| o.b.replica_settled() && synced(o, 0),
            reads: vec![Act::Snapshots("site-b")],
            probes: vec![
                Act::Rbd("site-a", SNAP_CREATE),
                Act::Rbd("site-a", "rbd snap rm rbd/{img}@drtest-none"),
                Act::Rbd("site-b", "rbd snap rm rbd/{img}@drtest-x"),
                Act::Rbd("site-b", "rbd rm rbd/{img}"),
            ],
        },
        Step {
            name: "DR test: a clone of it on the DR site",
            acts: vec![
                Act::Rbd("site-b", "rbd clone rbd/{img}@drtest-x rbd/{img}-drtest-x"),
                Act::Rbd(
                    "site-b",
                    "rbd clone --rbd-default-clone-format 2 rbd/{img}@drtest-none rbd/{img}-drtest-x",
                ),
                Act::Rbd("site-b", CLONE),
                Act::Rbd("site-b", CLONE_INFO),
                Act::Rbd("site-a", "rbd info rbd/{img} --format json"),
                Act::Rbd("site-b", "rbd info rbd/{img} --format json"),
            ],
            done: |o| o.b.replica_settled(),
            reads: vec![],
            probes: vec![Act::Rbd("site-b", CLONE)],
        },
        Step {
            name: "DR test: the user snapshot removed on the primary, trashed on the replica",
            acts: vec![
                Act::Rbd("site-a", "rbd snap rm rbd/{img}@drtest-x"),
                Act::Snapshot("site-a"),
            ],
            done: |o| o.b.replica_settled() && synced(o, 0),
            reads: vec![Act::Snapshots("site-b"), Act::Rbd("site-b", CLONE_INFO)],
            probes: vec![],
        },
        Step {
            name: "DR test: the clone removed, the trashed snapshot with it",
            acts: vec![Act::Rbd("site-b", "rbd rm rbd/{img}-drtest-x")],
            // Real Ceph removes the trashed snapshot with the last clone (DetachChildRequest);
            // the step still waits on the listing rather than assume it.
            done: |o| {
                o.b.replica_settled() && synced(o, 0) && !o.reads[0].text().contains("trash ")
            },
            reads: vec![
                Act::Snapshots("site-b"),
                Act::Rbd("site-b", "rbd trash ls --format json"),
            ],
            probes: vec![
                Act::Rbd("site-b", "rbd rm rbd/{img}"),
                Act::Rbd("site-b", CLONE_INFO),
            ],
        },
        Step {
            name: "a delta reaches the DR site",
            acts: vec![Act::Write("site-a", 3), Act::Snapshot("site-a")],
            done: |o| o.writes_b == o.writes_a && o.b.replica_settled(),
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "orderly switchover: demote site-a",
            acts: vec![Act::Glue("site-a", "DELETE", DEMOTE)],
            done: neither_primary,
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "orderly switchover: promote site-b",
            acts: vec![Act::Glue("site-b", "POST", PROMOTE)],
            done: |o| o.b.primary == Some(true) && o.a.replica_settled(),
            reads: vec![],
            probes: vec![
                Act::Glue("site-b", "POST", PROMOTE),
                Act::Glue("site-a", "DELETE", DEMOTE),
            ],
        },
        Step {
            name: "switch back: demote site-b",
            acts: vec![Act::Glue("site-b", "DELETE", DEMOTE)],
            done: neither_primary,
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "switch back: promote site-a",
            acts: vec![Act::Glue("site-a", "POST", PROMOTE)],
            done: |o| o.a.primary == Some(true) && o.b.replica_settled(),
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "disaster: writes not yet snapshotted, site-a dark",
            acts: vec![Act::Write("site-a", 2), Act::Disaster("site-a")],
            // The DR site's view of the lost site freezes, then turns `down+`. (A forced
            // promote in the first seconds after the loss can hang on real Ceph while its
            // replayer still waits on the dead peer, Glue spec §5.5: the scenario promotes after.)
            done: |o| {
                o.b.peer
                    .as_ref()
                    .is_some_and(|(s, _)| s.starts_with("down+"))
            },
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "disaster: site-b force-promoted",
            acts: vec![Act::Glue("site-b", "POST", PROMOTE)],
            done: |o| o.b.primary == Some(true),
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "site-a returns: both primary",
            acts: vec![Act::Recover("site-a")],
            done: |o| {
                o.a.kind() == "local image is primary" && o.b.kind() == "local image is primary"
            },
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "demote the returned copy: split-brain",
            acts: vec![Act::Glue("site-a", "DELETE", DEMOTE)],
            done: |o| o.a.kind() == "split-brain",
            reads: vec![],
            probes: vec![],
        },
        Step {
            name: "resync the returned copy",
            acts: vec![Act::Glue("site-a", "PUT", RESYNC)],
            done: |o| o.a.replica_settled() && o.writes_a == o.writes_b,
            reads: vec![],
            probes: vec![Act::Glue("site-b", "PUT", RESYNC)],
        },
    ]
}

/// What one backend showed: per step, what its acts answered, the settled observation and
/// the probes' answers.
#[derive(Debug)]
struct StepRecord {
    acts: Vec<Answer>,
    seen: Observation,
    probes: Vec<Answer>,
}

struct Run<'a> {
    sim: &'a SimProcess,
    image: String,
    plain: String,
}

impl Run<'_> {
    fn path(&self, template: &str) -> String {
        template
            .replace("{img}", &self.image)
            .replace("{plain}", &self.plain)
    }

    /// `primary` comes from the ledger: Glue's `rbd info` route drops librbd's mirroring
    /// section.
    async fn site(&self, site: &str, primary: Option<bool>) -> SiteView {
        let status = self
            .sim
            .glue(site, "GET", &self.path("mirror/image/status/rbd/{img}"))
            .await;
        let GlueAnswer::Answered { status: 200, body } = status else {
            return SiteView {
                own: Err(Answer::of(status)),
                replay_state: None,
                caught_up: None,
                peer: None,
                primary,
            };
        };
        let kind = |d: &Value| {
            let d = d.as_str().unwrap_or_default();
            d.split_once(", ").map_or(d, |(k, _)| k).to_string()
        };
        let detail: Option<Value> = body["description"]
            .as_str()
            .and_then(|d| d.split_once(", "))
            .and_then(|(_, tail)| serde_json::from_str(tail).ok());
        let peer = body["peer_sites"]
            .as_array()
            .and_then(|p| p.last())
            .map(|p| {
                (
                    p["state"].as_str().unwrap_or_default().to_string(),
                    kind(&p["description"]),
                )
            });
        SiteView {
            own: Ok((
                body["state"].as_str().unwrap_or_default().to_string(),
                kind(&body["description"]),
            )),
            replay_state: detail
                .as_ref()
                .and_then(|d| d["replay_state"].as_str())
                .map(str::to_string),
            caught_up: detail.as_ref().and_then(|d| {
                Some(d.get("local_snapshot_timestamp")? == d.get("remote_snapshot_timestamp")?)
            }),
            peer,
            primary,
        }
    }

    async fn observe(&self, reads: &[Act]) -> Observation {
        let ledger = self.sim.ledger(VM).await;
        let image = ledger
            .iter()
            .find(|i| i["image"] == self.image.as_str())
            .expect("the scenario's image is in the ledger");
        let primary = |site: &str| image["primary"][site].as_bool();
        let mut seen = Observation {
            a: self.site("site-a", primary("site-a")).await,
            b: self.site("site-b", primary("site-b")).await,
            writes_a: writes(image, "site-a"),
            writes_b: writes(image, "site-b"),
            reads: Vec::new(),
        };
        for read in reads {
            seen.reads.push(self.act(*read).await);
        }
        // A dark site's copy cannot be read on real storage; the model still knows it.
        for (view, writes) in [
            (&mut seen.a, &mut seen.writes_a),
            (&mut seen.b, &mut seen.writes_b),
        ] {
            if view.own == Err(Answer::Unreachable) {
                view.primary = None;
                writes.clear();
            }
        }
        seen
    }

    async fn act(&self, act: Act) -> Answer {
        match act {
            Act::Write(site, count) => {
                self.sim
                    .post("/write", json!({"vm": VM, "site": site, "count": count}))
                    .await;
                Answer::Ok(String::new())
            }
            Act::Snapshot(site) => Answer::of(
                self.sim
                    .glue(
                        site,
                        "POST",
                        &format!(
                            "mirror/image/snapshot/rbd/{VM}?mirrorPool=rbd&vmName={VM}&imageName={}",
                            self.image
                        ),
                    )
                    .await,
            ),
            Act::Glue(site, method, path) => {
                Answer::of(self.sim.glue(site, method, &self.path(path)).await)
            }
            Act::Disaster(site) => {
                self.sim.post("/disaster", json!({"site": site})).await;
                Answer::Ok(String::new())
            }
            Act::Recover(site) => {
                self.sim.post("/recover", json!({"site": site})).await;
                Answer::Ok(String::new())
            }
            Act::Rbd(site, line) => {
                let line = self.path(line);
                match self.ssh(site, &line).await {
                    Answer::Ok(text) if line.starts_with("rbd info ") => {
                        Answer::Ok(self.info_shown(&text))
                    }
                    other => other,
                }
            }
            Act::Snapshots(site) => {
                let other = if site == "site-a" { "site-b" } else { "site-a" };
                let list = self.path("rbd snap ls --all rbd/{img} --format json");
                match (self.ssh(site, &list).await, self.ssh(other, &list).await) {
                    (Answer::Ok(here), peer) => Answer::Ok(snapshot_rows(
                        &serde_json::from_str(&here).unwrap_or(Value::Null),
                        &serde_json::from_str(peer.text()).unwrap_or(Value::Null),
                    )),
                    (failed, _) => failed,
                }
            }
        }
    }

    /// One command line on `site`'s storage VM, handed over as its sshd does.
    async fn ssh(&self, site: &str, line: &str) -> Answer {
        Answer::of_ssh(
            &self
                .sim
                .post(&format!("/ssh/{site}"), json!({"command": line}))
                .await,
        )
    }

    /// `rbd info --format json` as far as it is behaviour: a clone's parent (pool, image,
    /// snapshot — a trashed one is named by a uuid —, the parent image's `trash` flag) with
    /// the keys rbd prints for it, and its snapshot count; a mirrored image's `mirroring`
    /// (mode, whether primary, its keys). A key rbd leaves out is shown as absent.
    fn info_shown(&self, text: &str) -> String {
        let info: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let keys = |v: &Value| {
            let mut keys: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort_unstable();
            keys
        };
        let parent = match info.get("parent") {
            None => "no parent".to_string(),
            Some(parent) => {
                let image = parent["image"].as_str().unwrap_or_default();
                let snapshot = parent["snapshot"].as_str().unwrap_or_default();
                format!(
                    "parent {}/{}@{}, trash {}, keys {:?}; snapshot_count {}",
                    parent["pool"].as_str().unwrap_or_default(),
                    if image == self.image { "{img}" } else { image },
                    if is_uuid(snapshot) {
                        "<a uuid>"
                    } else {
                        snapshot
                    },
                    parent["trash"],
                    keys(parent),
                    info["snapshot_count"],
                )
            }
        };
        let mirroring = match info.get("mirroring") {
            None => "not mirrored".to_string(),
            Some(m) => format!(
                "mirroring {} {} primary {}, keys {:?}",
                m["mode"],
                m["state"],
                m["primary"],
                keys(m)
            ),
        };
        format!("{parent}; {mirroring}")
    }

    async fn scenario(&self, backend: &str, limit: Duration) -> Vec<StepRecord> {
        let mut records = Vec::new();
        for step in scenario() {
            let started = std::time::Instant::now();
            let mut acts = Vec::new();
            for act in &step.acts {
                let answer = self.act(*act).await;
                eprintln!("[{backend}] {}: {answer:?}", step.name);
                acts.push(answer);
            }
            let seen = until(
                &format!("{backend}: {} to settle", step.name),
                limit,
                || self.observe(&step.reads),
                |o| (step.done)(o) && o.views_agree(),
            )
            .await;
            eprintln!(
                "[{backend}] {} (settled in {:.1?}):\n  site-a {}\n  site-b {}\n  reads {:?}",
                step.name,
                started.elapsed(),
                seen.a,
                seen.b,
                seen.reads
            );
            let mut probes = Vec::new();
            for probe in &step.probes {
                let answer = self.act(*probe).await;
                assert!(
                    matches!(answer, Answer::Failed { .. }),
                    "[{backend}] {}: a probe must be refused, so that it changes nothing: {answer:?}",
                    step.name
                );
                probes.push(answer);
            }
            records.push(StepRecord { acts, seen, probes });
        }
        records
    }
}

/// Runs the scenario on one backend started with `args`.
async fn run_on(dir: &Path, backend: &str, args: &[&str], limit: Duration) -> Vec<StepRecord> {
    let mut all = vec!["--config", "sim.toml", "--plain-glue", "--storage", backend];
    all.extend_from_slice(args);
    let sim = SimProcess::start(dir, &all);
    let ledger = sim.ledger(VM).await;
    let image = ledger
        .iter()
        .find(|i| i["type"] == "ROOT")
        .and_then(|i| i["image"].as_str())
        .unwrap()
        .to_string();
    let plain = sim.ledger(PLAIN_VM).await[0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let records = Run {
        sim: &sim,
        image,
        plain,
    }
    .scenario(backend, limit)
    .await;
    sim.terminate();
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modelled_storage_shows_what_real_ceph_shows_at_every_step() {
    let test = Test::new().file("sim.toml", SIM_TOML);
    let workdir = test.dir().join("ceph");
    let model = run_on(test.dir(), "model", &[], Duration::from_secs(30)).await;
    let ceph = run_on(
        test.dir(),
        "ceph",
        &["--workdir", workdir.to_str().unwrap()],
        Duration::from_secs(180),
    )
    .await;

    let mut differences = Vec::new();
    for ((step, m), c) in scenario().iter().zip(&model).zip(&ceph) {
        let mut differ = |what: &str, model: String, ceph: String| {
            if model != ceph {
                differences.push(format!(
                    "{}: {what}\n    model: {model}\n    ceph:  {ceph}",
                    step.name
                ));
            }
        };
        differ("answers", format!("{:?}", m.acts), format!("{:?}", c.acts));
        differ("site-a", m.seen.a.to_string(), c.seen.a.to_string());
        differ("site-b", m.seen.b.to_string(), c.seen.b.to_string());
        differ(
            "writes held (site-a, site-b)",
            format!("{:?}", (&m.seen.writes_a, &m.seen.writes_b)),
            format!("{:?}", (&c.seen.writes_a, &c.seen.writes_b)),
        );
        differ(
            "reads",
            format!("{:?}", m.seen.reads),
            format!("{:?}", c.seen.reads),
        );
        differ(
            "refusals",
            format!("{:?}", m.probes),
            format!("{:?}", c.probes),
        );
    }
    assert!(
        differences.is_empty(),
        "the model differs from real Ceph:\n{}",
        differences.join("\n")
    );
}
