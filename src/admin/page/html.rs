//! The page's small text helpers: HTML escaping, form bodies, URL path segments, times and
//! the queue-depth sparkline. Pure functions over strings.

use std::fmt::Write as _;

use time::OffsetDateTime;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An inline SVG polyline of `samples` scaled into `w`×`h` (empty samples: a flat line).
pub fn sparkline(samples: &[u64], w: u32, h: u32) -> String {
    let max = samples.iter().copied().max().unwrap_or(0).max(1) as f64;
    let n = samples.len().max(2) - 1;
    let points: Vec<String> = samples
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = f64::from(w) * i as f64 / n as f64;
            let y = f64::from(h) - f64::from(h) * (*v as f64) / max;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg id=\"depth\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"queue depth, max {max}\"><polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs (`+` is a space).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(a), Some(b2)) => {
                            out.push(u8::try_from(a * 16 + b2).unwrap_or(b'?'));
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(in crate::admin) fn field(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn ts(t: Option<OffsetDateTime>) -> String {
    let fmt = time::format_description::well_known::Rfc3339;
    t.and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| "—".into())
}

/// Percent-encodes a room name for a URL path segment.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
