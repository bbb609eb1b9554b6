//! Lists spanning several store pages (they are streamed page by page): as
//! JSON, as a Table, as PartialObjectMetadata, with selectors and in
//! chunks, every object exactly once and in key order.

mod support;
use serde_json::Value;
use support::*;

/// Two full store pages of 500 and one more object.
const OBJECTS: usize = 1001;
const CREATORS: usize = 4;

/// The objects whose index is `part` modulo [`CREATORS`].
fn manifest(part: usize) -> String {
    (0..OBJECTS)
        .filter(|index| index % CREATORS == part)
        .map(|index| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index:05}\n  labels: {{parity: {}}}\ndata: {{index: \"{index}\"}}\n",
                if index % 2 == 0 { "even" } else { "odd" }
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn expected_names(filter: impl Fn(usize) -> bool) -> Vec<String> {
    (0..OBJECTS)
        .filter(|index| filter(*index))
        .map(|index| format!("cm-{index:05}"))
        .collect()
}

fn get_json(server: &TestServer, path: &str, headers: &[&str]) -> Value {
    let (code, body) = server.get_with_headers(path, headers);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
}

fn item_names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("an item array")
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn lists_larger_than_a_page_are_complete_in_every_rendering() {
    let server = TestServer::start();
    std::thread::scope(|scope| {
        for part in 0..CREATORS {
            let server = &server;
            scope.spawn(move || server.ok_stdin(&["create", "-f", "-"], &manifest(part)));
        }
    });
    let path = "/api/v1/namespaces/default/configmaps";

    let list = get_json(&server, path, &[]);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(item_names(&list["items"]), expected_names(|_| true));
    let revision = list["metadata"]["resourceVersion"].as_str().unwrap();
    assert!(!revision.is_empty());
    assert!(
        list["metadata"].get("continue").is_none(),
        "{}",
        list["metadata"]
    );
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["kind"], "ConfigMap");
        let item_revision: i64 = item["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(item_revision <= revision.parse::<i64>().unwrap());
    }
    assert_eq!(list["items"][7]["data"]["index"], "7");

    let table = get_json(
        &server,
        path,
        &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json"],
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["metadata"]["resourceVersion"], revision);
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), OBJECTS);
    let cells: Vec<&str> = rows
        .iter()
        .map(|row| row["cells"][0].as_str().unwrap())
        .collect();
    assert_eq!(cells, expected_names(|_| true));
    assert_eq!(rows[3]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[3]["object"]["metadata"]["name"], "cm-00003");
    // The row's metadata is the object's, managedFields and resourceVersion included.
    assert_eq!(rows[3]["object"]["metadata"], list["items"][3]["metadata"]);
    assert!(rows[3]["object"]["metadata"]["managedFields"].is_array());
    assert_eq!(rows[3]["cells"][1], 1, "the Data column");
    let whole = get_json(
        &server,
        &format!("{path}?includeObject=Object"),
        &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io"],
    );
    assert_eq!(whole["rows"][600]["object"], list["items"][600]);

    let metadata = get_json(
        &server,
        path,
        &["Accept: application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"],
    );
    assert_eq!(metadata["kind"], "PartialObjectMetadataList");
    assert_eq!(item_names(&metadata["items"]), expected_names(|_| true));
    assert!(metadata["items"][0].get("data").is_none());

    let odd = get_json(&server, &format!("{path}?labelSelector=parity%3Dodd"), &[]);
    assert_eq!(item_names(&odd["items"]), expected_names(|i| i % 2 == 1));

    // kubectl's chunks: limit=500 and continue tokens, nothing lost or repeated.
    let mut names = Vec::new();
    let mut continue_token = String::new();
    let mut chunks = 0;
    loop {
        let chunk = get_json(
            &server,
            &format!("{path}?limit=500&continue={continue_token}"),
            &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json"],
        );
        chunks += 1;
        names.extend(
            chunk["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row["cells"][0].as_str().unwrap().to_string()),
        );
        match chunk["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => continue_token = token.to_string(),
            _ => break,
        }
    }
    assert_eq!(chunks, OBJECTS.div_ceil(500));
    assert_eq!(names, expected_names(|_| true));

    // kubectl reads the same lists.
    let printed = server.ok(&["get", "configmaps", "--chunk-size=0", "-o", "name"]);
    assert_eq!(printed.lines().count(), OBJECTS, "{printed}");
}
