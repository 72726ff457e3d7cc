//! simulate (in progress)
