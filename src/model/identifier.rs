//! Patient identifier systems: which texts may name the issuer of a patient's identifier.
//!
//! Receives a system text (a `barcode` or `hl7v2` device's option, a system set through the
//! admin API or the MQTT patient topic); promises the same answer for every one of them, and
//! reasons that quote only the system (never an identifier).

/// Longest identifier system accepted.
pub const MAX_SYSTEM_LEN: usize = 512;

/// Checks an identifier system: a URI naming the issuer of patient identifiers (`urn:oid:`
/// with digit arcs, `urn:`, `http://`, `https://`), printable ASCII, at most
/// [`MAX_SYSTEM_LEN`] bytes.
pub fn check_system(v: &str) -> Result<(), String> {
    let ok_chars =
        !v.is_empty() && v.len() <= MAX_SYSTEM_LEN && v.bytes().all(|b| b.is_ascii_graphic());
    let rest = ["urn:oid:", "urn:", "http://", "https://"]
        .iter()
        .find_map(|p| v.strip_prefix(p));
    match rest {
        Some(rest) if ok_chars && !rest.is_empty() => {
            if let Some(oid) = v.strip_prefix("urn:oid:") {
                let arcs_ok = oid
                    .split('.')
                    .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
                if !arcs_ok {
                    return Err(format!("`{v}` is not an OID (digits separated by dots)"));
                }
            }
            Ok(())
        }
        _ => Err(format!(
            "`{v}` is not an identifier system; expected `urn:oid:1.2.3...`, `urn:...` or `https://...`"
        )),
    }
}
