//! nonin_binary simulator (in progress)
