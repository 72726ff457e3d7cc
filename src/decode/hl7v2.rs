//! hl7v2 decoder (in progress)
