//! Writing results to stdout without dying when the reader went away (`drbook … | head -1`):
//! `println!` panics on a closed pipe; these drop the output instead.

use std::io::Write as _;

/// Writes `text` and a newline to stdout; a closed stdout is not an error worth a crash.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Writes `text` as it is.
pub fn text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes `text` and a newline to stderr, dropping it if stderr is gone: a log line must
/// never take the run down.
pub fn eline(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.write_all(b"\n");
}
