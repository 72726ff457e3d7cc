//! masimo simulator (in progress)
