//! The fault campaign: every fault kind the simulator injects (5xx, 429, reset, time-out,
//! malformed JSON, HTML page, failed job, latency), once and repeatedly past the retries, on
//! each API (Mold and Glue) of each site, on the commands each shipped runbook uses. Each case
//! must end in success, or in a clear error before any wrong mutation, with: no VM running on
//! two sites, no image primary on two sites when the run says it succeeded, no write lost
//! beyond what the failover put at risk, an error line an operator can act on — and, after the
//! fault is cleared, `--resume` completing to the clean run's end state.
//!
//! `cargo test` runs a representative subset: for each runbook, every fault kind once, on a
//! target and a repetition chosen in turn (so each kind meets each API and site over the
//! runbooks). `DRBOOK_CAMPAIGN=full cargo test campaign` runs every target × kind × repetition.

use std::collections::BTreeMap;

use drbook::sim::Sim;
use drbook::sim::faults::{Api, FaultKind, FaultSpec};
use serde_json::{Value, json};

use crate::harness::{Ran, Test, delivered, held, start_sim, written};

/// The shipped runbooks the campaign drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runbook {
    Status,
    Failover,
    Failback,
    Switchover,
    Drill,
    Decommission,
    Setup,
    /// `failover` in an Active-Active pairing: dr-centos-1 at home on site-a, dr-win-1 on
    /// site-b, site-a lost.
    FailoverBothWays,
    /// `failback` in that pairing, site-a back.
    FailbackBothWays,
    /// `test-failover` of dr-centos-1 (its two images), with real SSH to the storage VMs.
    TestFailover,
}

impl Runbook {
    /// Whether it runs on the Active-Active topology.
    pub fn both_ways(self) -> bool {
        matches!(self, Self::FailoverBothWays | Self::FailbackBothWays)
    }

    pub fn args(self) -> Vec<&'static str> {
        match self {
            Self::Status => vec!["run", "status"],
            Self::Failover | Self::FailoverBothWays => vec!["run", "failover", "--yes"],
            Self::Failback | Self::FailbackBothWays => {
                vec!["run", "failback", "--yes", "--var", "sync_timeout=60s"]
            }
            Self::Switchover => vec!["run", "switchover", "--yes"],
            Self::Drill => vec![
                "run",
                "drill",
                "--yes",
                "--var",
                "vm=dr-centos-1",
                "--var",
                "observe=0s",
            ],
            Self::Decommission => vec!["run", "decommission", "--yes"],
            Self::TestFailover => vec![
                "run",
                "test-failover",
                "--yes",
                "--var",
                "vm=dr-centos-1",
                "--var",
                "network=DR Test Network",
            ],
            Self::Setup => vec![
                "run",
                "setup",
                "--yes",
                "--var",
                "vms=dr-centos-1",
                "--var",
                "offering=Medium Instance",
                "--var",
                "network=Guest Network",
                "--var",
                "sync_timeout=60s",
            ],
        }
    }

    /// The (site, API, command) the runbook sends: Mold command names, Glue route
    /// substrings. Every mutation a clean run sends must be among them (checked).
    fn targets(self) -> Vec<(&'static str, Api, &'static str)> {
        use Api::{Glue, Mold};
        let status = vec![
            ("site-a", Mold, "getDisasterRecoveryClusterList"),
            ("site-b", Mold, "getDisasterRecoveryClusterList"),
            ("site-a", Glue, "/mirror/image/rbd"),
            ("site-b", Glue, "/mirror/image/rbd"),
        ];
        match self {
            Self::Status => status,
            Self::Failover => vec![
                ("site-b", Mold, "listCapabilities"),
                ("site-b", Glue, "GET /api/v1/glue"),
                ("site-b", Mold, "getDisasterRecoveryClusterList"),
                ("site-b", Glue, "/mirror/image/rbd"),
                ("site-b", Mold, "promoteDisasterRecoveryCluster"),
                ("site-b", Mold, "queryAsyncJobResult"),
                ("site-b", Mold, "listVirtualMachines"),
                ("site-b", Mold, "startVirtualMachine"),
            ],
            Self::Failback => vec![
                ("site-b", Glue, "/mirror/image/rbd"),
                ("site-a", Glue, "/mirror/image/rbd"),
                ("site-a", Mold, "getDisasterRecoveryClusterList"),
                ("site-b", Mold, "listVirtualMachines"),
                ("site-b", Mold, "stopVirtualMachine"),
                ("site-a", Mold, "stopVirtualMachine"),
                ("site-b", Mold, "resyncDisasterRecoveryCluster"),
                ("site-b", Mold, "demoteDisasterRecoveryCluster"),
                ("site-b", Mold, "queryAsyncJobResult"),
                ("site-a", Mold, "startVirtualMachine"),
                ("site-a", Mold, "listCapabilities"),
            ],
            Self::TestFailover => vec![
                ("site-a", Glue, "/mirror/image/snapshot"),
                ("site-b", Mold, "importVolume"),
                ("site-b", Mold, "updateVolume"),
                ("site-b", Mold, "deployVirtualMachineForVolume"),
                ("site-b", Mold, "attachVolume"),
                ("site-b", Mold, "startVirtualMachine"),
                ("site-b", Mold, "destroyVirtualMachine"),
                ("site-b", Mold, "queryAsyncJobResult"),
            ],
            Self::Switchover => vec![
                ("site-a", Glue, "/mirror/image/rbd"),
                ("site-b", Glue, "/mirror/image/status"),
                ("site-a", Mold, "stopVirtualMachine"),
                ("site-a", Glue, "/mirror/image/snapshot"),
                ("site-a", Glue, "/mirror/image/demote"),
                ("site-b", Glue, "/mirror/image/promote"),
                ("site-b", Mold, "startVirtualMachine"),
                ("site-b", Mold, "listVirtualMachines"),
            ],
            Self::Drill => vec![
                ("site-a", Mold, "stopVirtualMachine"),
                ("site-a", Mold, "stopDisasterRecoveryClusterVm"),
                ("site-a", Mold, "takeSnapshotDisasterRecoveryClusterVm"),
                ("site-a", Mold, "demoteDisasterRecoveryClusterVm"),
                ("site-a", Mold, "startDisasterRecoveryClusterVm"),
                ("site-a", Mold, "promoteDisasterRecoveryClusterVm"),
                ("site-a", Mold, "startVirtualMachine"),
                ("site-b", Mold, "listVirtualMachines"),
                ("site-a", Glue, "/mirror/image/rbd"),
                ("site-b", Glue, "/mirror/image/rbd"),
            ],
            Self::Decommission => vec![
                ("site-b", Mold, "getDisasterRecoveryClusterList"),
                ("site-b", Glue, "/mirror/image/rbd"),
                ("site-b", Mold, "promoteDisasterRecoveryCluster"),
                ("site-b", Mold, "startVirtualMachine"),
                ("site-b", Mold, "clearDisasterRecoveryCluster"),
                ("site-b", Mold, "deleteDisasterRecoveryCluster"),
            ],
            Self::FailoverBothWays => vec![
                ("site-b", Mold, "listCapabilities"),
                ("site-b", Mold, "getDisasterRecoveryClusterList"),
                ("site-b", Mold, "listTags"),
                ("site-b", Glue, "/mirror/image/rbd"),
                ("site-b", Glue, "POST /mirror/image/promote"),
                ("site-b", Glue, "/mirror/image/status"),
                ("site-b", Mold, "listVirtualMachines"),
                ("site-b", Mold, "startVirtualMachine"),
            ],
            Self::FailbackBothWays => vec![
                ("site-a", Mold, "listTags"),
                ("site-b", Glue, "/mirror/image/rbd"),
                ("site-a", Glue, "/mirror/image/rbd"),
                ("site-b", Mold, "stopVirtualMachine"),
                ("site-a", Mold, "stopVirtualMachine"),
                ("site-a", Glue, "/mirror/image/demote"),
                ("site-a", Glue, "/mirror/image/resync"),
                ("site-b", Glue, "/mirror/image/demote"),
                ("site-a", Glue, "/mirror/image/promote"),
                ("site-a", Glue, "/mirror/image/status"),
                ("site-a", Mold, "startVirtualMachine"),
            ],
            Self::Setup => vec![
                ("site-a", Mold, "createDisasterRecoveryCluster"),
                ("site-a", Mold, "connectivityTestsDisasterRecovery"),
                ("site-a", Mold, "createDisasterRecoveryClusterVm"),
                ("site-a", Mold, "createTags"),
                ("site-b", Mold, "createTags"),
                ("site-b", Mold, "listTags"),
                ("site-a", Mold, "listVirtualMachines"),
                ("site-b", Mold, "getDisasterRecoveryClusterList"),
                ("site-a", Glue, "/mirror/image/rbd"),
                ("site-b", Glue, "/mirror/image/rbd"),
            ],
        }
    }
}

/// Every fault kind, with the API it applies to.
const KINDS: [FaultKind; 8] = [
    FaultKind::ServerError,
    FaultKind::RateLimit,
    FaultKind::Reset,
    FaultKind::Timeout,
    FaultKind::MalformedJson,
    FaultKind::HtmlPage,
    FaultKind::FailedJob,
    FaultKind::Latency,
];

/// Once, and more times than any read or re-send is tried.
const REPEATS: [u32; 2] = [1, 12];

/// One fault case.
#[derive(Debug, Clone)]
pub struct Case {
    pub runbook: Runbook,
    pub site: &'static str,
    pub api: Api,
    pub command: &'static str,
    pub kind: FaultKind,
    pub times: u32,
}

impl Case {
    fn spec(&self) -> FaultSpec {
        fault(self.site, self.api, self.command, self.kind, self.times)
    }
}

/// A fault on `site`'s `api` for `command`, `times` times.
pub fn fault(site: &str, api: Api, command: &str, kind: FaultKind, times: u32) -> FaultSpec {
    FaultSpec {
        site: site.into(),
        api,
        command: Some(command.into()),
        kind,
        times: Some(times),
        rate: None,
        status: None,
        latency: (kind == FaultKind::Latency).then(|| "300ms".into()),
        message: None,
    }
}

/// The cases of a runbook: all of them with `full`, else each kind once, on targets and
/// repetitions taken in turn.
fn cases(runbook: Runbook, full: bool) -> Vec<Case> {
    let targets = runbook.targets();
    let mut out = Vec::new();
    let mut turn = 0;
    for kind in KINDS {
        let fits = |t: &(&str, Api, &str)| kind != FaultKind::FailedJob || t.1 == Api::Mold;
        let usable: Vec<_> = targets.iter().filter(|t| fits(t)).collect();
        let chosen: Vec<_> = if full {
            usable.clone()
        } else {
            vec![usable[turn % usable.len()]]
        };
        for (site, api, command) in chosen {
            for (i, times) in REPEATS.into_iter().enumerate() {
                if !full && i != turn % REPEATS.len() {
                    continue;
                }
                out.push(Case {
                    runbook,
                    site,
                    api: *api,
                    command,
                    kind,
                    times,
                });
            }
        }
        turn += 1;
    }
    out
}

/// A simulation set up for a runbook, with what the ledger must keep.
pub struct Prepared {
    pub sim: Sim,
    pub t: Test,
    /// Writes of dr-centos-1 that reached the DR site before the disaster.
    pub safe: Vec<u64>,
    /// Writes of dr-centos-1 made on the DR site after the failover.
    pub on_dr: Vec<u64>,
    /// On the Active-Active topology: writes of dr-win-1, at home on site-b.
    pub own_b: Vec<u64>,
    /// Where the runbook starts from ([`end_state`] before it runs).
    pub start: Value,
}

/// Short client time-outs, so a fault that never answers costs a second, not minutes.
fn quick_timeouts(t: &Test) {
    let path = t.dir().join("drbook.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("[sites.") {
            out.push_str(
                "timeout = \"1s\"\nlong_timeout = \"3s\"\nglue_timeout = \"1s\"\njob_timeout = \"20s\"\n",
            );
        }
    }
    std::fs::write(&path, out).unwrap();
}

/// A fresh simulation where `runbook` starts from: synced (status, switchover, drill), the
/// protected site lost (failover, decommission), back after a failover (failback), unpaired
/// (setup).
pub async fn prepare(runbook: Runbook) -> Prepared {
    let adjust = move |c: &mut drbook::sim::SimConfig| {
        if runbook.both_ways() {
            let all = drbook::sim::SimConfig::default().vms;
            c.vms = vec![all[0].clone(), all[5].clone()];
            *c = c.clone().active_active();
            return;
        }
        c.vms.truncate(2);
        if runbook == Runbook::Setup {
            c.cluster = None;
            for vm in &mut c.vms {
                vm.mirrored = false;
            }
        }
    };
    let sim = if runbook == Runbook::TestFailover {
        crate::harness::start_sim_ssh(adjust).await
    } else {
        start_sim(adjust).await
    };
    let t = Test::new().sim_config(&sim);
    quick_timeouts(&t);
    let mut p = Prepared {
        sim,
        t,
        safe: Vec::new(),
        on_dr: Vec::new(),
        own_b: Vec::new(),
        start: Value::Null,
    };
    if runbook.both_ways() {
        p.t.write_file("adopt.rhai", "record_homes(\"DR\");\n");
        p.t.run_with(["run", "adopt.rhai"]).expect_code(0);
        p.own_b = written(&p.sim.write("dr-win-1", "site-b", 3).unwrap());
        delivered(&p.sim, "dr-win-1", "site-a", &p.own_b).await;
    }
    if matches!(
        runbook,
        Runbook::Failover
            | Runbook::Decommission
            | Runbook::Failback
            | Runbook::FailoverBothWays
            | Runbook::FailbackBothWays
    ) {
        p.safe = written(&p.sim.write("dr-centos-1", "site-a", 3).unwrap());
        delivered(&p.sim, "dr-centos-1", "site-b", &p.safe).await;
        p.sim.disaster("site-a").await.unwrap();
    }
    if matches!(runbook, Runbook::Failback | Runbook::FailbackBothWays) {
        p.t.run_with(Runbook::Failover.args()).expect_code(0);
        p.on_dr = written(&p.sim.write("dr-centos-1", "site-b", 2).unwrap());
        if runbook.both_ways() {
            p.own_b
                .extend(written(&p.sim.write("dr-win-1", "site-b", 2).unwrap()));
        }
        p.sim.recover("site-a").await.unwrap();
    }
    if matches!(
        runbook,
        Runbook::Switchover | Runbook::Drill | Runbook::TestFailover
    ) {
        // Both need replicas caught up; a first snapshot lands within a second.
        let w = written(&p.sim.write("dr-centos-1", "site-a", 1).unwrap());
        delivered(&p.sim, "dr-centos-1", "site-b", &w).await;
    }
    if matches!(runbook, Runbook::Drill | Runbook::TestFailover) {
        // The drill (and a test failover) takes its own snapshot. A scheduled one copying when Mold's pre-check
        // looks makes it refuse "try again later"; with that answer lost, the run stops and
        // its resume drills again: an extra stop and start, decided by timing alone. So
        // Glue's scheduler stays quiet for the run, in the clean run and every case alike.
        p.sim.with_world(|w, now| {
            w.set_snapshot_interval(now, std::time::Duration::from_secs(3600));
        });
    }
    p.start = end_state(&p.sim);
    p
}

/// What a run can change, for comparing ends: per site, whether it is up, each VM's state
/// and its DR records; per image and site, whether that copy is primary.
pub fn end_state(sim: &Sim) -> Value {
    let s = sim.state();
    let mut sites = BTreeMap::new();
    for (name, site) in s["sites"].as_object().unwrap() {
        let vms: BTreeMap<String, Value> = site["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), v["state"].clone()))
            .collect();
        let records: Vec<Value> = site["dr_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["name"], r["type"]]))
            .collect();
        sites.insert(
            name.clone(),
            json!({"up": site["up"], "vms": vms, "records": records}),
        );
    }
    let images: BTreeMap<String, Value> = s["storage"]["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, i)| {
            let roles: BTreeMap<String, Value> = i["sites"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(site, v)| (site.clone(), v["primary"].clone()))
                .collect();
            (k.clone(), json!(roles))
        })
        .collect();
    json!({"sites": sites, "images": images})
}

/// The safety rules every case must keep, whatever the run's outcome.
pub fn check(p: &Prepared, ran: &Ran, what: &str) {
    let end = end_state(&p.sim);
    let up = |s: &str| end["sites"][s]["up"].as_bool() == Some(true);
    if up("site-a") && up("site-b") {
        // A VM that came back running at home after a failover runs on both sites before
        // failback starts: no run may leave one so that did not start so, and a failback
        // that succeeds leaves none.
        let both = |state: &Value, vm: &str| {
            state["sites"]["site-a"]["vms"][vm] == "Running"
                && state["sites"]["site-b"]["vms"][vm] == "Running"
        };
        for vm in end["sites"]["site-a"]["vms"].as_object().unwrap().keys() {
            assert!(
                !both(&end, vm) || (ran.code != 0 && both(&p.start, vm)),
                "{what}: {vm} runs on both sites (exit {})\n{}\n{}",
                ran.code,
                ran.stdout,
                ran.stderr
            );
        }
        if ran.code == 0 {
            for (image, roles) in end["images"].as_object().unwrap() {
                assert!(
                    !(roles["site-a"] == true && roles["site-b"] == true),
                    "{what}: exit 0 with {image} primary on both sites\n{}\n{}",
                    ran.stdout,
                    ran.stderr
                );
            }
        }
    }
    // No write lost beyond what the failover put at risk: what had reached the DR site is
    // on the DR site; what was written there is on one of the two sites.
    if !p.safe.is_empty() {
        let (a, b) = (
            held(&p.sim, "dr-centos-1", "site-a"),
            held(&p.sim, "dr-centos-1", "site-b"),
        );
        assert!(
            p.safe.iter().all(|w| b.contains(w) || a.contains(w)),
            "{what}: a delivered write was lost: a {a:?} b {b:?}"
        );
        assert!(
            p.on_dr.iter().all(|w| b.contains(w) || a.contains(w)),
            "{what}: a write made on the DR site was lost: a {a:?} b {b:?}"
        );
    }
    // Active-Active: site-b's own VM runs there throughout, on every write made there, and no
    // Mold cluster-level act (which would reach it too) is ever sent.
    if !p.own_b.is_empty() {
        assert_eq!(
            end["sites"]["site-b"]["vms"]["dr-win-1"], "Running",
            "{what}: site-b's own VM is not running there\n{}\n{}",
            ran.stdout, ran.stderr
        );
        let on_b = held(&p.sim, "dr-win-1", "site-b");
        assert!(
            p.own_b.iter().all(|w| on_b.contains(w)),
            "{what}: site-b's own VM lost a write: {on_b:?}"
        );
        let sent = p.sim.mutations();
        for command in [
            "promoteDisasterRecoveryCluster",
            "demoteDisasterRecoveryCluster",
            "resyncDisasterRecoveryCluster",
        ] {
            for site in ["site-a", "site-b"] {
                assert_eq!(
                    sent.count(site, Api::Mold, command),
                    0,
                    "{what}: {command} sent to {site}"
                );
            }
        }
    }
    if ran.code != 0 {
        let errors = ran.error_lines();
        assert!(
            !errors.is_empty(),
            "{what}: exit {} without an error line\n{}",
            ran.code,
            ran.stderr
        );
        for e in errors {
            assert!(
                e.chars().count() <= 300,
                "{what}: an error line of {} characters: {e}",
                e.chars().count()
            );
            let lower = e.to_lowercase();
            assert!(
                !lower.contains("<html") && !lower.contains("<title"),
                "{what}: raw HTML: {e}"
            );
            assert!(!e.contains("https://"), "{what}: a URL in: {e}");
        }
    }
}

/// The clean run's end, from a fresh simulation.
async fn clean_end(runbook: Runbook) -> Value {
    let p = prepare(runbook).await;
    let before = p.sim.mutations();
    let ran = p.t.run_with(runbook.args());
    assert_eq!(
        ran.code, 0,
        "the clean {runbook:?} run\n{}\n{}",
        ran.stdout, ran.stderr
    );
    // Every mutation the runbook sends is among its targets.
    for (site, api, command, _) in p.sim.mutations().since(&before).iter() {
        assert!(
            runbook
                .targets()
                .iter()
                .any(|(s, a, c)| *s == site && *a == api && command.contains(c)),
            "{runbook:?} sends {command} to {site}'s {api:?}, which the campaign never faults"
        );
    }
    let end = end_state(&p.sim);
    p.sim.shutdown().await;
    end
}

/// One case: the fault, the run, the rules, then `--resume` with the fault gone, to the clean
/// end.
async fn run_case(case: &Case, clean: &Value) {
    let what = format!(
        "{:?} with {:?} ×{} on {}'s {:?} {}",
        case.runbook, case.kind, case.times, case.site, case.api, case.command
    );
    let p = prepare(case.runbook).await;
    p.sim.add_fault(case.spec()).unwrap();
    let ran = p.t.run_with(case.runbook.args());
    check(&p, &ran, &what);
    p.sim.clear_faults();
    if ran.code != 0 {
        // A run that got nothing done names nothing to resume: it is run again.
        let mut args = case.runbook.args();
        let hint = ran.resume_hint();
        if let Some(id) = &hint {
            args.extend(["--resume", id.as_str()]);
        }
        if !args.contains(&"--yes") {
            args.push("--yes");
        }
        let resumed = p.t.run_with(args);
        check(&p, &resumed, &format!("{what}, resumed"));
        assert_eq!(
            resumed.code, 0,
            "{what}: --resume did not complete\n--- first run\n{}\n{}\n--- resumed\n{}\n{}",
            ran.stdout, ran.stderr, resumed.stdout, resumed.stderr
        );
    }
    let end = end_state(&p.sim);
    assert_eq!(
        &end, clean,
        "{what}: the end differs from the clean run's\n{}\n{}",
        ran.stdout, ran.stderr
    );
    p.sim.shutdown().await;
}

/// A spawned case's panic message when it failed: campaigns gather every failure, then
/// report them together.
pub fn failure(ran: Result<(), tokio::task::JoinError>) -> Option<String> {
    let panic = ran.err()?.into_panic();
    Some(
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
            .unwrap_or_default(),
    )
}

/// The mutating requests received and refused so far.
pub fn counts(sim: &Sim) -> (drbook::sim::Mutations, drbook::sim::Mutations) {
    (sim.mutations(), sim.refused())
}

/// What was received and accepted since `before` (a request Mold refused outright changed
/// nothing, and how often that happens follows the simulator's snapshot schedule).
pub fn accepted_since(
    sim: &Sim,
    before: &(drbook::sim::Mutations, drbook::sim::Mutations),
) -> drbook::sim::Mutations {
    let (received, refused) = counts(sim);
    received.since(&before.0).less(&refused.since(&before.1))
}

/// Every case of a runbook, each on its own simulation; the failures are reported together.
async fn campaign(runbook: Runbook) {
    let full = std::env::var("DRBOOK_CAMPAIGN").is_ok_and(|v| v == "full");
    let clean = clean_end(runbook).await;
    let mut failed = Vec::new();
    for case in cases(runbook, full) {
        let clean = clean.clone();
        let ran = tokio::spawn(async move { run_case(&case, &clean).await }).await;
        failed.extend(failure(ran));
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_status() {
    campaign(Runbook::Status).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_failover() {
    campaign(Runbook::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_failback() {
    campaign(Runbook::Failback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_switchover() {
    campaign(Runbook::Switchover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_drill() {
    campaign(Runbook::Drill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_decommission() {
    campaign(Runbook::Decommission).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_setup() {
    campaign(Runbook::Setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_failover_both_ways() {
    campaign(Runbook::FailoverBothWays).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_failback_both_ways() {
    campaign(Runbook::FailbackBothWays).await;
}

#[test]
fn the_subset_meets_every_kind_and_the_full_campaign_every_target() {
    for runbook in [
        Runbook::Status,
        Runbook::Failover,
        Runbook::Failback,
        Runbook::Switchover,
        Runbook::Drill,
        Runbook::Decommission,
        Runbook::Setup,
        Runbook::FailoverBothWays,
        Runbook::FailbackBothWays,
    ] {
        let subset = cases(runbook, false);
        for kind in KINDS {
            assert!(
                subset.iter().any(|c| c.kind == kind),
                "{runbook:?} {kind:?}"
            );
        }
        let full = cases(runbook, true);
        for (site, api, command) in runbook.targets() {
            for times in REPEATS {
                assert!(full.iter().any(|c| c.site == site
                    && c.api == api
                    && c.command == command
                    && c.times == times));
            }
        }
    }
}
