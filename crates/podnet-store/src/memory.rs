//! The in-memory backend: the same semantics as SQLite, nothing persisted.
//! Used by the unit tests of the crates above the store.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::watch::{HistoryChunk, HistorySource, WatchHub};
use crate::write::{plan_write, WriteOperation};
use crate::{Event, EventKind, ListPage, Record, Store, StoreError, StoreOptions, WatchStream};

struct MemoryState {
    records: BTreeMap<String, Record>,
    /// Every event after `compacted_revision`, in revision order.
    log: VecDeque<Event>,
    revision: i64,
    compacted_revision: i64,
}

#[derive(Clone)]
struct SharedMemoryState(Arc<Mutex<MemoryState>>);

impl SharedMemoryState {
    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // Writes mutate the state only after every check passed, so a panic
        // cannot leave it half-written; a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Store`] kept in memory.
pub struct MemoryStore {
    state: SharedMemoryState,
    hub: Arc<WatchHub>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::with_options(StoreOptions::default())
    }

    pub fn with_options(options: StoreOptions) -> MemoryStore {
        MemoryStore {
            state: SharedMemoryState(Arc::new(Mutex::new(MemoryState {
                records: BTreeMap::new(),
                log: VecDeque::new(),
                revision: 0,
                compacted_revision: 0,
            }))),
            hub: Arc::new(WatchHub::new(0, options.watch_buffer)),
        }
    }

    /// The revision up to which history has been forgotten (0 = none).
    pub fn compacted_revision(&self) -> i64 {
        self.state.lock().compacted_revision
    }

    /// Number of watchers receiving live events (see [`crate::SqliteStore::live_watcher_count`]).
    pub fn live_watcher_count(&self) -> usize {
        self.hub.live_watcher_count()
    }

    fn write(&self, operation: WriteOperation) -> Result<Event, StoreError> {
        let mut state = self.state.lock();
        let revision = state.revision + 1;
        let event = plan_write(&operation, state.records.get(operation.key()), revision)?;
        match event.kind {
            EventKind::Added | EventKind::Modified => {
                state
                    .records
                    .insert(event.record.key.clone(), event.record.clone());
            }
            EventKind::Deleted => {
                state.records.remove(&event.record.key);
            }
        }
        state.revision = revision;
        state.log.push_back(event.clone());
        // Published while the state lock is held so that concurrent writers
        // publish in revision order.
        self.hub.publish([&event]);
        Ok(event)
    }
}

fn keys_under_prefix<'state>(
    records: &'state BTreeMap<String, Record>,
    prefix: &'state str,
    start_after: Option<&str>,
) -> impl Iterator<Item = &'state Record> + 'state {
    let lower = match start_after {
        Some(start_after) if start_after >= prefix => Bound::Excluded(start_after.to_owned()),
        _ => Bound::Included(prefix.to_owned()),
    };
    records
        .range::<String, _>((lower, Bound::Unbounded))
        .map(|(_, record)| record)
        .take_while(move |record| record.key.starts_with(prefix))
}

impl HistorySource for SharedMemoryState {
    fn compacted_revision(&self) -> Result<i64, StoreError> {
        Ok(self.lock().compacted_revision)
    }

    fn read_history(
        &self,
        prefix: &str,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<HistoryChunk, StoreError> {
        let state = self.lock();
        if after < state.compacted_revision {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: state.compacted_revision,
            });
        }
        let first = state
            .log
            .partition_point(|event| event.record.mod_revision <= after);
        let mut events = Vec::new();
        let mut scanned_through = through;
        for event in state.log.range(first..) {
            let revision = event.record.mod_revision;
            if revision > through {
                break;
            }
            if event.record.key.starts_with(prefix) {
                events.push(event.clone());
                if events.len() == limit {
                    scanned_through = revision;
                    break;
                }
            }
        }
        Ok(HistoryChunk {
            events,
            scanned_through,
        })
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.state.lock().records.get(key).cloned())
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        let state = self.state.lock();
        let limit = crate::effective_limit(limit);
        let mut records: Vec<Record> = keys_under_prefix(&state.records, prefix, start_after)
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        let continue_after = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|record| record.key.clone())
        } else {
            None
        };
        Ok(ListPage {
            records,
            revision: state.revision,
            continue_after,
        })
    }

    fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        let state = self.state.lock();
        Ok(keys_under_prefix(&state.records, prefix, None).count() as u64)
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError> {
        self.write(WriteOperation::Create {
            key: key.to_owned(),
            value: bytes::Bytes::copy_from_slice(value),
        })
        .map(|event| event.record.mod_revision)
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(WriteOperation::Update {
            key: key.to_owned(),
            value: bytes::Bytes::copy_from_slice(value),
            expected_mod_revision,
        })
        .map(|event| event.record.mod_revision)
    }

    fn delete(&self, key: &str, expected_mod_revision: Option<i64>) -> Result<Record, StoreError> {
        self.write(WriteOperation::Delete {
            key: key.to_owned(),
            expected_mod_revision,
        })
        .map(|event| event.record)
    }

    fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError> {
        self.hub
            .watch(prefix, after_revision, Arc::new(self.state.clone()))
    }

    fn current_revision(&self) -> Result<i64, StoreError> {
        Ok(self.state.lock().revision)
    }

    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let mut state = self.state.lock();
        // History beyond the current revision does not exist yet; forgetting
        // "up to" a future revision means forgetting all of it, and keeping
        // the mark at the current revision keeps future writes watchable.
        let target = revision.min(state.revision);
        if target <= state.compacted_revision {
            return Ok(());
        }
        while state
            .log
            .front()
            .is_some_and(|event| event.record.mod_revision <= target)
        {
            state.log.pop_front();
        }
        state.compacted_revision = target;
        Ok(())
    }
}
