//! The host side of a script run: what every primitive call goes through. Reads run at once;
//! mutations are planned (plan mode), confirmed (destructive ones), locked per DR cluster,
//! journaled (intent, then outcome), replayed on `--resume`, and reported. Waits and reads
//! can be cancelled with Ctrl-C.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rhai::{Dynamic, EvalAltResult, Map};
use serde::Serialize;
use serde_json::Value;

use super::error::{StopReason, stop};
pub use super::interrupts::Interrupts;
use super::journal::{Entry, Journal, JournalError, RecordedCall, Replay};
use super::lock::{Held, Holder, LockKey, Locks};
use crate::dr::{Dr, DrError};
use crate::report::{ActionReport, ItemSpan, RunReport, StepReport};
use crate::sync::Locked as _;

pub use super::error::RhaiResult;

// The script thread and the runtime's tasks share a host (nested runs' vars included).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Host>();
};

/// What calling a primitive does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Safe; retried on transient faults; runs in plan mode too.
    Read,
    /// Changes state: journaled, never retried blindly, recorded (not made) in plan mode.
    Mutate,
    /// A mutation that also needs a yes (`--yes`, an answer, or `confirm()` in the step).
    Destructive,
    /// Runbook control: steps, waits, confirmations, logging.
    Control,
    /// A read or a mutation, by the Mold command's verb (`mold()`, `glue()`).
    ByVerb,
    /// Destructive unless the command is a known read (`ssh()`).
    ByCommand,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Mutate => "mutate",
            Kind::Destructive => "destructive",
            Kind::Control => "control",
            Kind::ByVerb => "read or mutate",
            Kind::ByCommand => "read or destructive",
        }
    }

    /// What a call of this kind that changes state is: a mutation, or a destructive act
    /// (a call of `ssh()` that is not a known read).
    #[must_use]
    pub fn when_it_mutates(self) -> Kind {
        match self {
            Kind::Destructive | Kind::ByCommand => Kind::Destructive,
            _ => Kind::Mutate,
        }
    }
}

/// What the host needs to know of the primitive it acts for; each primitive's descriptor
/// (`primitives/`) gives it.
pub trait Act: Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn kind(&self) -> Kind;
    fn doc(&self) -> &'static str;
    /// How a confirmation question names a destructive act, `{0}`/`{1}` standing for the
    /// call's arguments.
    fn question(&self) -> &'static str;
}

/// Plan mode or the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plan,
}

/// How `confirm()` and destructive primitives get their yes.
#[derive(Clone)]
pub enum Confirmer {
    /// `--yes`: every question answered yes.
    Yes,
    /// Ask on the terminal.
    Terminal,
    /// No terminal and no `--yes`: every question fails the run (exit 3).
    Nobody,
    /// Scripted answers, for tests, the REPL and watched policies.
    Answers(Arc<dyn Fn(&Question<'_>) -> bool + Send + Sync>),
}

/// A yes/no question for the operator, and the destructive primitive it asks about (none for
/// a runbook's own `confirm()`).
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub text: &'a str,
    pub primitive: Option<&'static dyn Act>,
}

impl Confirmer {
    /// `--yes` if given, else the terminal if there is one.
    pub fn for_run(yes: bool) -> Self {
        if yes {
            Self::Yes
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Self::Terminal
        } else {
            Self::Nobody
        }
    }
}

/// A mutation plan mode recorded instead of making.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    pub site: Option<String>,
    pub primitive: String,
    pub args: Value,
    pub kind: &'static str,
}

#[derive(Default)]
struct RunState {
    step: Option<String>,
    step_started: Option<Instant>,
    step_confirmed: bool,
    replay_cursor: usize,
    locks: Vec<(String, Arc<dyn Held>)>,
    /// The mutating call under way: its journal seq, and how far an earlier attempt of it got
    /// (a drill's steps), for the parts it journals.
    in_flight: Option<(u64, Option<ResumePoint>)>,
}

/// What a host takes from the configuration (a nested run, from its parent).
struct Settings {
    concurrency: usize,
    poll_interval: Duration,
    webhook: Option<crate::secret::Secret>,
}

impl Settings {
    fn of(config: &crate::config::Config) -> Self {
        Self {
            concurrency: config.defaults.concurrency,
            poll_interval: config.defaults.poll_interval,
            webhook: config.notify.webhook_url.clone(),
        }
    }
}

/// How far an earlier attempt of a long mutation got: parts finished, and when the next was
/// begun.
type ResumePoint = (u32, Option<DateTime<Utc>>);

/// Everything a run's primitives share.
pub struct Host {
    pub dr: Dr,
    pub rt: tokio::runtime::Handle,
    /// Plan mode (no journal is written while it is on). A run's mode is fixed; the REPL
    /// switches it with `:plan on|off`.
    plan: AtomicBool,
    /// The script's `ARGS`: `--var` strings, or a nested run's vars as its caller gave them.
    pub args: Map,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub run_id: String,
    pub state_dir: PathBuf,
    /// Where DR cluster locks are taken (the machine's lock directory).
    locks: Arc<dyn Locks>,
    /// What this run runs, for a lock's holder.
    script: String,
    pub interrupts: Arc<Interrupts>,
    pub webhook: Option<crate::secret::Secret>,
    /// The script this host runs (its directory anchors `run()` and imports).
    pub script_path: PathBuf,
    pub stdlib_dir: Option<PathBuf>,
    /// The run that owns the DR cluster locks: this one, or for a nested `run()`, the
    /// outermost run — a nested runbook is part of the same run, not a rival of it.
    lock_owner: String,
    /// How deep in nested `run()`s this host is.
    pub depth: usize,
    /// How many `run()`s this run has made: the n-th gets run id `<run id>.<n>`, the same
    /// each time the run is resumed, so a nested run finds its journal again.
    nested_runs: AtomicU32,
    confirmer: Confirmer,
    /// The DR clusters' sites (protected, DR), read once per run: the plan listing, the
    /// report and the locks all ask which site an act goes to.
    pairings: Mutex<Option<BTreeMap<String, (String, String)>>>,
    journal: Mutex<Option<Journal>>,
    replay: Option<Replay>,
    state: Mutex<RunState>,
    pub report: Mutex<RunReport>,
    pub planned: Mutex<Vec<PlannedAction>>,
}

/// What a run needs to start.
pub struct HostOptions {
    pub mode: Mode,
    pub args: BTreeMap<String, String>,
    pub confirmer: Confirmer,
    pub state_dir: PathBuf,
    pub locks: Arc<dyn Locks>,
    pub run_id: String,
    pub replay: Option<Replay>,
    pub script: String,
    pub script_path: PathBuf,
    pub stdlib_dir: Option<PathBuf>,
}

/// A drill's steps, journaled as the parts of the drill call under way: a run resumed after
/// a crash continues the drill from them.
pub struct DrillJournal(pub Arc<Host>);

impl crate::dr::drill::DrillLog for DrillJournal {
    fn resume_point(&self) -> Option<ResumePoint> {
        self.0.resume_point()
    }

    fn step(&self, n: u32, ok: Option<bool>) {
        self.0.progress(n, ok);
    }
}

/// What the journal of a resumed run says of a mutating call.
enum Replayed {
    /// Not in the journal (or not at this point of it): a new call.
    Fresh,
    /// Finished by an earlier attempt: its recorded result.
    Done(Dynamic),
    /// Made by an earlier attempt and not finished (it failed, or its outcome is unknown).
    Settle(RecordedCall),
}

/// A catchable script error for a primitive called wrongly (kind `usage`).
pub fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    super::error::usage(message)
}

/// A catchable script error: Ctrl-C cancelled what was running (kind `interrupted`).
fn interrupted<T>(message: String) -> RhaiResult<T> {
    Err(super::error::ScriptError::new(super::error::ErrorKind::Interrupted, message).into_eval())
}

impl Host {
    pub fn new(
        dr: Dr,
        rt: tokio::runtime::Handle,
        config: &crate::config::Config,
        options: HostOptions,
    ) -> Result<Self, JournalError> {
        let journal = match options.mode {
            Mode::Plan => None,
            Mode::Live => {
                let mut j = Journal::open(&options.state_dir, &options.run_id)?;
                j.append(&Entry::RunStart {
                    at: Utc::now(),
                    run: options.run_id.clone(),
                    script: options.script.clone(),
                    args: options.args.clone(),
                    resumed: options.replay.is_some(),
                })?;
                Some(j)
            }
        };
        let args = options
            .args
            .iter()
            .map(|(k, v)| (k.into(), Dynamic::from(v.clone())))
            .collect();
        Ok(Self::assemble(
            dr,
            rt,
            Settings::of(config),
            options,
            args,
            journal,
        ))
    }

    /// A host that never talks to a site: for `drbook check` and `drbook doc`, which need the
    /// engine's registrations but run nothing.
    pub fn offline(dr: Dr, rt: tokio::runtime::Handle) -> Self {
        let options = HostOptions {
            mode: Mode::Plan,
            args: BTreeMap::new(),
            confirmer: Confirmer::Nobody,
            state_dir: PathBuf::new(),
            // Never used: an offline host plans, it does not lock.
            locks: Arc::new(super::lock::MachineLocks::new(PathBuf::new())),
            run_id: String::new(),
            replay: None,
            script: String::new(),
            script_path: PathBuf::new(),
            stdlib_dir: None,
        };
        let settings = Settings::of(&crate::config::Config::empty());
        Self::assemble(dr, rt, settings, options, Map::new(), None)
    }

    /// The one place a host's fields are spelled out: a top-level run's (its own lock owner,
    /// depth 0, its own Ctrl-C counter); a nested run overrides what it shares.
    fn assemble(
        dr: Dr,
        rt: tokio::runtime::Handle,
        settings: Settings,
        options: HostOptions,
        args: Map,
        journal: Option<Journal>,
    ) -> Self {
        let plan = options.mode == Mode::Plan;
        Self {
            dr,
            rt,
            plan: AtomicBool::new(plan),
            args,
            concurrency: settings.concurrency,
            poll_interval: settings.poll_interval,
            webhook: settings.webhook,
            report: Mutex::new(RunReport::new(&options.script, &options.run_id, plan)),
            lock_owner: options.run_id.clone(),
            run_id: options.run_id,
            state_dir: options.state_dir,
            locks: options.locks,
            script: options.script,
            interrupts: Arc::new(Interrupts::default()),
            script_path: options.script_path,
            stdlib_dir: options.stdlib_dir,
            depth: 0,
            nested_runs: AtomicU32::new(0),
            confirmer: options.confirmer,
            pairings: Mutex::new(None),
            journal: Mutex::new(journal),
            replay: options.replay,
            state: Mutex::new(RunState::default()),
            planned: Mutex::new(Vec::new()),
        }
    }

    pub fn plan_mode(&self) -> bool {
        self.plan.load(Ordering::SeqCst)
    }

    pub fn mode(&self) -> Mode {
        if self.plan_mode() {
            Mode::Plan
        } else {
            Mode::Live
        }
    }

    /// Switches plan mode on or off between two commands of a REPL session. Only a host
    /// created live (with a journal) can go live again: a plan-only host stays in plan mode.
    pub fn set_plan_mode(&self, on: bool) -> Result<(), &'static str> {
        if !on && self.journal.locked().is_none() {
            return Err("this session has no journal, so it cannot act for real");
        }
        self.plan.store(on, Ordering::SeqCst);
        Ok(())
    }

    /// Between two commands of a REPL session: Ctrl-Cs counted so far are forgotten, a
    /// `confirm()` answered at the prompt covers nothing that follows, and a step left open
    /// by an error is closed.
    pub fn settle(&self) {
        self.interrupts.reset();
        let mut st = self.state.locked();
        st.step = None;
        st.step_started = None;
        st.step_confirmed = false;
        // A command is the unit a REPL session mutates in: between commands another run
        // may take the DR cluster.
        st.locks.clear();
    }

    /// Runs a future to completion on the shared runtime; a first Ctrl-C cancels it with a
    /// catchable error.
    pub fn block<T>(&self, what: &str, fut: impl Future<Output = T> + Send) -> RhaiResult<T> {
        if self.interrupts.aborted() {
            return Err(stop(StopReason::Interrupted, "aborted by a second Ctrl-C"));
        }
        let interrupts = self.interrupts.clone();
        let seen = interrupts.count();
        let out = self.rt.block_on(async move {
            tokio::select! {
                v = fut => Some(v),
                () = interrupts.after(seen) => None,
            }
        });
        match out {
            Some(v) => Ok(v),
            None if self.interrupts.aborted() => {
                Err(stop(StopReason::Interrupted, "aborted by a second Ctrl-C"))
            }
            None => interrupted(format!(
                "interrupted: {what} was cancelled by Ctrl-C (press Ctrl-C again to abort the run)"
            )),
        }
    }

    /// A read: runs now, in plan mode too. Its future is `Send` (as every primitive's), so
    /// the runtime may move it between threads.
    pub fn read<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, DrError>> + Send,
    ) -> RhaiResult<T> {
        self.block(what, fut)?
            .map_err(|e| super::error::dr_error(&e))
    }

    /// A mutation (or destructive act) of primitive `p`: planned, confirmed, locked,
    /// journaled, replayed, reported, as its descriptor's kind says (`mold()` and `ssh()`
    /// come here only for a call that changes state). `plausible` gives plan mode's stand-in
    /// result; `into` turns the real one into a script value. A result replayed from the
    /// journal comes back as a map with the same fields.
    pub fn mutate<T, F, P, I>(
        &self,
        p: &'static dyn Act,
        args: Value,
        target: Target<'_>,
        plausible: P,
        fut: F,
        into: I,
    ) -> RhaiResult<Dynamic>
    where
        T: Serialize,
        F: Future<Output = Result<T, DrError>> + Send,
        P: FnOnce() -> RhaiResult<Dynamic>,
        I: FnOnce(T) -> RhaiResult<Dynamic>,
    {
        let (name, kind) = (p.name(), p.kind().when_it_mutates());
        if self.plan_mode() {
            self.planned.locked().push(PlannedAction {
                site: target.site(self),
                primitive: name.to_string(),
                args,
                kind: kind.as_str(),
            });
            if let Target::Pairing(cluster, protected, dr) = target {
                // The planned pairing's later acts are listed under its sites (once the
                // run's pairings could be read: a failed read is tried again later).
                self.pairings();
                if let Some(known) = self.pairings.locked().as_mut() {
                    known.insert(cluster.to_string(), (protected.to_string(), dr.to_string()));
                }
            }
            return plausible();
        }
        if kind == Kind::Destructive {
            let text = describe(p, &args, &target, self);
            self.require_yes(&Question {
                text: &text,
                primitive: Some(p),
            })?;
        }
        let earlier = match self.replayed(name, &args)? {
            Replayed::Done(result) => {
                let items = serde_json::to_value(&result)
                    .map(|v| ItemSpan::of_batch(&v))
                    .unwrap_or_default();
                self.record_action(name, &target, &args, Done::replayed(items));
                return Ok(result);
            }
            Replayed::Fresh => None,
            Replayed::Settle(call) => Some(call),
        };
        let held = self.lock_clusters(&target)?;
        // Asked again by the clients right before each mutating request this call sends: a
        // lock lost while the primitive reads its guards stops the send itself.
        let fence: crate::fence::Check = {
            let held = held.clone();
            Arc::new(move || {
                held.iter()
                    .try_for_each(|h| h.check().map_err(|e| e.to_string()))
            })
        };
        let fut = crate::fence::guarded(fence, fut);
        let step = self.state.locked().step.clone();
        let seq = {
            let mut j = self.journal.locked();
            let j = j.as_mut().expect("live runs journal");
            let seq = j.next_seq();
            j.append(&Entry::Intent {
                at: Utc::now(),
                seq,
                step,
                primitive: name.to_string(),
                args: args.clone(),
                resolves: earlier.as_ref().map(|c| c.seq),
            })
            .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
            seq
        };
        let started = Instant::now();
        let sent = Utc::now();
        // A mutation is not cut off half-way by Ctrl-C: that would leave its outcome unknown.
        // It finishes; a Ctrl-C meanwhile stops the script right after.
        let seen = self.interrupts.count();
        // A call an earlier attempt made and did not finish is settled by reading first (its
        // job, its end state); the domain sends it only when it provably did not happen.
        // A long act (a drill) an earlier attempt left half-way continues from its last part
        // journaled, unless a part failed (then it starts over, undoing that first).
        let resume = earlier
            .as_ref()
            .filter(|c| c.in_doubt)
            .and_then(RecordedCall::resume_point);
        self.state.locked().in_flight = Some((seq, resume));
        let result = match &earlier {
            Some(call) => self
                .rt
                .block_on(crate::dr::reconcile::resolving(call.at, fut)),
            None => self.rt.block_on(fut),
        };
        self.state.locked().in_flight = None;
        let took = started.elapsed();
        let (ok, value, error) = match &result {
            // A batch (start_vms, stop_vms) with a VM that failed did not do what it was
            // asked: it is recorded as failed, so a resumed run makes it again (each VM
            // already where it should be is left alone).
            Ok(v) => {
                let value = serde_json::to_value(v).ok();
                let failed = value.as_ref().map_or(0, failed_items);
                let error = (failed > 0).then(|| format!("{failed} of the batch failed"));
                (failed == 0, value, error)
            }
            Err(e) => (false, None, Some(e.to_string())),
        };
        let unknown = result.as_ref().is_err_and(DrError::in_doubt);
        let items = value.as_ref().map(ItemSpan::of_batch).unwrap_or_default();
        if let Some(j) = self.journal.locked().as_mut() {
            j.append(&Entry::Outcome {
                at: Utc::now(),
                seq,
                ok,
                result: value,
                error: error.clone(),
                unknown,
            })
            .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
        }
        self.record_action(
            name,
            &target,
            &args,
            Done {
                ok,
                error: error.clone(),
                started: sent,
                took,
                replayed: false,
                items,
            },
        );
        if matches!(target, Target::Pairing(..)) {
            // A new DR cluster: the run's pairings are read again when next needed.
            *self.pairings.locked() = None;
        }
        // A call that failed with its lock lost (its send held back, or any other failure)
        // ends the run: nothing after it may change the DR cluster.
        if result.is_err()
            && let Some(lost) = held.iter().find_map(|h| h.check().err())
        {
            return Err(stop(StopReason::Failed, &lost.to_string()));
        }
        let value = into(result.map_err(|e| super::error::dr_error(&e))?)?;
        if self.interrupts.aborted() {
            return Err(stop(
                StopReason::Interrupted,
                &format!("aborted by a second Ctrl-C after {name} finished"),
            ));
        }
        if self.interrupts.count() > seen {
            return interrupted(format!(
                "interrupted: {name} finished, then Ctrl-C stopped the script (press Ctrl-C again to abort the run)"
            ));
        }
        Ok(value)
    }

    /// On `--resume`: what the journal says of this call. A call an earlier attempt finished
    /// is answered from the journal; one it made and did not finish (failed, or in doubt) is
    /// made again settling that attempt; anything else is new.
    fn replayed(&self, name: &str, args: &Value) -> RhaiResult<Replayed> {
        let Some(replay) = &self.replay else {
            return Ok(Replayed::Fresh);
        };
        let mut st = self.state.locked();
        let Some(call) = replay.calls.get(st.replay_cursor) else {
            return Ok(Replayed::Fresh);
        };
        if call.primitive != name || &call.args != args {
            return Ok(Replayed::Fresh);
        }
        st.replay_cursor += 1;
        if call.ok && !call.in_doubt {
            let v = call.result.clone().unwrap_or(Value::Null);
            return super::convert::from_json(&v).map(Replayed::Done);
        }
        Ok(Replayed::Settle(call.clone()))
    }

    /// For the long act under way: how far an earlier attempt of it got.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        self.state.locked().in_flight.and_then(|(_, r)| r)
    }

    /// For the long act under way: part `part` begun (`ok: None`) or ended, journaled before
    /// the act goes on. A journal that cannot be written is logged: the act is already under
    /// way, and stopping it half-way would be worse.
    pub fn progress(&self, part: u32, ok: Option<bool>) {
        let Some((seq, _)) = self.state.locked().in_flight else {
            return;
        };
        if let Some(j) = self.journal.locked().as_mut()
            && let Err(e) = j.append(&Entry::Progress {
                at: Utc::now(),
                seq,
                part,
                ok,
            })
        {
            tracing::error!("{e}");
        }
    }

    /// Takes the lock of every DR cluster this act touches (once per run); the locks it
    /// holds for the act.
    fn lock_clusters(&self, target: &Target<'_>) -> RhaiResult<Vec<Arc<dyn Held>>> {
        // Each cluster with its two sites, when known.
        let clusters: Vec<(String, Option<(String, String)>)> = match target {
            Target::Cluster(c) | Target::ProtectedSide(c) => {
                vec![((*c).to_string(), self.pairings().remove(*c))]
            }
            Target::Pairing(c, p, d) => {
                vec![((*c).to_string(), Some(((*p).to_string(), (*d).to_string())))]
            }
            Target::Site(site) => self
                .pairings()
                .into_iter()
                .filter(|(_, (p, d))| p == site || d == site)
                .map(|(name, sites)| (name, Some(sites)))
                .collect(),
            Target::None => Vec::new(),
        };
        let me = Holder::me(&self.lock_owner, &self.script);
        let mut taken = Vec::new();
        let mut st = self.state.locked();
        let mut tokens = Vec::new();
        let mut held_for_act = Vec::new();
        for (c, sites) in clusters {
            // A lock held already is asked whether it still is (no round trip: a lease's
            // holder keeps its own deadline); a lost one stops the run before this change.
            if let Some((_, held)) = st.locks.iter().find(|(name, _)| *name == c) {
                held.check()
                    .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
                held_for_act.push(held.clone());
                continue;
            }
            // A cluster is its name and its sites' Mold URLs; when its pairing could not be
            // read, every configured site stands in (the same on each run of this config).
            let names = match &sites {
                Some((p, d)) => vec![p.clone(), d.clone()],
                None => self.dr.site_names(),
            };
            let key = LockKey {
                cluster: c.clone(),
                sites: names.iter().filter_map(|s| self.dr.mold_base(s)).collect(),
            };
            let l = self
                .locks
                .take(&key, &me)
                .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
            if let Some(token) = l.fencing_token() {
                tokens.push((c.clone(), token));
            }
            let l: Arc<dyn Held> = Arc::from(l);
            held_for_act.push(l.clone());
            taken.push(c.clone());
            st.locks.push((c, l));
        }
        drop(st);
        {
            let mut report = self.report.locked();
            for c in taken {
                if !report.clusters.contains(&c) {
                    report.clusters.push(c);
                }
            }
        }
        if let Some(j) = self.journal.locked().as_mut() {
            for (cluster, fencing_token) in tokens {
                j.append(&Entry::Lock {
                    at: Utc::now(),
                    cluster,
                    fencing_token,
                })
                .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
            }
        }
        Ok(held_for_act)
    }

    /// Every DR cluster's (protected site, DR site), read once: a failed read is tried
    /// again next time.
    fn pairings(&self) -> BTreeMap<String, (String, String)> {
        if let Some(known) = self.pairings.locked().as_ref() {
            return known.clone();
        }
        let dr = self.dr.clone();
        let read = self
            .rt
            .block_on(async move { dr.dr_clusters().await })
            .map(|all| {
                all.into_iter()
                    .map(|c| (c.name, (c.primary_site, c.dr_site)))
                    .collect::<BTreeMap<_, _>>()
            });
        match read {
            Ok(map) => {
                *self.pairings.locked() = Some(map.clone());
                map
            }
            Err(_) => BTreeMap::new(),
        }
    }

    /// A destructive act needs a yes: `--yes`, a `confirm()` earlier in the same step, or
    /// the operator's answer now.
    fn require_yes(&self, question: &Question<'_>) -> RhaiResult<()> {
        if self.state.locked().step_confirmed {
            return Ok(());
        }
        if self.ask(question)? {
            Ok(())
        } else {
            Err(stop(
                StopReason::Refused,
                &format!("refused: {}", question.text),
            ))
        }
    }

    /// Asks a yes/no question; `Nobody` fails the run with advice.
    pub fn ask(&self, q: &Question<'_>) -> RhaiResult<bool> {
        let question = q.text;
        match &self.confirmer {
            Confirmer::Yes => Ok(true),
            Confirmer::Answers(f) => Ok(f(q)),
            Confirmer::Nobody => Err(stop(
                StopReason::Refused,
                &format!(
                    "{question} — drbook needs a yes, but there is no terminal to ask on: rerun with --yes once you have reviewed the plan (drbook run --plan)"
                ),
            )),
            Confirmer::Terminal => {
                use std::io::Write as _;
                eprint!("{question} [y/N] ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line).is_err() {
                    return Ok(false);
                }
                Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
            }
        }
    }

    /// `confirm(question)`: true also covers the destructive acts of the current step.
    pub fn confirm(&self, question: &str) -> RhaiResult<bool> {
        if self.plan_mode() {
            return Ok(true);
        }
        let yes = self.ask(&Question {
            text: question,
            primitive: None,
        })?;
        if yes {
            self.state.locked().step_confirmed = true;
        }
        Ok(yes)
    }

    /// Starts a step; `Some(result)` when a resumed run already finished it.
    pub fn step_start(&self, name: &str) -> RhaiResult<Option<Value>> {
        let mut st = self.state.locked();
        if let Some(outer) = &st.step {
            return Err(script_error(format!(
                "step {name:?} is inside step {outer:?}: steps do not nest (make it a function instead)"
            )));
        }
        if let Some(result) = self
            .replay
            .as_ref()
            .and_then(|r| r.finished_steps.get(name))
        {
            // Skip the finished step's calls in the replay cursor too, and its nested runs'
            // ordinals: a later `run()` keeps the number it had.
            if let Some(replay) = &self.replay {
                while replay
                    .calls
                    .get(st.replay_cursor)
                    .is_some_and(|c| c.step.as_deref() == Some(name))
                {
                    st.replay_cursor += 1;
                }
                if let Some(&high) = replay.nested_in_step.get(name) {
                    self.nested_runs.fetch_max(high, Ordering::SeqCst);
                }
            }
            self.report.locked().steps.push(StepReport::replayed(name));
            return Ok(Some(result.clone()));
        }
        st.step = Some(name.to_string());
        st.step_started = Some(Instant::now());
        st.step_confirmed = false;
        drop(st);
        if let Some(j) = self.journal.locked().as_mut() {
            j.append(&Entry::StepStart {
                at: Utc::now(),
                step: name.to_string(),
            })
            .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
        }
        Ok(None)
    }

    /// Ends the current step with its result or error.
    pub fn step_end(&self, name: &str, result: Result<&Value, &str>) -> RhaiResult<()> {
        let started = {
            let mut st = self.state.locked();
            st.step = None;
            st.step_confirmed = false;
            st.step_started.take()
        };
        let took = started.map(|s| s.elapsed()).unwrap_or_default();
        self.report.locked().steps.push(StepReport {
            name: name.to_string(),
            started: Utc::now() - chrono::Duration::from_std(took).unwrap_or_default(),
            took_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            ok: result.is_ok(),
            error: result.err().map(str::to_string),
            replayed: false,
        });
        if let Some(j) = self.journal.locked().as_mut() {
            j.append(&Entry::StepEnd {
                at: Utc::now(),
                step: name.to_string(),
                ok: result.is_ok(),
                result: result.ok().cloned(),
                error: result.err().map(str::to_string),
            })
            .map_err(|e| stop(StopReason::Failed, &e.to_string()))?;
        }
        Ok(())
    }

    /// A host for a nested `run()` of `script_path` with `args` (plain data, see
    /// [`super::convert::plain_data`]): the same sites, mode, answers and Ctrl-C, its own
    /// journal and report; the parent's cluster locks cover it. The n-th `run()` of this run
    /// gets run id `<this run>.<n>`; when this run is a resumed one and that nested run left a
    /// journal, the nested run resumes from it exactly as `--resume` would.
    pub fn child(&self, script_path: PathBuf, args: Map) -> RhaiResult<Self> {
        let ordinal = self.nested_runs.fetch_add(1, Ordering::SeqCst) + 1;
        let run_id = format!("{}.{ordinal}", self.run_id);
        let script = script_path.display().to_string();
        let failed = |e: JournalError| stop(StopReason::Failed, &e.to_string());
        let mode = self.mode();
        let (journal, replay) = match mode {
            Mode::Plan => (None, None),
            Mode::Live => {
                let step = self.state.locked().step.clone();
                if let Some(j) = self.journal.locked().as_mut() {
                    j.append(&Entry::NestedRun {
                        at: Utc::now(),
                        run: run_id.clone(),
                        ordinal,
                        step,
                    })
                    .map_err(failed)?;
                }
                let path = Journal::run_dir(&self.state_dir, &run_id).join("journal.jsonl");
                let replay = match &self.replay {
                    Some(_) if path.exists() => Some(Replay::load(&path).map_err(failed)?),
                    _ => None,
                };
                if let Some(original) = replay.as_ref().and_then(|r| r.script.as_ref())
                    && *original != script
                {
                    return Err(stop(
                        StopReason::Failed,
                        &format!(
                            "nested run {run_id} was a run of {original}, not {script}: this runbook's run() calls are not the ones it made before, so its nested runs cannot be resumed safely; check the state and finish by hand or in a new run"
                        ),
                    ));
                }
                let mut j = Journal::open(&self.state_dir, &run_id).map_err(failed)?;
                j.append(&Entry::RunStart {
                    at: Utc::now(),
                    run: run_id.clone(),
                    script: script.clone(),
                    args: args
                        .iter()
                        .map(|(k, v)| (k.to_string(), super::convert::journal_text(v)))
                        .collect(),
                    resumed: replay.is_some(),
                })
                .map_err(failed)?;
                (Some(j), replay)
            }
        };
        let options = HostOptions {
            mode,
            args: BTreeMap::new(),
            confirmer: self.confirmer.clone(),
            state_dir: self.state_dir.clone(),
            locks: self.locks.clone(),
            run_id,
            replay,
            script,
            script_path,
            stdlib_dir: self.stdlib_dir.clone(),
        };
        let settings = Settings {
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            webhook: self.webhook.clone(),
        };
        // The same Ctrl-C and lock owner as this run, one level deeper.
        Ok(Self {
            lock_owner: self.lock_owner.clone(),
            depth: self.depth + 1,
            interrupts: self.interrupts.clone(),
            ..Self::assemble(
                self.dr.clone(),
                self.rt.clone(),
                settings,
                options,
                args,
                journal,
            )
        })
    }

    /// Whether this run continues an earlier one (`--resume`, or a nested run resumed with
    /// its parent).
    pub fn resumed(&self) -> bool {
        self.replay.is_some()
    }

    /// Lets go of the DR cluster locks this host took: a watcher policy holds them for one
    /// call, not for the whole time it runs.
    pub fn release_locks(&self) {
        self.state.locked().locks.clear();
    }

    /// Forgets the steps and actions reported so far (a long-lived host would otherwise
    /// keep every call's).
    pub fn clear_report(&self) {
        let mut report = self.report.locked();
        report.steps.clear();
        report.actions.clear();
    }

    /// Writes the run's last journal entry.
    pub fn finish(&self, ok: bool, exit: u8) {
        if let Some(j) = self.journal.locked().as_mut() {
            let _ = j.append(&Entry::RunEnd {
                at: Utc::now(),
                ok,
                exit,
            });
        }
        self.state.locked().locks.clear();
    }

    fn record_action(&self, name: &str, target: &Target<'_>, args: &Value, done: Done) {
        self.report.locked().actions.push(ActionReport {
            primitive: name.to_string(),
            site: target.site(self),
            args: short_args(args),
            ok: done.ok,
            error: done.error,
            started: done.started,
            took_ms: u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX),
            replayed: done.replayed,
            items: done.items,
        });
    }

    /// A log line for the script's `info`/`warn` and for progress without a terminal.
    pub fn log(&self, level: &str, msg: &str) {
        let ts = chrono::Local::now().format("%H:%M:%S");
        crate::term::eline(&format!("{ts} {level:5} {msg}"));
    }
}

/// How an act ended, for the report.
struct Done {
    ok: bool,
    error: Option<String>,
    started: DateTime<Utc>,
    took: Duration,
    replayed: bool,
    items: Vec<ItemSpan>,
}

impl Done {
    /// Found done in the journal of an earlier attempt.
    fn replayed(items: Vec<ItemSpan>) -> Self {
        Self {
            ok: true,
            error: None,
            started: Utc::now(),
            took: Duration::ZERO,
            replayed: true,
            items,
        }
    }
}

/// How many items of a batch's result (an array of `#{ok, …}`) failed.
fn failed_items(result: &Value) -> usize {
    result.as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| i.get("ok") == Some(&Value::Bool(false)))
            .count()
    })
}

/// What a mutation acts on: for the lock, the plan's per-site listing and the report.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A DR cluster operation Mold runs on the DR site.
    Cluster(&'a str),
    /// A DR cluster operation Mold runs on the protected site (mirrored VMs, the VM-level
    /// test commands).
    ProtectedSide(&'a str),
    /// A DR cluster being made (cluster, protected site, DR site): not among the run's
    /// pairings yet, so its sites are given; its name is locked like an existing cluster's.
    Pairing(&'a str, &'a str, &'a str),
    Site(&'a str),
    None,
}

impl Target<'_> {
    fn site(&self, host: &Host) -> Option<String> {
        match self {
            Target::Site(s) | Target::Pairing(_, s, _) => Some((*s).to_string()),
            Target::Cluster(c) | Target::ProtectedSide(c) => {
                let (protected, dr) = host.pairings().remove(*c)?;
                Some(if matches!(self, Target::Cluster(_)) {
                    dr
                } else {
                    protected
                })
            }
            Target::None => None,
        }
    }
}

/// `promote("DR")`-style text of a call's arguments.
pub fn short_args(args: &Value) -> String {
    match args {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The question a destructive act asks: the table's wording with `{0}`, `{1}` standing for
/// the call's arguments, and where it goes — `Promote DR cluster "DR" on site-b?`.
fn describe(p: &dyn Act, args: &Value, target: &Target<'_>, host: &Host) -> String {
    let mut what = p.question().to_string();
    if let Value::Array(items) = args {
        for (i, v) in items.iter().enumerate() {
            let text = v
                .as_str()
                .map_or_else(|| v.to_string(), |s| format!("{s:?}"));
            what = what.replace(&format!("{{{i}}}"), &text);
        }
    }
    match target.site(host) {
        Some(site) => format!("{what} on {site}?"),
        None => format!("{what}?"),
    }
}
