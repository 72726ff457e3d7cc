//! suntech decoder (in progress)
