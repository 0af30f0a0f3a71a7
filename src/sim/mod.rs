//! `drbook sim`'s model of two ABLESTACK sites (see `shared/design/simulator.md`): pure,
//! synchronous state that the simulated Mold and Glue APIs serve. Production code never
//! imports it.
//!
//! [`rbd`] is the storage: RBD images on both sites with Ceph's snapshot-based mirroring;
//! [`ledger`] counts writes and the data mirroring moves.

pub mod ledger;
pub mod rbd;
