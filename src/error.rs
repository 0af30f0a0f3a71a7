//! `drbook::Error`: every layer's error, joined, with the exit code each one means.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::dr::DrError;
use crate::mold::MoldError;

/// Anything that ends a drbook command early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Mold(#[from] MoldError),
    #[error(transparent)]
    Dr(#[from] DrError),
    /// The command line itself is wrong (beyond what clap checks).
    #[error("{0}")]
    Usage(String),
    /// The command ran and found problems it has already shown; the text summarises them.
    #[error("{0}")]
    Failed(String),
}

/// drbook's exit codes, shared by every subcommand.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A runbook failed, or a check found a problem.
    pub const FAILURE: u8 = 1;
    /// Usage, configuration or parse error: nothing was done.
    pub const USAGE: u8 = 2;
    /// A confirmation was refused (or could not be asked).
    pub const REFUSED: u8 = 3;
    /// Interrupted (Ctrl-C, SIGINT).
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM (128 + 15).
    pub const TERMINATED: u8 = 143;
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Config(_) | Self::Usage(_) => exit::USAGE,
            Self::Mold(_) | Self::Dr(_) | Self::Failed(_) => exit::FAILURE,
        })
    }
}
