//! ieee11073 decoder (in progress)
