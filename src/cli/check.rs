//! `drbook check FILE...`: compile without running; every parse error with its position, and
//! a warning for each call to a function that does not exist (with the nearest names).

use std::path::PathBuf;
use std::process::ExitCode;

use rhai::{ASTNode, Expr, Stmt};

use super::offline_engine;
use crate::error::{Error, exit};
use crate::script::diagnostic::Diagnostic;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The scripts to check
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// Treat warnings (unknown functions) as errors
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, Error> {
    let mut errors = 0;
    let mut warnings = 0;
    for path in &args.files {
        let file = path.display().to_string();
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot read {file}: {e}");
                errors += 1;
                continue;
            }
        };
        let engine = offline_engine(path)?;
        let ast = match engine.compile(&source) {
            Ok(ast) => ast,
            Err(e) => {
                eprint!("{}", Diagnostic::from_parse(&file, &source, &e).render());
                errors += 1;
                continue;
            }
        };
        let mut known = crate::script::engine::known_functions(&engine);
        known.extend(ast.iter_functions().map(|f| f.name.to_string()));
        let mut unknown = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            // A call is an expression, or a statement of its own.
            let call = match path.last() {
                Some(
                    ASTNode::Expr(Expr::FnCall(call, pos)) | ASTNode::Stmt(Stmt::FnCall(call, pos)),
                ) => Some((call, *pos)),
                _ => None,
            };
            // Operators (`..`, `+`, …) are calls too, resolved by the engine itself.
            if let Some((call, pos)) = call
                && call.namespace.is_empty()
                && is_identifier(&call.name)
                && !known.contains(call.name.as_str())
            {
                unknown.push((call.name.to_string(), pos));
            }
            true
        });
        for (name, pos) in unknown {
            let near = crate::suggest::nearest(
                &name,
                known
                    .iter()
                    .map(String::as_str)
                    .filter(|k| is_identifier(k)),
            );
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", near.join(", "))
            };
            let d = Diagnostic::new(
                &file,
                &source,
                pos,
                format!("warning: call to unknown function {name}(){hint}"),
            );
            eprintln!("{}", d.one_line());
            warnings += 1;
        }
        if errors == 0 {
            crate::term::line(&format!("{file}: ok"));
        }
    }
    let failed = errors > 0 || (args.strict && warnings > 0);
    if failed {
        eprintln!("{errors} error(s), {warnings} warning(s)");
    }
    Ok(ExitCode::from(if failed { exit::USAGE } else { exit::OK }))
}

/// A name a script can write as a plain call (not an operator).
fn is_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}
