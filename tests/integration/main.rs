//! drbook's integration tests: one test crate, one module per feature.

mod glue_client;
mod support;
