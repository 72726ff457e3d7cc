//! barcode decoder (in progress)
