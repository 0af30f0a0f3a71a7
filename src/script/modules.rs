//! `import` for scripts: `import "dr" as dr;` loads the standard library (embedded in the
//! binary, overridable by a directory), and any other path loads a file next to the script.

use std::path::{Path, PathBuf};

use rhai::module_resolvers::FileModuleResolver;
use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

/// The standard library shipped in the binary: name → source.
pub const STDLIB: &[(&str, &str)] = &[("dr", include_str!("../../stdlib/dr.rhai"))];

/// The runbooks shipped in the binary, runnable by name (`drbook run status`): name → source.
/// A site adapts one by copying `scripts/<name>.rhai` and running its copy.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("status", include_str!("../../scripts/status.rhai")),
    ("failover", include_str!("../../scripts/failover.rhai")),
    ("failback", include_str!("../../scripts/failback.rhai")),
    ("switchover", include_str!("../../scripts/switchover.rhai")),
    ("drill", include_str!("../../scripts/drill.rhai")),
    (
        "decommission",
        include_str!("../../scripts/decommission.rhai"),
    ),
    ("setup", include_str!("../../scripts/setup.rhai")),
    (
        "test-failover",
        include_str!("../../scripts/test-failover.rhai"),
    ),
];

/// A shipped runbook's source, by name (`status` or `status.rhai`).
/// A runbook named by another (`run()`, a `runbook` var): a file next to `script`, else a
/// shipped runbook of that name.
pub struct Runbook {
    /// Where it is (for a shipped one, where a file of that name would have been).
    pub path: PathBuf,
    pub source: String,
    pub shipped: bool,
    /// Its file name, `.rhai` added when not given.
    pub name: String,
}

/// Finds `runbook` for `script`; the error says where it looked.
pub fn runbook(script: &Path, runbook: &str) -> Result<Runbook, String> {
    let dir = script
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = if Path::new(runbook).extension().is_some() {
        runbook.to_string()
    } else {
        format!("{runbook}.rhai")
    };
    let path = dir.join(&name);
    match std::fs::read_to_string(&path) {
        Ok(source) => Ok(Runbook {
            path,
            source,
            shipped: false,
            name,
        }),
        Err(e) => shipped(runbook)
            .map(|s| Runbook {
                path: path.clone(),
                source: s.to_string(),
                shipped: true,
                name: name.clone(),
            })
            .ok_or_else(|| {
                format!(
                    "cannot read {} ({e}), and no shipped runbook has that name ({})",
                    path.display(),
                    shipped_names()
                )
            }),
    }
}

/// A runbook an operator named on the command line (a `runbook` var): a file from the
/// current directory, given back as its absolute path so that `run()` finds it from any
/// script; else a shipped runbook's name.
pub fn named_runbook(runbook: &str) -> Result<String, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let found = self::runbook(&cwd.join("here"), runbook)?;
    if found.shipped {
        Ok(runbook.to_string())
    } else {
        Ok(found.path.display().to_string())
    }
}

pub fn shipped(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    SCRIPTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The shipped runbooks' names, for error messages.
pub fn shipped_names() -> String {
    SCRIPTS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file an error inside module `name` refers to: `stdlib/<name>.rhai` for the standard
/// library, else the module's own path.
pub fn origin(name: &str) -> String {
    if STDLIB.iter().any(|(n, _)| *n == name) {
        format!("stdlib/{name}.rhai")
    } else {
        name.to_string()
    }
}

/// The text of a file an error points into: an embedded library or runbook, else the file.
pub fn source_of(file: &str) -> Option<String> {
    let embedded = |prefix: &str, table: &[(&str, &'static str)]| {
        let name = file.strip_prefix(prefix)?.strip_suffix(".rhai")?;
        table
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| (*s).to_string())
    };
    embedded("stdlib/", STDLIB)
        .or_else(|| std::fs::read_to_string(file).ok())
        .or_else(|| embedded("scripts/", SCRIPTS))
}

/// Where a run's imports come from.
pub struct Resolver {
    /// A directory whose `<name>.rhai` files replace the embedded ones.
    stdlib_dir: Option<PathBuf>,
    files: FileModuleResolver,
}

impl Resolver {
    /// `script_dir` anchors relative imports.
    pub fn new(script_dir: &Path, stdlib_dir: Option<PathBuf>) -> Self {
        Self {
            stdlib_dir,
            files: FileModuleResolver::new_with_path(script_dir),
        }
    }

    fn stdlib_source(&self, name: &str) -> Option<(String, String)> {
        if let Some(dir) = &self.stdlib_dir {
            let path = dir.join(format!("{name}.rhai"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Some((text, path.display().to_string()));
            }
        }
        STDLIB
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| ((*text).to_string(), format!("stdlib/{name}.rhai")))
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some((text, origin)) = self.stdlib_source(path) {
            let mut ast = engine.compile(&text).map_err(|e| {
                Box::new(EvalAltResult::ErrorInModule(
                    origin.clone(),
                    Box::new(EvalAltResult::ErrorParsing(*e.0, e.1)),
                    pos,
                ))
            })?;
            ast.set_source(origin);
            let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
                .map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))?;
            return Ok(module.into());
        }
        self.files.resolve(engine, source, path, pos)
    }
}
