//! The failover scenario benchmark: `cargo bench --bench failover`.
//!
//! Two sites simulated in-process with Mold's job times set (a VM start 2 s, the promote 5 s),
//! N mirrored VMs in three priority groups (`tier=db`, `tier=app`, `tier=web`), a disaster at
//! the protected site, then the shipped `failover` run exactly as an operator would: the
//! `drbook` binary, `--var groups=tier=db,tier=app,tier=web --var concurrency=16 --yes`. Per N
//! it prints the RTO (launch to the runbook's exit with every VM running), the physical limit
//! `promote + Σ_groups ceil(n_g / C) × start` (Mold's job times: drbook adds nothing), their
//! ratio, the Mold calls in total, per VM started and by command, and drbook's peak memory.
//! For the smaller N the same failover is also run one VM at a time (promote, then start,
//! wait, next — as the UI and a naive script do) through drbook, and by the third-party `cs`
//! client as a plain sequential Python script (`benches/baseline_cs.py`) when its virtual
//! environment exists (`cargo test cs_interop` makes it).
//!
//! `cargo bench --bench failover -- --quick` (and `cargo test --bench failover`, which CI
//! runs) is a smoke run at N = 10 that checks the scenario works; it never asserts a time.
//! After each failover the rest of the DR guide runs on the same sites — `failback`, `drill
//! --var vm=all` (up to `--drill-up-to`, default 100: it rehearses one VM after another) and
//! `switchover` — each with its time, Mold calls and the data mirroring moved.
//!
//! Options: `--sizes 10,100`, `--sequential-up-to N` (default 100), `--cs-up-to N` (default:
//! as the sequential run), `--drill-up-to N`,
//! `--failover-only`, `--show-output` (each run's own steps and times), `--start 2s`.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drbook::mold::SignatureAlgorithm;
use drbook::sim::config::SimTiming;
use drbook::sim::{Sim, SimConfig};

const GROUPS: &str = "groups=tier=db,tier=app,tier=web";
const CONCURRENCY: usize = 16;

struct Options {
    sizes: Vec<usize>,
    sequential_up_to: usize,
    /// The `cs` baseline up to this N (it takes as long as the one-VM-at-a-time run).
    cs_up_to: usize,
    start: Duration,
    promote: Duration,
    smoke: bool,
    /// Failback, drill and switchover after each failover.
    after: bool,
    drill_up_to: usize,
    /// Print the shipped failover's own output (its steps and their times).
    show_output: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --bench failover` does not: a smoke run.
    let smoke = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let sizes = value("--sizes").map_or_else(
        || {
            if smoke {
                vec![10]
            } else {
                vec![10, 100, 500, 1000]
            }
        },
        |s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("--sizes: numbers"))
                .collect()
        },
    );
    let sequential_up_to = value("--sequential-up-to").map_or(if smoke { 10 } else { 100 }, |n| {
        n.parse().expect("--sequential-up-to: a number")
    });
    let cs_up_to = value("--cs-up-to").map_or(sequential_up_to, |n| {
        n.parse().expect("--cs-up-to: a number")
    });
    let start = value("--start").map_or(
        if smoke {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(2)
        },
        |d| drbook::duration::parse(&d).expect("--start: a duration such as 2s"),
    );
    Options {
        sizes,
        sequential_up_to,
        cs_up_to,
        start,
        promote: if smoke {
            Duration::from_millis(600)
        } else {
            Duration::from_secs(5)
        },
        smoke,
        after: !args.iter().any(|a| a == "--failover-only"),
        show_output: args.iter().any(|a| a == "--show-output"),
        drill_up_to: value("--drill-up-to").map_or(if smoke { 10 } else { 100 }, |n| {
            n.parse().expect("--drill-up-to: a number")
        }),
    }
}

/// N mirrored VMs on the default topology, tiered by name; Mold's job times as given.
fn config(n: usize, o: &Options, sha1: bool) -> SimConfig {
    let mut c = SimConfig::default().with_vms(n);
    c.timing = SimTiming {
        job: o.start,
        dr_job: o.promote,
        snapshot_interval: Duration::from_secs(30),
        ..SimTiming::fast()
    };
    if sha1 {
        c = c.with_signature(SignatureAlgorithm::Sha1);
    }
    c
}

/// The VMs of each priority group, in start order.
fn group_sizes(c: &SimConfig) -> Vec<usize> {
    ["db", "app", "web"]
        .iter()
        .map(|tier| {
            c.vms
                .iter()
                .filter(|v| v.tags.get("tier").map(String::as_str) == Some(*tier))
                .count()
        })
        .collect()
}

/// `promote + Σ_groups ceil(n_g / C) × start`.
fn limit(groups: &[usize], concurrency: usize, o: &Options) -> Duration {
    let waves: usize = groups.iter().map(|g| g.div_ceil(concurrency)).sum();
    o.promote + o.start * u32::try_from(waves).unwrap_or(u32::MAX)
}

/// What one run cost.
struct Measured {
    took: Duration,
    ok: bool,
    calls: BTreeMap<String, u64>,
    peak_kib: Option<u64>,
    output: String,
    /// What mirroring copied during the run: full copies, their bytes, delta bytes.
    moved: Moved,
}

/// Data moved by mirroring, from the simulator's ledger.
#[derive(Clone, Copy, Default)]
struct Moved {
    full_copies: u64,
    bytes_full: u64,
    bytes_delta: u64,
}

impl Moved {
    fn of(sim: &Sim) -> Self {
        let m = &sim.state()["storage"]["data_movement"];
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        Self {
            full_copies: n("full_copies"),
            bytes_full: n("bytes_full"),
            bytes_delta: n("bytes_delta"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            full_copies: self.full_copies - before.full_copies,
            bytes_full: self.bytes_full - before.bytes_full,
            bytes_delta: self.bytes_delta - before.bytes_delta,
        }
    }

    fn shown(self) -> String {
        #[allow(clippy::cast_precision_loss)]
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        format!(
            "{} full ({:.1} GiB), {:.2} GiB in deltas",
            self.full_copies,
            gib(self.bytes_full),
            gib(self.bytes_delta)
        )
    }
}

impl Measured {
    fn total(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// A prepared simulation: synced, then the protected site lost.
struct Prepared {
    sim: Sim,
    dir: tempfile::TempDir,
    config: PathBuf,
    vms: usize,
}

async fn prepare(c: SimConfig) -> Prepared {
    let vms = c.vms.len();
    let sim = Sim::start(c).await.expect("the simulator starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("drbook.toml");
    sim.write_config(&config).expect("drbook.toml written");
    let cfg = drbook::config::Config::discover(Some(&config)).expect("config");
    let dr = drbook::dr::Dr::new(&cfg).expect("dr");
    // A long set-up says what it waits for, every ten seconds.
    let said = std::sync::Mutex::new(Instant::now());
    dr.wait_synced(
        "DR",
        Duration::from_secs(600),
        Duration::from_millis(200),
        &|p| {
            let mut said = said.lock().unwrap();
            if said.elapsed() >= Duration::from_secs(10) {
                eprintln!("  (N = {vms}, waiting for the first sync: {})", p.line());
                *said = Instant::now();
            }
        },
    )
    .await
    .expect("the sites sync");
    sim.disaster("site-a").await.expect("a disaster");
    Prepared {
        sim,
        dir,
        config,
        vms,
    }
}

/// The Mold requests the sites received, by command, since `before`.
fn calls_since(sim: &Sim, before: &BTreeMap<(String, String), u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((site, command), n) in sim.mold_call_counts() {
        let was = before.get(&(site, command.clone())).copied().unwrap_or(0);
        if n > was {
            *out.entry(command).or_default() += n - was;
        }
    }
    out
}

/// The process's peak resident set (VmHWM), in KiB, while it runs.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `program args` to its end, sampling its peak memory. Its output goes to a file, read
/// afterwards: a pipe read only at the end fills up (64 KiB) and stalls a long run.
fn timed(program: &Path, args: &[String]) -> (Duration, bool, Option<u64>, String) {
    let mut out = tempfile::tempfile().expect("an output file");
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdout(out.try_clone().expect("the output file"))
        .stderr(out.try_clone().expect("the output file"))
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut peak = None;
    let status = loop {
        if let Some(p) = peak_kib(pid) {
            peak = Some(peak.map_or(p, |q: u64| q.max(p)));
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut text = String::new();
    out.seek(std::io::SeekFrom::Start(0)).expect("rewind");
    out.read_to_string(&mut text).expect("the output");
    (took, status.success(), peak, text)
}

fn all_running(sim: &Sim, site: &str, expected: usize) -> bool {
    let state = sim.state();
    let running = state["sites"][site]["vms"].as_array().map_or(0, |vms| {
        vms.iter().filter(|v| v["state"] == "Running").count()
    });
    running == expected
}

fn drbook() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drbook"))
}

/// Runs drbook with `args`; `ok` when it succeeded and every VM runs on `site`.
async fn run_drbook(p: &Prepared, args: &[&str]) -> Measured {
    run_drbook_to(p, args, "site-b").await
}

async fn run_drbook_to(p: &Prepared, args: &[&str], site: &str) -> Measured {
    let before = p.sim.mold_call_counts();
    let moved_before = Moved::of(&p.sim);
    let mut all: Vec<String> = vec!["-c".into(), p.config.display().to_string()];
    all.extend(args.iter().map(ToString::to_string));
    all.extend([
        "--state-dir".into(),
        p.dir.path().join("state").display().to_string(),
    ]);
    let (took, success, peak, output) = tokio::task::spawn_blocking({
        let program = drbook();
        move || timed(&program, &all)
    })
    .await
    .expect("the run");
    Measured {
        took,
        ok: success && all_running(&p.sim, site, p.vms),
        calls: calls_since(&p.sim, &before),
        peak_kib: peak,
        output,
        moved: Moved::of(&p.sim).since(moved_before),
    }
}

/// After the failover, the rest of the DR guide on the same sites: the protected site
/// returns, `failback` takes every VM home (its resync copies each image back in full: Ceph
/// re-creates a resynced replica, as Mold's own cluster resync has it do), `drill --var
/// vm=all` rehearses each VM (Mold's VM-level test commands, one VM after another), and
/// `switchover` moves production to the DR site in order (only the last deltas move).
async fn after_failover(p: &Prepared, drill: bool) -> Vec<(&'static str, Measured)> {
    p.sim.recover("site-a").await.expect("site-a returns");
    let concurrency = format!("concurrency={CONCURRENCY}");
    let order = ["--var", GROUPS, "--var", concurrency.as_str()];
    let with_order = |runbook: &'static str| {
        let mut args = vec!["run", runbook, "--yes"];
        args.extend(order);
        args
    };
    let mut runs = vec![(
        "failback",
        run_drbook_to(p, &with_order("failback"), "site-a").await,
    )];
    if drill {
        let args = [
            "run",
            "drill",
            "--yes",
            "--var",
            "vm=all",
            "--var",
            "observe=1s",
        ];
        // Glue's scheduler quiet while the drill runs, as in the drill tests: a scheduled
        // round that lands between a drill's promote and its start keeps the peer from idle
        // past Mold's start rounds, and Mold then refuses the start (seen on a loaded CI
        // machine at N = 10). The drill is measured, not the scheduler's timing.
        let interval = p.sim.with_world(|w, _| w.config.timing.snapshot_interval);
        p.sim
            .with_world(|w, now| w.set_snapshot_interval(now, Duration::from_secs(3600)));
        runs.push(("drill vm=all", run_drbook_to(p, &args, "site-a").await));
        p.sim
            .with_world(|w, now| w.set_snapshot_interval(now, interval));
    }
    runs.push((
        "switchover",
        run_drbook_to(p, &with_order("switchover"), "site-b").await,
    ));
    runs
}

/// The one-VM-at-a-time failover, through drbook: promote, then start each VM and wait.
const SEQUENTIAL: &str = r"
let c = dr_clusters()[0];
promote(c);
for m in mirror_status(c).vms {
    start_vm(c.dr, m.name);
}
";

async fn sequential(p: &Prepared) -> Measured {
    let script = p.dir.path().join("one-at-a-time.rhai");
    std::fs::write(&script, SEQUENTIAL).expect("script");
    run_drbook(p, &["run", script.to_str().unwrap(), "--yes"]).await
}

/// The cs client's virtual environment, if `cargo test cs_interop` made it.
fn cs_python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cs-venv/bin/python");
    python.exists().then_some(python)
}

async fn with_cs(n: usize, o: &Options, python: &Path) -> Measured {
    let p = prepare(config(n, o, true)).await;
    let site_b = &p.sim.endpoints().sites["site-b"];
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/baseline_cs.py");
    let args = vec![
        script.to_string(),
        format!("{}/client/api", site_b.mold),
        site_b.api_key.clone(),
        site_b.secret_key.clone(),
    ];
    let before = p.sim.mold_call_counts();
    let (took, success, _, output) = tokio::task::spawn_blocking({
        let python = python.to_path_buf();
        move || timed(&python, &args)
    })
    .await
    .expect("the run");
    let m = Measured {
        took,
        ok: success && all_running(&p.sim, "site-b", p.vms),
        calls: calls_since(&p.sim, &before),
        peak_kib: None,
        output,
        moved: Moved::default(),
    };
    p.sim.shutdown().await;
    m
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn per_vm(m: &Measured, n: usize) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = m.total() as f64 / n as f64;
    format!("{v:.1}")
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn report(
    n: usize,
    o: &Options,
    groups: &[usize],
    shipped: &Measured,
    others: &[(&str, Measured)],
) {
    let lim = limit(groups, CONCURRENCY, o);
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "run",
        "RTO",
        "limit",
        "RTO / limit",
        "Mold calls",
        "per VM",
        "peak memory",
        "ok",
    ]);
    let row = |name: &str, m: &Measured, lim: Duration| {
        vec![
            name.to_string(),
            secs(m.took),
            secs(lim),
            format!("{:.2}", ratio(m.took, lim)),
            m.total().to_string(),
            per_vm(m, n),
            m.peak_kib
                .map_or_else(|| "-".into(), |k| format!("{} MiB", k.div_ceil(1024))),
            if m.ok { "yes".into() } else { "NO".into() },
        ]
    };
    t.add_row(row(&format!("failover, C = {CONCURRENCY}"), shipped, lim));
    let one_by_one = o.promote + o.start * u32::try_from(n).unwrap_or(u32::MAX);
    for (name, m) in others {
        t.add_row(row(name, m, one_by_one));
    }
    println!(
        "\nN = {n} mirrored VMs in groups {groups:?} (start {}, promote {})",
        secs(o.start),
        secs(o.promote)
    );
    println!("{t}");
    for (name, m) in others {
        println!(
            "  shipped failover vs {name}: {:.1}x faster",
            ratio(m.took, shipped.took)
        );
    }
    let mut by_command: Vec<(&String, &u64)> = shipped.calls.iter().collect();
    by_command.sort_by(|a, b| b.1.cmp(a.1));
    let top: Vec<String> = by_command
        .iter()
        .map(|(c, k)| {
            #[allow(clippy::cast_precision_loss)]
            let per = **k as f64 / n as f64;
            format!("{c} {k} ({per:.2}/VM)")
        })
        .collect();
    println!("  shipped failover's Mold calls: {}", top.join(", "));
}

fn report_after(n: usize, runs: &[(&str, Measured)]) {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "then",
        "took",
        "Mold calls",
        "per VM",
        "data moved",
        "peak memory",
        "ok",
    ]);
    for (name, m) in runs {
        t.add_row(vec![
            (*name).to_string(),
            secs(m.took),
            m.total().to_string(),
            per_vm(m, n),
            m.moved.shown(),
            m.peak_kib
                .map_or_else(|| "-".into(), |k| format!("{} MiB", k.div_ceil(1024))),
            if m.ok { "yes".into() } else { "NO".into() },
        ]);
    }
    println!("{t}");
}

fn main() {
    let o = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let python = cs_python();
    let mut failed = false;
    for &n in &o.sizes {
        let c = config(n, &o, false);
        let groups = group_sizes(&c);
        let (shipped, after) = rt.block_on(async {
            let p = prepare(c).await;
            let m = run_drbook(
                &p,
                &[
                    "run",
                    "failover",
                    "--yes",
                    "--var",
                    GROUPS,
                    "--var",
                    &format!("concurrency={CONCURRENCY}"),
                ],
            )
            .await;
            let after = if m.ok && o.after {
                after_failover(&p, n <= o.drill_up_to).await
            } else {
                Vec::new()
            };
            p.sim.shutdown().await;
            (m, after)
        });
        let mut others = Vec::new();
        if n <= o.sequential_up_to {
            let m = rt.block_on(async {
                let p = prepare(config(n, &o, false)).await;
                let m = sequential(&p).await;
                p.sim.shutdown().await;
                m
            });
            others.push(("one VM at a time (drbook)", m));
            if let Some(python) = python.as_ref().filter(|_| n <= o.cs_up_to) {
                others.push(("one VM at a time (cs)", rt.block_on(with_cs(n, &o, python))));
            }
        }
        report(n, &o, &groups, &shipped, &others);
        if o.show_output {
            println!("--- the shipped failover's output:\n{}", shipped.output);
        }
        if !after.is_empty() {
            report_after(n, &after);
            if o.show_output {
                for (name, m) in &after {
                    println!("--- {name}'s output:\n{}", m.output);
                }
            }
        }
        for (name, m) in std::iter::once(&("failover", shipped))
            .chain(others.iter())
            .chain(after.iter())
        {
            if !m.ok {
                failed = true;
                eprintln!(
                    "{name} at N = {n} did not end with every VM running where it should:\n{}",
                    m.output
                );
            }
        }
    }
    if python.is_none() {
        println!(
            "\n(the cs baseline was skipped: run `cargo test cs_interop` once to make its environment)"
        );
    }
    if o.smoke {
        println!("\nsmoke run: the scenario works; times on this machine mean nothing here");
    }
    if failed {
        std::process::exit(1);
    }
}
