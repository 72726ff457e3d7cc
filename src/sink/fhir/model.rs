//! A small hand-written serde model of the FHIR R4 subset vitalsd sends (Observation and a
//! transaction Bundle), serialise-only.
//!
//! Typed structs instead of `serde_json::Value` so numbers keep the device's precision: a
//! [`Decimal`] serialises as its exact text (`37.60`), which a `Value` (f64 inside) would turn
//! into `37.6`. Optional elements are skipped when empty, so the JSON carries only what FHIR
//! allows and the reading has.
//!
//! The values borrow from the reading they encode (`'a`) and from the code table (`'static`):
//! systems, codes, displays and unit texts are not copied per reading. The FHIR sink writes
//! them with the direct JSON writer of `json.rs` (the same bytes as serde's, without the
//! per-key escaping); the file and MQTT sinks and the tests use serde.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use crate::reading::Decimal;

/// Where every R4 profile vitalsd names lives; [`Profile`] holds only the id after it.
pub const PROFILE_BASE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// `Coding`: a code from a code system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coding<'a> {
    pub system: &'static str,
    pub code: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<&'static str>,
}

impl<'a> Coding<'a> {
    pub fn new(
        system: &'static str,
        code: impl Into<Cow<'a, str>>,
        display: Option<&'static str>,
    ) -> Self {
        Self {
            system,
            code: code.into(),
            display,
        }
    }
}

/// `CodeableConcept`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeableConcept<'a> {
    pub coding: Vec<Coding<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
}

impl<'a> CodeableConcept<'a> {
    pub fn of(coding: Coding<'a>) -> Self {
        Self {
            coding: vec![coding],
            text: None,
        }
    }
}

/// `Quantity` with a UCUM code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantity<'a> {
    pub value: Decimal,
    /// Display text (`mmHg`); `code` is the UCUM code (`mm[Hg]`).
    pub unit: &'a str,
    pub system: &'static str,
    pub code: &'a str,
}

/// `Identifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identifier<'a> {
    pub system: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// `Reference` by logical identifier (no server id needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference<'a> {
    /// A literal reference (`Patient/<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<&'a str>,
}

/// `Annotation` (only its text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub text: String,
}

/// A profile URL: [`PROFILE_BASE`] followed by the profile's id (`bp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile(pub &'static str);

impl Serialize for Profile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{PROFILE_BASE}{}", self.0))
    }
}

/// `Meta` (only the one profile vitalsd claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub profile: [Profile; 1],
}

/// `Observation.component`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component<'a> {
    pub code: CodeableConcept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity<'a>>,
    /// An ECG lead's samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_sampled_data: Option<SampledData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept<'a>>,
}

/// R4 `SampledData` (not R5's `interval`): value of a point = `origin + factor × point`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampledData<'a> {
    /// Carries the unit (`uV`).
    pub origin: Quantity<'a>,
    /// Milliseconds between samples.
    pub period: Decimal,
    pub factor: Decimal,
    pub dimensions: u32,
    /// Decimal points separated by single spaces.
    pub data: String,
}

/// `Observation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation<'a> {
    /// Always `"Observation"`.
    pub resource_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: &'static str,
    pub category: Vec<CodeableConcept<'a>>,
    pub code: CodeableConcept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference<'a>>,
    pub effective_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept<'a>>,
    pub device: Reference<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<Component<'a>>,
}

/// `Bundle.entry.request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleRequest {
    pub method: &'static str,
    pub url: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_none_exist: Option<String>,
}

/// `Bundle.entry`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    pub resource: Observation<'a>,
    pub request: BundleRequest,
}

/// `Bundle` of type `transaction`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<'a> {
    /// Always `"Bundle"`.
    pub resource_type: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub entry: Vec<BundleEntry<'a>>,
}
