//! The method names callers outside the store used before the separate handles, forwarding to
//! them until those call sites move to `queue.held()`, `queue.audit()`, ….

use time::OffsetDateTime;

use super::{
    Decision, EnqueueOutcome, HeldEntry, QuarantineEntry, Queue, QueueError, Release,
    ReleaseRequest, ReviewEntry,
};
use crate::audit::{AuditPage, AuditQuery};
use crate::model::audit::{AuditEntry, AuditEvent};
use crate::reading::{PatientRef, Reading, ReadingId};

impl Queue {
    pub async fn hold(&self, r: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        self.held().hold(r).await
    }
    pub fn held_count(&self) -> Result<u64, QueueError> {
        self.held().count()
    }
    pub async fn assign_held(
        &self,
        id: ReadingId,
        p: PatientRef,
        by: String,
    ) -> Result<Option<Reading>, QueueError> {
        self.held().assign(id, p, by).await
    }
    pub async fn discard_held(
        &self,
        id: ReadingId,
        reason: String,
        by: String,
    ) -> Result<Option<Reading>, QueueError> {
        self.held().discard(id, reason, by).await
    }
    pub fn held_list(&self, limit: usize) -> Result<Vec<HeldEntry>, QueueError> {
        self.held().list(limit)
    }
    pub async fn to_review(&self, r: Vec<Reading>) -> Result<Vec<EnqueueOutcome>, QueueError> {
        self.review().add(r).await
    }
    pub fn review_list(&self, limit: usize) -> Result<Vec<ReviewEntry>, QueueError> {
        self.review().list(limit)
    }
    pub async fn confirm_review(&self, id: ReadingId, by: String) -> Result<Decision, QueueError> {
        self.review().confirm(id, by).await
    }
    pub async fn reject_review(
        &self,
        id: ReadingId,
        by: String,
        reason: Option<String>,
    ) -> Result<Decision, QueueError> {
        self.review().reject(id, by, reason).await
    }
    pub async fn decide_review_room(
        &self,
        room: &str,
        confirm_all: bool,
        by: String,
    ) -> Result<Vec<ReadingId>, QueueError> {
        self.review().decide_room(room, confirm_all, by).await
    }
    pub fn quarantined(&self, limit: usize) -> Result<Vec<QuarantineEntry>, QueueError> {
        self.quarantine().list(limit)
    }
    pub async fn release_quarantined(
        &self,
        id: ReadingId,
        req: ReleaseRequest,
    ) -> Result<Release, QueueError> {
        self.quarantine().release(id, req).await
    }
    pub async fn discard_quarantined(
        &self,
        id: ReadingId,
        by: String,
        reason: String,
    ) -> Result<bool, QueueError> {
        self.quarantine().discard(id, by, reason).await
    }
    pub fn rejected_count(&self) -> Result<u64, QueueError> {
        self.rejected().count()
    }
    pub fn reject(&self, d: &str, t: &str, r: &str, p: &[u8]) -> Result<(), QueueError> {
        self.rejected().reject(d, t, r, p)
    }
    pub async fn audit_append(&self, e: Vec<AuditEvent>) -> Result<(), QueueError> {
        self.audit().append(e).await
    }
    pub fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, QueueError> {
        self.audit().page(q)
    }
    pub fn audit_entries(
        &self,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, QueueError> {
        self.audit().entries(since, limit)
    }
    pub fn context_records(&self) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        self.contexts().load()
    }
    pub async fn save_context(
        &self,
        room: &str,
        record: Option<Vec<u8>>,
        events: Vec<AuditEvent>,
    ) -> Result<(), QueueError> {
        self.contexts().save(room, record, events).await
    }
}
