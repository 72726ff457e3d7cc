//! masimo decoder (in progress)
