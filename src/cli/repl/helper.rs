//! The line editor's helper: Tab completion (names, `:commands`, and inside string literals
//! site names, DR cluster names and VM names read live), the signature hint from the
//! primitive table, and multi-line input while brackets are open.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::help::COMMANDS;
use super::lex::{self, Cursor};
use crate::dr::Dr;
use crate::script::primitives::{self, PRIMITIVES, Ty};
use crate::sync::Locked as _;

/// How long live names (DR clusters, VMs) are reused before they are read again.
const LIVE_TTL: Duration = Duration::from_secs(15);
/// How long completion waits for a site to list its names.
const LIVE_BUDGET: Duration = Duration::from_secs(3);

const KEYWORDS: &[&str] = &[
    "let", "const", "if", "else", "for", "in", "while", "loop", "do", "until", "break", "continue",
    "return", "fn", "import", "as", "try", "catch", "throw", "true", "false", "switch",
];

/// What the session knows that completion offers: its variables, its functions, the modules
/// it imported (alias → function names).
#[derive(Default)]
pub struct SessionNames {
    pub vars: BTreeSet<String>,
    pub functions: BTreeMap<String, String>,
    pub modules: BTreeMap<String, Vec<String>>,
}

type Cache = Mutex<BTreeMap<String, (Instant, Vec<String>)>>;

pub struct ReplHelper {
    dr: Dr,
    rt: tokio::runtime::Handle,
    pub names: Arc<Mutex<SessionNames>>,
    /// Every function the engine knows (primitives, types' methods, Rhai's own).
    builtins: BTreeSet<String>,
    live: Cache,
    files: FilenameCompleter,
    /// Only parses, to tell an unfinished expression from a finished one.
    parser: rhai::Engine,
}

/// The signature shown while a call is typed, or the rest of a name with it.
pub struct SigHint {
    display: String,
    completion: Option<String>,
}

impl Hint for SigHint {
    fn display(&self) -> &str {
        &self.display
    }
    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

enum Wanted {
    Sites,
    Clusters,
    Vms,
    Images,
    Runbooks,
    Any,
    Nothing,
}

impl ReplHelper {
    pub fn new(
        dr: Dr,
        rt: tokio::runtime::Handle,
        names: Arc<Mutex<SessionNames>>,
        builtins: BTreeSet<String>,
    ) -> Self {
        Self {
            dr,
            rt,
            names,
            builtins,
            live: Mutex::new(BTreeMap::new()),
            files: FilenameCompleter::new(),
            parser: rhai::Engine::new_raw(),
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, SessionNames> {
        self.names.locked()
    }

    /// Names read live, reused for [`LIVE_TTL`]; a site that does not answer within
    /// [`LIVE_BUDGET`] gives none (and the last known ones if there were any).
    fn live<F, Fut>(&self, key: &str, read: F) -> Vec<String>
    where
        F: FnOnce(Dr) -> Fut,
        Fut: std::future::Future<Output = Option<Vec<String>>>,
    {
        let mut cache = self.live.locked();
        if let Some((at, names)) = cache.get(key)
            && at.elapsed() < LIVE_TTL
        {
            return names.clone();
        }
        let fut = read(self.dr.clone());
        let fresh = self
            .rt
            .block_on(async { tokio::time::timeout(LIVE_BUDGET, fut).await.ok().flatten() });
        match fresh {
            Some(names) => {
                cache.insert(key.to_string(), (Instant::now(), names.clone()));
                names
            }
            None => cache.get(key).map(|(_, n)| n.clone()).unwrap_or_default(),
        }
    }

    fn clusters(&self) -> Vec<String> {
        self.live("clusters", |dr| async move {
            dr.dr_clusters()
                .await
                .ok()
                .map(|cs| cs.into_iter().map(|c| c.name).collect())
        })
    }

    fn vms(&self, site: &str) -> Vec<String> {
        let owned = site.to_string();
        self.live(&format!("vms:{site}"), |dr| async move {
            dr.vms(&owned)
                .await
                .ok()
                .map(|vms| vms.into_iter().map(|v| v.name).collect())
        })
    }

    /// The RBD images (volume paths) of every DR cluster's mirrored VMs.
    fn images(&self) -> Vec<String> {
        let clusters = self.clusters();
        self.live("images", |dr| async move {
            let mut paths = BTreeSet::new();
            for c in clusters {
                if let Ok(status) = dr.mirror_status(&c).await {
                    for vm in status.vms {
                        paths.extend(vm.volumes.into_iter().map(|v| v.path));
                    }
                }
            }
            Some(paths.into_iter().collect())
        })
    }

    fn wanted(call: Option<&str>, arg: usize) -> Wanted {
        let Some(call) = call else {
            return Wanted::Any;
        };
        let Some(p) = primitives::find(call) else {
            return Wanted::Any;
        };
        match p.param(arg).map(|q| q.ty) {
            Some(Ty::Site) => Wanted::Sites,
            Some(Ty::Cluster) => Wanted::Clusters,
            Some(Ty::Vm | Ty::Vms) => Wanted::Vms,
            Some(Ty::Image | Ty::Images) => Wanted::Images,
            Some(Ty::Runbook) => Wanted::Runbooks,
            _ => Wanted::Nothing,
        }
    }

    /// What a string literal at this spot may hold.
    fn string_candidates(
        &self,
        call: Option<&str>,
        arg: usize,
        first: Option<&str>,
    ) -> Vec<String> {
        let sites = self.dr.site_names();
        let vms = || -> Vec<String> {
            // The site the call names first, else every site.
            let of: Vec<String> = match first {
                Some(f) if sites.iter().any(|s| s == f) => vec![f.to_string()],
                _ => sites.clone(),
            };
            let all: BTreeSet<String> = of.iter().flat_map(|s| self.vms(s)).collect();
            all.into_iter().collect()
        };
        match Self::wanted(call, arg) {
            Wanted::Sites => sites,
            Wanted::Clusters => self.clusters(),
            Wanted::Vms => vms(),
            Wanted::Images => self.images(),
            Wanted::Runbooks => crate::script::modules::SCRIPTS
                .iter()
                .map(|(n, _)| (*n).to_string())
                .collect(),
            Wanted::Nothing => Vec::new(),
            Wanted::Any => {
                let mut all = sites.clone();
                all.extend(self.clusters());
                all.extend(vms());
                all
            }
        }
    }

    fn name_candidates(&self, prefix: &str) -> Vec<(String, String)> {
        let names = self.names();
        if let Some((module, _)) = prefix.rsplit_once("::") {
            return names
                .modules
                .get(module)
                .map(|fns| {
                    fns.iter()
                        .map(|f| (format!("{module}::{f}"), format!("{module}::{f}(")))
                        .collect()
                })
                .unwrap_or_default();
        }
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for p in PRIMITIVES {
            out.insert(p.name.into(), format!("{}(", p.name));
        }
        for f in names.functions.keys() {
            out.insert(f.clone(), format!("{f}("));
        }
        for f in &self.builtins {
            out.entry(f.clone()).or_insert_with(|| format!("{f}("));
        }
        for v in &names.vars {
            out.insert(v.clone(), v.clone());
        }
        for m in names.modules.keys() {
            out.insert(format!("{m}::"), format!("{m}::"));
        }
        for k in KEYWORDS {
            out.insert((*k).into(), (*k).into());
        }
        out.into_iter().collect()
    }

    /// The signature(s) of a primitive or a session function.
    fn signature(&self, name: &str) -> Option<String> {
        if let Some(p) = primitives::find(name) {
            return Some(p.signatures().join("  |  "));
        }
        self.names().functions.get(name).cloned()
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let trimmed = line.trim_start();
        if trimmed.starts_with(':') {
            let lead = line.len() - trimmed.len();
            if pos < lead {
                return Ok((pos, Vec::new()));
            }
            return Ok(self.complete_command(line, pos, lead, ctx));
        }
        match lex::cursor(line, pos) {
            Cursor::InString {
                start,
                call,
                arg,
                first,
            } => {
                let prefix = &line[start..pos];
                let mut seen = BTreeSet::new();
                let pairs = self
                    .string_candidates(call.as_deref(), arg, first.as_deref())
                    .into_iter()
                    .filter(|c| c.starts_with(prefix) && seen.insert(c.clone()))
                    .map(|c| Pair {
                        display: c.clone(),
                        replacement: c,
                    })
                    .collect();
                Ok((start, pairs))
            }
            Cursor::Name { start } => {
                let prefix = &line[start..pos];
                if prefix.is_empty() {
                    return Ok((pos, Vec::new()));
                }
                let pairs = self
                    .name_candidates(prefix)
                    .into_iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(display, replacement)| Pair {
                        display,
                        replacement,
                    })
                    .collect();
                Ok((start, pairs))
            }
            Cursor::Other => Ok((pos, Vec::new())),
        }
    }
}

impl ReplHelper {
    fn complete_command(
        &self,
        line: &str,
        pos: usize,
        lead: usize,
        ctx: &Context<'_>,
    ) -> (usize, Vec<Pair>) {
        let head = &line[lead..pos];
        let pair = |s: &str| Pair {
            display: s.to_string(),
            replacement: s.to_string(),
        };
        match head.split_once(' ') {
            None => (
                lead,
                COMMANDS
                    .iter()
                    .map(|(c, _, _)| *c)
                    .filter(|c| c.starts_with(head))
                    .map(pair)
                    .collect(),
            ),
            Some((cmd, rest)) => {
                let start = pos - rest.len();
                match cmd {
                    ":help" => (
                        start,
                        PRIMITIVES
                            .iter()
                            .map(|p| p.name)
                            .chain(COMMANDS.iter().map(|(c, _, _)| *c))
                            .filter(|n| n.starts_with(rest))
                            .map(pair)
                            .collect(),
                    ),
                    ":plan" => (
                        start,
                        ["on", "off"]
                            .into_iter()
                            .filter(|n| n.starts_with(rest))
                            .map(pair)
                            .collect(),
                    ),
                    ":load" => self
                        .files
                        .complete(line, pos, ctx)
                        .unwrap_or((pos, Vec::new())),
                    _ => (pos, Vec::new()),
                }
            }
        }
    }
}

impl Hinter for ReplHelper {
    type Hint = SigHint;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<SigHint> {
        if pos < line.len() || line.trim_start().starts_with(':') {
            return None;
        }
        // A name being typed that only one primitive or function starts with: its rest.
        if let Cursor::Name { start } = lex::cursor(line, pos) {
            let prefix = &line[start..pos];
            if prefix.len() >= 3 && !prefix.contains("::") {
                let session: Vec<String> = self.names().functions.keys().cloned().collect();
                let mut matches = PRIMITIVES
                    .iter()
                    .map(|p| p.name.to_string())
                    .chain(session)
                    .filter(|n| n.starts_with(prefix));
                if let (Some(name), None) = (matches.next(), matches.next()) {
                    let sig = self.signature(&name)?;
                    let rest = &name[prefix.len()..];
                    return Some(SigHint {
                        display: format!("{rest}   {sig}"),
                        completion: Some(format!("{rest}(")),
                    });
                }
            }
        }
        let call = lex::enclosing_call(line, pos)?;
        let sig = self.signature(&call)?;
        Some(SigHint {
            display: format!("   {sig}"),
            completion: None,
        })
    }
}

impl Highlighter for ReplHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        false
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        // A blank line ends the input, finished or not: the loop abandons an unfinished one.
        Ok(
            if !lex::abandoned(input)
                && (lex::incomplete(input) || lex::unfinished(input, &self.parser))
            {
                ValidationResult::Incomplete
            } else {
                ValidationResult::Valid(None)
            },
        )
    }
}

impl Helper for ReplHelper {}
