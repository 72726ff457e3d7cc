//! lines decoder (in progress)
