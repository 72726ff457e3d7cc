//! Decoder and parser messages without the payload's own text: what the ingest stage logs and
//! the store keeps of a rejected payload's reason.
//!
//! Receives an error message (a decoder's reason, serde_json's message, a regex miss); promises
//! the same message with every quoted span (`"…"`, `'…'`, `` `…` ``) replaced by `…`. Parsers
//! quote the offending value (`invalid type: string "MRN0012345", expected u32`), and that value
//! can be a patient identifier or a measurement: what is stored in the rejected-payload record
//! or logged, even at DEBUG, keeps the kind and place of the error, never the value.

/// `msg` with every quoted span replaced by `…`; an unclosed quote hides the rest.
pub fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '`' => '`',
            // An apostrophe inside a word (`can't`, `device's`) is not a quote.
            '\'' if out.chars().last().is_none_or(|p| !p.is_alphanumeric()) => '\'',
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(c);
        out.push('…');
        for d in chars.by_ref() {
            if d == close {
                out.push(d);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_quoted;

    #[test]
    fn quoted_values_are_hidden_and_the_kind_of_error_stays() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "MRN0012345", expected u32 at line 1 column 9"#),
            r#"invalid type: string "…", expected u32 at line 1 column 9"#
        );
        assert_eq!(
            redact_quoted("unknown variant `blood_pressur`, expected one of `spo2`"),
            "unknown variant `…`, expected one of `…`"
        );
        assert_eq!(
            redact_quoted("line 'SPO2=MRN1' did not match"),
            "line '…' did not match"
        );
        assert_eq!(
            redact_quoted("the device's frame can't be read"),
            "the device's frame can't be read"
        );
        assert_eq!(redact_quoted(r#"cut "MRN12"#), r#"cut "…"#);
        assert_eq!(redact_quoted("malformed: no flags"), "malformed: no flags");
    }
}
