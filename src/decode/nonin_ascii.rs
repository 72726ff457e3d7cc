//! framing (in progress)
