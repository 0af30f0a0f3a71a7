//! `drbook repl`: the incident REPL. One engine and one scope for the session over the same
//! primitives and the same [`Host`] as `drbook run`: reads run at once, every mutation is
//! journaled under the session's run id, every destructive act asks y/N on the terminal
//! (there is no `--yes` here), `:plan on` lists mutations instead of sending them, and a
//! Ctrl-C cancels the running wait without ending the session.

mod help;
mod helper;
mod lex;
mod show;
mod status;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{AST, Dynamic, Engine, Module, Scope};
use rustyline::error::ReadlineError;
use rustyline::history::{FileHistory, History as _};
use rustyline::{Config as EditorConfig, Editor};

use self::helper::{ReplHelper, SessionNames};
use crate::config::Config;
use crate::dr::Dr;
use crate::error::{Error, exit};
use crate::script::diagnostic::Diagnostic;
use crate::script::host::{Confirmer, Host, HostOptions, Mode, Question};
use crate::script::journal::{Journal, new_run_id};
use crate::script::{engine, modules};
use crate::secret::Secret;
use crate::sync::Locked as _;

#[derive(Debug, clap::Args)]
pub struct ReplArgs {
    /// Start in plan mode: mutations are listed, not sent (`:plan off` acts for real)
    #[arg(long)]
    pub plan: bool,

    #[command(flatten)]
    pub stdlib: crate::cli::StdlibDir,

    #[command(flatten)]
    pub state: crate::cli::StateDir,

    /// Not accepted: the REPL asks before every destructive act
    #[arg(long, hide = true)]
    pub yes: bool,
}

/// How long the prompt waits for the sites' fresh look before showing the last one.
const PROMPT_WAIT_FIRST: Duration = Duration::from_secs(3);
const PROMPT_WAIT: Duration = Duration::from_millis(600);

/// Error positions name a line typed at the prompt `<input N>`, N counting the session's
/// inputs; a script run with `:load` by its path.
const INPUT: &str = "<input>";

pub async fn run(config: &Config, args: &ReplArgs) -> Result<ExitCode, Error> {
    if args.yes {
        return Err(Error::Usage(
            "drbook repl does not take --yes: it asks before every destructive act. For a reviewed runbook without questions, use drbook run --yes".into(),
        ));
    }
    let dr = Dr::new(config)?.with_reporter(crate::script::progress::WaitLog::reporter());
    let run_id = new_run_id();
    let editor = Arc::new(Mutex::new(new_editor()?));
    let asker = editor.clone();
    let host = Host::new(
        dr.clone(),
        tokio::runtime::Handle::current(),
        config,
        HostOptions {
            mode: Mode::Live,
            args: BTreeMap::new(),
            confirmer: Confirmer::Answers(Arc::new(move |q| ask(&asker, q))),
            state_dir: args.state.resolve(config),
            locks: args.state.locks(config)?,
            run_id: run_id.clone(),
            replay: None,
            script: "repl".into(),
            script_path: PathBuf::from("./repl"),
            stdlib_dir: args.stdlib.stdlib.clone(),
        },
    )
    .map_err(|e| Error::Failed(e.to_string()))?;
    let host = Arc::new(host);
    if args.plan {
        let _ = host.set_plan_mode(true);
    }
    let interrupts = host.interrupts.clone();
    let ctrl_c = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            interrupts.signal();
            if interrupts.aborted() {
                crate::term::eline("\ndrbook: stopping the command");
            } else {
                crate::term::eline(
                    "\ndrbook: interrupted — the current wait is cancelled; Ctrl-C again stops the command",
                );
            }
        }
    });
    let mut secrets: Vec<Secret> = config
        .sites
        .iter()
        .flat_map(|s| [s.mold.api_key.clone(), s.mold.secret_key.clone()])
        .collect();
    secrets.extend(config.notify.webhook_url.clone());
    let engine = engine::build(&host, Path::new("./repl"), args.stdlib.stdlib.clone());
    let names = Arc::new(Mutex::new(SessionNames::default()));
    let helper = ReplHelper::new(
        dr.clone(),
        tokio::runtime::Handle::current(),
        names.clone(),
        engine::known_functions(&engine),
    );
    editor.locked().set_helper(Some(helper));
    let scope = engine::scope(&host);
    let mut session = Session {
        board: status::Board::new(dr, tokio::runtime::Handle::current()),
        host,
        engine,
        scope,
        functions: AST::empty(),
        imports: Vec::new(),
        names,
        editor,
        history: history_path(),
        secrets,
        planned_seen: 0,
        inputs: 0,
        origins: BTreeMap::new(),
    };
    let outcome = tokio::task::spawn_blocking(move || session.run()).await;
    ctrl_c.abort();
    outcome.map_err(|e| Error::Failed(format!("the REPL thread failed: {e}")))?;
    Ok(ExitCode::from(exit::OK))
}

fn new_editor() -> Result<Editor<ReplHelper, FileHistory>, Error> {
    let config = EditorConfig::builder()
        .auto_add_history(false)
        .history_ignore_dups(true)
        .map_err(|e| Error::Failed(format!("line editor: {e}")))?
        .history_ignore_space(true)
        .max_history_size(5000)
        .map_err(|e| Error::Failed(format!("line editor: {e}")))?
        .completion_type(rustyline::CompletionType::List)
        .build();
    Editor::with_config(config)
        .map_err(|e| Error::Failed(format!("cannot start the line editor: {e}")))
}

/// `$XDG_STATE_HOME/drbook/history`, else `~/.local/state/drbook/history`.
fn history_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("drbook").join("history"))
}

/// A destructive act's question, asked on the session's own line editor; anything but
/// y/yes (Ctrl-C and Ctrl-D included) is a no.
fn ask(editor: &Mutex<Editor<ReplHelper, FileHistory>>, question: &Question<'_>) -> bool {
    if let Some(p) = question.primitive {
        crate::term::eline(&format!("{}: {}", p.name(), p.doc()));
    }
    let question = question.text;
    let mut editor = editor.locked();
    loop {
        match editor.readline(&format!("{question} [y/N] ")) {
            Ok(answer) => match answer.trim().to_lowercase().as_str() {
                "y" | "yes" => return true,
                "" | "n" | "no" => return false,
                _ => crate::term::eline("answer y or n"),
            },
            Err(_) => return false,
        }
    }
}

enum Next {
    Go,
    Quit,
}

struct Session {
    host: Arc<Host>,
    engine: Engine,
    scope: Scope<'static>,
    /// Every function defined so far (its statements thrown away).
    functions: AST,
    /// The `import`s made so far: run again before each command, so their aliases hold.
    imports: Vec<rhai::Stmt>,
    names: Arc<Mutex<SessionNames>>,
    editor: Arc<Mutex<Editor<ReplHelper, FileHistory>>>,
    board: status::Board,
    history: Option<PathBuf>,
    /// Configured secrets: a typed line holding one is kept out of the history file.
    secrets: Vec<Secret>,
    /// How many planned actions were shown already.
    planned_seen: usize,
    /// How many lines were run from the prompt (`<input N>`).
    inputs: usize,
    /// Where each session function was defined: the input's name and source.
    origins: BTreeMap<String, (String, String)>,
}

impl Session {
    fn editor(&self) -> std::sync::MutexGuard<'_, Editor<ReplHelper, FileHistory>> {
        self.editor.locked()
    }

    fn run(&mut self) {
        if let Some(path) = &self.history
            && path.exists()
            && let Err(e) = self.editor().load_history(path)
        {
            crate::term::eline(&format!(
                "warning: cannot read the history {}: {e}",
                path.display()
            ));
        }
        crate::term::eline(&format!(
            "drbook repl — session {} (journal {}){}\n:help lists the primitives and commands; Tab completes; Ctrl-C cancels a wait; Ctrl-D leaves.",
            self.host.run_id,
            self.journal_path().display(),
            if self.host.plan_mode() {
                "\nplan mode: mutations are listed, not sent (:plan off to act)"
            } else {
                ""
            }
        ));
        let mut wait = PROMPT_WAIT_FIRST;
        loop {
            self.host.settle();
            let prompt = format!(
                "{}{} > ",
                if self.host.plan_mode() { "[plan] " } else { "" },
                self.board.prompt(wait)
            );
            wait = PROMPT_WAIT;
            let line = self.editor().readline(&prompt);
            match line {
                Ok(line) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    if lex::abandoned(&line)
                        && (lex::incomplete(&line)
                            || lex::unfinished(&line, &rhai::Engine::new_raw()))
                    {
                        crate::term::eline("(unfinished input abandoned)");
                        continue;
                    }
                    self.remember(&line);
                    if let Next::Quit = self.command(&line) {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    crate::term::eline(&format!("error: the terminal failed: {e}"));
                    break;
                }
            }
        }
        self.finish();
    }

    fn journal_path(&self) -> PathBuf {
        Journal::run_dir(&self.host.state_dir, &self.host.run_id).join("journal.jsonl")
    }

    /// Adds a line to the history and appends it to the history file at once (a crashed
    /// session keeps what was typed) — unless it holds a configured secret.
    fn remember(&mut self, line: &str) {
        if self.secrets.iter().any(|s| s.appears_in(line)) {
            crate::term::eline(
                "(this line holds a configured secret: it is not kept in the history)",
            );
            return;
        }
        let path = self.history.clone();
        let mut editor = self.editor();
        let _ = editor.add_history_entry(line);
        let Some(path) = path else { return };
        if let Some(dir) = path.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        if let Err(e) = editor.append_history(&path) {
            crate::term::eline(&format!(
                "warning: cannot write the history {}: {e}",
                path.display()
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
    }

    fn command(&mut self, line: &str) -> Next {
        let trimmed = line.trim();
        if !trimmed.starts_with(':') {
            self.eval(line, INPUT);
            return Next::Go;
        }
        let (cmd, rest) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(c, r)| (c, r.trim()));
        match cmd {
            ":help" | ":h" | ":?" => {
                help::help(rest, |f| self.names.locked().functions.get(f).cloned());
            }
            ":vars" => self.vars(),
            ":plan" => self.plan(rest),
            ":sites" => self.sites(),
            ":load" => self.load(rest),
            ":history" => self.print_history(rest),
            ":journal" => self.journal(),
            ":quit" | ":q" | ":exit" => return Next::Quit,
            other => {
                let close =
                    crate::suggest::nearest(other, help::COMMANDS.iter().map(|(c, _, _)| *c));
                crate::term::eline(&format!(
                    "no command {other}{}; :help lists them",
                    if close.is_empty() {
                        String::new()
                    } else {
                        format!(" (did you mean {}?)", close.join(", "))
                    }
                ));
            }
        }
        Next::Go
    }

    /// Compiles and runs `source` in the session: its functions and imports stay, its
    /// variables stay in the scope, its value is printed.
    fn eval(&mut self, source: &str, file: &str) -> bool {
        let file = if file == INPUT {
            self.inputs += 1;
            format!("<input {}>", self.inputs)
        } else {
            file.to_string()
        };
        let file = file.as_str();
        let ast = match self.engine.compile_with_scope(&self.scope, source) {
            Ok(ast) => ast,
            Err(e) => {
                eprint!("{}", Diagnostic::from_parse(file, source, &e).render());
                return false;
            }
        };
        let new_imports: Vec<rhai::Stmt> = ast
            .statements()
            .iter()
            .filter(|s| matches!(s, rhai::Stmt::Import(..)))
            .cloned()
            .collect();
        self.functions += ast.clone_functions_only();
        for f in ast.iter_functions() {
            self.origins
                .insert(f.name.to_string(), (file.to_string(), source.to_string()));
        }
        let prelude = AST::new(self.imports.clone(), Module::new());
        let program = prelude.merge(&self.functions).merge(&ast);
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &program);
        self.show_planned();
        // The imports that resolve stay for the session, even when a later statement of the
        // same input failed.
        let new_imports: Vec<rhai::Stmt> = if result.is_ok() {
            new_imports
        } else {
            new_imports
                .into_iter()
                .filter(|s| self.resolves(s))
                .collect()
        };
        if !new_imports.is_empty() {
            self.note_imports(&new_imports);
            self.imports.extend(new_imports);
        }
        let ok = result.is_ok();
        match result {
            Ok(value) => {
                if let Some(text) = show::render(&value) {
                    crate::term::line(&text);
                }
            }
            Err(err) => {
                let (code, text) = super::run::classify(&err);
                let mut d = Diagnostic::from_eval(file, source, &err);
                d.message = text;
                // Inside a function an earlier input defined: point into that input.
                if d.file == file
                    && let Some(name) = innermost_function(&err)
                    && let Some((origin, text)) = self.origins.get(&name)
                    && origin != file
                {
                    d.file.clone_from(origin);
                    d.source_line = d
                        .line
                        .and_then(|l| text.lines().nth(l.saturating_sub(1)))
                        .map(str::to_string);
                }
                if code == exit::REFUSED {
                    d.trace.push("nothing was sent".into());
                }
                eprint!("{}", d.render());
            }
        }
        self.refresh_names();
        ok
    }

    /// Mutations plan mode recorded during the last command.
    fn show_planned(&mut self) {
        let planned = self.host.planned.locked().clone();
        for a in planned.iter().skip(self.planned_seen) {
            crate::term::line(&format!(
                "plan: would {} {}({}){}",
                if a.kind == "destructive" {
                    "(after a yes) run"
                } else {
                    "run"
                },
                a.primitive,
                crate::script::host::short_args(&a.args),
                a.site
                    .as_deref()
                    .map(|s| format!(" on {s}"))
                    .unwrap_or_default()
            ));
        }
        self.planned_seen = planned.len();
    }

    /// Whether an `import` statement's module loads.
    fn resolves(&self, stmt: &rhai::Stmt) -> bool {
        let rhai::Stmt::Import(x, _) = stmt else {
            return false;
        };
        let rhai::Expr::StringConstant(path, _) = &x.0 else {
            return false;
        };
        self.engine
            .module_resolver()
            .resolve(&self.engine, None, path, rhai::Position::NONE)
            .is_ok()
    }

    /// The function names of modules just imported, for `alias::` completion.
    fn note_imports(&self, imports: &[rhai::Stmt]) {
        let mut names = self.names.locked();
        for stmt in imports {
            let rhai::Stmt::Import(x, _) = stmt else {
                continue;
            };
            let (path, alias) = (&x.0, &x.1.name);
            let rhai::Expr::StringConstant(path, _) = path else {
                continue;
            };
            if alias.is_empty() {
                continue;
            }
            let text = modules::source_of(&format!("stdlib/{path}.rhai"))
                .or_else(|| std::fs::read_to_string(format!("{path}.rhai")).ok())
                .or_else(|| std::fs::read_to_string(path.as_str()).ok());
            let fns = text
                .and_then(|t| self.engine.compile(t).ok())
                .map(|ast| {
                    let mut fns: Vec<String> = ast
                        .iter_functions()
                        .filter(|f| {
                            f.access != rhai::FnAccess::Private && !f.name.starts_with("anon$")
                        })
                        .map(|f| f.name.to_string())
                        .collect();
                    fns.sort();
                    fns.dedup();
                    fns
                })
                .unwrap_or_default();
            names.modules.insert(alias.to_string(), fns);
        }
    }

    fn refresh_names(&self) {
        let mut names = self.names.locked();
        names.vars = self
            .scope
            .iter()
            .map(|(n, _, _)| n.to_string())
            .filter(|n| n != "ARGS")
            .collect();
        names.functions = self
            .functions
            .iter_functions()
            .filter(|f| !f.name.starts_with("anon$"))
            .map(|f| {
                (
                    f.name.to_string(),
                    format!("{}({})", f.name, f.params.join(", ")),
                )
            })
            .collect();
    }

    fn vars(&self) {
        let vars: Vec<(String, bool, Dynamic)> = self
            .scope
            .iter()
            .filter(|(n, _, _)| *n != "ARGS")
            .map(|(n, c, v)| (n.to_string(), c, v))
            .collect();
        if vars.is_empty() {
            crate::term::line("no variables yet (let x = ...)");
        }
        let width = vars.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
        for (name, constant, value) in vars {
            crate::term::line(&format!(
                "{name:<width$} = {}   ({}{})",
                show::short(&value, 70),
                if constant { "const " } else { "" },
                self.engine.map_type_name(value.type_name())
            ));
        }
        let fns = self
            .names
            .locked()
            .functions
            .values()
            .cloned()
            .collect::<Vec<_>>();
        if !fns.is_empty() {
            crate::term::line(&format!("functions: {}", fns.join(", ")));
        }
    }

    fn plan(&self, arg: &str) {
        match arg {
            "on" => {
                let _ = self.host.set_plan_mode(true);
                crate::term::line("plan mode on: mutations are listed, not sent");
            }
            "off" => match self.host.set_plan_mode(false) {
                Ok(()) => crate::term::line(
                    "plan mode off: mutations are sent (and journaled); destructive ones ask first",
                ),
                Err(e) => crate::term::eline(e),
            },
            "" => crate::term::line(if self.host.plan_mode() {
                "plan mode is on (:plan off to act)"
            } else {
                "plan mode is off (:plan on to only list mutations)"
            }),
            other => crate::term::eline(&format!(":plan {other}? Use :plan on or :plan off")),
        }
    }

    fn sites(&self) {
        let dr = self.host.dr.clone();
        let looks = self.host.block("reading the sites' health", async move {
            let all = dr.site_names().into_iter().map(|site| {
                let dr = dr.clone();
                async move {
                    let (role, health) = tokio::join!(dr.site_role(&site), dr.health(&site));
                    (role, health)
                }
            });
            futures_util::future::join_all(all).await
        });
        match looks {
            Ok(looks) => {
                for (role, health) in looks {
                    crate::term::line(&format!("{:<8} {health}", role.as_str()));
                }
            }
            Err(e) => crate::term::eline(&crate::script::diagnostic::message_of(&e)),
        }
    }

    fn load(&mut self, file: &str) {
        if file.is_empty() {
            crate::term::eline(":load needs a file: :load FILE");
            return;
        }
        match std::fs::read_to_string(file) {
            Ok(source) => {
                if self.eval(&source, file) {
                    crate::term::eline(&format!(
                        "loaded {file}: its functions and variables are in the session (:vars)"
                    ));
                }
            }
            Err(e) => crate::term::eline(&format!("cannot read {file}: {e}")),
        }
    }

    fn print_history(&self, arg: &str) {
        let n: usize = arg.parse().unwrap_or(20);
        let editor = self.editor();
        let history = editor.history();
        let total = history.len();
        for (i, line) in history.iter().enumerate().skip(total.saturating_sub(n)) {
            crate::term::line(&format!(
                "{:>5}  {}",
                i + 1,
                line.replace('\n', "\n       ")
            ));
        }
    }

    fn journal(&self) {
        crate::term::line(&format!(
            "session {}: journal {}",
            self.host.run_id,
            self.journal_path().display()
        ));
        let actions = self.host.report.locked().actions.clone();
        if actions.is_empty() {
            crate::term::line("no acts yet");
        }
        for (i, a) in actions.iter().enumerate() {
            crate::term::line(&format!(
                "  {:>3}. {}({}){} — {}",
                i + 1,
                a.primitive,
                a.args,
                a.site
                    .as_deref()
                    .map(|s| format!(" on {s}"))
                    .unwrap_or_default(),
                match &a.error {
                    None => "done".to_string(),
                    Some(e) => format!("failed: {e}"),
                }
            ));
        }
    }

    fn finish(&mut self) {
        self.host.finish(true, exit::OK);
        let report = {
            let mut r = self.host.report.locked();
            r.ok = true;
            r.clone()
        };
        super::run::save_report(&self.host.state_dir, &self.host.run_id, &report);
        crate::term::eline(&format!(
            "session {} ended: {} act(s) made; journal {}",
            self.host.run_id,
            report.actions.len(),
            self.journal_path().display()
        ));
        let _ = std::io::stderr().flush();
    }
}

/// The script function an error was raised in, innermost; `None` when it was raised inside
/// a module (the diagnostic already points into the module).
fn innermost_function(err: &rhai::EvalAltResult) -> Option<String> {
    crate::script::error::chain(err).fold(None, |name, layer| match layer {
        rhai::EvalAltResult::ErrorInFunctionCall(n, ..) => Some(n.clone()),
        rhai::EvalAltResult::ErrorInModule(..) => None,
        _ => name,
    })
}
