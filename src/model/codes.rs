//! The code table: every reading kind and component with its LOINC, IEEE 11073 MDC and UCUM
//! codes (docs/ARCHITECTURE.md#the-reading-json, docs/ecg.md#summary-codes, docs/fhir-codes.md#codes-per-vital-sign, docs/fhir-codes.md#temperature-sites, docs/fhir-codes.md#mdc-unit-codes).
//!
//! Pure static data plus lookups. Decoders check component names and device codes against it,
//! `normalize` and the ECG strip readings use it to code readings; the FHIR encoder uses
//! the LOINC/MDC codes, displays and profile ids; the HL7 encoder uses the MDC codes and the MDC
//! unit codes for OBX-3/OBX-6. Component names are the contract between decoders and normalize
//! (`DeviceValue::name`). MDC reference ids that docs/fhir-codes.md calls reconstructed are used as display
//! text only: never key logic on a display.
//!
//! ECG leads and the RR interval have no LOINC code; for them [`ComponentCodes::loinc`] is
//! `None` and [`ComponentCodes::code`] falls back to the MDC code in decimal.

use crate::reading::Kind;

/// LOINC code system URI.
pub const LOINC_SYSTEM: &str = "http://loinc.org";
/// IEEE 11073-10101 code system URI as the HL7 PHD IG uses it.
pub const MDC_SYSTEM: &str = "urn:iso:std:iso:11073:10101";
/// The older OID form of the MDC system; accept it on input.
pub const MDC_SYSTEM_OID: &str = "urn:oid:2.16.840.1.113883.6.24";
/// UCUM code system URI.
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
/// SNOMED CT code system URI.
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// An MDC code with its reference id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mdc {
    pub code: u32,
    pub reference: &'static str,
}

const fn mdc(code: u32, reference: &'static str) -> Mdc {
    Mdc { code, reference }
}

/// Codes of one component (the single value of a simple kind, or one part of a panel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentCodes {
    /// The name decoders use (`systolic`, `spo2`, `temperature`, ...).
    pub name: &'static str,
    /// Primary LOINC code, `None` where LOINC has none (ECG leads, RR interval).
    pub loinc: Option<&'static str>,
    /// LOINC display text for FHIR `display`.
    pub display: &'static str,
    /// Default MDC observation code (a device's own code overrides it).
    pub mdc: Mdc,
    /// Canonical UCUM unit: normalize converts every value to it.
    pub ucum: &'static str,
    /// Human display of the unit (FHIR `valueQuantity.unit`).
    pub unit_display: &'static str,
    /// MDC unit code for HL7 OBX-6 (`/min` depends on what is counted, so it lives here).
    pub mdc_unit: Mdc,
}

impl ComponentCodes {
    /// The `Value.code` of a reading: the LOINC code, else the MDC code in decimal.
    pub fn code(&self) -> String {
        match self.loinc {
            Some(l) => l.to_string(),
            None => self.mdc.code.to_string(),
        }
    }
}

/// Codes of a reading kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindCodes {
    pub kind: Kind,
    /// The Observation-level LOINC code (the panel for blood pressure); `None` for ECG.
    pub loinc: Option<&'static str>,
    pub display: &'static str,
    /// Additional LOINC codings sent next to the primary one (SpO2: 2708-6).
    pub extra_loinc: &'static [(&'static str, &'static str)],
    /// Observation-level MDC code.
    pub mdc: Mdc,
    /// Other MDC codes a device may report for this kind (heart-rate sources, respiration
    /// methods, arterial SaO2). Used for displays and to accept device overrides.
    pub mdc_variants: &'static [Mdc],
    /// FHIR R4 vital-signs profile id (`http://hl7.org/fhir/StructureDefinition/<id>`).
    pub fhir_profile: Option<&'static str>,
    /// FHIR Observation category code (`vital-signs`, or `procedure` for ECG).
    pub category: &'static str,
    /// True when the components are sent as FHIR `component`s of one panel Observation.
    pub panel: bool,
    pub components: &'static [ComponentCodes],
}

/// Codes of a temperature measurement site (docs/fhir-codes.md#temperature-sites).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCodes {
    /// Site name as in `Value.site`.
    pub name: &'static str,
    /// Site-specific LOINC code and display, sent next to 8310-5.
    pub loinc: Option<(&'static str, &'static str)>,
    /// Site-specific MDC code (replaces 150364 MDC_TEMP_BODY).
    pub mdc: Option<Mdc>,
    /// SNOMED CT observable entity.
    pub snomed_observable: Option<&'static str>,
    /// SNOMED CT body structure for FHIR `bodySite`, with display.
    pub body_site: Option<(&'static str, &'static str)>,
    /// BLE Temperature Type (0x2A1D) value that maps to this site.
    pub ble_type: Option<u8>,
}

const MMHG: Mdc = mdc(266_016, "MDC_DIM_MMHG");
const BEAT_PER_MIN: Mdc = mdc(264_864, "MDC_DIM_BEAT_PER_MIN");
const RESP_PER_MIN: Mdc = mdc(264_928, "MDC_DIM_RESP_PER_MIN");
const PERCENT: Mdc = mdc(262_688, "MDC_DIM_PERCENT");
const DEGC: Mdc = mdc(268_192, "MDC_DIM_DEGC");
const KILO_G: Mdc = mdc(263_875, "MDC_DIM_KILO_G");
const CENTI_M: Mdc = mdc(263_441, "MDC_DIM_CENTI_M");
const KG_PER_M_SQ: Mdc = mdc(264_096, "MDC_DIM_KG_PER_M_SQ");
const MILLI_SEC: Mdc = mdc(264_338, "MDC_DIM_MILLI_SEC");
const MICRO_VOLT: Mdc = mdc(266_419, "MDC_DIM_MICRO_VOLT");

const fn comp(
    name: &'static str,
    loinc: Option<&'static str>,
    display: &'static str,
    mdc: Mdc,
    ucum: &'static str,
    unit_display: &'static str,
    mdc_unit: Mdc,
) -> ComponentCodes {
    ComponentCodes {
        name,
        loinc,
        display,
        mdc,
        ucum,
        unit_display,
        mdc_unit,
    }
}

const fn lead(name: &'static str, code: u32, reference: &'static str) -> ComponentCodes {
    comp(
        name,
        None,
        reference,
        mdc(code, reference),
        "uV",
        "uV",
        MICRO_VOLT,
    )
}

/// MDC_PULS_RATE_NON_INV: pulse rate from a blood-pressure cuff.
pub const MDC_PULSE_RATE_CUFF: u32 = 149_546;
/// MDC_PULS_OXIM_PULS_RATE: pulse rate from an oximeter.
pub const MDC_PULSE_RATE_OXIMETER: u32 = 149_530;
/// MDC_ECG_HEART_RATE: heart rate derived from an ECG.
pub const MDC_HEART_RATE_ECG: u32 = 147_842;
/// MDC_PULS_RATE: arterial pulse rate, source not specified (the table default).
pub const MDC_PULSE_RATE: u32 = 149_514;

/// A single-component vital sign whose Observation code is the component's code.
const fn simple(
    kind: Kind,
    profile: &'static str,
    extra_loinc: &'static [(&'static str, &'static str)],
    mdc_variants: &'static [Mdc],
    components: &'static [ComponentCodes],
) -> KindCodes {
    let c = &components[0];
    KindCodes {
        kind,
        loinc: c.loinc,
        display: c.display,
        extra_loinc,
        mdc: c.mdc,
        mdc_variants,
        fhir_profile: Some(profile),
        category: "vital-signs",
        panel: false,
        components,
    }
}

#[rustfmt::skip]
static KINDS: [KindCodes; 9] = [
    KindCodes {
        kind: Kind::BloodPressure,
        loinc: Some("85354-9"),
        display: "Blood pressure panel with all children optional",
        extra_loinc: &[],
        mdc: mdc(150_020, "MDC_PRESS_BLD_NONINV"),
        mdc_variants: &[],
        fhir_profile: Some("bp"),
        category: "vital-signs",
        panel: true,
        components: &[
            comp("systolic", Some("8480-6"), "Systolic blood pressure",
                mdc(150_021, "MDC_PRESS_BLD_NONINV_SYS"), "mm[Hg]", "mmHg", MMHG),
            comp("diastolic", Some("8462-4"), "Diastolic blood pressure",
                mdc(150_022, "MDC_PRESS_BLD_NONINV_DIA"), "mm[Hg]", "mmHg", MMHG),
            comp("mean", Some("8478-0"), "Mean blood pressure",
                mdc(150_023, "MDC_PRESS_BLD_NONINV_MEAN"), "mm[Hg]", "mmHg", MMHG),
        ],
    },
    simple(Kind::HeartRate, "heartrate", &[],
        &[
            mdc(MDC_PULSE_RATE_CUFF, "MDC_PULS_RATE_NON_INV"),
            mdc(MDC_PULSE_RATE_OXIMETER, "MDC_PULS_OXIM_PULS_RATE"),
            mdc(MDC_HEART_RATE_ECG, "MDC_ECG_HEART_RATE"),
        ],
        &[comp("heart_rate", Some("8867-4"), "Heart rate",
            mdc(MDC_PULSE_RATE, "MDC_PULS_RATE"), "/min", "beats/minute", BEAT_PER_MIN)]),
    simple(Kind::BodyTemperature, "bodytemp", &[], &[],
        &[comp("temperature", Some("8310-5"), "Body temperature",
            mdc(150_364, "MDC_TEMP_BODY"), "Cel", "C", DEGC)]),
    simple(Kind::Spo2, "oxygensat", &[("2708-6", "Oxygen saturation in Arterial blood")],
        &[mdc(150_324, "MDC_SAT_O2")],
        &[comp("spo2", Some("59408-5"), "Oxygen saturation in Arterial blood by Pulse oximetry",
            mdc(150_456, "MDC_PULS_OXIM_SAT_O2"), "%", "%", PERCENT)]),
    // The method-specific reference ids are displays only (docs/fhir-codes.md#codes-per-vital-sign gives the numbers).
    simple(Kind::RespiratoryRate, "resprate", &[],
        &[
            mdc(151_578, "MDC_TTHOR_RESP_RATE"),
            mdc(151_570, "MDC_AWAY_RESP_RATE"),
            mdc(151_594, "MDC_CO2_RESP_RATE"),
            mdc(151_658, "MDC_PULS_OXIM_RESP_RATE"),
        ],
        &[comp("respiratory_rate", Some("9279-1"), "Respiratory rate",
            mdc(151_562, "MDC_RESP_RATE"), "/min", "breaths/minute", RESP_PER_MIN)]),
    simple(Kind::BodyWeight, "bodyweight", &[], &[],
        &[comp("weight", Some("29463-7"), "Body weight",
            mdc(188_736, "MDC_MASS_BODY_ACTUAL"), "kg", "kg", KILO_G)]),
    simple(Kind::BodyHeight, "bodyheight", &[], &[],
        &[comp("height", Some("8302-2"), "Body height",
            mdc(188_740, "MDC_LEN_BODY_ACTUAL"), "cm", "cm", CENTI_M)]),
    simple(Kind::Bmi, "bmi", &[], &[],
        &[comp("bmi", Some("39156-5"), "Body mass index (BMI) [Ratio]",
            mdc(188_752, "MDC_RATIO_MASS_BODY_LEN_SQ"), "kg/m2", "kg/m2", KG_PER_M_SQ)]),
    KindCodes {
        kind: Kind::Ecg,
        loinc: None,
        display: "MDC_ECG_ELEC_POTL",
        extra_loinc: &[],
        mdc: mdc(131_328, "MDC_ECG_ELEC_POTL"),
        mdc_variants: &[],
        fhir_profile: None,
        category: "procedure",
        panel: true,
        components: &[
            lead("ecg", 131_328, "MDC_ECG_ELEC_POTL"),
            lead("lead_i", 131_329, "MDC_ECG_ELEC_POTL_I"),
            lead("lead_ii", 131_330, "MDC_ECG_ELEC_POTL_II"),
            lead("lead_iii", 131_389, "MDC_ECG_ELEC_POTL_III"),
            lead("lead_avr", 131_390, "MDC_ECG_ELEC_POTL_AVR"),
            lead("lead_avl", 131_391, "MDC_ECG_ELEC_POTL_AVL"),
            lead("lead_avf", 131_392, "MDC_ECG_ELEC_POTL_AVF"),
            lead("lead_v1", 131_331, "MDC_ECG_ELEC_POTL_V1"),
            lead("lead_v2", 131_332, "MDC_ECG_ELEC_POTL_V2"),
            lead("lead_v3", 131_333, "MDC_ECG_ELEC_POTL_V3"),
            lead("lead_v4", 131_334, "MDC_ECG_ELEC_POTL_V4"),
            lead("lead_v5", 131_335, "MDC_ECG_ELEC_POTL_V5"),
            lead("lead_v6", 131_336, "MDC_ECG_ELEC_POTL_V6"),
            comp("rr_interval", None, "MDC_ECG_TIME_PD_RR_GL",
                mdc(147_240, "MDC_ECG_TIME_PD_RR_GL"), "ms", "ms", MILLI_SEC),
            comp("qt_interval", Some("8634-8"), "Q-T interval",
                mdc(147_232, "MDC_ECG_TIME_PD_QT_GL"), "ms", "ms", MILLI_SEC),
            comp("qtc_interval", Some("8636-3"), "Q-T interval corrected",
                mdc(147_236, "MDC_ECG_TIME_PD_QTc"), "ms", "ms", MILLI_SEC),
        ],
    },
];

/// The codes of a kind. Every [`Kind`] has an entry.
pub fn kind_codes(kind: Kind) -> &'static KindCodes {
    // KINDS is in Kind::ALL order; a test checks it. Fall back to a search to stay total.
    KINDS.iter().find(|k| k.kind == kind).unwrap_or(&KINDS[0])
}

/// The codes of component `name` of `kind`, or `None` when the kind has no such component.
pub fn component(kind: Kind, name: &str) -> Option<&'static ComponentCodes> {
    kind_codes(kind).components.iter().find(|c| c.name == name)
}

/// The reference id of an MDC observation code known to the table (defaults and variants).
pub fn mdc_reference(code: u32) -> Option<&'static str> {
    KINDS
        .iter()
        .find_map(|k| {
            std::iter::once(&k.mdc)
                .chain(k.mdc_variants)
                .chain(k.components.iter().map(|c| &c.mdc))
                .find(|m| m.code == code)
                .map(|m| m.reference)
        })
        .or_else(|| {
            SITES
                .iter()
                .find_map(|s| s.mdc.filter(|m| m.code == code).map(|m| m.reference))
        })
}

/// True when a device may report `code` for `kind`/`component` (default or a listed variant).
pub fn mdc_allowed(kind: Kind, component: &ComponentCodes, code: u32) -> bool {
    let k = kind_codes(kind);
    code == component.mdc.code
        || k.mdc_variants.iter().any(|m| m.code == code)
        || (kind == Kind::BodyTemperature
            && SITES.iter().any(|s| s.mdc.is_some_and(|m| m.code == code)))
}

const fn site_row(
    name: &'static str,
    loinc: Option<(&'static str, &'static str)>,
    mdc: Option<Mdc>,
    snomed_observable: Option<&'static str>,
    body_site: Option<(&'static str, &'static str)>,
    ble_type: Option<u8>,
) -> SiteCodes {
    SiteCodes {
        name,
        loinc,
        mdc,
        snomed_observable,
        body_site,
        ble_type,
    }
}

#[rustfmt::skip]
static SITES: [SiteCodes; 14] = [
    site_row("oral", Some(("8331-1", "Oral temperature")), Some(mdc(188_424, "MDC_TEMP_ORAL")),
        Some("415945006"), Some(("123851003", "Mouth region structure")), Some(6)),
    site_row("axillary", Some(("8328-7", "Axillary temperature")), Some(mdc(188_452, "MDC_TEMP_AXILLA")),
        Some("415882003"), Some(("91470000", "Axillary region structure")), Some(1)),
    site_row("rectal", Some(("8332-9", "Rectal temperature")), Some(mdc(188_420, "MDC_TEMP_RECT")),
        Some("307047009"), Some(("34402009", "Rectum structure")), Some(7)),
    site_row("tympanic", Some(("8333-7", "Tympanic membrane temperature")), Some(mdc(150_392, "MDC_TEMP_TYMP")),
        Some("415974002"), Some(("42859004", "Tympanic membrane structure")), Some(9)),
    site_row("ear", None, Some(mdc(188_428, "MDC_TEMP_EAR")), None, None, Some(3)),
    site_row("gi_tract", None, Some(mdc(188_456, "MDC_TEMP_GIT")), None, None, Some(5)),
    site_row("core", None, Some(mdc(150_368, "MDC_TEMP_CORE")), None, None, None),
    site_row("skin", None, Some(mdc(150_388, "MDC_TEMP_SKIN")), None, None, None),
    site_row("bladder", Some(("8334-5", "Bladder temperature")), None, None, None, None),
    site_row("oesophageal", Some(("60836-4", "Esophageal temperature")), None, None, None, None),
    site_row("blood", Some(("60834-9", "Blood temperature")), None, None, None, None),
    site_row("finger", None, Some(mdc(188_432, "MDC_TEMP_FINGER")), None, None, Some(4)),
    site_row("toe", None, Some(mdc(188_448, "MDC_TEMP_TOE")), None, None, Some(8)),
    site_row("body", None, Some(mdc(150_364, "MDC_TEMP_BODY")), None, None, Some(2)),
];

/// Accepted spellings of site names, mapped to the table's name.
const SITE_ALIASES: [(&str, &str); 6] = [
    ("sublingual", "oral"),
    ("axilla", "axillary"),
    ("rectum", "rectal"),
    ("gi", "gi_tract"),
    ("esophageal", "oesophageal"),
    ("urinary_bladder", "bladder"),
];

/// The codes of temperature site `name` (case-insensitive; a few aliases such as `axilla`,
/// `sublingual` are accepted).
pub fn site(name: &str) -> Option<&'static SiteCodes> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = SITE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, n)| n);
    SITES.iter().find(|s| s.name == canonical)
}

/// The site for a BLE Temperature Type value (0x2A1D).
pub fn site_for_ble_type(t: u8) -> Option<&'static SiteCodes> {
    SITES.iter().find(|s| s.ble_type == Some(t))
}

/// MDC unit code and reference id of a UCUM unit (docs/fhir-codes.md#mdc-unit-codes). `/min` is beats per
/// minute here; use [`ComponentCodes::mdc_unit`] when the component is known.
pub fn mdc_unit(ucum: &str) -> Option<(u32, &'static str)> {
    const UNITS: [(&str, Mdc); 18] = [
        ("%", PERCENT),
        ("/min", BEAT_PER_MIN),
        ("mm[Hg]", MMHG),
        ("kPa", mdc(265_987, "MDC_DIM_KILO_PASCAL")),
        ("Cel", DEGC),
        ("[degF]", mdc(266_560, "MDC_DIM_FAHR")),
        ("kg", KILO_G),
        ("g", mdc(263_872, "MDC_DIM_X_G")),
        ("[lb_av]", mdc(263_904, "MDC_DIM_LB")),
        ("cm", CENTI_M),
        ("m", mdc(263_424, "MDC_DIM_X_M")),
        ("[in_i]", mdc(263_520, "MDC_DIM_INCH")),
        ("kg/m2", KG_PER_M_SQ),
        ("ms", MILLI_SEC),
        ("mV", mdc(266_418, "MDC_DIM_MILLI_VOLT")),
        ("uV", MICRO_VOLT),
        ("Hz", mdc(264_640, "MDC_DIM_HZ")),
        ("1", mdc(262_656, "MDC_DIM_DIMLESS")),
    ];
    UNITS
        .iter()
        .find(|(u, _)| *u == ucum)
        .map(|(_, m)| (m.code, m.reference))
}

#[cfg(test)]
#[path = "codes_tests.rs"]
mod tests;
