//! The patient lookup's wiring: `[patient] lookup` on the FHIR sink it names (or the server the
//! demo gives), with the token source of that sink's credentials, so the lookup and the sink
//! use one access token (docs/patient-lookup.md).

use anyhow::anyhow;

use super::tokens::TokenSources;
use crate::config::{Config, SinkConfig};
use crate::context::lookup::Lookup;

/// The lookup `cfg` configures; `None` without one.
pub fn build_lookup(cfg: &Config, tokens: &TokenSources) -> anyhow::Result<Option<Lookup>> {
    let Some(l) = &cfg.patient.lookup else {
        return Ok(None);
    };
    let sink = l.server.as_ref().or_else(|| {
        cfg.sinks.iter().find_map(|s| match s {
            SinkConfig::Fhir(f) if f.id == l.sink => Some(f),
            _ => None,
        })
    });
    let Some(sink) = sink else {
        anyhow::bail!("patient.lookup: no FHIR sink `{}`", l.sink);
    };
    let lookup = Lookup::from_config(l, sink, tokens.get(&sink.auth, sink.ca_file.as_deref()))
        .map_err(|e| {
            anyhow!(
                "patient.lookup: cannot set up the client of sink `{}`: {e}",
                l.sink
            )
        })?;
    Ok(Some(lookup))
}
