//! Watch fan-out shared by every backend.
//!
//! Writers publish committed events to the [`WatchHub`] in revision order. A
//! watcher is either *live* (registered in the hub, fed by `try_send` so a
//! slow reader never blocks a writer) or *catching up* (a thread of its own
//! replays the backend's event log, with back-pressure, until it reaches the
//! hub's published revision). The hand-over from catching up to live happens
//! under the hub lock, only when the replay has delivered exactly up to the
//! published revision: publishing needs that same lock, so no event can slip
//! between the two phases (no gap) and none is sent by both (no duplicate).
//!
//! Each watcher's channel has one slot more than its buffer, and that slot is
//! held from the start as an owned permit: it carries the final error (slow
//! watcher, compaction during replay), so the error always fits even when the
//! events filled the buffer.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::{self, error::TrySendError, OwnedPermit, Sender};

use crate::{Event, StoreError, WatchStream};

/// How many log rows a catching-up watcher reads per step. Small enough that
/// a replay never holds a reader (or the memory store's lock) for long.
const HISTORY_CHUNK: usize = 256;

/// Events are shared: one allocation per event, however many watch it.
type WatchItem = Result<Arc<Event>, StoreError>;

/// Events in a revision window, read from a backend's event log.
pub(crate) struct HistoryChunk {
    /// Matching events, in revision order.
    pub events: Vec<Event>,
    /// The highest revision the read covered: the last event's revision when
    /// the read stopped at its limit, otherwise the window's upper end.
    pub scanned_through: i64,
}

/// A backend's event log, as the catch-up replay needs it.
pub(crate) trait HistorySource: Send + Sync + 'static {
    /// The revision up to which history has been forgotten.
    fn compacted_revision(&self) -> Result<i64, StoreError>;
    /// Events for keys under `prefix` with `after < revision <= through`, at
    /// most `limit` of them. Fails with `Compacted` when `after` is older than
    /// the compacted revision.
    fn read_history(
        &self,
        prefix: &str,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<HistoryChunk, StoreError>;
}

struct LiveWatcher {
    prefix: String,
    /// Events at or below this revision were already delivered (or predate
    /// the watch) and are skipped.
    delivered_through: i64,
    sender: Sender<WatchItem>,
    final_error_slot: OwnedPermit<WatchItem>,
}

struct HubState {
    published_revision: i64,
    live_watchers: Vec<LiveWatcher>,
}

/// Fan-out of committed events to watchers.
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    buffer_per_watcher: usize,
}

enum DeliveryOutcome {
    Keep,
    ReaderGone,
    Overflowed,
}

impl WatchHub {
    pub(crate) fn new(published_revision: i64, buffer_per_watcher: usize) -> WatchHub {
        WatchHub {
            state: Mutex::new(HubState {
                published_revision,
                live_watchers: Vec::new(),
            }),
            buffer_per_watcher: buffer_per_watcher.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while publishing leaves the watcher list consistent (each
        // step is a push or a swap_remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn published_revision(&self) -> i64 {
        self.lock().published_revision
    }

    /// Number of live watchers (catching-up ones are not counted). Watchers
    /// whose reader is gone are counted until the next publish prunes them.
    pub(crate) fn live_watcher_count(&self) -> usize {
        self.lock().live_watchers.len()
    }

    /// Delivers committed events, which must come in increasing revision
    /// order and after every previously published one. Never blocks on a
    /// reader: a watcher whose buffer is full gets its final error and is
    /// dropped.
    pub(crate) fn publish<'event>(&self, events: impl IntoIterator<Item = &'event Event>) {
        let mut state = self.lock();
        for event in events {
            let revision = event.record.mod_revision;
            if revision <= state.published_revision {
                tracing::error!(
                    revision,
                    published = state.published_revision,
                    "event published out of order, not delivered"
                );
                continue;
            }
            let mut shared: Option<Arc<Event>> = None;
            let mut index = 0;
            while index < state.live_watchers.len() {
                let watcher = &state.live_watchers[index];
                let outcome = if watcher.sender.is_closed() {
                    DeliveryOutcome::ReaderGone
                } else if revision <= watcher.delivered_through
                    || !event.record.key.starts_with(&watcher.prefix)
                {
                    DeliveryOutcome::Keep
                } else {
                    let shared = shared.get_or_insert_with(|| Arc::new(event.clone()));
                    match watcher.sender.try_send(Ok(Arc::clone(shared))) {
                        Ok(()) => DeliveryOutcome::Keep,
                        Err(TrySendError::Full(_)) => DeliveryOutcome::Overflowed,
                        Err(TrySendError::Closed(_)) => DeliveryOutcome::ReaderGone,
                    }
                };
                match outcome {
                    DeliveryOutcome::Keep => index += 1,
                    DeliveryOutcome::ReaderGone => {
                        state.live_watchers.swap_remove(index);
                    }
                    DeliveryOutcome::Overflowed => {
                        let watcher = state.live_watchers.swap_remove(index);
                        tracing::debug!(
                            prefix = %watcher.prefix,
                            revision,
                            "watcher fell behind its buffer, closing it"
                        );
                        watcher
                            .final_error_slot
                            .send(Err(StoreError::WatcherTooSlow {
                                prefix: watcher.prefix,
                                capacity: self.buffer_per_watcher,
                            }));
                    }
                }
            }
            state.published_revision = revision;
        }
    }

    /// Starts a watch of `prefix` for events after `after_revision` (0 means
    /// from the current published revision on).
    pub(crate) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after_revision: i64,
        history: Arc<dyn HistorySource>,
    ) -> Result<WatchStream, StoreError> {
        if after_revision > 0 {
            let compacted = history.compacted_revision()?;
            if after_revision < compacted {
                return Err(StoreError::Compacted {
                    requested: after_revision,
                    oldest: compacted,
                });
            }
        }
        let (sender, receiver) = mpsc::channel(self.buffer_per_watcher + 1);
        let final_error_slot = sender
            .clone()
            .try_reserve_owned()
            .map_err(|_| StoreError::Backend("new watch channel has no free slot".into()))?;
        {
            let mut state = self.lock();
            if after_revision == 0 || after_revision >= state.published_revision {
                // Nothing to replay: every wanted event is yet to be published.
                let delivered_through = after_revision.max(state.published_revision);
                state.live_watchers.push(LiveWatcher {
                    prefix: prefix.to_owned(),
                    delivered_through,
                    sender,
                    final_error_slot,
                });
                return Ok(WatchStream { receiver });
            }
        }
        let catch_up = CatchUp {
            hub: Arc::clone(self),
            history,
            prefix: prefix.to_owned(),
            delivered_through: after_revision,
            sender,
            final_error_slot,
        };
        std::thread::Builder::new()
            .name("podnet-store-watch-replay".into())
            .spawn(move || catch_up.run())
            .map_err(|spawn_error| {
                StoreError::Backend(format!("cannot start watch replay thread: {spawn_error}"))
            })?;
        Ok(WatchStream { receiver })
    }
}

/// A watcher replaying history before it joins the live watchers.
struct CatchUp {
    hub: Arc<WatchHub>,
    history: Arc<dyn HistorySource>,
    prefix: String,
    delivered_through: i64,
    sender: Sender<WatchItem>,
    final_error_slot: OwnedPermit<WatchItem>,
}

impl CatchUp {
    fn run(mut self) {
        loop {
            let target = self.hub.published_revision();
            while self.delivered_through < target {
                let chunk = match self.history.read_history(
                    &self.prefix,
                    self.delivered_through,
                    target,
                    HISTORY_CHUNK,
                ) {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        // Typically compaction overtook a slow replay.
                        self.final_error_slot.send(Err(error));
                        return;
                    }
                };
                for event in chunk.events {
                    // Back-pressure is fine here: this thread is the only one
                    // waiting. An error means the reader dropped the stream.
                    if self.sender.blocking_send(Ok(Arc::new(event))).is_err() {
                        return;
                    }
                }
                self.delivered_through = chunk.scanned_through;
            }
            let mut state = self.hub.lock();
            if state.published_revision <= self.delivered_through {
                state.live_watchers.push(LiveWatcher {
                    prefix: self.prefix,
                    delivered_through: self.delivered_through,
                    sender: self.sender,
                    final_error_slot: self.final_error_slot,
                });
                return;
            }
            // More was published while replaying: replay that too, then retry.
        }
    }
}
