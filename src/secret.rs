//! A credential that never prints.
//!
//! API keys, secret keys and SSH private keys live in [`Secret`]. Its `Debug` and `Display`
//! print `***`, so a secret cannot leak through a log line, an error or a report by accident;
//! the one way to read it is [`Secret::expose`], which the signing and transport code call.

use std::fmt;

/// A string that must never reach output, logs, journals or reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's value, for signing and sending. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `text` holds this secret (for keeping typed lines that do out of the REPL's
    /// history file). An empty secret appears nowhere.
    pub fn appears_in(&self, text: &str) -> bool {
        !self.0.is_empty() && text.contains(self.0.as_str())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
        assert!(s.appears_in("key = \"hunter2\""));
        assert!(!s.appears_in("hunter"));
        assert!(!Secret::new("").appears_in("anything"));
    }
}
