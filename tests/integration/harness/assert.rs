//! Output assertions on a [`Ran`].

use super::fakes::{API_KEY, SECRET_KEY};
use super::run::Ran;

impl Ran {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics if any of the test credentials appears anywhere in the output.
    pub fn expect_no_secret(self) -> Self {
        for secret in [API_KEY, SECRET_KEY] {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "secret {secret} leaked\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }
}
