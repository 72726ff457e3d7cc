//! The audit trail's value types, under the path the patient context has always used: they
//! live in the model (`crate::model::audit`), shared with the store and the audit files.

pub use crate::model::audit::*;
