//! drbook's integration tests: one crate, a module per feature, sharing the harness.

mod campaign;
mod ceph;
mod cli_demo;
mod cli_sim;
mod cli_sites;
mod crashes;
mod cs_interop;
mod differential;
mod dr_domain;
mod exactly_once;
mod examples;
mod glue_client;
mod harness;
mod help;
mod lost_answers;
mod mold_client;
mod repl;
mod runbooks;
mod script_run;
mod sim_api;
mod sim_pairing;
mod sim_process;
mod sim_runbooks;
mod ssh;
mod unknowns;
mod watch;
