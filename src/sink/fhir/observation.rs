//! Reading → FHIR R4 Observation (docs/fhir.md), and readings → transaction
//! Bundle. Pure functions: no I/O, no clock, no randomness.
//!
//! Receives canonical readings; promises (docs/fhir.md):
//! - The Observation follows the R4 vital-signs profile: `status` final, category
//!   `vital-signs`, LOINC + MDC codings, UCUM quantities with the device's precision,
//!   `effectiveDateTime` = `observed_at` with its offset.
//! - A blood-pressure reading is a panel (85354-9 / 150020) with one component per value and no
//!   value of its own; it always carries exactly one systolic and one diastolic component (a
//!   missing one is added with a `dataAbsentReason`). Every absent value has a
//!   `dataAbsentReason`.
//! - The reading id is the business identifier (`urn:ietf:rfc:3986`, `urn:uuid:<id>`) that
//!   makes retries idempotent through conditional create. A Bundle entry's `fullUrl` is a
//!   different UUID derived from the id ([`entry_full_url`]), never equal to the identifier, so
//!   a server that rewrites `urn:uuid:` references inside a transaction leaves it alone.
//! - Every flag reaches FHIR: one `note` lists them all in words; where a standard
//!   v3-ObservationInterpretation code fits it is set too (`out_of_range:<name>` → `H`/`L` when
//!   the side is known, else `A`, on the matching component; `map_outside_range` → `A` on the
//!   mean pressure).
//! - A reading released from quarantine (a `rejected:<reason>` flag) is `preliminary`, carries
//!   interpretation `A` and a note that it failed a hard plausibility limit and was released
//!   after review.

use std::borrow::Cow;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::json;
use super::model::{
    Bundle, BundleEntry, BundleRequest, CodeableConcept, Coding, Component, Identifier, Meta,
    Observation, Profile, Quantity, Reference,
};
use super::table::{self, LOINC, MDC, SNOMED};
use crate::reading::{AbsentReason, Kind, Reading, ReadingId, Value};

mod flags;

use flags::apply_flags;
pub use flags::flag_text;

/// System of the reading-id business identifier.
pub const IDENTIFIER_SYSTEM: &str = "urn:ietf:rfc:3986";
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
pub const ABSENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
pub const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// System of the room identifier when the subject is a Location (`patient.mode = "location"`).
pub const ROOM_SYSTEM: &str = "urn:vitalsd:room";
/// System of the configured device id.
pub const DEVICE_SYSTEM: &str = "urn:vitalsd:device";
/// The note for a reading whose device clock was not trusted.
pub const CLOCK_NOTE: &str = "device clock not trusted; time of receipt used";
/// The start of the note on a reading released from quarantine.
pub const REJECTED_NOTE: &str = "failed a hard plausibility limit";
/// The start of the note listing every flag of a reading.
pub const FLAGS_NOTE: &str = "vitalsd flags";

/// The Observation for one reading.
pub fn observation(reading: &Reading) -> Observation<'_> {
    let kind = reading.kind;
    let mut obs = Observation {
        resource_type: "Observation",
        identifier: reading
            .id
            .map(|id| Identifier {
                system: Cow::Borrowed(IDENTIFIER_SYSTEM),
                value: Cow::Owned(urn_uuid(id.uuid())),
            })
            .into_iter()
            .collect(),
        meta: table::profile(kind).map(|p| Meta {
            profile: [Profile(p)],
        }),
        status: if reading.rejection().is_some() {
            "preliminary"
        } else {
            "final"
        },
        category: vec![category(kind)],
        code: CodeableConcept {
            coding: Vec::new(),
            text: None,
        },
        subject: subject(reading),
        effective_date_time: date_time(reading.observed_at),
        value_quantity: None,
        data_absent_reason: None,
        interpretation: Vec::new(),
        note: Vec::new(),
        body_site: None,
        device: Reference {
            reference: None,
            type_: None,
            identifier: Some(Identifier {
                system: Cow::Borrowed(DEVICE_SYSTEM),
                value: Cow::Borrowed(reading.device.id.as_str()),
            }),
            display: reading.device.model.as_deref(),
        },
        component: Vec::new(),
    };

    if let Some(panel) = table::panel(kind) {
        obs.code.coding = codings(panel.loinc.into_iter(), Some(panel.mdc));
        obs.component = reading.values.iter().map(|v| component(kind, v)).collect();
        if obs.component.is_empty() {
            // vs-2: no component and no value needs a reason.
            obs.data_absent_reason = Some(absent(AbsentReason::Unknown));
        }
        if kind == Kind::BloodPressure {
            complete_bp_panel(&mut obs);
        }
    } else {
        single_value(reading, &mut obs);
    }
    if let Some(w) = &reading.waveform {
        // An ECG strip: one component per lead before the derived values.
        super::ecg::add_leads(w, &mut obs);
    }
    apply_flags(reading, &mut obs);
    obs
}

/// The transaction Bundle for a batch: one POST per reading with
/// `ifNoneExist` on its business identifier and the `fullUrl` of [`entry_full_url`].
pub fn transaction_bundle(readings: &[Reading]) -> Bundle<'_> {
    Bundle {
        resource_type: "Bundle",
        type_: "transaction",
        entry: readings.iter().map(bundle_entry).collect(),
    }
}

/// Appends the JSON of [`transaction_bundle`]`(readings)` to `out`, entry by entry, without
/// holding the whole Bundle: the same bytes as `serde_json::to_vec(&transaction_bundle(..))`.
pub fn write_transaction_bundle(readings: &[Reading], out: &mut Vec<u8>) {
    json::bundle_start(out, "Bundle", "transaction");
    for (i, r) in readings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        bundle_entry(r).write_json(out);
    }
    json::bundle_end(out);
}

fn bundle_entry(r: &Reading) -> BundleEntry<'_> {
    let resource = observation(r);
    // The query names the identifier the Observation carries (`urn:uuid:<id>`).
    let if_none_exist = r.id.and(resource.identifier.first()).map(|i| {
        let mut q = String::with_capacity(IF_NONE_EXIST_PREFIX.len() + i.value.len());
        q.push_str(IF_NONE_EXIST_PREFIX);
        q.push_str(&i.value);
        q
    });
    BundleEntry {
        full_url: r.id.map(entry_full_url),
        resource,
        request: BundleRequest {
            method: "POST",
            url: "Observation",
            if_none_exist,
        },
    }
}

/// `ifNoneExist` before the identifier's value.
const IF_NONE_EXIST_PREFIX: &str = "identifier=urn:ietf:rfc:3986|";
/// `urn:uuid:` + the UUID, hyphenated, lower case.
fn urn_uuid(u: uuid::Uuid) -> String {
    let mut s = String::with_capacity(9 + uuid::fmt::Hyphenated::LENGTH);
    s.push_str("urn:uuid:");
    s.push_str(
        u.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    s
}

/// The `fullUrl` of a reading's Bundle entry: `urn:uuid:` + a UUID derived from the reading id
/// (every byte XORed with a fixed mask, then marked as a version-8 UUID). The same reading
/// always gets the same `fullUrl`, and it never equals the identifier value `urn:uuid:<id>`:
/// servers that resolve `urn:uuid:` references in a transaction replace every string equal to
/// a `fullUrl` (identifiers included), which would make `ifNoneExist` miss on every resend.
pub fn entry_full_url(id: ReadingId) -> String {
    const MASK: [u8; 16] = *b"vitalsd-fullUrl!";
    let mut b = id.to_bytes();
    for (x, m) in b.iter_mut().zip(MASK) {
        *x ^= m;
    }
    let mut u = uuid::Builder::from_custom_bytes(b).into_uuid();
    if u == id.uuid() {
        // Only possible if the id itself were crafted this way; flip one non-version bit.
        let mut raw = *u.as_bytes();
        raw[15] ^= 1;
        u = uuid::Uuid::from_bytes(raw);
    }
    urn_uuid(u)
}

/// LOINC and MDC codes of the two components the R4 `bp` profile requires exactly once.
const BP_REQUIRED: [(&str, &str, u32); 2] = [
    ("systolic", "8480-6", 150_021),
    ("diastolic", "8462-4", 150_022),
];

/// Adds a systolic or diastolic component the device did not send, as `dataAbsentReason`
/// unknown, so the panel still meets the `bp` profile (one of each).
fn complete_bp_panel(obs: &mut Observation) {
    for (i, (_, loinc, mdc)) in BP_REQUIRED.into_iter().enumerate() {
        let present = obs
            .component
            .iter()
            .any(|c| c.code.coding.iter().any(|k| k.code == loinc));
        if !present {
            let c = Component {
                code: CodeableConcept {
                    coding: codings(std::iter::once(loinc), Some(mdc)),
                    text: None,
                },
                value_quantity: None,
                value_sampled_data: None,
                data_absent_reason: Some(absent(AbsentReason::Unknown)),
                interpretation: Vec::new(),
            };
            let at = i.min(obs.component.len());
            obs.component.insert(at, c);
        }
    }
    if obs.component.iter().any(|c| c.value_quantity.is_some()) {
        obs.data_absent_reason = None;
    }
}

/// A one-value kind: codes from the value (plus the kind's extra LOINC and the temperature
/// site), the value as `valueQuantity`. Values after the first (unusual) go in components so
/// nothing the device measured is dropped.
fn single_value<'a>(reading: &'a Reading, obs: &mut Observation<'a>) {
    let kind = reading.kind;
    let Some(first) = reading.values.first() else {
        obs.code.coding = codings(table::leading_loinc(kind), None);
        obs.data_absent_reason = Some(absent(AbsentReason::Unknown));
        return;
    };
    let site = first.site.as_deref().and_then(table::site);
    let mut loinc: Vec<&'a str> = table::leading_loinc(kind).collect();
    loinc.extend(value_loinc(first));
    loinc.extend(site.and_then(|s| s.loinc).map(|(code, _)| code));
    // A known site's MDC code replaces the generic one.
    let mdc = site.and_then(|s| s.mdc).map(|m| m.code).or(first.mdc);
    obs.code.coding = codings(loinc.into_iter(), mdc);
    if let Some((code, display)) = site.and_then(|s| s.loinc) {
        for c in obs.code.coding.iter_mut().filter(|c| c.code == code) {
            c.display.get_or_insert(display);
        }
    }
    match first.value {
        Some(_) => obs.value_quantity = quantity(kind, first),
        None => {
            obs.data_absent_reason = Some(absent(first.absent.unwrap_or(AbsentReason::Unknown)));
        }
    }
    obs.body_site = site
        .and_then(|s| s.body_site)
        .map(|(code, display)| CodeableConcept::of(Coding::new(SNOMED, code, Some(display))));
    obs.component = reading.values[1..]
        .iter()
        .map(|v| component(kind, v))
        .collect();
}

/// The value's own code when it is a LOINC code (ECG leads carry an MDC code there).
fn value_loinc(v: &Value) -> Option<&str> {
    Some(v.code.as_str()).filter(|c| table::is_loinc(c))
}

/// LOINC codings (deduplicated, in order) then the MDC coding.
fn codings<'a>(loinc: impl Iterator<Item = &'a str>, mdc: Option<u32>) -> Vec<Coding<'a>> {
    let mut out: Vec<Coding<'a>> = Vec::with_capacity(3);
    for code in loinc {
        if !code.is_empty() && !out.iter().any(|c| c.code == code) {
            out.push(Coding::new(LOINC, code, table::loinc_display(code)));
        }
    }
    if let Some(m) = mdc {
        out.push(Coding::new(MDC, m.to_string(), table::mdc_display(m)));
    }
    out
}

fn component(kind: Kind, v: &Value) -> Component<'_> {
    let value_quantity = quantity(kind, v);
    Component {
        code: CodeableConcept {
            coding: codings(
                value_loinc(v).into_iter(),
                v.mdc.or_else(|| v.code.parse().ok()),
            ),
            text: None,
        },
        data_absent_reason: match value_quantity {
            Some(_) => None,
            None => Some(absent(v.absent.unwrap_or(AbsentReason::Unknown))),
        },
        value_quantity,
        value_sampled_data: None,
        interpretation: Vec::new(),
    }
}

fn quantity(kind: Kind, v: &Value) -> Option<Quantity<'_>> {
    v.value.map(|value| Quantity {
        value,
        unit: table::unit_display(kind, &v.name, v.unit.as_str()),
        system: UCUM_SYSTEM,
        code: v.unit.as_str(),
    })
}

fn absent(reason: AbsentReason) -> CodeableConcept<'static> {
    let display = match reason {
        AbsentReason::Unknown => "Unknown",
        AbsentReason::Error => "Error",
        AbsentReason::NotANumber => "Not a Number (NaN)",
        AbsentReason::PositiveInfinity => "Positive Infinity (PINF)",
        AbsentReason::NegativeInfinity => "Negative Infinity (NINF)",
    };
    CodeableConcept::of(Coding::new(ABSENT_SYSTEM, reason.as_str(), Some(display)))
}

fn category(kind: Kind) -> CodeableConcept<'static> {
    let (code, display) = table::category(kind);
    CodeableConcept::of(Coding::new(CATEGORY_SYSTEM, code, Some(display)))
}

/// The patient by identifier — plus `Patient/<id>` when a lookup confirmed it with the record
/// system (docs/patient-lookup.md) — else (location mode) the room as a Location; else none.
fn subject(reading: &Reading) -> Option<Reference<'_>> {
    if let Some(p) = &reading.patient {
        return Some(Reference {
            reference: reading
                .patient_record
                .as_ref()
                .map(|r| format!("Patient/{}", r.id)),
            type_: Some("Patient"),
            identifier: Some(Identifier {
                system: Cow::Borrowed(p.system.as_str()),
                value: Cow::Borrowed(p.id.as_str()),
            }),
            display: None,
        });
    }
    reading.room.as_ref().map(|room| Reference {
        reference: None,
        type_: Some("Location"),
        identifier: Some(Identifier {
            system: Cow::Borrowed(ROOM_SYSTEM),
            value: Cow::Borrowed(room.as_str()),
        }),
        display: Some(room.as_str()),
    })
}

/// RFC 3339 with the reading's own offset (full seconds, vs-1). An offset with seconds (which
/// RFC 3339 cannot express) falls back to UTC.
fn date_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .or_else(|_| t.to_offset(UtcOffset::UTC).format(&Rfc3339))
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
#[path = "observation_lookup_tests.rs"]
mod lookup_tests;
