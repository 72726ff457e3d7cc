//! The typed staging primitive and the handles' off-runtime reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::test_store::HookedStore;
use super::{MemoryStore, Queue, QueueError, QueueOptions, Store, StoreError};
use crate::reading::SinkId;

fn open(store: Arc<HookedStore>) -> Queue {
    let q = Queue::with_store(store.clone(), QueueOptions::new(vec![SinkId::new("out")])).unwrap();
    // Opening a new store syncs its first counters: only the syncs after it count here.
    store.forget_sync_entered();
    q
}

#[tokio::test]
async fn a_staged_value_is_returned_only_after_the_sync_that_holds_its_writes() {
    let store = Arc::new(HookedStore::new());
    let q = open(store.clone());
    store.hold_syncs();
    let staged = Arc::new(AtomicBool::new(false));
    let ran = staged.clone();
    let core = q.core.clone();
    let task = tokio::spawn(async move {
        core.stage(move |tx, _| {
            tx.put(b"zz-staged".to_vec(), b"1".to_vec());
            ran.store(true, Ordering::SeqCst);
            Ok(String::from("typed answer"))
        })
        .await
    });
    // The closure ran and its batch was applied; the sync is under way and not finished.
    for _ in 0..200 {
        if store.sync_entered() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        staged.load(Ordering::SeqCst),
        "the closure ran in the writer"
    );
    assert!(store.sync_entered(), "the group is being synced");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "answered before its group was synced");
    let before = store.sync_count();
    store.release_syncs();
    let answer = task.await.unwrap().unwrap();
    assert_eq!(answer, "typed answer");
    assert!(store.sync_count() > before);
    assert_eq!(store.get(b"zz-staged").unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn a_staged_value_is_never_returned_when_its_sync_fails() {
    let store = Arc::new(HookedStore::new());
    let q = open(store.clone());
    store.fail_syncs(true);
    let got = q
        .core
        .stage(|tx, _| {
            tx.put(b"zz-staged".to_vec(), b"1".to_vec());
            Ok(42u32)
        })
        .await;
    assert!(
        matches!(got, Err(QueueError::Store(StoreError::Io(_)))),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_failed_staging_is_rolled_back_and_the_rest_of_its_group_commits() {
    let store = Arc::new(HookedStore::new());
    let q = open(store.clone());
    // Hold the first group's sync so the next two requests are staged into one group.
    store.hold_syncs();
    let first = tokio::spawn({
        let core = q.core.clone();
        async move {
            core.stage(|tx, _| {
                tx.put(b"zz-a".to_vec(), b"a".to_vec());
                Ok(())
            })
            .await
        }
    });
    while !store.sync_entered() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let failing = {
        let core = q.core.clone();
        tokio::spawn(async move {
            core.stage(|tx, _| -> Result<(), QueueError> {
                tx.put(b"zz-bad".to_vec(), b"x".to_vec());
                Err(QueueError::Closed)
            })
            .await
        })
    };
    let fine = {
        let core = q.core.clone();
        tokio::spawn(async move {
            core.stage(|tx, _| {
                tx.put(b"zz-ok".to_vec(), b"k".to_vec());
                Ok(())
            })
            .await
        })
    };
    // The failing request is answered at once, before any sync.
    let failed = tokio::time::timeout(Duration::from_secs(5), failing)
        .await
        .expect("a failed staging is answered without waiting for a sync")
        .unwrap();
    assert!(matches!(failed, Err(QueueError::Closed)));
    store.release_syncs();
    first.await.unwrap().unwrap();
    fine.await.unwrap().unwrap();
    assert_eq!(store.get(b"zz-bad").unwrap(), None);
    assert_eq!(store.get(b"zz-ok").unwrap(), Some(b"k".to_vec()));
}

/// The async reads run on the blocking pool: a read that blocks does not stop a
/// current-thread runtime, which here must run the task that unblocks it.
#[test]
fn an_async_read_runs_off_the_runtime_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let q = Queue::with_store(
        Arc::new(MemoryStore::new()),
        QueueOptions::new(vec![SinkId::new("out")]),
    )
    .unwrap();
    let runtime_thread = std::thread::current().id();
    rt.block_on(async {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = go.send(());
        });
        let (thread, unblocked, count) = q
            .held()
            .read(move |held| {
                let unblocked = wait.recv_timeout(Duration::from_secs(5)).is_ok();
                Ok((std::thread::current().id(), unblocked, held.count()?))
            })
            .await
            .unwrap();
        assert_ne!(
            thread, runtime_thread,
            "the read ran on the runtime's thread"
        );
        assert!(unblocked, "the runtime stood still while the read blocked");
        assert_eq!(count, 0);
        let stats = q.read(|q| q.stats()).await.unwrap();
        assert_eq!(stats.readings, 0);
    });
}

/// The delivery loop's idle look at the schedule (`DeliveryQueue::next_due` of the real queue)
/// reads the store on the blocking pool: while that read is held at the store, a
/// current-thread runtime (one worker) still runs its timers, and the answer arrives once the
/// read is let through.
#[test]
fn next_due_reads_the_store_off_the_runtime_worker() {
    use crate::sink::delivery::DeliveryQueue;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(HookedStore::new());
    let q = open(store.clone());
    rt.block_on(async {
        let r = super::tests::reading("cuff", 1);
        q.enqueue(vec![r.clone()]).await.unwrap();
        store.hold_reads();
        let due = {
            let q = q.clone();
            tokio::spawn(async move { DeliveryQueue::next_due(&q, &SinkId::new("out")).await })
        };
        let t0 = std::time::Instant::now();
        while !store.read_entered() {
            assert!(t0.elapsed() < Duration::from_secs(5), "next_due never read");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // On the worker, the held read would stop this timer until the gate gave up (10 s).
        let slept = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            slept.elapsed() < Duration::from_secs(2),
            "the runtime stood still while next_due waited for the store"
        );
        assert!(!due.is_finished(), "answered while its read was held");
        store.release_reads();
        let at = due.await.unwrap().unwrap();
        let id = r.id.unwrap();
        assert_eq!(
            at,
            Some(super::ops::from_ms(super::ops::id_ms(id))),
            "due from the reading's id time"
        );
    });
}
