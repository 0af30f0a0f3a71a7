//! The runtime: Rhai scripts over drbook's DR primitives. `primitives/` defines each
//! primitive once (descriptor and registration, a file per section); `host.rs` is what each
//! call goes through (plan mode, confirmation, lock, journal, resume, report); `engine.rs`
//! builds the engine; the rest convert values, locate errors and resolve imports.

pub mod convert;
pub mod diagnostic;
pub mod engine;
pub mod error;
pub mod host;
pub mod interrupts;
pub mod journal;
pub mod lock;
pub mod lock_etcd;
pub mod modules;
pub mod primitives;
pub mod progress;
pub mod types;
pub mod vars;
