//! drbook's integration tests: one crate, a module per feature, sharing the harness.

mod cli_sites;
mod harness;
mod mold_client;
