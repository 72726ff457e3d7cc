//! The durable room contexts: which patient is in which room, as the patient context saved it.
//!
//! Receives a room's context record (JSON owned by `crate::context`) with the audit entries
//! that describe the change. Promises: a record is stored (or removed) in ONE batch with its
//! audit entries, inside the writer's group commit, and [`Contexts::save`] returns only after
//! the sync that holds both; [`Contexts::load`] returns every stored record.
//!
//! # Layout
//! ```text
//! 'x' room                    → the room's context record
//! ```

use std::sync::Arc;

use super::audit::append;
use super::handle::{async_reads, Core};
use super::ops;
use super::txn::corrupt;
use super::types::QueueError;
use crate::model::audit::AuditEvent;

pub const CONTEXT: u8 = b'x';

fn context_key(room: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(room.len() + 1);
    k.push(CONTEXT);
    k.extend_from_slice(room.as_bytes());
    k
}

/// The stored room contexts. A cloneable handle over the store's one writer
/// (`queue.contexts()`).
#[derive(Clone)]
pub struct Contexts {
    core: Arc<Core>,
}

async_reads!(Contexts);

impl Contexts {
    pub(super) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Stores (or, with `None`, removes) a room's context record together with its audit
    /// entries, durably.
    pub async fn save(
        &self,
        room: &str,
        record: Option<Vec<u8>>,
        events: Vec<AuditEvent>,
    ) -> Result<(), QueueError> {
        let key = context_key(room);
        self.core
            .stage(move |tx, ctx| {
                match record {
                    Some(v) => tx.put(key, v),
                    None => tx.remove(key),
                }
                append(tx, ops::from_ms(ctx.now_ms), events)
            })
            .await
    }

    /// Every stored room context record: `(room, record)`.
    pub fn load(&self) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        let store = &*self.core.shared()?.store;
        let mut out = Vec::new();
        for (k, v) in store.scan_prefix(&[CONTEXT], None, usize::MAX)? {
            let room =
                String::from_utf8(k[1..].to_vec()).map_err(|e| corrupt(&k, &e.to_string()))?;
            out.push((room, v));
        }
        Ok(out)
    }
}
