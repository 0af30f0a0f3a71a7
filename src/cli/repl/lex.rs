//! Just enough of Rhai's lexical rules to tell, at the cursor, whether input is finished
//! (open brackets continue it on the next line), and what is being typed: a name, a string
//! literal as some call's n-th argument, or a `:command`.

/// An open bracket at the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    bracket: char,
    /// The function this `(` calls, when a name stands right before it.
    call: Option<String>,
    /// Which argument (or element) the cursor is in.
    arg: usize,
    /// The first argument, when it is a plain string literal (a site name, say).
    first: Option<String>,
}

/// What the cursor is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A name being typed (`prom`, `dr::wait`): the byte where it starts.
    Name { start: usize },
    /// Inside a string literal given to `call` as argument `arg` (an array argument counts
    /// as the argument it is), with the call's first argument when that is a literal.
    InString {
        start: usize,
        call: Option<String>,
        arg: usize,
        first: Option<String>,
    },
    /// Somewhere else (a comment, a number, a backtick string).
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Str,
    StrEscape,
    Backtick,
    Char,
    LineComment,
    BlockComment,
}

struct Scan {
    frames: Vec<Frame>,
    state: State,
    /// Where the string literal being read started (after its quote).
    str_start: usize,
    /// Set when a bracket closes that was never opened: the parser will say so.
    unbalanced: bool,
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The name (with `::` paths) that ends at byte `end` of `text`, skipping spaces before it.
fn name_before(text: &str, end: usize) -> Option<String> {
    let head = text[..end].trim_end();
    let start = head
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_name_char(*c) || *c == ':')
        .last()
        .map(|(i, _)| i)?;
    let name = head[start..].trim_start_matches(':');
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then(|| name.to_string())
}

fn scan(text: &str) -> Scan {
    let mut s = Scan {
        frames: Vec::new(),
        state: State::Code,
        str_start: 0,
        unbalanced: false,
    };
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match s.state {
            State::Code => match c {
                '"' => {
                    s.state = State::Str;
                    s.str_start = i + 1;
                }
                '`' => s.state = State::Backtick,
                '\'' => s.state = State::Char,
                '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                    s.state = State::LineComment;
                }
                '/' if chars.peek().is_some_and(|(_, n)| *n == '*') => {
                    chars.next();
                    s.state = State::BlockComment;
                }
                '(' | '[' | '{' => s.frames.push(Frame {
                    bracket: c,
                    call: if c == '(' { name_before(text, i) } else { None },
                    arg: 0,
                    first: None,
                }),
                ')' | ']' | '}' => {
                    let open = match c {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    };
                    match s.frames.last() {
                        Some(f) if f.bracket == open => {
                            s.frames.pop();
                        }
                        _ => s.unbalanced = true,
                    }
                }
                ',' => {
                    if let Some(f) = s.frames.last_mut() {
                        f.arg += 1;
                    }
                }
                _ => {}
            },
            State::Str => match c {
                '\\' => s.state = State::StrEscape,
                '"' => {
                    s.state = State::Code;
                    if let Some(f) = s.frames.last_mut()
                        && f.bracket == '('
                        && f.arg == 0
                        && f.first.is_none()
                    {
                        f.first = Some(text[s.str_start..i].to_string());
                    }
                }
                _ => {}
            },
            State::StrEscape => s.state = State::Str,
            State::Backtick => {
                if c == '`' {
                    s.state = State::Code;
                }
            }
            State::Char => {
                if c == '\'' {
                    s.state = State::Code;
                }
            }
            State::LineComment => {
                if c == '\n' {
                    s.state = State::Code;
                }
            }
            State::BlockComment => {
                if c == '*' && chars.peek().is_some_and(|(_, n)| *n == '/') {
                    chars.next();
                    s.state = State::Code;
                }
            }
        }
    }
    s
}

/// Whether `input` needs another line: an open `{`, `(` or `[`, an open backtick string or
/// block comment (see also [`unfinished`]). A stray closing bracket does not wait: the parser reports it.
pub fn incomplete(input: &str) -> bool {
    if input.trim_start().starts_with(':') {
        return false;
    }
    let s = scan(input);
    !s.unbalanced
        && (!s.frames.is_empty() || matches!(s.state, State::Backtick | State::BlockComment))
}

/// Whether `input` is an expression or statement left unfinished, as Rhai's parser sees it:
/// a trailing operator (`let x = 40 +`, `ok ||`), `let x =`. Brackets
/// and strings are [`incomplete`]'s.
pub fn unfinished(input: &str, parser: &rhai::Engine) -> bool {
    if input.trim_start().starts_with(':') || input.trim().is_empty() {
        return false;
    }
    matches!(
        parser.compile(input),
        Err(e) if matches!(*e.0, rhai::ParseErrorType::UnexpectedEOF)
    )
}

/// Whether the last line of a multi-line input is blank: the operator gave up on it.
pub fn abandoned(input: &str) -> bool {
    input.contains('\n')
        && input
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.trim().is_empty())
}

/// What the cursor at byte `pos` of `line` is in.
pub fn cursor(line: &str, pos: usize) -> Cursor {
    let head = &line[..pos];
    let s = scan(head);
    match s.state {
        State::Str => {
            // An array argument (`start_vms("site-b", ["dr-`) counts as its call's argument.
            let mut frames = s.frames.iter().rev();
            let frame = match frames.next() {
                Some(f) if f.bracket == '[' => frames.next().filter(|f| f.bracket == '('),
                Some(f) if f.bracket == '(' => Some(f),
                _ => None,
            };
            Cursor::InString {
                start: s.str_start,
                call: frame.and_then(|f| f.call.clone()),
                arg: frame.map_or(0, |f| f.arg),
                first: frame.and_then(|f| f.first.clone()),
            }
        }
        State::Code => {
            let start = head
                .char_indices()
                .rev()
                .take_while(|(_, c)| is_name_char(*c) || *c == ':')
                .last()
                .map_or(pos, |(i, _)| i);
            Cursor::Name { start }
        }
        _ => Cursor::Other,
    }
}

/// The innermost call the cursor is inside, for the signature hint.
pub fn enclosing_call(line: &str, pos: usize) -> Option<String> {
    let s = scan(&line[..pos]);
    if s.state != State::Code && s.state != State::Str {
        return None;
    }
    s.frames
        .iter()
        .rev()
        .find(|f| f.bracket == '(')
        .and_then(|f| f.call.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_expression_waits_and_a_finished_one_does_not() {
        let parser = rhai::Engine::new_raw();
        for waits in ["let x = 40 +", "let x =", "x ||", "print(1) +"] {
            assert!(unfinished(waits, &parser), "{waits}");
        }
        for done in [
            "let x = 40 + 2",
            "x",
            ":help",
            "",
            "let x = 40 + * 2",
            "fn f(a) { a }",
        ] {
            assert!(!unfinished(done, &parser), "{done}");
        }
        assert!(abandoned("let x = 40 +\n"));
        assert!(abandoned("for v in a {\n  \n"));
        assert!(!abandoned("let x = 40 +\n2"));
        assert!(!abandoned("x"));
    }

    #[test]
    fn open_brackets_continue_the_input() {
        assert!(incomplete("for vm in vms(\"site-a\") {"));
        assert!(incomplete("let xs = ["));
        assert!(incomplete("print(`a\nb"));
        assert!(!incomplete("for vm in vms(\"site-a\") { print(vm) }"));
        // Brackets in strings and comments do not count.
        assert!(!incomplete("print(\"{ ( [\") // {"));
        assert!(!incomplete("let c = '{';"));
        // A stray closer is the parser's to report, not a reason to wait.
        assert!(!incomplete("print(1))"));
        assert!(!incomplete(":help {"));
    }

    #[test]
    fn a_string_argument_knows_its_call_and_position() {
        let line = "vm(\"site-b\", \"dr-c";
        assert_eq!(
            cursor(line, line.len()),
            Cursor::InString {
                start: 14,
                call: Some("vm".into()),
                arg: 1,
                first: Some("site-b".into())
            }
        );
        let line = "start_vms(\"site-b\", [\"a\", \"dr-";
        match cursor(line, line.len()) {
            Cursor::InString { call, arg, .. } => {
                assert_eq!(call.as_deref(), Some("start_vms"));
                assert_eq!(arg, 1);
            }
            other => panic!("{other:?}"),
        }
        let line = "promote(\"D";
        assert!(matches!(
            cursor(line, line.len()),
            Cursor::InString {
                start: 9,
                arg: 0,
                ..
            }
        ));
    }

    #[test]
    fn names_and_calls() {
        assert_eq!(cursor("let s = mirror_st", 17), Cursor::Name { start: 8 });
        assert_eq!(cursor("dr::wai", 7), Cursor::Name { start: 0 });
        assert_eq!(enclosing_call("promote(", 8).as_deref(), Some("promote"));
        assert_eq!(
            enclosing_call("vm(\"site-a\", lower(x", 20).as_deref(),
            Some("lower")
        );
        assert_eq!(enclosing_call("let x = 1", 9), None);
        assert_eq!(cursor("// a comment", 12), Cursor::Other);
    }
}
