//! `drbook watch DIR`: the daemon that runs site policies. One probe loop watches every site
//! (Mold and Glue separately) and every DR cluster's mirroring; each policy file in `DIR`
//! runs on a thread of its own and gets called on its ticks, when a site goes down or comes
//! back, when a VM's lag passes its limit, and for incoming Alertmanager alerts. Policy files
//! are reloaded when they change; one that fails to compile is reported and its last good
//! version keeps running.

pub mod metrics;
pub mod policy;
pub mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::RecursiveMode;
use rhai::{Dynamic, Map};

use crate::config::Config;
use crate::dr::Dr;
use crate::error::Error;
use crate::script::types::Time;
use policy::{Event, Policy};
use probe::{Round, Streaks};

/// How the watcher runs.
pub struct Options {
    pub dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub probe_every: Duration,
    /// The longest one handler call may take before it is stopped.
    pub timeout: Duration,
    pub state_dir: PathBuf,
    /// Where DR cluster locks are taken (shared with every other run on the machine).
    pub locks: Arc<dyn crate::script::lock::Locks>,
}

/// A timestamped line on stderr: the watcher's log.
pub fn log(level: &str, msg: &str) {
    let ts = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
    crate::term::eline(&format!("{ts} {level:5} {msg}"));
}

/// How long the policy directory must be quiet before changed files are reloaded.
const QUIET: Duration = Duration::from_millis(200);

/// A running policy and what the watcher remembers for it.
struct Watched {
    policy: Policy,
    /// The text it was loaded from: an event that changed nothing reloads nothing.
    source: String,
    /// The sites this policy has been told are down.
    down: BTreeSet<String>,
    /// The (cluster, VM) pairs this policy has been told lag too much.
    lagging: BTreeSet<(String, String)>,
    next_tick: Instant,
}

/// Runs until `shutdown` resolves; then lets each policy finish the call it is in.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    if !options.dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a directory of policy files (.rhai)",
            options.dir.display()
        )));
    }
    let config = Arc::new(config);
    let dr = Dr::new(&config)?.with_reporter(crate::script::progress::WaitLog::reporter());
    let env = policy::Env {
        dr: dr.clone(),
        config: config.clone(),
        rt: tokio::runtime::Handle::current(),
        state_dir: options.state_dir.clone(),
        locks: options.locks.clone(),
        timeout: options.timeout,
        notify: notifier(&config),
    };

    // Events name absolute paths: so does everything else here.
    let dir = std::fs::canonicalize(&options.dir)
        .map_err(|e| Error::Usage(format!("{}: {e}", options.dir.display())))?;
    let (fs_tx, mut fs_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a file (ours included) is not a change.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = fs_tx.send(event.paths);
        }
    })
    .map_err(|e| Error::Failed(format!("cannot watch files: {e}")))?;
    notify::Watcher::watch(&mut watcher, &dir, RecursiveMode::Recursive)
        .map_err(|e| Error::Failed(format!("cannot watch {}: {e}", dir.display())))?;
    // Editors write in bursts (a temporary file, a rename, a chmod): act once it is quiet.
    let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
    let mut last_change = Instant::now();

    let mut policies: BTreeMap<PathBuf, Watched> = BTreeMap::new();
    for path in policy_files(&dir) {
        reload(&mut policies, &dir, &path, &env).await;
    }

    let metrics = Arc::new(metrics::Metrics::new());
    let (alert_tx, mut alert_rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(listen) = options.listen {
        let (addr, _server) = metrics::serve(listen, metrics.clone(), alert_tx.clone())
            .await
            .map_err(|e| Error::Usage(format!("--listen {listen}: {e}")))?;
        log(
            "info",
            &format!("serving http://{addr}/metrics and POST http://{addr}/alerts"),
        );
    }
    log(
        "info",
        &format!(
            "watching {} ({} policies), probing {} every {}",
            options.dir.display(),
            policies.len(),
            dr.site_names().join(", "),
            crate::duration::Human(options.probe_every)
        ),
    );

    let mut streaks = Streaks::default();
    let mut last: Option<(Round, BTreeMap<String, u32>)> = None;
    let mut next_probe = Instant::now();
    let mut heartbeat = tokio::time::interval(Duration::from_millis(100));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(paths) = fs_rx.recv() => {
                changed.extend(paths.into_iter().filter(|p| is_policy_file(p)));
                last_change = Instant::now();
            }
            Some(alert) = alert_rx.recv() => {
                log("info", &format!("alert received ({} alerts)", alert["alerts"].as_array().map_or(0, Vec::len)));
                for w in policies.values() {
                    let mut ctx = context(last.as_ref(), w);
                    ctx.insert("alert".into(), rhai::serde::to_dynamic(&alert).unwrap_or(Dynamic::UNIT));
                    w.policy.send(Event { handler: "on_alert", ctx });
                }
            }
            _ = heartbeat.tick() => {
                if !changed.is_empty() && last_change.elapsed() >= QUIET {
                    for path in std::mem::take(&mut changed) {
                        reload(&mut policies, &dir, &path, &env).await;
                    }
                }
                if Instant::now() >= next_probe {
                    let round = probe::probe(&dr).await;
                    next_probe = Instant::now() + options.probe_every;
                    metrics.record(&round);
                    let streak = streaks.record(&round);
                    log_round(&round, &streak, last.as_ref().map(|(_, s)| s));
                    last = Some((round, streak));
                    if let Some(l) = &last {
                        for w in policies.values_mut() {
                            dispatch_changes(w, l);
                        }
                    }
                }
                if last.is_some() {
                    let now = Instant::now();
                    for w in policies.values_mut() {
                        if now >= w.next_tick {
                            w.next_tick = now + w.policy.settings.tick;
                            let ctx = context(last.as_ref(), w);
                            w.policy.send(Event { handler: "on_tick", ctx });
                        }
                    }
                }
                let stats: Vec<_> = policies
                    .values()
                    .map(|w| (w.policy.name.clone(), w.policy.stats.clone()))
                    .collect();
                metrics.record_policies(&stats);
            }
        }
    }
    log(
        "info",
        "stopping: letting each policy finish the call it is in",
    );
    for (_, w) in policies {
        let _ = tokio::task::spawn_blocking(move || w.policy.stop()).await;
    }
    log("info", "stopped");
    Ok(())
}

/// `.rhai` files under `dir`, recursively (hidden files and editors' leftovers skipped).
fn policy_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_policy_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_policy_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rhai")
        && path
            .file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

/// (Re)loads one policy file: a deleted file's policy stops; a file that does not compile
/// is reported and the last good version keeps running; a file whose text did not change is
/// left alone.
async fn reload(
    policies: &mut BTreeMap<PathBuf, Watched>,
    dir: &Path,
    path: &Path,
    env: &policy::Env,
) {
    let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let Ok(source) = std::fs::read_to_string(path) else {
        if let Some(old) = policies.remove(path) {
            log("info", &format!("{name} removed: its policy stops"));
            tokio::task::spawn_blocking(move || old.policy.stop());
        }
        return;
    };
    if policies.get(path).is_some_and(|w| w.source == source) {
        return;
    }
    let stats = policies.get(path).map(|w| w.policy.stats.clone());
    let started = {
        let (file, label, env, text) = (
            path.to_path_buf(),
            name.clone(),
            env.clone(),
            source.clone(),
        );
        tokio::task::spawn_blocking(move || Policy::start(&file, &label, text, &env, stats))
            .await
            .unwrap_or_else(|e| Err(format!("{name}: {e}")))
    };
    match started {
        Ok(policy) => {
            let settings = &policy.settings;
            log(
                "info",
                &format!(
                    "{name} loaded: handlers {}; tick {}, down after {} failed probes, max lag {}, {}",
                    settings
                        .handlers
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::duration::Human(settings.tick),
                    settings.down_after,
                    crate::duration::Human(settings.max_lag),
                    if settings.auto {
                        "AUTO: it may take destructive acts"
                    } else {
                        "destructive acts only reported (no AUTO)"
                    }
                ),
            );
            let tick = settings.tick;
            let old = policies.remove(path);
            let (down, lagging, next_tick) = match &old {
                Some(before) => (
                    before.down.clone(),
                    before.lagging.clone(),
                    before.next_tick.min(Instant::now() + tick),
                ),
                None => (BTreeSet::new(), BTreeSet::new(), Instant::now()),
            };
            if let Some(before) = old {
                tokio::task::spawn_blocking(move || before.policy.stop());
            }
            policies.insert(
                path.to_path_buf(),
                Watched {
                    policy,
                    source,
                    down,
                    lagging,
                    next_tick,
                },
            );
        }
        Err(rendered) => {
            let keeps = if policies.contains_key(path) {
                "its last good version keeps running"
            } else {
                "it is not running"
            };
            log(
                "error",
                &format!("{name} not loaded ({keeps}):\n{rendered}"),
            );
        }
    }
}

/// Logs what changed since the last round: a site that stopped or started answering.
fn log_round(
    round: &Round,
    streak: &BTreeMap<String, u32>,
    before: Option<&BTreeMap<String, u32>>,
) {
    for (site, n) in streak {
        let was = before.and_then(|b| b.get(site)).copied().unwrap_or(0);
        if *n > 0 {
            log(
                "warn",
                &format!("{site}: neither Mold nor Glue answered ({n} probe(s) in a row)"),
            );
        } else if was > 0 {
            log("info", &format!("{site}: answers again"));
        }
    }
    for (cluster, why) in &round.status_errors {
        log(
            "warn",
            &format!("mirroring of {cluster} could not be read: {why}"),
        );
    }
}

/// Sends a policy the events this round brings it: sites down or up by its own
/// `DOWN_AFTER`, VMs over or back under its `MAX_LAG`.
fn dispatch_changes(w: &mut Watched, current: &(Round, BTreeMap<String, u32>)) {
    let (round, streak) = current;
    let last = Some(current);
    for (site, n) in streak {
        let down = *n >= w.policy.settings.down_after;
        if down && w.down.insert(site.clone()) {
            let mut ctx = context(last, w);
            ctx.insert("site".into(), site.clone().into());
            w.policy.send(Event {
                handler: "on_site_down",
                ctx,
            });
        } else if *n == 0 && w.down.remove(site) {
            let mut ctx = context(last, w);
            ctx.insert("site".into(), site.clone().into());
            w.policy.send(Event {
                handler: "on_site_up",
                ctx,
            });
        }
    }
    let limit = i64::try_from(w.policy.settings.max_lag.as_secs()).unwrap_or(i64::MAX);
    for (cluster, status) in &round.status {
        for (vm, lag) in probe::vm_lags(status) {
            let key = (cluster.clone(), vm.clone());
            match lag {
                Some(l) if l > limit && w.lagging.insert(key.clone()) => {
                    let mut ctx = context(last, w);
                    ctx.insert("cluster".into(), cluster.clone().into());
                    ctx.insert("vm".into(), vm.clone().into());
                    ctx.insert("lag".into(), l.into());
                    ctx.insert("max_lag".into(), limit.into());
                    w.policy.send(Event {
                        handler: "on_lag",
                        ctx,
                    });
                }
                Some(l) if l > limit => {}
                Some(_) => {
                    w.lagging.remove(&key);
                }
                None => {}
            }
        }
    }
}

/// The context map every handler gets: the time, each site's health, each DR cluster's
/// mirroring status, the policy's name.
fn context(last: Option<&(Round, BTreeMap<String, u32>)>, w: &Watched) -> Map {
    let mut ctx = Map::new();
    ctx.insert("policy".into(), w.policy.name.clone().into());
    ctx.insert("auto".into(), w.policy.settings.auto.into());
    let Some((round, streak)) = last else {
        ctx.insert("time".into(), Dynamic::from(Time(chrono::Utc::now())));
        return ctx;
    };
    ctx.insert("time".into(), Dynamic::from(Time(round.at)));
    let mut sites = Map::new();
    for (name, h) in &round.health {
        let mut s = Map::new();
        s.insert("mold".into(), h.mold.into());
        s.insert("glue".into(), h.glue.into());
        s.insert("down".into(), w.down.contains(name).into());
        s.insert(
            "failed_probes".into(),
            i64::from(streak.get(name).copied().unwrap_or(0)).into(),
        );
        for (key, ms) in [("mold_ms", h.mold_ms), ("glue_ms", h.glue_ms)] {
            s.insert(
                key.into(),
                ms.and_then(|m| i64::try_from(m).ok())
                    .map_or(Dynamic::UNIT, Dynamic::from),
            );
        }
        s.insert(
            "problem".into(),
            h.problem.clone().map_or(Dynamic::UNIT, Dynamic::from),
        );
        sites.insert(name.as_str().into(), s.into());
    }
    ctx.insert("sites".into(), sites.into());
    let mut status = Map::new();
    for (name, s) in &round.status {
        status.insert(name.as_str().into(), Dynamic::from(s.clone()));
    }
    ctx.insert("status".into(), status.into());
    ctx
}

/// Posts a notice to `[notify] webhook_url`, if one is configured (the log has it anyway).
fn notifier(config: &Config) -> Arc<dyn Fn(String) + Send + Sync> {
    let Some(url) = config.notify.webhook_url.clone() else {
        return Arc::new(|_| {});
    };
    let rt = tokio::runtime::Handle::current();
    Arc::new(move |text: String| {
        let url = url.expose().to_string();
        rt.spawn(async move {
            let client = match crate::http::client(
                &crate::http::TlsTrust::System,
                Duration::from_secs(10),
            ) {
                Ok(c) => c,
                Err(e) => {
                    log("warn", &format!("cannot notify the webhook: {e}"));
                    return;
                }
            };
            let sent = client
                .post(url)
                .json(&serde_json::json!({ "text": text }))
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => log(
                    "warn",
                    &format!("the webhook answered HTTP {}", r.status().as_u16()),
                ),
                Err(e) => log(
                    "warn",
                    &format!(
                        "the webhook could not be reached: {}",
                        crate::http::describe_transport_error(&e)
                    ),
                ),
            }
        });
    })
}
