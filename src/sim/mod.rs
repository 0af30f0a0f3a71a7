//! `drbook sim`'s model of two ABLESTACK sites (see `shared/design/simulator.md`): pure,
//! synchronous state that the simulated Mold and Glue APIs serve. Production code never
//! imports it.
//!
//! [`ledger`] counts writes and the data mirroring moves.

pub mod ledger;
