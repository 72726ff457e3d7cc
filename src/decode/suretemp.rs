//! suretemp decoder (in progress)
