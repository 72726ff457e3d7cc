//! hl7v2 simulator (in progress)
