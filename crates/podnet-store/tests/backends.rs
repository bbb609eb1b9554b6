//! The store contract, checked identically against every backend.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use expect_test::{expect, Expect};
use podnet_store::{Event, MemoryStore, SqliteStore, Store, StoreError, StoreOptions, WatchStream};
use tempfile::TempDir;

/// A store and whatever must outlive it.
struct Fixture {
    store: Arc<dyn Store>,
    _directory: Option<TempDir>,
}

fn memory(options: StoreOptions) -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::with_options(options)),
        _directory: None,
    }
}

fn sqlite(options: StoreOptions) -> Fixture {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_with_options(directory.path().join("state.db"), options)
        .expect("opening the store");
    Fixture {
        store: Arc::new(store),
        _directory: Some(directory),
    }
}

type Open = fn(StoreOptions) -> Fixture;

enum Next {
    Item(Result<Event, StoreError>),
    Closed,
    TimedOut,
}

fn next(stream: &mut WatchStream, timeout: Duration) -> Next {
    let deadline = Instant::now() + timeout;
    loop {
        match stream.receiver.try_recv() {
            Ok(item) => return Next::Item(item.map(std::sync::Arc::unwrap_or_clone)),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return Next::Closed,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                if Instant::now() >= deadline {
                    return Next::TimedOut;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn next_event(stream: &mut WatchStream) -> Event {
    match next(stream, Duration::from_secs(10)) {
        Next::Item(Ok(event)) => event,
        Next::Item(Err(error)) => panic!("watch failed: {error}"),
        Next::Closed => panic!("watch closed"),
        Next::TimedOut => panic!("no event within 10s"),
    }
}

fn describe(event: &Event) -> String {
    format!(
        "{:?} {} rev={} created={} value={} prev={}",
        event.kind,
        event.record.key,
        event.record.mod_revision,
        event.record.create_revision,
        String::from_utf8_lossy(&event.record.value),
        match &event.prev {
            Some(prev) => format!(
                "{}@{}",
                String::from_utf8_lossy(&prev.value),
                prev.mod_revision
            ),
            None => "-".into(),
        }
    )
}

fn take_events(stream: &mut WatchStream, count: usize) -> Vec<Event> {
    (0..count).map(|_| next_event(stream)).collect()
}

fn check_events(events: &[Event], expected: Expect) {
    let described: Vec<String> = events.iter().map(describe).collect();
    expected.assert_eq(&(described.join("\n") + "\n"));
}

fn assert_quiet(stream: &mut WatchStream) {
    match next(stream, Duration::from_millis(50)) {
        Next::TimedOut => {}
        Next::Item(Ok(event)) => panic!("unexpected event {}", describe(&event)),
        Next::Item(Err(error)) => panic!("unexpected error {error}"),
        Next::Closed => panic!("watch closed unexpectedly"),
    }
}

fn create_get_update_delete(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    assert_eq!(store.current_revision().unwrap(), 0);
    assert_eq!(store.get("/core/pods/default/a").unwrap(), None);

    assert_eq!(store.create("/core/pods/default/a", b"one").unwrap(), 1);
    let record = store.get("/core/pods/default/a").unwrap().unwrap();
    assert_eq!(record.value, &b"one"[..]);
    assert_eq!((record.create_revision, record.mod_revision), (1, 1));

    assert_eq!(
        store
            .update("/core/pods/default/a", b"two", Some(1))
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .update("/core/pods/default/a", b"three", None)
            .unwrap(),
        3
    );
    let record = store.get("/core/pods/default/a").unwrap().unwrap();
    assert_eq!(record.value, &b"three"[..]);
    assert_eq!((record.create_revision, record.mod_revision), (1, 3));

    let deleted = store.delete("/core/pods/default/a", Some(3)).unwrap();
    assert_eq!(deleted.value, &b"three"[..]);
    assert_eq!((deleted.create_revision, deleted.mod_revision), (1, 4));
    assert_eq!(store.get("/core/pods/default/a").unwrap(), None);
    assert_eq!(store.current_revision().unwrap(), 4);

    // A re-created key starts a new life.
    assert_eq!(store.create("/core/pods/default/a", b"again").unwrap(), 5);
    let record = store.get("/core/pods/default/a").unwrap().unwrap();
    assert_eq!((record.create_revision, record.mod_revision), (5, 5));
}

fn refusals(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    store.create("/core/pods/default/a", b"one").unwrap();
    assert!(matches!(
        store.create("/core/pods/default/a", b"dup"),
        Err(StoreError::AlreadyExists(key)) if key == "/core/pods/default/a"
    ));
    assert!(matches!(
        store.update("/core/pods/default/missing", b"x", None),
        Err(StoreError::NotFound(key)) if key == "/core/pods/default/missing"
    ));
    assert!(matches!(
        store.delete("/core/pods/default/missing", None),
        Err(StoreError::NotFound(_))
    ));
    store
        .update("/core/pods/default/a", b"two", Some(1))
        .unwrap();
    assert!(matches!(
        store.update("/core/pods/default/a", b"stale", Some(1)),
        Err(StoreError::Conflict { key, expected: 1, actual: 2 }) if key == "/core/pods/default/a"
    ));
    assert!(matches!(
        store.delete("/core/pods/default/a", Some(1)),
        Err(StoreError::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    // Refused writes consume no revision and change nothing.
    assert_eq!(store.current_revision().unwrap(), 2);
    assert_eq!(
        store.get("/core/pods/default/a").unwrap().unwrap().value,
        &b"two"[..]
    );
}

fn concurrent_updates_from_same_revision(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    const THREADS: usize = 8;
    for round in 0..20 {
        let key = format!("/core/configmaps/default/c{round}");
        let revision = store.create(&key, b"initial").unwrap();
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|writer| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                let key = key.clone();
                thread::spawn(move || {
                    barrier.wait();
                    store.update(&key, format!("writer {writer}").as_bytes(), Some(revision))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: exactly one update must win");
        for result in &results {
            if let Err(error) = result {
                assert!(
                    matches!(error, StoreError::Conflict { expected, actual, .. }
                        if *expected == revision && *actual == revision + 1),
                    "unexpected error {error}"
                );
            }
        }
    }
}

fn list_paging(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    for name in ["e", "a", "d", "b", "c"] {
        store
            .create(&format!("/core/pods/default/{name}"), name.as_bytes())
            .unwrap();
    }
    // Neighbours that share a textual prefix but are outside the range.
    store.create("/core/pods/", b"bare prefix key").unwrap();
    store.create("/core/podsx/default/a", b"other").unwrap();
    store.create("/core/pod/default/a", b"other").unwrap();
    store.create("/core/pods/kube-system/z", b"z").unwrap();

    let mut keys = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list("/core/pods/default/", start_after.as_deref(), Some(2))
            .unwrap();
        assert_eq!(page.revision, 9);
        assert!(page.records.len() <= 2);
        keys.extend(page.records.iter().map(|record| record.key.clone()));
        pages += 1;
        match page.continue_after {
            Some(continue_after) => start_after = Some(continue_after),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        keys,
        ["a", "b", "c", "d", "e"].map(|name| format!("/core/pods/default/{name}"))
    );

    let everything_under_pods = store.list("/core/pods/", None, None).unwrap();
    let listed: Vec<&str> = everything_under_pods
        .records
        .iter()
        .map(|record| record.key.as_str())
        .collect();
    assert_eq!(
        listed,
        [
            "/core/pods/",
            "/core/pods/default/a",
            "/core/pods/default/b",
            "/core/pods/default/c",
            "/core/pods/default/d",
            "/core/pods/default/e",
            "/core/pods/kube-system/z",
        ]
    );
    assert_eq!(everything_under_pods.continue_after, None);
    // An exact page: nothing remains, so no continue key.
    let exact = store.list("/core/pods/default/", None, Some(5)).unwrap();
    assert_eq!((exact.records.len(), exact.continue_after), (5, None));
    // Limit 0 means no limit.
    assert_eq!(store.list("", None, Some(0)).unwrap().records.len(), 9);

    assert_eq!(store.count("/core/pods/default/").unwrap(), 5);
    assert_eq!(store.count("/core/pods/").unwrap(), 7);
    assert_eq!(store.count("").unwrap(), 9);
    assert_eq!(store.count("/apps/").unwrap(), 0);
}

fn watch_from_now_filters_by_prefix(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    store.create("/core/pods/default/old", b"before").unwrap();
    let mut pods = store.watch("/core/pods/", 0).unwrap();
    let mut everything = store.watch("", 0).unwrap();

    store.create("/core/pods/default/a", b"v1").unwrap();
    store.create("/core/services/default/s", b"svc").unwrap();
    store.update("/core/pods/default/a", b"v2", None).unwrap();
    store.delete("/core/pods/default/a", None).unwrap();
    store.delete("/core/pods/default/old", None).unwrap();

    check_events(
        &take_events(&mut pods, 4),
        expect![[r#"
            Added /core/pods/default/a rev=2 created=2 value=v1 prev=-
            Modified /core/pods/default/a rev=4 created=2 value=v2 prev=v1@2
            Deleted /core/pods/default/a rev=5 created=2 value=v2 prev=v2@4
            Deleted /core/pods/default/old rev=6 created=1 value=before prev=before@1
        "#]],
    );
    assert_quiet(&mut pods);
    let all = take_events(&mut everything, 5);
    assert_eq!(
        all.iter()
            .map(|event| event.record.mod_revision)
            .collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_quiet(&mut everything);
}

fn watch_from_past_revision(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    store.create("/core/pods/default/a", b"a1").unwrap();
    store.create("/core/pods/default/b", b"b1").unwrap();
    store.create("/core/services/default/s", b"s1").unwrap();
    store
        .update("/core/pods/default/a", b"a2", Some(1))
        .unwrap();

    let mut stream = store.watch("/core/pods/", 1).unwrap();
    // Replayed from the log, then live.
    let replayed = take_events(&mut stream, 2);
    store.delete("/core/pods/default/b", None).unwrap();
    let live = take_events(&mut stream, 1);
    check_events(
        &[replayed, live].concat(),
        expect![[r#"
            Added /core/pods/default/b rev=2 created=2 value=b1 prev=-
            Modified /core/pods/default/a rev=4 created=1 value=a2 prev=a1@1
            Deleted /core/pods/default/b rev=5 created=2 value=b1 prev=b1@2
        "#]],
    );
    assert_quiet(&mut stream);

    // Watching from the current revision replays nothing.
    let mut from_current = store.watch("", store.current_revision().unwrap()).unwrap();
    assert_quiet(&mut from_current);
}

/// Watches started from past revisions while a writer runs must see every
/// revision after their start exactly once, in order: the hand-over from
/// replay to live delivery must leave neither gap nor duplicate.
fn replay_and_live_have_no_gap_or_duplicate(open: Open) {
    let fixture = open(StoreOptions {
        watch_buffer: 100_000,
        ..StoreOptions::default()
    });
    let store = Arc::clone(&fixture.store);
    const INITIAL: i64 = 50;
    const WRITERS: i64 = 4;
    const PER_WRITER: i64 = 400;
    const WRITES: i64 = INITIAL + WRITERS * PER_WRITER;
    for index in 0..INITIAL {
        store
            .create(&format!("/core/pods/default/p{index}"), b"x")
            .unwrap();
    }
    // Several writers, so that the SQLite backend commits often enough for
    // writes to land while replays are running.
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for index in 0..PER_WRITER {
                    store
                        .create(&format!("/core/pods/w{writer}/p{index}"), b"x")
                        .unwrap();
                }
            })
        })
        .collect();
    let mut watchers = Vec::new();
    for start in [0_i64, 1, 10, 49] {
        watchers.push((start, store.watch("/core/pods/", start).unwrap()));
    }
    // More watches start while the writers are under way, some with long
    // replays (from revision 1), some with short ones.
    for round in 0..12 {
        let start = if round % 2 == 0 {
            1
        } else {
            store.current_revision().unwrap() - 5
        };
        watchers.push((start, store.watch("/core/pods/", start).unwrap()));
        thread::sleep(Duration::from_millis(3));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    for (start, mut stream) in watchers {
        let first_expected = if start == 0 { None } else { Some(start + 1) };
        let mut previous: Option<i64> = None;
        loop {
            let event = next_event(&mut stream);
            let revision = event.record.mod_revision;
            match previous {
                None => {
                    if let Some(first) = first_expected {
                        assert_eq!(
                            revision, first,
                            "watch after {start} starts at the next revision"
                        );
                    }
                }
                Some(previous) => assert_eq!(
                    revision,
                    previous + 1,
                    "watch after {start}: gap or duplicate after revision {previous}"
                ),
            }
            previous = Some(revision);
            if revision == WRITES {
                break;
            }
        }
        assert_quiet(&mut stream);
    }
}

fn compaction(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    for index in 1..=10 {
        store
            .create(&format!("/core/pods/default/p{index}"), b"x")
            .unwrap();
    }
    store.compact(5).unwrap();
    assert!(matches!(
        store.watch("/core/pods/", 3),
        Err(StoreError::Compacted {
            requested: 3,
            oldest: 5
        })
    ));
    // The compacted revision itself is a valid starting point.
    let mut stream = store.watch("/core/pods/", 5).unwrap();
    let revisions: Vec<i64> = take_events(&mut stream, 5)
        .iter()
        .map(|event| event.record.mod_revision)
        .collect();
    assert_eq!(revisions, [6, 7, 8, 9, 10]);
    // Compacting backwards is a no-op; past the end stops at the current revision.
    store.compact(2).unwrap();
    assert!(store.watch("/core/pods/", 5).is_ok());
    store.compact(1_000).unwrap();
    assert!(matches!(
        store.watch("/core/pods/", 9),
        Err(StoreError::Compacted {
            requested: 9,
            oldest: 10
        })
    ));
    // Values are untouched, and new writes follow the old revisions.
    assert_eq!(store.count("/core/pods/").unwrap(), 10);
    assert_eq!(store.create("/core/pods/default/new", b"x").unwrap(), 11);
    assert_eq!(next_event(&mut stream).record.mod_revision, 11);
}

fn slow_watcher_overflow_ends_only_that_watcher(open: Open) {
    let fixture = open(StoreOptions {
        watch_buffer: 4,
        ..StoreOptions::default()
    });
    let store = Arc::clone(&fixture.store);
    let mut stalled = store.watch("/core/pods/", 0).unwrap();
    let mut reading = store.watch("/core/pods/", 0).unwrap();
    let mut unrelated = store.watch("/core/services/", 0).unwrap();
    for index in 1..=10 {
        // Writers never wait for the stalled watcher.
        store
            .create(&format!("/core/pods/default/p{index}"), b"x")
            .unwrap();
        assert_eq!(next_event(&mut reading).record.mod_revision, index);
    }
    let delivered: Vec<i64> = take_events(&mut stalled, 4)
        .iter()
        .map(|event| event.record.mod_revision)
        .collect();
    assert_eq!(delivered, [1, 2, 3, 4]);
    match next(&mut stalled, Duration::from_secs(5)) {
        Next::Item(Err(StoreError::WatcherTooSlow { prefix, capacity })) => {
            assert_eq!((prefix.as_str(), capacity), ("/core/pods/", 4));
        }
        _ => panic!("the stalled watcher must end with WatcherTooSlow"),
    }
    assert!(matches!(
        next(&mut stalled, Duration::from_secs(5)),
        Next::Closed
    ));

    // The others are still live.
    store.create("/core/pods/default/p11", b"x").unwrap();
    store.create("/core/services/default/s", b"x").unwrap();
    assert_eq!(next_event(&mut reading).record.mod_revision, 11);
    assert_eq!(next_event(&mut unrelated).record.mod_revision, 12);
}

fn dropped_watch_is_unsubscribed(open: Open) {
    let fixture = open(StoreOptions::default());
    let store = Arc::clone(&fixture.store);
    let stream = store.watch("/core/pods/", 0).unwrap();
    drop(stream);
    // Nothing observable may break: writes go on.
    for index in 1..=3 {
        store
            .create(&format!("/core/pods/default/p{index}"), b"x")
            .unwrap();
    }
    let mut after = store.watch("/core/pods/", 0).unwrap();
    store.create("/core/pods/default/p4", b"x").unwrap();
    assert_eq!(next_event(&mut after).record.mod_revision, 4);
}

macro_rules! backend_suite {
    ($backend:ident) => {
        mod $backend {
            #[test]
            fn create_get_update_delete() {
                super::create_get_update_delete(super::$backend);
            }
            #[test]
            fn refusals() {
                super::refusals(super::$backend);
            }
            #[test]
            fn concurrent_updates_from_same_revision() {
                super::concurrent_updates_from_same_revision(super::$backend);
            }
            #[test]
            fn list_paging() {
                super::list_paging(super::$backend);
            }
            #[test]
            fn watch_from_now_filters_by_prefix() {
                super::watch_from_now_filters_by_prefix(super::$backend);
            }
            #[test]
            fn watch_from_past_revision() {
                super::watch_from_past_revision(super::$backend);
            }
            #[test]
            fn replay_and_live_have_no_gap_or_duplicate() {
                super::replay_and_live_have_no_gap_or_duplicate(super::$backend);
            }
            #[test]
            fn compaction() {
                super::compaction(super::$backend);
            }
            #[test]
            fn slow_watcher_overflow_ends_only_that_watcher() {
                super::slow_watcher_overflow_ends_only_that_watcher(super::$backend);
            }
            #[test]
            fn dropped_watch_is_unsubscribed() {
                super::dropped_watch_is_unsubscribed(super::$backend);
            }
        }
    };
}

backend_suite!(memory);
backend_suite!(sqlite);
