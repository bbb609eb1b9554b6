//! Watches Services, EndpointSlices, Pods and Namespaces, keeps the compact
//! [`World`] and publishes a new [`Snapshot`] after each batch of events.
//! Nothing is published until every watch has listed once.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use crate::snapshot::{
    namespace_name, object_key, pod_info, service_info, slice_info, Snapshot, World,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Services,
    Slices,
    Pods,
    Namespaces,
}

/// One watch event reduced to what DNS keeps.
enum Change {
    /// A relist started: the next `Init*` replace this kind's data.
    Restart(Kind),
    Upsert(Kind, (String, String), Fact, bool),
    Remove(Kind, (String, String)),
    /// The relist finished.
    Listed(Kind),
    Error(Kind, String),
}

enum Fact {
    Service(crate::snapshot::ServiceInfo),
    Slice(Option<crate::snapshot::SliceInfo>),
    Pod(Option<crate::snapshot::PodInfo>),
    Namespace(String),
}

fn reduce<K, F>(
    kind: Kind,
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    fact: F,
) -> futures::stream::BoxStream<'static, Change>
where
    K: kube::Resource + Send + 'static,
    F: Fn(&K) -> Fact + Send + Sync + 'static,
{
    stream
        .map(move |event| match event {
            Ok(Event::Init) => Change::Restart(kind),
            Ok(Event::InitApply(object)) => {
                Change::Upsert(kind, object_key(&object), fact(&object), true)
            }
            Ok(Event::Apply(object)) => {
                Change::Upsert(kind, object_key(&object), fact(&object), false)
            }
            Ok(Event::Delete(object)) => Change::Remove(kind, object_key(&object)),
            Ok(Event::InitDone) => Change::Listed(kind),
            Err(error) => Change::Error(kind, error.to_string()),
        })
        .boxed()
}

/// Keeps [`World`] current from watch changes.
#[derive(Default)]
struct Tracker {
    world: World,
    /// Data of a relist in progress, swapped in at `Listed`.
    pending: HashMap<Kind, World>,
    listed: HashMap<Kind, bool>,
}

impl Tracker {
    fn target(&mut self, kind: Kind, initial: bool) -> &mut World {
        if initial {
            self.pending.entry(kind).or_default()
        } else {
            &mut self.world
        }
    }

    /// Apply one change; true when the world changed.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Restart(kind) => {
                self.pending.insert(kind, World::default());
                false
            }
            Change::Upsert(kind, key, fact, initial) => {
                let world = self.target(kind, initial);
                match fact {
                    Fact::Service(info) => {
                        world.services.insert(key, info);
                    }
                    Fact::Slice(Some(info)) => {
                        world.slices.insert(key, info);
                    }
                    Fact::Slice(None) => {
                        world.slices.remove(&key);
                    }
                    Fact::Pod(Some(info)) => {
                        world.pods.insert(key, info);
                    }
                    Fact::Pod(None) => {
                        world.pods.remove(&key);
                    }
                    Fact::Namespace(name) => {
                        world.namespaces.insert(name);
                    }
                }
                !initial
            }
            Change::Remove(kind, key) => match kind {
                Kind::Services => self.world.services.remove(&key).is_some(),
                Kind::Slices => self.world.slices.remove(&key).is_some(),
                Kind::Pods => self.world.pods.remove(&key).is_some(),
                Kind::Namespaces => self.world.namespaces.remove(&key.1),
            },
            Change::Listed(kind) => {
                let fresh = self.pending.remove(&kind).unwrap_or_default();
                match kind {
                    Kind::Services => self.world.services = fresh.services,
                    Kind::Slices => self.world.slices = fresh.slices,
                    Kind::Pods => self.world.pods = fresh.pods,
                    Kind::Namespaces => self.world.namespaces = fresh.namespaces,
                }
                self.listed.insert(kind, true);
                true
            }
            Change::Error(kind, error) => {
                tracing::warn!(?kind, %error, "watch failed; retrying");
                false
            }
        }
    }

    fn synced(&self) -> bool {
        [Kind::Services, Kind::Slices, Kind::Pods, Kind::Namespaces]
            .iter()
            .all(|kind| self.listed.get(kind).copied().unwrap_or(false))
    }
}

fn serial_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

/// Watch the API through `client` and publish snapshots into `target` until
/// the watches end (they retry with backoff, so practically forever).
pub async fn run(client: Client, target: Arc<ArcSwap<Snapshot>>, zone: String, ttl: u32) {
    let config = watcher::Config::default();
    let services = reduce(
        Kind::Services,
        watcher::watcher(Api::<Service>::all(client.clone()), config.clone()).default_backoff(),
        |s: &Service| Fact::Service(service_info(s)),
    );
    let slices = reduce(
        Kind::Slices,
        watcher::watcher(Api::<EndpointSlice>::all(client.clone()), config.clone())
            .default_backoff(),
        |s: &EndpointSlice| Fact::Slice(slice_info(s)),
    );
    let pods = reduce(
        Kind::Pods,
        watcher::watcher(Api::<Pod>::all(client.clone()), config.clone()).default_backoff(),
        |p: &Pod| Fact::Pod(pod_info(p)),
    );
    let namespaces = reduce(
        Kind::Namespaces,
        watcher::watcher(Api::<Namespace>::all(client), config).default_backoff(),
        |n: &Namespace| Fact::Namespace(namespace_name(n)),
    );
    let mut changes = futures::stream::select_all([services, slices, pods, namespaces]);
    let mut tracker = Tracker::default();
    let mut published_synced = false;
    let mut last_trim: Option<std::time::Instant> = None;
    while let Some(change) = changes.next().await {
        let mut dirty = tracker.apply(change);
        // Take whatever else is already there, then publish once.
        while let Some(Some(change)) = changes.next().now_or_never() {
            dirty |= tracker.apply(change);
        }
        if tracker.synced() && (dirty || !published_synced) {
            let snapshot = Snapshot::build(&tracker.world, &zone, ttl, serial_now());
            target.store(Arc::new(snapshot));
            if !published_synced {
                tracing::info!(
                    services = tracker.world.services.len(),
                    "first sync complete: answering cluster names"
                );
            }
            published_synced = true;
            // At most every 10 s: trimming walks the whole heap.
            if last_trim.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10)) {
                crate::release_free_memory();
                last_trim = Some(std::time::Instant::now());
            }
        }
    }
}
