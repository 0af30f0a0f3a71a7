//! Output assertions: on a [`Ran`]'s exit code and streams, and on any other text (an error's
//! words). Each failure shows what was looked for and the whole text it was looked in, each
//! between delimiters, so a failed check reads without re-running the test.

use super::fakes::{API_KEY, SECRET_KEY};
use super::run::Ran;

impl Ran {
    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics if any of the test credentials appears anywhere in the output.
    #[track_caller]
    pub fn expect_no_secret(self) -> Self {
        for secret in [API_KEY, SECRET_KEY] {
            self.stdout_lacks(secret).stderr_lacks(secret);
        }
        self
    }

    /// Panics unless stdout contains `needle`, showing the needle and both streams.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        self.check(Stream::Stdout, true, needle)
    }

    /// Panics if stdout contains `needle`, showing the needle and both streams.
    #[track_caller]
    pub fn stdout_lacks(&self, needle: &str) -> &Self {
        self.check(Stream::Stdout, false, needle)
    }

    /// Panics unless stderr contains `needle`, showing the needle and both streams.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        self.check(Stream::Stderr, true, needle)
    }

    /// Panics if stderr contains `needle`, showing the needle and both streams.
    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Self {
        self.check(Stream::Stderr, false, needle)
    }

    #[track_caller]
    fn check(&self, stream: Stream, want: bool, needle: &str) -> &Self {
        let (name, text, other_name, other) = match stream {
            Stream::Stdout => ("stdout", &self.stdout, "stderr", &self.stderr),
            Stream::Stderr => ("stderr", &self.stderr, "stdout", &self.stdout),
        };
        assert!(
            text.contains(needle) == want,
            "{}\n{}",
            mismatch(name, want, needle, text),
            block(&format!("{other_name}, for context"), other)
        );
        self
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Panics unless `haystack` contains `needle`, showing both.
#[track_caller]
pub fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "{}",
        mismatch("the text", true, needle, haystack)
    );
}

/// Panics if `haystack` contains `needle`, showing both.
#[track_caller]
pub fn lacks(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "{}",
        mismatch("the text", false, needle, haystack)
    );
}

/// The message of a failed `has`/`lacks`: what was looked for, and the whole text; for a
/// needle that should be absent, the lines it appears on.
fn mismatch(name: &str, want: bool, needle: &str, text: &str) -> String {
    let verdict = if want {
        format!("{name} does not contain the expected text")
    } else {
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(n, _)| (n + 1).to_string())
            .collect();
        let at = if lines.is_empty() {
            String::new()
        } else {
            format!(" (line {})", lines.join(", "))
        };
        format!("{name} contains text it must not{at}")
    };
    let wanted = if want { "expected" } else { "unwanted" };
    format!(
        "{verdict}\n{}\n{}",
        block(wanted, needle),
        block(name, text)
    )
}

/// `text` between a `----- label -----` line and a `----- end label -----` line.
fn block(label: &str, text: &str) -> String {
    let newline = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    format!("----- {label} -----\n{text}{newline}----- end {label} -----")
}

/// Compares `actual` with the checked-in golden file `tests/golden/<path>` and, when they
/// differ, panics with a line diff (`-` the golden file, `+` this run) and the command that
/// blesses it.
///
/// With `DRBOOK_BLESS=1` in the environment it writes `actual` to the golden file instead
/// (creating its directory) and passes: a deliberate change of output is
/// `DRBOOK_BLESS=1 cargo test --test integration <test>`, then a review of
/// `git diff tests/golden`. A golden file that does not exist fails the same way until blessed.
#[track_caller]
pub fn assert_golden(path: &str, actual: &str) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(path);
    if std::env::var_os("DRBOOK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        return;
    }
    // libtest names a test's thread after the test.
    let this_test = std::thread::current()
        .name()
        .filter(|n| n.contains("::"))
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    let bless = format!(
        "if the new text is right: DRBOOK_BLESS=1 cargo test --test integration{this_test}, then \
         review git diff tests/golden/{path}"
    );
    let expected = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => panic!(
            "no golden file tests/golden/{path} ({e})\n{}\n{bless}",
            block("this run", actual)
        ),
    };
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .header(&format!("tests/golden/{path}"), "this run")
            .to_string();
        panic!(
            "output differs from tests/golden/{path}\n{}\n{bless}",
            block("diff", &diff)
        );
    }
}
