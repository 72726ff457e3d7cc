//! A small hand-written serde model of the FHIR R4 subset vitalsd sends (Observation and a
//! transaction Bundle), serialise-only.
//!
//! Typed structs instead of `serde_json::Value` so numbers keep the device's precision: a
//! [`Decimal`] serialises as its exact text (`37.60`), which a `Value` (f64 inside) would turn
//! into `37.6`. Optional elements are skipped when empty, so the JSON carries only what FHIR
//! allows and the reading has.

use serde::Serialize;

use crate::reading::Decimal;

/// `Coding`: a code from a code system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl Coding {
    pub fn new(system: &str, code: &str, display: Option<&str>) -> Self {
        Self {
            system: system.to_string(),
            code: code.to_string(),
            display: display.map(str::to_string),
        }
    }
}

/// `CodeableConcept`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodeableConcept {
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl CodeableConcept {
    pub fn of(coding: Coding) -> Self {
        Self {
            coding: vec![coding],
            text: None,
        }
    }
}

/// `Quantity` with a UCUM code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantity {
    pub value: Decimal,
    /// Display text (`mmHg`); `code` is the UCUM code (`mm[Hg]`).
    pub unit: String,
    pub system: String,
    pub code: String,
}

/// `Identifier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// `Reference` by logical identifier (no server id needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// A literal reference (`Patient/<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// `Annotation` (only its text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub text: String,
}

/// `Meta` (only the profiles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub profile: Vec<String>,
}

/// `Observation.component`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    /// An ECG lead's samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_sampled_data: Option<SampledData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
}

/// R4 `SampledData` (not R5's `interval`): value of a point = `origin + factor × point`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampledData {
    /// Carries the unit (`uV`).
    pub origin: Quantity,
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
pub struct Observation {
    /// Always `"Observation"`.
    pub resource_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub status: &'static str,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    pub effective_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<CodeableConcept>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept>,
    pub device: Reference,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<Component>,
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
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    pub resource: Observation,
    pub request: BundleRequest,
}

/// `Bundle` of type `transaction`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Always `"Bundle"`.
    pub resource_type: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub entry: Vec<BundleEntry>,
}
