//! drbook: disaster-recovery runbooks for ABLESTACK HCI, scripted in Rhai.
//!
//! The layers, top to bottom (a layer only calls downward; see `src/README.md`):
//! command line ([`cli`]) → the watcher ([`watch`]) → the Rhai runtime ([`script`]) → DR
//! primitives with their guards ([`dr`]) → configuration ([`config`]) → API clients
//! ([`mold`], [`glue`], [`ssh`], [`etcd`]) → shared HTTP plumbing ([`http`]). Beside them: the
//! simulator of two sites ([`sim`], which imports none of the layers above the clients), and
//! leaf helpers every layer may use ([`duration`], [`secret`], [`suggest`], [`sync`], [`term`],
//! [`paths`]).

pub mod cli;
pub mod config;
pub mod dr;
pub mod duration;
pub mod error;
pub mod etcd;
pub mod fence;
pub mod glue;
pub mod http;
pub mod mold;
pub mod paths;
pub mod report;
pub mod script;
pub mod secret;
pub mod sim;
pub mod ssh;
pub mod suggest;
pub mod sync;
pub mod term;
pub mod watch;

pub use error::Error;
