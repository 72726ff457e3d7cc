//! Offline repair of a stopped daemon's store: `vitalsd queue verify` and `vitalsd queue salvage`.
//!
//! Receives a store directory (or any [`crate::queue::Store`] in tests) while no daemon holds
//! it. Promises: `verify` only reads; `salvage` only reads the damaged store (a copy of it) and
//! writes a new one beside it. Used by the CLI only: the running daemon names none of it (a rule
//! in `tests/repository.rs`). The store's rewrite (`crate::queue::compact`) is not here: the
//! daemon runs it too, online (`reclaim`) and at start-up (sealing an unencrypted store).

pub mod salvage;
pub mod verify;
