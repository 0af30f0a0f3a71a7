//! drbook's integration tests: one crate, a module per feature, sharing the harness.

mod cli_sites;
mod glue_client;
mod harness;
mod mold_client;
mod support;
