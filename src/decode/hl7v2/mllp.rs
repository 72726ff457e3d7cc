//! MLLP framing lives in the net layer ([`crate::net::hl7::mllp`]); re-exported for the decoder.

pub(super) use crate::net::hl7::mllp::unframe;
