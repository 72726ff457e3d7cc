//! ORU^R01 → device messages (docs/hl7-inbound.md#message-structure): OBX rows mapped to kinds, components and
//! UCUM units through the code table, grouped per kind; PID-3 → patient.

use crate::decode::lines::NUMERIC_KINDS;
use crate::decode::{DeviceMessage, DeviceTime, DeviceValue, Measured};
use crate::model::{codes, hl7, units};
use crate::net::hl7::er7::{as_text, clip, dtm, field, Delimiters, Er7};
use crate::net::hl7::mllp::unframe;
use crate::net::hl7::{Hl7Error, MshFields, MAX_MESSAGE};
use crate::reading::{AbsentReason, Decimal, Flag, Kind, PatientRef};

/// What an ORU^R01 carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Oru {
    /// MSH-10: the message control id, echoed in the ACK's MSA-2.
    pub control_id: String,
    /// MSH-3 … MSH-6 and MSH-11/12 as sent (still escaped), for the ACK's header.
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub processing_id: String,
    pub version: String,
    /// PID-3: the `MR` identifier, else the first. `system` is the assigning authority
    /// (`urn:oid:…` for an ISO universal id, the URI, else the namespace id) and empty when
    /// PID-3 names none: the source should then use the device's configured system.
    pub patient: Option<PatientRef>,
    /// One message per kind, OBR, time and equipment.
    pub messages: Vec<DeviceMessage>,
    /// OBX rows not forwarded (status, value type, unknown code).
    pub skipped: usize,
}

impl<'a> From<&'a Oru> for MshFields<'a> {
    fn from(oru: &'a Oru) -> Self {
        MshFields {
            sending_application: &oru.sending_application,
            sending_facility: &oru.sending_facility,
            receiving_application: &oru.receiving_application,
            receiving_facility: &oru.receiving_facility,
            processing_id: &oru.processing_id,
            version: &oru.version,
        }
    }
}

/// Parses one ORU^R01 (MLLP framing optional). See the module docs.
pub fn parse_oru(msg: &[u8]) -> Result<Oru, Hl7Error> {
    let msg = unframe(msg);
    if msg.len() > MAX_MESSAGE {
        return Err(Hl7Error::TooLarge(MAX_MESSAGE));
    }
    let text = as_text(msg);
    let er7 = Er7::parse(&text)?;
    let (d, msh) = (er7.d, er7.msh());
    let msh9 = field(msh, 9);
    if msh9.is_empty() {
        return Err(Hl7Error::MissingField("MSH-9"));
    }
    if d.comp(msh9, 1) != "ORU" || d.comp(msh9, 2) != "R01" {
        return Err(Hl7Error::UnsupportedType(clip(msh9)));
    }
    let version = field(msh, 12);
    if version.is_empty() {
        return Err(Hl7Error::MissingField("MSH-12"));
    }
    if !d.comp(version, 1).starts_with("2.") {
        return Err(Hl7Error::UnsupportedVersion(clip(version)));
    }
    let control_id = d.unescape(field(msh, 10)).trim().to_string();
    if control_id.is_empty() {
        return Err(Hl7Error::MissingField("MSH-10"));
    }
    let mut groups: Vec<(GroupKey, DeviceMessage)> = Vec::new();
    let (mut skipped, mut obr, mut obr_time, mut n) = (0, 0usize, None, 0usize);
    for seg in &er7.segments {
        match field(seg, 0) {
            "OBR" => {
                obr += 1;
                obr_time = dtm(d.comp(field(seg, 7), 1))
                    .map_err(|r| Hl7Error::bad(format!("OBR[{obr}]-7"), r))?;
            }
            "OBX" => {
                n += 1;
                match observation(d, seg, n, obr_time)? {
                    Some(o) => add(&mut groups, (obr, o)),
                    None => skipped += 1,
                }
            }
            _ => {}
        }
    }
    let patient = er7
        .segments
        .iter()
        .find(|s| field(s, 0) == "PID")
        .and_then(|pid| patient(d, field(pid, 3)));
    Ok(Oru {
        control_id,
        sending_application: field(msh, 3).to_string(),
        sending_facility: field(msh, 4).to_string(),
        receiving_application: field(msh, 5).to_string(),
        receiving_facility: field(msh, 6).to_string(),
        processing_id: field(msh, 11).to_string(),
        version: version.to_string(),
        patient,
        messages: groups.into_iter().map(|(_, m)| m).collect(),
        skipped,
    })
}

type GroupKey = (usize, Kind, Option<DeviceTime>, Option<String>);

/// One forwarded OBX row.
struct Obs {
    kind: Kind,
    value: DeviceValue,
    time: Option<DeviceTime>,
    serial: Option<String>,
    model: Option<String>,
    corrected: bool,
}

/// Adds a row to the latest group with its key, or starts a group when there is none or the
/// component is already in it (a second SpO2 of the same spot check).
fn add(groups: &mut Vec<(GroupKey, DeviceMessage)>, (obr, o): (usize, Obs)) {
    let key = (obr, o.kind, o.time, o.serial.clone());
    let target = groups
        .iter_mut()
        .rev()
        .find(|(k, _)| *k == key)
        .filter(|(_, m)| m.values.iter().all(|v| v.name != o.value.name));
    let m = match target {
        Some((_, m)) => m,
        None => {
            let mut m = DeviceMessage::new(o.kind, Vec::new());
            m.device_time = o.time;
            m.serial = o.serial;
            m.model = o.model;
            groups.push((key, m));
            match groups.last_mut() {
                Some((_, m)) => m,
                None => return,
            }
        }
    };
    if o.corrected && !m.flags.contains(&Flag::device("corrected")) {
        m.flags.push(Flag::device("corrected"));
    }
    m.values.push(o.value);
}

/// Reads OBX number `n`; `None` when the row is not forwarded.
fn observation(
    d: Delimiters,
    seg: &[&str],
    n: usize,
    obr_time: Option<DeviceTime>,
) -> Result<Option<Obs>, Hl7Error> {
    let at = |f: usize| format!("OBX[{n}]-{f}");
    let status = d.text(field(seg, 11), 1);
    if d.text(field(seg, 2), 1) != "NM" || !matches!(status.as_str(), "F" | "C" | "R") {
        return Ok(None);
    }
    let Some(id) = identify(d, field(seg, 3)) else {
        return Ok(None);
    };
    let raw = d.unescape(field(seg, 5).split(d.repetition).next().unwrap_or(""));
    let raw = raw.trim();
    let value = if raw.is_empty() {
        Measured::Absent(AbsentReason::Unknown)
    } else {
        Measured::Value(
            raw.parse::<Decimal>()
                .map_err(|_| Hl7Error::bad(at(5), "NM value is not a number"))?,
        )
    };
    let unit = unit(d, field(seg, 6), id.comp).map_err(|r| Hl7Error::bad(at(6), r))?;
    let time = match dtm(d.comp(field(seg, 14), 1)).map_err(|r| Hl7Error::bad(at(14), r))? {
        Some(t) => Some(t),
        None => obr_time,
    };
    let eq = field(seg, 18);
    let serial = [d.text(eq, 1), d.text(eq, 3)]
        .into_iter()
        .find(|s| !s.is_empty());
    let model = Some(d.text(eq, 2)).filter(|s| !s.is_empty());
    let mut value = DeviceValue::new(id.comp.name, value, &unit);
    value.site = id.site.map(str::to_string);
    value.mdc = id.mdc.filter(|&c| codes::mdc_allowed(id.kind, id.comp, c));
    Ok(Some(Obs {
        kind: id.kind,
        value,
        time,
        serial,
        model,
        corrected: status == "C",
    }))
}

/// What an OBX-3 code stands for.
#[derive(Debug, Clone, Copy)]
struct Ident {
    kind: Kind,
    comp: &'static codes::ComponentCodes,
    site: Option<&'static str>,
    mdc: Option<u32>,
}

/// Site names whose MDC / LOINC codes identify a temperature.
const SITE_NAMES: [&str; 14] = [
    "oral",
    "axillary",
    "rectal",
    "tympanic",
    "ear",
    "gi_tract",
    "core",
    "skin",
    "bladder",
    "oesophageal",
    "blood",
    "finger",
    "toe",
    "body",
];

/// NIBP reported as cuff pressure (MDC_PRESS_CUFF_SYS/DIA/MEAN) maps like 15002x (docs/hl7-inbound.md#ihe-pcd-01-conventions).
const CUFF: [(u32, &str); 3] = [
    (150_301, "systolic"),
    (150_302, "diastolic"),
    (150_303, "mean"),
];

fn identify(d: Delimiters, f: &str) -> Option<Ident> {
    [(1, 3), (4, 6)].into_iter().find_map(|(c, s)| {
        let code = d.text(f, c);
        let system = d.text(f, s).to_ascii_uppercase();
        match system.as_str() {
            "LN" | "LOINC" | "HTTP://LOINC.ORG" => by_loinc(&code),
            "MDC" | "ISO11073" | "URN:ISO:STD:ISO:11073:10101" | "" => {
                code.parse().ok().and_then(by_mdc)
            }
            _ => None,
        }
    })
}

fn ident(kind: Kind, comp: &'static codes::ComponentCodes) -> Ident {
    Ident {
        kind,
        comp,
        site: None,
        mdc: None,
    }
}

fn by_mdc(code: u32) -> Option<Ident> {
    for kind in NUMERIC_KINDS {
        let kc = codes::kind_codes(kind);
        if let Some(c) = kc.components.iter().find(|c| c.mdc.code == code) {
            return Some(Ident {
                mdc: Some(code),
                ..ident(kind, c)
            });
        }
        if let ([c], true) = (
            kc.components,
            kc.mdc_variants.iter().any(|m| m.code == code),
        ) {
            return Some(Ident {
                mdc: Some(code),
                ..ident(kind, c)
            });
        }
    }
    let temp = codes::component(Kind::BodyTemperature, "temperature")?;
    if let Some(s) = SITE_NAMES
        .iter()
        .filter_map(|n| codes::site(n))
        .find(|s| s.mdc.is_some_and(|m| m.code == code))
    {
        return Some(Ident {
            site: Some(s.name),
            mdc: Some(code),
            ..ident(Kind::BodyTemperature, temp)
        });
    }
    let (_, name) = CUFF.iter().find(|(c, _)| *c == code)?;
    codes::component(Kind::BloodPressure, name).map(|c| ident(Kind::BloodPressure, c))
}

fn by_loinc(code: &str) -> Option<Ident> {
    for kind in NUMERIC_KINDS {
        let kc = codes::kind_codes(kind);
        if let Some(c) = kc.components.iter().find(|c| c.loinc == Some(code)) {
            return Some(ident(kind, c));
        }
        if let ([c], true) = (
            kc.components,
            kc.extra_loinc.iter().any(|(l, _)| *l == code),
        ) {
            return Some(ident(kind, c));
        }
    }
    let temp = codes::component(Kind::BodyTemperature, "temperature")?;
    SITE_NAMES
        .iter()
        .filter_map(|n| codes::site(n))
        .find(|s| s.loinc.is_some_and(|(l, _)| l == code))
        .map(|s| Ident {
            site: Some(s.name),
            ..ident(Kind::BodyTemperature, temp)
        })
}

/// UCUM units that have an MDC unit code (docs/fhir-codes.md#mdc-unit-codes), for mapping OBX-6 back.
const UCUM_WITH_MDC: [&str; 18] = [
    "%", "/min", "mm[Hg]", "kPa", "Cel", "[degF]", "kg", "g", "[lb_av]", "cm", "m", "[in_i]",
    "kg/m2", "ms", "mV", "uV", "Hz", "1",
];

/// Common non-UCUM spellings seen in OBX-6.
const UNIT_ALIASES: [(&str, &str); 8] = [
    ("mmHg", "mm[Hg]"),
    ("bpm", "/min"),
    ("degC", "Cel"),
    ("°C", "Cel"),
    ("degF", "[degF]"),
    ("°F", "[degF]"),
    ("lb", "[lb_av]"),
    ("in", "[in_i]"),
];

/// OBX-6 → the UCUM unit, which must convert to the component's canonical unit. An empty
/// OBX-6 is the canonical unit.
fn unit(d: Delimiters, f: &str, comp: &codes::ComponentCodes) -> Result<String, String> {
    if f.trim().is_empty() {
        return Ok(comp.ucum.to_string());
    }
    let mut seen = None;
    for (c, s) in [(1, 3), (4, 6)] {
        let code = d.text(f, c);
        let system = d.text(f, s).to_ascii_uppercase();
        let ucum = match system.as_str() {
            _ if code.is_empty() => None,
            "UCUM" | "HTTP://UNITSOFMEASURE.ORG" => Some(code.clone()),
            "MDC" | "" if code.bytes().all(|b| b.is_ascii_digit()) => {
                code.parse::<u32>().ok().and_then(|n| ucum_of_mdc(n, comp))
            }
            "" | "ISO+" | "ANSI+" => Some(
                UNIT_ALIASES
                    .iter()
                    .find(|(a, _)| *a == code)
                    .map_or(code.clone(), |(_, u)| (*u).to_string()),
            ),
            _ => None,
        };
        match ucum {
            Some(u) if units::can_convert(&u, comp.ucum) => return Ok(u),
            Some(u) => seen = seen.or(Some(u)),
            None => {}
        }
    }
    Err(match seen {
        Some(u) => format!("unit `{}` cannot be converted to `{}`", clip(&u), comp.ucum),
        None => "unit not recognised (expected UCUM or an MDC unit code)".into(),
    })
}

fn ucum_of_mdc(code: u32, comp: &codes::ComponentCodes) -> Option<String> {
    if comp.mdc_unit.code == code {
        return Some(comp.ucum.to_string());
    }
    UCUM_WITH_MDC
        .iter()
        .find(|u| codes::mdc_unit(u).is_some_and(|(c, _)| c == code))
        .map(|u| (*u).to_string())
}

/// PID-3 (CX, repeating) → the `MR` identifier, else the first non-empty one. vitalsd's own
/// "no patient" placeholder ([`crate::model::hl7::NO_PATIENT_ID`]) is no patient.
fn patient(d: Delimiters, f: &str) -> Option<PatientRef> {
    let placeholder =
        |r: &str| d.text(r, 1) == hl7::NO_PATIENT_ID && d.text(r, 4) == hl7::NO_PATIENT_AUTHORITY;
    let reps: Vec<&str> = f
        .split(d.repetition)
        .take(20)
        .filter(|r| !placeholder(r))
        .collect();
    let id_of = |r: &str| d.text(r, 1);
    let pick = reps
        .iter()
        .find(|r| !id_of(r).is_empty() && d.text(r, 5) == "MR")
        .or_else(|| reps.iter().find(|r| !id_of(r).is_empty()))?;
    let hd = d.comp(pick, 4);
    let sub = |i: usize| {
        d.unescape(hd.split(d.subcomponent).nth(i).unwrap_or(""))
            .trim()
            .to_string()
    };
    let (namespace, uid, uid_type) = (sub(0), sub(1), sub(2));
    let system = match uid_type.to_ascii_uppercase().as_str() {
        _ if uid.is_empty() => namespace,
        "ISO" if !uid.starts_with("urn:") => format!("urn:oid:{uid}"),
        _ => uid,
    };
    Some(PatientRef {
        id: id_of(pick),
        system,
    })
}
