//! Key path → line number, so every config problem names where it is.
//!
//! The file is parsed once more with spans (`toml::de::DeTable`); every key and array element is
//! recorded under its dotted path (`device[2].serial.baud`). Lookups fall back to the nearest
//! parent that exists, so a missing key points at its table.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};

/// Where each key path starts in the source.
#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
    line_starts: Vec<usize>,
}

impl Locator {
    pub fn new(src: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut loc = Self {
            lines: HashMap::new(),
            line_starts,
        };
        if let Ok(doc) = DeTable::parse(src) {
            loc.walk_table("", doc.get_ref());
        }
        loc
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The line of `path`, or of its nearest recorded parent.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (k, v) in table.iter() {
            let path = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            let line = self.line_of(k.span().start);
            self.lines.entry(path.clone()).or_insert(line);
            self.walk_value(&path, v.get_ref(), v.span().start);
        }
    }

    fn walk_value(&mut self, path: &str, v: &DeValue<'_>, at: usize) {
        match v {
            DeValue::Table(t) => self.walk_table(path, t),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    let line = self.line_of(item.span().start.max(at));
                    self.lines.entry(p.clone()).or_insert(line);
                    self.walk_value(&p, item.get_ref(), item.span().start);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_arrays_of_tables_get_their_own_lines() {
        let src = "[daemon]\ndata_dir = \"/x\"\n\n[[device]]\nid = \"a\"\n\n[[device]]\nid = \"b\"\nserial = { path = \"/dev/x\", baud = 9600 }\n";
        let loc = Locator::new(src);
        assert_eq!(loc.line("daemon.data_dir"), Some(2));
        assert_eq!(loc.line("device[0].id"), Some(5));
        assert_eq!(loc.line("device[1].id"), Some(8));
        assert_eq!(loc.line("device[1].serial.baud"), Some(9));
        assert_eq!(loc.line("device[1].serial.parity"), Some(9));
        assert_eq!(loc.line("nothing.here"), None);
    }
}
