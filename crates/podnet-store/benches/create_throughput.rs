//! Durable create throughput of the SQLite backend with concurrent writers
//! (the API server's situation): every create is acknowledged only after its
//! group commit is fsynced.
//!
//! `cargo bench -p podnet-store --bench create_throughput`
//! Environment: PODNET_BENCH_CREATES (default 20000), PODNET_BENCH_THREADS
//! (comma-separated writer counts, default "1,16,64"), PODNET_BENCH_DIR
//! (where the database goes; default the system temporary directory, which
//! must be a real disk for the figure to mean anything).

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use podnet_store::{SqliteStore, Store};

fn environment_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A pod of typical size (~1 KiB of JSON).
fn pod_json(name: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"bench","uid":"0b8a6b2e-2f0c-4f7e-9d7e-{name:0>12}","labels":{{"app":"bench","tier":"backend"}},"annotations":{{"podnet.io/note":"{padding}"}}}},"spec":{{"containers":[{{"name":"main","image":"busybox","command":["sleep","3600"],"resources":{{"requests":{{"cpu":"10m","memory":"16Mi"}}}}}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","schedulerName":"default-scheduler"}},"status":{{"phase":"Pending","qosClass":"Burstable"}}}}"#,
        padding = "x".repeat(512)
    )
    .into_bytes()
}

fn run(threads: usize, creates: usize) -> f64 {
    let directory = match std::env::var_os("PODNET_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("creating the benchmark directory");
    let store =
        Arc::new(SqliteStore::open(directory.path().join("state.db")).expect("opening the store"));
    let per_thread = creates / threads;
    let started = Instant::now();
    let writers: Vec<_> = (0..threads)
        .map(|writer| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for index in 0..per_thread {
                    let name = format!("w{writer}-p{index}");
                    store
                        .create(&format!("/core/pods/bench/{name}"), &pod_json(&name))
                        .expect("create");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let elapsed = started.elapsed();
    let total = per_thread * threads;
    assert_eq!(
        store.count("/core/pods/bench/").expect("count") as usize,
        total
    );
    total as f64 / elapsed.as_secs_f64()
}

fn main() {
    let creates: usize = environment_or("PODNET_BENCH_CREATES", 20_000);
    let thread_counts: Vec<usize> = std::env::var("PODNET_BENCH_THREADS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|count| count.trim().parse().ok())
        .filter(|count| *count > 0)
        .collect();
    for threads in thread_counts {
        // One writer waits for every fsync: keep its run short.
        let creates = if threads == 1 {
            creates.min(2_000)
        } else {
            creates
        };
        let rate = run(threads, creates);
        println!("sqlite durable creates: {threads:>3} writers, {creates} creates: {rate:>8.0} creates/s");
    }
}
