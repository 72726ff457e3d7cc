//! The device pipeline moved into the Ingest seam ([`crate::ingest`], docs/ingest.md); these
//! re-exports keep the old paths working.

pub use crate::ingest::{
    init_local_zone, local_zone, DevicePipeline, IngestError, IngestOutcome, PatientLink,
};
