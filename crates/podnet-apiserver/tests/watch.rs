//! Watches through kubectl and raw requests: streaming, resuming after a
//! restart, compaction (410 Expired), selectors.

mod support;
use support::*;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn get_watch_streams_changes() {
    let server = TestServer::start();
    server.ok(&["create", "configmap", "first", "--from-literal=a=1"]);
    let mut child = server
        .command(KUBECTL, &["get", "configmaps", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    let expect_line = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                if line.contains(wanted) {
                    return;
                }
            }
        }
        panic!("kubectl get -w never printed {wanted}");
    };
    expect_line("configmap/first");
    server.ok(&["create", "configmap", "second", "--from-literal=a=1"]);
    expect_line("configmap/second");
    child.kill().unwrap();
    child.wait().unwrap();
}

fn watch_lines(server: &TestServer, path: &str) -> Vec<serde_json::Value> {
    let (code, body) = server.curl("GET", path, Some(&server.token()), None);
    assert_eq!(code, 200, "{body}");
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn watch_resumes_after_restart_and_expires_when_compacted() {
    let server = TestServer::start();
    server.ok(&["create", "configmap", "one", "--from-literal=a=1"]);
    let rv: i64 = server
        .ok(&[
            "get",
            "cm",
            "one",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let dir = server.stop();
    let server = TestServer::start_in(dir);
    server.ok(&["create", "configmap", "two", "--from-literal=a=1"]);
    let events = watch_lines(
        &server,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "two");

    // Initial state for resourceVersion=0, then the selector applies to changes.
    let events = watch_lines(
        &server,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=1&fieldSelector=metadata.name%3Done",
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "one");

    let current: i64 = server
        .ok(&[
            "get",
            "cm",
            "two",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let dir = server.stop();
    {
        use podnet_store::Store;
        let store = podnet_store::SqliteStore::open(dir.path().join("server/state.db")).unwrap();
        store.compact(current).unwrap();
    }
    let server = TestServer::start_in(dir);
    let events = watch_lines(
        &server,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[test]
fn table_watches_bookmarks_and_initial_events() {
    let server = TestServer::start();
    server.ok(&["create", "configmap", "one", "--from-literal=a=1"]);
    server.ok(&["create", "configmap", "two", "--from-literal=a=1"]);
    let (code, body) = server.get_with_headers(
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json"],
    );
    assert_eq!(code, 200, "{body}");
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert!(!events[0]["object"]["columnDefinitions"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        events[1]["object"]["columnDefinitions"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "{body}"
    );
    assert_eq!(events[1]["object"]["rows"][0]["cells"][0], "two");

    let events = watch_lines(
        &server,
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}
