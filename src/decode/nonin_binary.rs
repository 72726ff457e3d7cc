//! nonin_binary decoder (in progress)
