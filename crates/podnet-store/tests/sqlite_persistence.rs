//! What only the SQLite backend promises: state, revisions and history
//! survive a restart, and acknowledged writes are in the database file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use podnet_store::{
    spawn_auto_compaction, MemoryStore, Retention, SqliteStore, Store, StoreError, WatchStream,
};

fn next_revision(stream: &mut WatchStream) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stream.receiver.try_recv() {
            Ok(Ok(event)) => return event.record.mod_revision,
            Ok(Err(error)) => panic!("watch failed: {error}"),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => panic!("watch closed"),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no event within 10s");
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[test]
fn revision_and_compaction_mark_survive_reopen_and_are_never_reused() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create("/core/pods/default/a", b"a").unwrap();
        store.create("/core/pods/default/b", b"b").unwrap();
        store
            .update("/core/pods/default/a", b"a2", Some(1))
            .unwrap();
        store.delete("/core/pods/default/a", None).unwrap();
        store.delete("/core/pods/default/b", None).unwrap();
        store.compact(5).unwrap();
        assert_eq!(store.current_revision().unwrap(), 5);
    }
    let store = SqliteStore::open(&path).unwrap();
    // Every key is gone and the log is compacted, yet revision 5 is remembered.
    assert_eq!(store.current_revision().unwrap(), 5);
    assert_eq!(store.compacted_revision(), 5);
    assert_eq!(store.count("").unwrap(), 0);
    assert_eq!(store.list("", None, None).unwrap().revision, 5);
    assert!(matches!(
        store.watch("", 4),
        Err(StoreError::Compacted {
            requested: 4,
            oldest: 5
        })
    ));
    assert_eq!(
        store.create("/core/pods/default/a", b"new life").unwrap(),
        6
    );
    let record = store.get("/core/pods/default/a").unwrap().unwrap();
    assert_eq!((record.create_revision, record.mod_revision), (6, 6));
}

#[test]
fn values_and_history_survive_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for index in 1..=5 {
            store
                .create(
                    &format!("/core/pods/default/p{index}"),
                    format!("v{index}").as_bytes(),
                )
                .unwrap();
        }
        store
            .update("/core/pods/default/p3", b"v3b", Some(3))
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let page = store.list("/core/pods/", None, None).unwrap();
    assert_eq!(page.revision, 6);
    let values: Vec<String> = page
        .records
        .iter()
        .map(|record| String::from_utf8_lossy(&record.value).into_owned())
        .collect();
    assert_eq!(values, ["v1", "v2", "v3b", "v4", "v5"]);
    // A watcher that saw revision 2 before the restart resumes from the log.
    let mut stream = store.watch("/core/pods/", 2).unwrap();
    let replayed: Vec<i64> = (0..4).map(|_| next_revision(&mut stream)).collect();
    assert_eq!(replayed, [3, 4, 5, 6]);
    store.delete("/core/pods/default/p1", None).unwrap();
    assert_eq!(next_revision(&mut stream), 7);
}

#[test]
fn acknowledged_write_is_in_the_database_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    let revision = store.create("/core/namespaces/-/default", b"{}").unwrap();
    // An independent connection, as another process would open it.
    let observer = rusqlite::Connection::open(&path).unwrap();
    let stored: (Vec<u8>, i64) = observer
        .query_row(
            "SELECT value, mod_revision FROM kv WHERE key = ?1",
            ["/core/namespaces/-/default"],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(stored, (b"{}".to_vec(), revision));
    let journal_mode: String = observer
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
}

#[test]
fn concurrent_writers_get_distinct_contiguous_revisions() {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(directory.path().join("state.db")).unwrap());
    const THREADS: usize = 16;
    const PER_THREAD: usize = 50;
    let handles: Vec<_> = (0..THREADS)
        .map(|writer| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|index| {
                        store
                            .create(&format!("/core/pods/w{writer}/p{index}"), b"x")
                            .unwrap()
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for handle in handles {
        let per_writer = handle.join().unwrap();
        // Each writer's own writes are ordered.
        assert!(per_writer.windows(2).all(|pair| pair[0] < pair[1]));
        revisions.extend(per_writer);
    }
    let total = (THREADS * PER_THREAD) as i64;
    assert_eq!(revisions, (1..=total).collect::<BTreeSet<i64>>());
    assert_eq!(store.count("/core/pods/").unwrap(), total as u64);
}

#[test]
fn dropped_watch_stops_being_fed() {
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path().join("state.db")).unwrap();
    let kept = store.watch("/core/pods/", 0).unwrap();
    let dropped = store.watch("/core/pods/", 0).unwrap();
    assert_eq!(store.live_watcher_count(), 2);
    drop(dropped);
    store.create("/core/pods/default/a", b"x").unwrap();
    assert_eq!(store.live_watcher_count(), 1);
    drop(kept);
}

fn wait_for_compaction(compacted: impl Fn() -> i64, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while compacted() != expected {
        assert!(
            Instant::now() < deadline,
            "compacted revision stayed at {} instead of {expected}",
            compacted()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn auto_compaction_keeps_the_requested_revisions() {
    let retention = Retention {
        keep_revisions: 5,
        keep_for: Duration::ZERO,
    };
    let directory = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(directory.path().join("state.db")).unwrap());
    let memory = Arc::new(MemoryStore::new());
    for index in 1..=20 {
        let key = format!("/core/pods/default/p{index}");
        sqlite.create(&key, b"x").unwrap();
        memory.create(&key, b"x").unwrap();
    }
    let _sqlite_compaction =
        spawn_auto_compaction(Arc::clone(&sqlite), retention, Duration::from_millis(10)).unwrap();
    let _memory_compaction =
        spawn_auto_compaction(Arc::clone(&memory), retention, Duration::from_millis(10)).unwrap();
    wait_for_compaction(|| sqlite.compacted_revision(), 15);
    wait_for_compaction(|| memory.compacted_revision(), 15);
    assert!(sqlite.watch("", 15).is_ok());
    assert!(matches!(
        memory.watch("", 14),
        Err(StoreError::Compacted { .. })
    ));
}
