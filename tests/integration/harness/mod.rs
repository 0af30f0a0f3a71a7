//! The integration tests' one harness, a concept per file:
//!
//! - `run.rs`: `Test`, the fluent runner for the `drbook` binary over a temporary directory,
//!   and `Ran`, what a run printed and how it ended;
//! - `assert.rs`: assertions on a `Ran`'s exit code and output, on other text, and against
//!   golden files under `tests/golden/` (`DRBOOK_BLESS=1` rewrites them);
//! - `sim.rs`: an in-process simulator with test timings (`start_sim_ssh`: with real SSH on
//!   its storage VMs), its clients, its ledger;
//! - `fakes.rs`: loopback stand-ins for Mold and Glue, and endpoints that misbehave;
//! - `etcd.rs`: a real three-member etcd cluster on loopback, members frozen at will.

pub mod assert;
pub mod etcd;
pub mod fakes;
pub mod run;
pub mod sim;

pub use assert::{assert_golden, has, lacks};
pub use etcd::EtcdCluster;
pub use fakes::{API_KEY, Canned, FakeMold, SECRET_KEY, refused_addr, site_toml};
pub use run::{Ran, Test};
pub use sim::{
    delivered, eventually, held, sim_credentials, sim_glue, sim_mold, sim_ssh, start_sim,
    start_sim_ssh, vm_states, written,
};
