//! The Rhai engine of a run: limits so a runaway script stops with a clear error, the
//! primitives and types registered, imports resolved, Ctrl-C wired to `on_progress`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Dynamic, Engine, Scope};

use super::host::Host;
use super::modules::Resolver;
use super::{error, primitives, types};

/// Limits a runbook never needs to reach.
pub const MAX_OPERATIONS: u64 = 500_000_000;
pub const MAX_CALL_LEVELS: usize = 64;

/// Builds the engine for a script at `script_path`.
pub fn build(host: &Arc<Host>, script_path: &Path, stdlib_dir: Option<PathBuf>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(128, 64)
        .set_max_string_size(4 << 20)
        .set_max_array_size(100_000)
        .set_max_map_size(100_000)
        .set_max_modules(64);
    let interrupts = host.interrupts.clone();
    engine.on_progress(move |_| {
        interrupts
            .aborted()
            .then(|| Dynamic::from(error::Stop::interrupted("aborted by a second Ctrl-C")))
    });
    engine.on_print(crate::term::line);
    engine.on_debug(|s, src, pos| eprintln!("debug {}:{pos}: {s}", src.unwrap_or("")));
    types::register_error(&mut engine);
    types::register(&mut engine, host);
    primitives::register_all(&mut engine, host);
    let dir = script_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    engine.set_module_resolver(Resolver::new(&dir, stdlib_dir));
    engine
}

/// An engine that never talks to a site (`drbook check`, `drbook doc`): every
/// registration, nothing run.
pub fn offline(
    script_path: &Path,
    rt: tokio::runtime::Handle,
) -> Result<Engine, crate::dr::DrError> {
    let dr = crate::dr::Dr::new(&crate::config::Config::empty())?;
    let host = Arc::new(Host::offline(dr, rt));
    Ok(build(&host, script_path, None))
}

/// The scope a run starts with: `ARGS`, the `--var key=value` pairs (strings), or a nested
/// run's vars as its caller gave them (arrays, maps, numbers, bools stay what they are).
pub fn scope(host: &Host) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push_constant("ARGS", host.args.clone());
    scope
}

/// Every function name a script can call without defining it: primitives, types' methods,
/// Rhai's own packages.
pub fn known_functions(engine: &Engine) -> std::collections::BTreeSet<String> {
    let mut names: std::collections::BTreeSet<String> = engine
        .gen_fn_signatures(true)
        .into_iter()
        .filter_map(|sig| sig.split('(').next().map(|n| n.trim().to_string()))
        .collect();
    names.extend(primitives::PRIMITIVES.iter().map(|p| p.name.to_string()));
    // Keywords that parse as calls.
    for k in [
        "print",
        "debug",
        "type_of",
        "Fn",
        "call",
        "curry",
        "is_def_var",
        "is_def_fn",
        "eval",
        "is_shared",
    ] {
        names.insert(k.to_string());
    }
    names
}
