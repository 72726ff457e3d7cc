//! Audit entries in the audit files: written with the batch they describe, read back through
//! the queue, moved out of a store written by an earlier version (once, crash-safe).

use std::sync::Arc;

use crate::audit::{clock, AuditLog, AuditOptions, AuditQuery};
use crate::model::audit::{AuditEvent, ContextSource, DeliveryOutcome};
use crate::queue::tests::reading;
use crate::queue::{AuditFiles, MemoryStore, Queue, QueueOptions, Settle, Store};
use crate::reading::SinkId;

fn log(dir: &std::path::Path) -> AuditFiles {
    AuditFiles(Arc::new(
        AuditLog::open(AuditOptions {
            dir: dir.to_path_buf(),
            key: None,
            retention: std::time::Duration::from_secs(90 * 24 * 3600),
            max_bytes: u64::MAX,
            clock: clock::system(),
        })
        .unwrap(),
    ))
}

fn opts(files: Option<AuditFiles>) -> QueueOptions {
    let mut o = QueueOptions::new(vec![SinkId::new("out")]);
    o.audit_log = files;
    o
}

fn cleared(room: &str) -> AuditEvent {
    AuditEvent::ContextCleared {
        room: room.into(),
        source: ContextSource::Api,
        by: "ma".into(),
    }
}

fn audit_keys(store: &MemoryStore) -> usize {
    store.scan_prefix(b"l", None, usize::MAX).unwrap().len()
}

#[tokio::test]
async fn a_settle_writes_its_audit_entry_to_the_file_not_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let q = Queue::with_store(store.clone(), opts(Some(log(dir.path())))).unwrap();
    let r = reading("cuff", 1);
    let id = r.id.unwrap();
    q.enqueue(vec![r]).await.unwrap();
    q.settle_audited(&SinkId::new("out"), vec![(id, Settle::Delivered)])
        .await
        .unwrap();
    assert_eq!(audit_keys(&store), 0);
    let all = q.audit().entries(None, 10).unwrap();
    assert!(matches!(
        &all[..],
        [e] if matches!(e.event, AuditEvent::Delivery { outcome: DeliveryOutcome::Delivered, .. })
    ));
    let text = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(text.contains(&id.to_string()), "{text}");
    let s = q.stats().unwrap();
    assert_eq!(s.history.audit_bytes, 0);
    assert!(s.history.audit_file_bytes > 0);
    assert_eq!(s.history.audit_files, 1);
    q.audit().append(vec![cleared("r")]).await.unwrap();
    let page = q
        .audit()
        .page(&AuditQuery {
            limit: 1,
            newest_first: true,
            ..AuditQuery::default()
        })
        .unwrap();
    assert!(matches!(
        page.entries[0].event,
        AuditEvent::ContextCleared { .. }
    ));
    assert!(page.next.is_some());
}

#[tokio::test]
async fn entries_of_an_earlier_store_move_to_the_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    {
        let q = Queue::with_store(store.clone(), opts(None)).unwrap();
        q.audit()
            .append(vec![cleared("a"), cleared("b")])
            .await
            .unwrap();
        q.audit().append(vec![cleared("c")]).await.unwrap();
        q.close().await.unwrap();
    }
    let before = store.scan_prefix(b"l", None, usize::MAX).unwrap();
    assert_eq!(before.len(), 3);
    {
        let q = Queue::with_store(store.clone(), opts(Some(log(dir.path())))).unwrap();
        assert_eq!(audit_keys(&store), 0);
        assert_eq!(q.stats().unwrap().history.audit_bytes, 0);
        assert_eq!(q.audit().entries(None, 100).unwrap().len(), 3);
        q.close().await.unwrap();
    }
    // A crash after the files were synced but before the keys were removed: the keys are
    // back; the next open removes them without writing the entries twice.
    let mut b = crate::queue::Batch::new();
    for (k, v) in before {
        b.put(k, v);
    }
    store.apply(b).unwrap();
    let q = Queue::with_store(store.clone(), opts(Some(log(dir.path())))).unwrap();
    assert_eq!(audit_keys(&store), 0);
    let rooms: Vec<String> = q
        .audit()
        .entries(None, 100)
        .unwrap()
        .into_iter()
        .map(|e| match e.event {
            AuditEvent::ContextCleared { room, .. } => room,
            _ => String::new(),
        })
        .collect();
    assert_eq!(rooms, ["a", "b", "c"]);
    assert!(crate::audit::verify(dir.path(), None)
        .unwrap()
        .first_break
        .is_none());
}
