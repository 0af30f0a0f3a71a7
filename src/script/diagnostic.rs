//! Script errors as a person reads them: the file, line and column, the source line, and a
//! caret under the spot — for parse errors and runtime errors alike.

use std::fmt::Write as _;

use rhai::{EvalAltResult, ParseError, Position};

/// One located problem in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// The source line the position points into, when known.
    pub source_line: Option<String>,
    /// Where the error was raised from, innermost last (functions and modules).
    pub trace: Vec<String>,
}

impl Diagnostic {
    pub fn new(file: &str, source: &str, pos: Position, message: String) -> Self {
        let line = pos.line();
        let column = pos.position();
        let source_line = line
            .and_then(|l| source.lines().nth(l - 1))
            .map(str::to_string);
        Self {
            file: file.to_string(),
            line,
            column,
            message,
            source_line,
            trace: Vec::new(),
        }
    }

    pub fn from_parse(file: &str, source: &str, err: &ParseError) -> Self {
        Self::new(file, source, err.position(), err.err_type().to_string())
    }

    /// A runtime error, unwrapped to the innermost position (an error inside a function
    /// points at the line in that function, in whichever file defines it: the script, a
    /// module next to it or the embedded `dr` library) with the calls that led there.
    pub fn from_eval(file: &str, source: &str, err: &EvalAltResult) -> Self {
        let mut trace = Vec::new();
        // The file the current position refers to: a call's position is in its caller.
        let mut current = file.to_string();
        for layer in super::error::chain(err) {
            match layer {
                EvalAltResult::ErrorInFunctionCall(name, src, _, pos) => {
                    let what = if name.starts_with("anon$") {
                        "in a closure".to_string()
                    } else {
                        format!("in {name}()")
                    };
                    trace.push(format!("{what} {}", describe(&current, *pos)));
                    if !src.is_empty() {
                        current.clone_from(src);
                    }
                }
                EvalAltResult::ErrorInModule(name, _, pos) => {
                    trace.push(format!("in module {name:?} {}", describe(&current, *pos)));
                    current = super::modules::origin(name);
                }
                _ => {}
            }
        }
        let inner = super::error::innermost(err);
        let message = message_of(inner);
        let mut d = if inner.position().is_none() {
            Self::new(file, source, err.position(), message)
        } else if current == file {
            Self::new(file, source, inner.position(), message)
        } else {
            let text = super::modules::source_of(&current).unwrap_or_default();
            Self::new(&current, &text, inner.position(), message)
        };
        d.trace = trace;
        d
    }

    /// The rendered block: `error: …`, ` --> file:line:col`, the line and a caret.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.message);
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                let _ = writeln!(out, "  --> {}:{l}:{c}", self.file);
                if let Some(src) = &self.source_line {
                    let width = l.to_string().len();
                    let pad = " ".repeat(width);
                    let _ = writeln!(out, " {pad} |");
                    let _ = writeln!(out, " {l} | {src}");
                    // Tabs keep their width under the caret.
                    let lead: String = src
                        .chars()
                        .take(c.saturating_sub(1))
                        .map(|ch| if ch == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, " {pad} | {lead}^");
                }
            }
            (Some(l), None) => {
                let _ = writeln!(out, "  --> {}:{l}", self.file);
            }
            _ => {
                let _ = writeln!(out, "  --> {}", self.file);
            }
        }
        for t in &self.trace {
            let _ = writeln!(out, "  = note: {t}");
        }
        out
    }

    /// `file:line:col: message`, for one-line listings (`drbook check`).
    pub fn one_line(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}: {}", self.file, self.message),
            _ => format!("{}: {}", self.file, self.message),
        }
    }
}

fn describe(file: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("called at {file}:{l}:{c}"),
        _ => String::new(),
    }
}

/// The error's own words, without rhai's " (line N, position M)" suffix: the position is
/// shown separately.
pub fn message_of(err: &EvalAltResult) -> String {
    match super::error::innermost(err) {
        // What ends a run carries its words.
        EvalAltResult::ErrorTerminated(value, _) => value
            .read_lock::<super::error::Stop>()
            .map_or_else(|| value.to_string(), |s| s.message.clone()),
        EvalAltResult::ErrorRuntime(value, _) => super::types::value_message(value),
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_string(),
                _ => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_has_line_column_and_caret() {
        let src = "let x = 1;\nlet y = (x + ;\n";
        let engine = rhai::Engine::new();
        let err = engine.compile(src).unwrap_err();
        let d = Diagnostic::from_parse("t.rhai", src, &err);
        assert_eq!(d.line, Some(2));
        let text = d.render();
        assert!(text.contains("--> t.rhai:2:"), "{text}");
        assert!(text.contains(" 2 | let y = (x + ;"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("| ") && l.ends_with('^')),
            "{text}"
        );
    }

    #[test]
    fn a_runtime_error_in_a_function_points_inside_it() {
        let src = "fn f(a) {\n    a.nope()\n}\nf(1);\n";
        let engine = rhai::Engine::new();
        let err = engine.run(src).unwrap_err();
        let d = Diagnostic::from_eval("t.rhai", src, &err);
        assert_eq!(d.line, Some(2), "{d:?}");
        assert!(d.message.contains("nope"), "{}", d.message);
        assert!(!d.message.contains("(line"), "{}", d.message);
        assert!(d.render().contains("note: in f()"), "{}", d.render());
    }

    #[test]
    fn an_error_inside_the_dr_library_points_into_it() {
        let src = "import \"dr\" as dr;\nlet x = dr::lag_text(\"soon\");\n";
        let mut engine = rhai::Engine::new();
        engine.set_max_expr_depths(128, 64);
        engine.set_module_resolver(super::super::modules::Resolver::new(
            std::path::Path::new("."),
            None,
        ));
        let err = engine.run(src).unwrap_err();
        let d = Diagnostic::from_eval("t.rhai", src, &err);
        assert_eq!(d.file, "stdlib/dr.rhai", "{d:?}");
        let line = d.source_line.clone().unwrap_or_default();
        assert!(line.contains("lag"), "{d:?}");
        assert!(
            d.render()
                .contains("note: in lag_text() called at t.rhai:2:"),
            "{}",
            d.render()
        );
    }

    #[test]
    fn thrown_strings_keep_their_words() {
        let src = "throw \"no such VM\";";
        let err = rhai::Engine::new().run(src).unwrap_err();
        let d = Diagnostic::from_eval("t.rhai", src, &err);
        assert_eq!(d.message, "no such VM");
        assert_eq!(d.one_line(), "t.rhai:1:1: no such VM");
    }
}
