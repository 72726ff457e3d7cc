//! barcode simulator (in progress)
