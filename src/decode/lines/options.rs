//! The options of the `lines` driver: one checker per key for the registry, and
//! [`LinesConfig::from_options`], which checks them together (required keys, groups named in
//! the pattern, components of the kind, convertible units) and keeps what decoding needs.

use regex::{Regex, RegexBuilder};
use time::format_description::OwnedFormatItem;

use super::{MAX_OPTION_LEN, NUMERIC_KINDS, PATTERN_SIZE_LIMIT, VALUE_PREFIX};
use crate::decode::registry::OptionSpec;
use crate::decode::{OptionError, Options};
use crate::model::{codes, units};
use crate::reading::{Decimal, Kind};

pub(super) const OPTIONS: [OptionSpec; 7] = [
    OptionSpec {
        key: "pattern",
        help: "REQUIRED: a regex with named groups, e.g. `^T=(?P<t>[0-9.]+)C$`",
        check: |v| compile_pattern(v).map(|_| ()),
    },
    OptionSpec {
        key: "kind",
        help: "REQUIRED: the reading kind of every line (blood_pressure, body_temperature, ...)",
        check: |v| parse_kind(v).map(|_| ()),
    },
    OptionSpec {
        key: "value.*",
        help: "`value.<group> = \"<component>[:<ucum unit>]\"`, e.g. `value.sys = \"systolic:mm[Hg]\"`",
        check: |v| split_mapping(v).map(|_| ()),
    },
    OptionSpec {
        key: "time",
        help: "the group holding the device's measurement time",
        check: check_group_name,
    },
    OptionSpec {
        key: "time_format",
        help: "`rfc3339` (default) or a time format description, e.g. `[hour]:[minute]:[second]`",
        check: |v| parse_time_format(v).map(|_| ()),
    },
    OptionSpec {
        key: "absent",
        help: "the text the device writes instead of a number, e.g. `---`",
        check: check_absent,
    },
    OptionSpec {
        key: "site",
        help: "temperature site for body_temperature (oral, axillary, rectal, tympanic, ...)",
        check: |v| {
            codes::site(v)
                .map(|_| ())
                .ok_or_else(|| format!("`{v}` is not a known temperature site"))
        },
    },
];

/// How the `time` group is read.
#[derive(Debug, Clone)]
pub(super) enum TimeFormat {
    Rfc3339,
    Custom(OwnedFormatItem),
}

/// One `value.<group>` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ValueMap {
    pub(super) group: String,
    pub(super) component: &'static str,
    pub(super) unit: String,
}

/// The validated options of a `lines` device.
#[derive(Debug, Clone)]
pub struct LinesConfig {
    pub(super) pattern: Regex,
    pub(super) kind: Kind,
    pub(super) values: Vec<ValueMap>,
    pub(super) time: Option<(String, TimeFormat)>,
    pub(super) absent: Option<String>,
    pub(super) site: Option<String>,
}

fn compile_pattern(v: &str) -> Result<Regex, String> {
    if v.is_empty() || v.len() > MAX_OPTION_LEN {
        return Err(format!("a pattern has 1 to {MAX_OPTION_LEN} characters"));
    }
    let re = RegexBuilder::new(v)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a valid regex: {e}"))?;
    if re.capture_names().flatten().next().is_none() {
        return Err("the pattern has no named group `(?P<name>...)` to take a value from".into());
    }
    Ok(re)
}

fn parse_kind(v: &str) -> Result<Kind, String> {
    let names: Vec<&str> = NUMERIC_KINDS.iter().map(Kind::as_str).collect();
    v.parse::<Kind>()
        .ok()
        .filter(|k| NUMERIC_KINDS.contains(k))
        .ok_or_else(|| {
            format!(
                "`{v}` is not a numeric reading kind; expected one of: {}",
                names.join(", ")
            )
        })
}

/// `component[:unit]` → (component, unit); the unit is `None` when omitted.
fn split_mapping(v: &str) -> Result<(&str, Option<&str>), String> {
    let (comp, unit) = match v.split_once(':') {
        Some((c, u)) => (c.trim(), Some(u.trim())),
        None => (v.trim(), None),
    };
    if comp.is_empty() || unit.is_some_and(str::is_empty) {
        return Err(format!(
            "`{v}` is not `<component>[:<ucum unit>]`, e.g. `systolic:mm[Hg]`"
        ));
    }
    Ok((comp, unit))
}

fn check_group_name(v: &str) -> Result<(), String> {
    let ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.len() <= 64
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{v}` is not a regex group name (letters, digits, `_`)"
        ))
    }
}

fn parse_time_format(v: &str) -> Result<TimeFormat, String> {
    if v.eq_ignore_ascii_case("rfc3339") {
        return Ok(TimeFormat::Rfc3339);
    }
    if v.is_empty() || v.len() > MAX_OPTION_LEN {
        return Err(format!(
            "a time format has 1 to {MAX_OPTION_LEN} characters"
        ));
    }
    time::format_description::parse_owned::<2>(v)
        .map(TimeFormat::Custom)
        .map_err(|e| format!("not `rfc3339` nor a time format description: {e}"))
}

fn check_absent(v: &str) -> Result<(), String> {
    let t = v.trim();
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("the absent text has 1 to 64 printable ASCII characters".into());
    }
    if t.parse::<Decimal>().is_ok() {
        return Err(format!(
            "`{t}` is a number; a device's \"no reading\" text cannot be one"
        ));
    }
    Ok(())
}

/// Every problem with the options of a `lines` device (empty when they are valid). Checks
/// each key and how they fit together: required keys, unknown keys, `value.<group>` and
/// `time` naming groups of the pattern, components of the kind, convertible units.
pub fn validate(opts: &Options) -> Vec<OptionError> {
    match LinesConfig::from_options(opts) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    }
}

impl LinesConfig {
    /// Validates `opts` (see [`validate`]) and keeps what decoding needs.
    pub fn from_options(opts: &Options) -> Result<Self, Vec<OptionError>> {
        let mut errors = Vec::new();
        let mut err = |key: &str, reason: String| {
            errors.push(OptionError {
                key: key.to_string(),
                reason,
            });
        };
        let pattern = match opts.get("pattern") {
            None => {
                err(
                    "pattern",
                    "required: a regex with named groups, e.g. `^T=(?P<t>[0-9.]+)$`".into(),
                );
                None
            }
            Some(v) => compile_pattern(v).map_err(|r| err("pattern", r)).ok(),
        };
        let kind = match opts.get("kind") {
            None => {
                err("kind", "required: the reading kind of every line".into());
                None
            }
            Some(v) => parse_kind(v).map_err(|r| err("kind", r)).ok(),
        };
        let has_group = |g: &str| {
            pattern
                .as_ref()
                .is_none_or(|re| re.capture_names().flatten().any(|n| n == g))
        };
        let mut values: Vec<ValueMap> = Vec::new();
        let (mut time_group, mut time_format, mut absent, mut site) = (None, None, None, None);
        for (key, v) in opts {
            if v.len() > MAX_OPTION_LEN {
                err(key, format!("longer than {MAX_OPTION_LEN} characters"));
                continue;
            }
            match key.as_str() {
                "pattern" | "kind" => {}
                "time" => match check_group_name(v) {
                    Err(r) => err(key, r),
                    Ok(()) if !has_group(v) => err(key, format!("the pattern has no group `{v}`")),
                    Ok(()) => time_group = Some(v.clone()),
                },
                "time_format" => match parse_time_format(v) {
                    Ok(f) => time_format = Some(f),
                    Err(r) => err(key, r),
                },
                "absent" => match check_absent(v) {
                    Ok(()) => absent = Some(v.trim().to_string()),
                    Err(r) => err(key, r),
                },
                "site" => match (codes::site(v), kind) {
                    (None, _) => err(key, format!("`{v}` is not a known temperature site")),
                    (Some(_), Some(k)) if k != Kind::BodyTemperature => {
                        err(key, format!("a site applies to body_temperature, not {k}"));
                    }
                    (Some(s), _) => site = Some(s.name.to_string()),
                },
                k => match k.strip_prefix(VALUE_PREFIX) {
                    Some(group) => match value_map(group, v, kind, &has_group, &values) {
                        Ok(Some(m)) => values.push(m),
                        Ok(None) => {}
                        Err(r) => err(key, r),
                    },
                    None => err(
                        key,
                        "unknown option; driver `lines` accepts: pattern, kind, value.<group>, time, time_format, absent, site".into(),
                    ),
                },
            }
        }
        // Keys come sorted by name; list the values in the code table's order instead.
        if let Some(k) = kind {
            let comps = codes::kind_codes(k).components;
            values.sort_by_key(|m| comps.iter().position(|c| c.name == m.component));
        }
        if values.is_empty() && !opts.keys().any(|k| k.starts_with(VALUE_PREFIX)) {
            err(
                "value",
                "at least one `value.<group> = \"<component>:<unit>\"` is required".into(),
            );
        }
        if let Some(t) = &time_group {
            if values.iter().any(|m| &m.group == t) {
                err("time", format!("group `{t}` is also mapped to a value"));
            }
        } else if opts.contains_key("time_format") {
            err("time_format", "given without `time`".into());
        }
        match (pattern, kind, errors.is_empty()) {
            (Some(pattern), Some(kind), true) => Ok(Self {
                pattern,
                kind,
                values,
                time: time_group.map(|g| (g, time_format.unwrap_or(TimeFormat::Rfc3339))),
                absent,
                site,
            }),
            _ => Err(errors),
        }
    }
}

/// Checks one `value.<group>` mapping. `Ok(None)` when it cannot be checked further because
/// the kind is already reported as bad.
fn value_map(
    group: &str,
    v: &str,
    kind: Option<Kind>,
    has_group: &dyn Fn(&str) -> bool,
    earlier: &[ValueMap],
) -> Result<Option<ValueMap>, String> {
    check_group_name(group)?;
    if !has_group(group) {
        return Err(format!("the pattern has no group `(?P<{group}>...)`"));
    }
    let (name, unit) = split_mapping(v)?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let Some(comp) = codes::component(kind, name) else {
        let names: Vec<&str> = codes::kind_codes(kind)
            .components
            .iter()
            .map(|c| c.name)
            .collect();
        return Err(format!(
            "`{name}` is not a component of {kind}; expected one of: {}",
            names.join(", ")
        ));
    };
    let unit = unit.unwrap_or(comp.ucum);
    if !units::can_convert(unit, comp.ucum) {
        let mut ok = vec![comp.ucum];
        ok.extend(units::convertible_to(comp.ucum));
        return Err(format!(
            "unit `{unit}` cannot be converted to `{}`; use one of: {}",
            comp.ucum,
            ok.join(", ")
        ));
    }
    if let Some(e) = earlier.iter().find(|e| e.component == comp.name) {
        return Err(format!(
            "component `{name}` is already read from group `{}`",
            e.group
        ));
    }
    Ok(Some(ValueMap {
        group: group.to_string(),
        component: comp.name,
        unit: unit.to_string(),
    }))
}
