//! `:help`: the primitives by kind, one primitive or command in full, and the list of
//! `:commands` that `:help`, completion and the banner share.

use std::fmt::Write as _;

use crate::script::primitives::{self, Kind, PRIMITIVES};

/// The `:commands`: name, usage, what it does. `:help`, completion and the banner use it.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        ":help",
        ":help [NAME]",
        "the primitives by kind; with a NAME, its signatures and what it does",
    ),
    (":vars", ":vars", "the session's variables and their values"),
    (
        ":plan",
        ":plan on|off",
        "plan mode: mutations are listed, not sent (no argument: which mode)",
    ),
    (
        ":sites",
        ":sites",
        "each site's role and the health of its Mold and Glue",
    ),
    (
        ":load",
        ":load FILE",
        "run a script into the session: its variables and functions stay",
    ),
    (":history", ":history [N]", "the last N lines typed (20)"),
    (
        ":journal",
        ":journal",
        "where this session's journal is, and the acts made so far",
    ),
    (":quit", ":quit", "leave the session (Ctrl-D too)"),
];

/// `:help` and `:help NAME`, from the primitive table and the command list.
pub fn help(name: &str, session_function: impl Fn(&str) -> Option<String>) {
    if name.is_empty() {
        let groups: [(&str, &[Kind]); 5] = [
            ("Reads (safe; they run in plan mode too)", &[Kind::Read]),
            (
                "Mutations (journaled; under :plan on they are listed, not sent)",
                &[Kind::Mutate],
            ),
            ("Destructive (each asks y/N first)", &[Kind::Destructive]),
            ("Control (waits, steps, logging)", &[Kind::Control]),
            (
                "Escape hatches (read or mutate by the command they are given)",
                &[Kind::ByVerb, Kind::ByCommand],
            ),
        ];
        let mut out = String::new();
        for (title, kinds) in groups {
            out.push_str(title);
            out.push_str(":\n");
            let names: Vec<&str> = PRIMITIVES
                .iter()
                .filter(|p| kinds.contains(&p.kind))
                .map(|p| p.name)
                .collect();
            out.push_str(&wrap(&names, 92, "  "));
            out.push('\n');
        }
        out.push_str("Commands:\n");
        for (_, usage, what) in COMMANDS {
            let _ = writeln!(out, "  {usage:<14} {what}");
        }
        out.push_str(
            "\n:help NAME for one of them. Rhai as in runbooks: `let s = mirror_status(\"DR\");`, `import \"dr\" as dr;`.\nAn open { ( or [ continues on the next line; Tab completes names, and inside quotes sites, DR clusters and VMs.",
        );
        crate::term::line(&out);
        return;
    }
    let name = name.trim_end_matches("()");
    if let Some(p) = primitives::find(name) {
        let mut out = p.signatures().join("\n");
        let _ = write!(
            out,
            "\n  {} — {}\n  {}",
            p.kind.as_str(),
            p.section(),
            p.doc
        );
        if p.kind == Kind::Destructive {
            out.push_str("\n  Asks before it acts: ");
            out.push_str(
                &p.question
                    .replace("{0}", "<cluster>")
                    .replace("{1}", "<name>"),
            );
            out.push_str(" on <site>? [y/N]");
        }
        crate::term::line(&out);
        return;
    }
    let command = if name.starts_with(':') {
        name.to_string()
    } else {
        format!(":{name}")
    };
    if let Some((_, usage, what)) = COMMANDS.iter().find(|(c, _, _)| *c == command) {
        crate::term::line(&format!("{usage}\n  {what}"));
        return;
    }
    if let Some(sig) = session_function(name) {
        crate::term::line(&format!("{sig}\n  a function defined in this session"));
        return;
    }
    let close = crate::suggest::related(name, PRIMITIVES.iter().map(|p| p.name));
    crate::term::eline(&format!(
        "no primitive or command {name:?}{}; :help lists them",
        if close.is_empty() {
            String::new()
        } else {
            format!(" (close: {})", close.join(", "))
        }
    ));
}

/// Words in lines of at most `width` characters, each line indented.
fn wrap(words: &[&str], width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for w in words {
        if line.len() > indent.len() && line.len() + 1 + w.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(line.trim_end());
    out
}
