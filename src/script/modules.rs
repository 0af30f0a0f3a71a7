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
