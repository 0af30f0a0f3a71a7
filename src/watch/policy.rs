//! One policy file: compiled, its settings read from its constants, its handlers run one at a
//! time on a thread of its own with a host of its own (journal, locks, confirmations), so a
//! slow or failing policy never holds up another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{AST, CallFnOptions, Dynamic, Engine, Map, Scope};

use crate::config::Config;
use crate::dr::Dr;
use crate::script::diagnostic::Diagnostic;
use crate::script::host::{Confirmer, Host, HostOptions, Mode, Question};
use crate::script::{engine, journal};
use crate::sync::Locked as _;

/// The handlers a policy may define, each called with one argument, the context map.
pub const HANDLERS: [&str; 5] = [
    "on_tick",
    "on_site_down",
    "on_site_up",
    "on_lag",
    "on_alert",
];

/// A policy's settings, from the constants at its top.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `const TICK = "30s";`
    pub tick: Duration,
    /// `const DOWN_AFTER = 3;` consecutive failed probes of both Mold and Glue.
    pub down_after: u32,
    /// `const MAX_LAG = "2h";`
    pub max_lag: Duration,
    /// `const AUTO = true;` lets the policy take destructive acts.
    pub auto: bool,
    /// The handlers it defines.
    pub handlers: BTreeSet<String>,
}

/// Counters the metrics and the log read.
#[derive(Debug, Default)]
pub struct Stats {
    pub runs: AtomicU64,
    pub errors: AtomicU64,
    /// Unix seconds of the last finished call (0: none yet).
    pub last_run: AtomicU64,
}

/// One call of a handler.
pub struct Event {
    pub handler: &'static str,
    pub ctx: Map,
}

/// What a policy needs from the watcher to run.
#[derive(Clone)]
pub struct Env {
    pub dr: Dr,
    pub config: Arc<Config>,
    pub rt: tokio::runtime::Handle,
    pub state_dir: PathBuf,
    pub locks: Arc<dyn crate::script::lock::Locks>,
    pub timeout: Duration,
    /// Where "would have" notices and errors go besides the log.
    pub notify: Arc<dyn Fn(String) + Send + Sync>,
}

/// A loaded policy: its worker thread and what the watcher schedules by.
pub struct Policy {
    pub name: String,
    pub settings: Settings,
    pub stats: Arc<Stats>,
    sender: SyncSender<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Policy {
    /// Compiles `path` and starts it: its top level runs once (constants, imports), then its
    /// handlers run as events arrive. A parse or start-up error comes back rendered with the
    /// file, line, column and caret.
    pub fn start(
        path: &Path,
        name: &str,
        source: String,
        env: &Env,
        stats: Option<Arc<Stats>>,
    ) -> Result<Self, String> {
        let name = name.to_string();
        // Parse first with a bare engine: a syntax error needs no site.
        let mut bare = Engine::new();
        bare.set_max_expr_depths(128, 64);
        bare.compile(&source)
            .map_err(|e| Diagnostic::from_parse(&name, &source, &e).render())?;
        let stats = stats.unwrap_or_default();
        let (sender, events) = sync_channel::<Event>(8);
        let (ready_tx, ready_rx) = sync_channel::<Result<Settings, String>>(1);
        let worker = Worker {
            name: name.clone(),
            path: path.to_path_buf(),
            source,
            env: env.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("policy {name}"))
            .spawn(move || worker.run(&events, &ready_tx))
            .map_err(|e| format!("{name}: cannot start its thread: {e}"))?;
        let settings = ready_rx
            .recv()
            .map_err(|_| format!("{name}: its thread stopped while starting"))??;
        Ok(Self {
            name,
            settings,
            stats,
            sender,
            thread: Some(thread),
        })
    }

    /// Queues a handler call; a policy still busy with earlier calls drops it (and says so).
    pub fn send(&self, event: Event) -> bool {
        if !self.settings.handlers.contains(event.handler) {
            return true;
        }
        match self.sender.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(e)) => {
                super::log(
                    "warn",
                    &format!(
                        "{}: still busy, {} dropped (a call runs too long?)",
                        self.name, e.handler
                    ),
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Stops taking events and waits for the call in progress to end.
    pub fn stop(mut self) {
        drop(self.sender);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The policy's side of the channel: a host, an engine and a scope, rebuilt only when a call
/// had to be aborted.
struct Worker {
    name: String,
    path: PathBuf,
    source: String,
    env: Env,
    stats: Arc<Stats>,
}

struct Session {
    host: Arc<Host>,
    engine: Engine,
    ast: AST,
    scope: Scope<'static>,
    /// The destructive acts a call wanted but was not allowed (no `AUTO`).
    refused: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn run(&self, events: &Receiver<Event>, ready: &SyncSender<Result<Settings, String>>) {
        // Primitives build timers and tasks as `drbook run`'s script thread does: inside the
        // runtime's context.
        let _runtime = self.env.rt.enter();
        let (mut session, settings) = match self.session(None) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let auto = settings.auto;
        let _ = ready.send(Ok(settings));
        while let Ok(event) = events.recv() {
            self.call(&mut session, event);
            if session.host.interrupts.aborted() {
                // The call was cut off: start a fresh session for the next one.
                match self.session(Some(auto)) {
                    Ok((s, _)) => session = s,
                    Err(e) => {
                        super::log("error", &e);
                        return;
                    }
                }
            }
        }
    }

    /// A host, an engine and the policy's top level run into a scope.
    fn session(&self, auto: Option<bool>) -> Result<(Session, Settings), String> {
        let refused = Arc::new(Mutex::new(Vec::new()));
        // The policy's `AUTO` is known only after its top level ran; until then (and when it
        // is not set) a destructive act is refused and recorded.
        let allow = Arc::new(std::sync::atomic::AtomicBool::new(auto.unwrap_or(false)));
        let confirmer = {
            let refused = refused.clone();
            let allow = allow.clone();
            Confirmer::Answers(Arc::new(move |question: &Question<'_>| {
                if allow.load(Ordering::SeqCst) {
                    return true;
                }
                refused.locked().push(question.text.to_string());
                false
            }))
        };
        let stem = self
            .path
            .file_stem()
            .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
        let run_id = format!("watch-{stem}-{}", journal::new_run_id());
        let host = Host::new(
            self.env.dr.clone(),
            self.env.rt.clone(),
            &self.env.config,
            HostOptions {
                mode: Mode::Live,
                args: std::collections::BTreeMap::new(),
                confirmer,
                state_dir: self.env.state_dir.clone(),
                locks: self.env.locks.clone(),
                run_id,
                replay: None,
                script: self.name.clone(),
                script_path: self.path.clone(),
                stdlib_dir: None,
            },
        )
        .map_err(|e| format!("{}: {e}", self.name))?;
        let host = Arc::new(host);
        let engine = engine::build(&host, &self.path, None);
        let mut scope = engine::scope(&host);
        let ast = engine
            .compile_with_scope(&scope, &self.source)
            .map_err(|e| Diagnostic::from_parse(&self.name, &self.source, &e).render())?;
        engine
            .run_ast_with_scope(&mut scope, &ast)
            .map_err(|e| Diagnostic::from_eval(&self.name, &self.source, &e).render())?;
        host.release_locks();
        let settings = settings(&self.name, &scope, &ast)?;
        allow.store(settings.auto, Ordering::SeqCst);
        Ok((
            Session {
                host,
                engine,
                ast,
                scope,
                refused,
            },
            settings,
        ))
    }

    /// Runs one handler; errors and refusals are reported, never passed on.
    fn call(&self, s: &mut Session, event: Event) {
        let started = Instant::now();
        let interrupts = s.host.interrupts.clone();
        let timeout = self.env.timeout;
        // Past its time the call is aborted the way a second Ctrl-C aborts a run.
        let guard = self.env.rt.spawn(async move {
            tokio::time::sleep(timeout).await;
            interrupts.signal();
            interrupts.signal();
        });
        let result = s.engine.call_fn_with_options::<Dynamic>(
            CallFnOptions::new().eval_ast(true).rewind_scope(true),
            &mut s.scope,
            &s.ast,
            event.handler,
            (Dynamic::from_map(event.ctx),),
        );
        guard.abort();
        s.host.release_locks();
        s.host.clear_report();
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        self.stats.last_run.store(
            chrono::Utc::now().timestamp().unsigned_abs(),
            Ordering::Relaxed,
        );
        let refused: Vec<String> = std::mem::take(&mut *s.refused.locked());
        for question in &refused {
            let text = format!(
                "{} ({}) would have acted but AUTO is not set: {question} — not done; do it by hand, or set `const AUTO = true;` in the policy",
                self.name, event.handler
            );
            super::log("warn", &text);
            (self.env.notify)(text);
        }
        match result {
            Ok(_) => {}
            Err(_) if !refused.is_empty() => {}
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let mut d = Diagnostic::from_eval(&self.name, &self.source, &e);
                if s.host.interrupts.aborted() {
                    d.message = format!(
                        "{} ran longer than {} and was stopped",
                        event.handler,
                        crate::duration::Human(timeout)
                    );
                }
                let text = d.render();
                super::log(
                    "error",
                    &format!("{} ({}) failed:\n{text}", self.name, event.handler),
                );
                (self.env.notify)(format!(
                    "drbook watch: policy {} ({}) failed: {}",
                    self.name, event.handler, d.message
                ));
            }
        }
        tracing::debug!(policy = %self.name, handler = event.handler, took = ?started.elapsed(), "policy call");
    }
}

/// Reads the policy's constants, with file-positioned errors for a wrong type.
fn settings(name: &str, scope: &Scope<'_>, ast: &AST) -> Result<Settings, String> {
    let duration = |key: &str, default: Duration| -> Result<Duration, String> {
        match scope.get(key) {
            None => Ok(default),
            Some(v) if v.is_string() => crate::duration::parse(&v.to_string())
                .map_err(|e| format!("{name}: const {key}: {e}")),
            Some(v) if v.is_int() => Ok(Duration::from_secs(
                u64::try_from(v.as_int().unwrap_or(0)).unwrap_or(0),
            )),
            Some(v) => Err(format!(
                "{name}: const {key} is a {}: write a duration such as \"30s\" or \"2h\"",
                v.type_name()
            )),
        }
    };
    let tick = duration("TICK", Duration::from_secs(30))?;
    if tick.is_zero() {
        return Err(format!("{name}: const TICK must be more than zero"));
    }
    let max_lag = duration("MAX_LAG", Duration::from_secs(2 * 3600))?;
    let down_after = match scope.get("DOWN_AFTER") {
        None => 3,
        Some(v) => v
            .as_int()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("{name}: const DOWN_AFTER must be a whole number of probes, 1 or more")
            })?,
    };
    let auto = match scope.get("AUTO") {
        None => false,
        Some(v) => v
            .as_bool()
            .map_err(|_| format!("{name}: const AUTO must be true or false"))?,
    };
    let handlers = ast
        .iter_functions()
        .filter(|f| f.params.len() == 1 && HANDLERS.contains(&f.name))
        .map(|f| f.name.to_string())
        .collect();
    Ok(Settings {
        tick,
        down_after,
        max_lag,
        auto,
        handlers,
    })
}
