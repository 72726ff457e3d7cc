//! The direct JSON writer of the FHIR model: what the FHIR sink posts, written straight into
//! the request body.
//!
//! Receives the values of [`super::model`]; appends their JSON to a `Vec<u8>`.
//! Promises: exactly the bytes `serde_json::to_vec` writes for the same value (same member
//! order, same skipped empty members, same string escaping, numbers as the [`Decimal`]'s
//! exact text), so the wire format is serde's; the tests compare the two for every path of the
//! encoder and for every byte an escape can meet. What it saves: serde writes every member
//! name through its string escaper and every [`Decimal`] through a checked raw value; here
//! member names are constant bytes and a number is written digit by digit.

use super::model::{
    Annotation, Bundle, BundleEntry, BundleRequest, CodeableConcept, Coding, Component, Identifier,
    Meta, Observation, Quantity, Reference, SampledData, PROFILE_BASE,
};
use crate::reading::Decimal;

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and `\` with a
/// backslash, `\b \t \n \f \r` by name, other control bytes as `\u00xx` (lower-case hex),
/// everything else (all of UTF-8 and DEL) as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    string_contents(out, s);
    out.push(b'"');
}

fn string_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none of them needs an escape (nearly every string).
        if let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        let named = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i - 1]);
        start = i;
        if named == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', named]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// True when one of the eight bytes of `w` is a control byte (below 0x20), `"` or `\`
/// (the classic "has a zero byte" test on `w`, `w ^ "..."` and `w ^ \...`; never a false
/// "no").
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let s = w ^ (ONES * u64::from(b'\\'));
    let backslash = s.wrapping_sub(ONES) & !s & HIGH;
    (below_space | quote | backslash) != 0
}

/// Appends `d` as a bare JSON number with exactly its scale's fraction digits (its `Display`).
pub fn decimal(out: &mut Vec<u8>, d: Decimal) {
    let m = d.mantissa();
    let scale = usize::from(d.scale());
    if m < 0 {
        out.push(b'-');
    }
    let mut abs = m.unsigned_abs();
    // Digits from the last, at least `scale + 1` of them (the zeros a fraction needs).
    let mut buf = [b'0'; 24];
    let mut n = 0;
    while abs > 0 || n <= scale {
        // The remainder is a single digit.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (abs % 10) as u8;
        buf[n] = b'0' + digit;
        abs /= 10;
        n += 1;
    }
    if scale == 0 {
        // An integer: no zero before it beyond the one digit `0` itself.
        out.extend(buf[..n].iter().rev());
        return;
    }
    out.extend(buf[scale..n].iter().rev());
    out.push(b'.');
    out.extend(buf[..scale].iter().rev());
}

/// Appends an unsigned integer.
fn unsigned(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut x = v;
    loop {
        #[allow(clippy::cast_possible_truncation)]
        let digit = (x % 10) as u8;
        buf[n] = b'0' + digit;
        x /= 10;
        n += 1;
        if x == 0 {
            break;
        }
    }
    out.extend(buf[..n].iter().rev());
}

/// Appends `[` the items `]`, each by `write`.
fn array<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

/// `,"name":` before an optional member (never the first member of its object).
fn member(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(key);
}

impl Coding<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"system":"#);
        string(out, self.system);
        out.extend_from_slice(br#","code":"#);
        string(out, &self.code);
        if let Some(d) = self.display {
            member(out, br#","display":"#);
            string(out, d);
        }
        out.push(b'}');
    }
}

impl CodeableConcept<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"coding":"#);
        array(out, &self.coding, Coding::write_json);
        if let Some(t) = &self.text {
            member(out, br#","text":"#);
            string(out, t);
        }
        out.push(b'}');
    }
}

impl Quantity<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"value":"#);
        decimal(out, self.value);
        out.extend_from_slice(br#","unit":"#);
        string(out, self.unit);
        out.extend_from_slice(br#","system":"#);
        string(out, self.system);
        out.extend_from_slice(br#","code":"#);
        string(out, self.code);
        out.push(b'}');
    }
}

impl Identifier<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"system":"#);
        string(out, &self.system);
        out.extend_from_slice(br#","value":"#);
        string(out, &self.value);
        out.push(b'}');
    }
}

impl Reference<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Every member is optional: a comma before all but the first one written.
        out.push(b'{');
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, name: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(name);
        };
        if let Some(r) = &self.reference {
            key(out, br#""reference":"#);
            string(out, r);
        }
        if let Some(t) = self.type_ {
            key(out, br#""type":"#);
            string(out, t);
        }
        if let Some(i) = &self.identifier {
            key(out, br#""identifier":"#);
            i.write_json(out);
        }
        if let Some(d) = self.display {
            key(out, br#""display":"#);
            string(out, d);
        }
        out.push(b'}');
    }
}

impl Annotation {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"text":"#);
        string(out, &self.text);
        out.push(b'}');
    }
}

impl Meta {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"profile":["#);
        for (i, p) in self.profile.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            string_contents(out, PROFILE_BASE);
            string_contents(out, p.0);
            out.push(b'"');
        }
        out.extend_from_slice(b"]}");
    }
}

impl SampledData<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"origin":"#);
        self.origin.write_json(out);
        out.extend_from_slice(br#","period":"#);
        decimal(out, self.period);
        out.extend_from_slice(br#","factor":"#);
        decimal(out, self.factor);
        out.extend_from_slice(br#","dimensions":"#);
        unsigned(out, u64::from(self.dimensions));
        out.extend_from_slice(br#","data":"#);
        string(out, &self.data);
        out.push(b'}');
    }
}

impl Component<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"code":"#);
        self.code.write_json(out);
        if let Some(q) = &self.value_quantity {
            member(out, br#","valueQuantity":"#);
            q.write_json(out);
        }
        if let Some(s) = &self.value_sampled_data {
            member(out, br#","valueSampledData":"#);
            s.write_json(out);
        }
        if let Some(a) = &self.data_absent_reason {
            member(out, br#","dataAbsentReason":"#);
            a.write_json(out);
        }
        if !self.interpretation.is_empty() {
            member(out, br#","interpretation":"#);
            array(out, &self.interpretation, CodeableConcept::write_json);
        }
        out.push(b'}');
    }
}

impl Observation<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"resourceType":"#);
        string(out, self.resource_type);
        if !self.identifier.is_empty() {
            member(out, br#","identifier":"#);
            array(out, &self.identifier, Identifier::write_json);
        }
        if let Some(m) = &self.meta {
            member(out, br#","meta":"#);
            m.write_json(out);
        }
        out.extend_from_slice(br#","status":"#);
        string(out, self.status);
        out.extend_from_slice(br#","category":"#);
        array(out, &self.category, CodeableConcept::write_json);
        out.extend_from_slice(br#","code":"#);
        self.code.write_json(out);
        if let Some(s) = &self.subject {
            member(out, br#","subject":"#);
            s.write_json(out);
        }
        out.extend_from_slice(br#","effectiveDateTime":"#);
        string(out, &self.effective_date_time);
        if let Some(q) = &self.value_quantity {
            member(out, br#","valueQuantity":"#);
            q.write_json(out);
        }
        if let Some(a) = &self.data_absent_reason {
            member(out, br#","dataAbsentReason":"#);
            a.write_json(out);
        }
        if !self.interpretation.is_empty() {
            member(out, br#","interpretation":"#);
            array(out, &self.interpretation, CodeableConcept::write_json);
        }
        if !self.note.is_empty() {
            member(out, br#","note":"#);
            array(out, &self.note, Annotation::write_json);
        }
        if let Some(b) = &self.body_site {
            member(out, br#","bodySite":"#);
            b.write_json(out);
        }
        out.extend_from_slice(br#","device":"#);
        self.device.write_json(out);
        if !self.component.is_empty() {
            member(out, br#","component":"#);
            array(out, &self.component, Component::write_json);
        }
        out.push(b'}');
    }
}

impl BundleRequest {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"method":"#);
        string(out, self.method);
        out.extend_from_slice(br#","url":"#);
        string(out, self.url);
        if let Some(q) = &self.if_none_exist {
            member(out, br#","ifNoneExist":"#);
            string(out, q);
        }
        out.push(b'}');
    }
}

impl BundleEntry<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        if let Some(u) = &self.full_url {
            out.extend_from_slice(br#""fullUrl":"#);
            string(out, u);
            out.push(b',');
        }
        out.extend_from_slice(br#""resource":"#);
        self.resource.write_json(out);
        out.extend_from_slice(br#","request":"#);
        self.request.write_json(out);
        out.push(b'}');
    }
}

/// The opening of a Bundle up to its first entry; [`bundle_end`] closes it.
pub fn bundle_start(out: &mut Vec<u8>, resource_type: &str, type_: &str) {
    out.extend_from_slice(br#"{"resourceType":"#);
    string(out, resource_type);
    out.extend_from_slice(br#","type":"#);
    string(out, type_);
    out.extend_from_slice(br#","entry":["#);
}

/// Closes what [`bundle_start`] opened.
pub fn bundle_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]}");
}

impl Bundle<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        bundle_start(out, self.resource_type, self.type_);
        for (i, e) in self.entry.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            e.write_json(out);
        }
        bundle_end(out);
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
