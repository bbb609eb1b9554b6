//! Many clients at once: concurrent creates and updates all land, watches
//! see every change, conflicts are reported rather than lost.

mod support;
use support::*;

#[test]
fn concurrent_writers_and_a_watcher() {
    let server = TestServer::start();
    let token = server.token();
    let watcher = {
        let path =
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&timeoutSeconds=8"
                .to_string();
        let server_ref = &server;
        std::thread::scope(|scope| {
            let watch =
                scope.spawn(move || server_ref.curl("GET", &path, Some(&server_ref.token()), None));
            std::thread::sleep(std::time::Duration::from_millis(500));
            let writers: Vec<_> = (0..8)
                .map(|writer| {
                    let token = token.clone();
                    scope.spawn(move || {
                        for index in 0..10 {
                            let body = format!(
                                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{writer}-{index}"}},"data":{{"n":"{index}"}}}}"#
                            );
                            let (code, text) = server_ref.curl(
                                "POST",
                                "/api/v1/namespaces/default/configmaps",
                                Some(&token),
                                Some(("application/json", &body)),
                            );
                            assert_eq!(code, 201, "{text}");
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            watch.join().unwrap()
        })
    };
    let (code, body) = watcher;
    assert_eq!(code, 200);
    let added = body.lines().filter(|l| l.contains("\"ADDED\"")).count();
    assert_eq!(
        added, 80,
        "every create is seen exactly once by the watcher"
    );
    let listed = server.ok(&["get", "configmaps", "-o", "name"]);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.starts_with("configmap/cm-"))
            .count(),
        80
    );
}
