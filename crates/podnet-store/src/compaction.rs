//! Automatic compaction of the event log: a pure planner deciding how far
//! history may be forgotten, and a thread that consults it periodically.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Store, StoreError};

/// How much history to keep. Both limits hold: a revision is forgotten only
/// when it is more than `keep_revisions` behind the current revision *and*
/// older than `keep_for` (so a burst of writes does not cut short the time a
/// disconnected watcher has to resume, and a quiet cluster still keeps a
/// useful number of revisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_revisions: i64,
    pub keep_for: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_revisions: 10_000,
            keep_for: Duration::from_secs(5 * 60),
        }
    }
}

/// Decides compaction targets from periodic observations of the current
/// revision. No I/O: time and revisions are passed in.
#[derive(Debug, Clone)]
pub struct CompactionPlanner {
    retention: Retention,
    /// (when, current revision then), oldest first. Only the newest sample
    /// older than `keep_for` is kept from the past: it bounds by time.
    samples: VecDeque<(Instant, i64)>,
    compacted_through: i64,
}

impl CompactionPlanner {
    pub fn new(retention: Retention) -> CompactionPlanner {
        CompactionPlanner {
            retention,
            samples: VecDeque::new(),
            compacted_through: 0,
        }
    }

    /// Records that the store was at `current_revision` at `now` and returns
    /// the revision to compact to, if history can be shortened. Assumes the
    /// caller then compacts to exactly that revision.
    pub fn observe(&mut self, now: Instant, current_revision: i64) -> Option<i64> {
        self.samples.push_back((now, current_revision));
        let old_enough = |sample: &(Instant, i64)| {
            now.checked_duration_since(sample.0)
                .is_some_and(|age| age >= self.retention.keep_for)
        };
        while self.samples.len() >= 2 && old_enough(&self.samples[1]) {
            self.samples.pop_front();
        }
        // Revisions up to a sample's revision existed at the sample's time.
        let bound_by_time = match self.samples.front() {
            Some(sample) if old_enough(sample) => sample.1,
            _ => 0,
        };
        let bound_by_count = current_revision - self.retention.keep_revisions;
        let target = bound_by_time.min(bound_by_count);
        if target > self.compacted_through {
            self.compacted_through = target;
            Some(target)
        } else {
            None
        }
    }
}

/// A running auto-compaction thread; dropping the handle stops it.
pub struct AutoCompaction {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for AutoCompaction {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("store auto-compaction thread panicked");
            }
        }
    }
}

/// Compacts `store` every `interval`, keeping what `retention` asks for.
/// Runs on its own thread (store calls are blocking and fsync).
pub fn spawn_auto_compaction<S: Store + ?Sized>(
    store: Arc<S>,
    retention: Retention,
    interval: Duration,
) -> Result<AutoCompaction, StoreError> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("podnet-store-compaction".into())
        .spawn(move || {
            let mut planner = CompactionPlanner::new(retention);
            loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let current_revision = match store.current_revision() {
                    Ok(revision) => revision,
                    Err(error) => {
                        tracing::warn!(%error, "auto-compaction cannot read the store revision");
                        continue;
                    }
                };
                if let Some(target) = planner.observe(Instant::now(), current_revision) {
                    match store.compact(target) {
                        Ok(()) => tracing::debug!(revision = target, "store history compacted"),
                        Err(error) => {
                            tracing::warn!(%error, revision = target, "store auto-compaction failed")
                        }
                    }
                }
            }
        })
        .map_err(|spawn_error| {
            StoreError::Backend(format!("cannot start the auto-compaction thread: {spawn_error}"))
        })?;
    Ok(AutoCompaction {
        stop: Some(stop),
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whichever_bound_retains_more() {
        let retention = Retention {
            keep_revisions: 100,
            keep_for: Duration::from_secs(60),
        };
        let mut planner = CompactionPlanner::new(retention);
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);

        // Many revisions but nothing old enough yet.
        assert_eq!(planner.observe(at(0), 1_000), None);
        assert_eq!(planner.observe(at(30), 5_000), None);
        // One minute later, revisions up to 1,000 are a minute old.
        assert_eq!(planner.observe(at(60), 6_000), Some(1_000));
        assert_eq!(planner.observe(at(90), 6_050), Some(5_000));
        // Quiet period: time allows everything, the count bound keeps 100.
        assert_eq!(planner.observe(at(200), 6_050), Some(5_950));
        assert_eq!(planner.observe(at(300), 6_050), None);
    }

    #[test]
    fn small_history_is_never_compacted() {
        let mut planner = CompactionPlanner::new(Retention::default());
        let start = Instant::now();
        for minute in 0..30 {
            let now = start + Duration::from_secs(60 * minute);
            assert_eq!(planner.observe(now, 9_000 + minute as i64), None);
        }
    }
}
