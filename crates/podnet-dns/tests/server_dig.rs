//! podnet-dns as a server: everything runs inside a throwaway network
//! namespace (API server, DNS server, a scripted upstream resolver), and the
//! real `dig` queries it over UDP and TCP. Needs root (network namespaces).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use podnet_dns::{DnsConfig, ForwardConfig};
use support::{dig, poll, Api, Netns, Upstream};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: None, ports: [{name: mysql, port: 3306}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: mysql, port: 3306, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.5], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.244.2.6], conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: other}
spec: {type: ExternalName, externalName: www.example.org}
"#;

fn dns_config(upstreams: Vec<std::net::SocketAddr>) -> DnsConfig {
    DnsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_sockets: 2,
        forward: ForwardConfig {
            upstreams,
            timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("(no status)")
}

fn answers(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn dig_over_udp_and_tcp_sees_the_cluster_and_follows_watches() {
    let netns = Netns::new("pdns-dig");
    let ns = netns.name.clone();
    netns.run(move || async move {
        let api = Api::start().await;
        api.apply(CLUSTER).await;
        let upstream = Upstream::start().await;
        let (server, _watch) = podnet_dns::start(&dns_config(vec![upstream.addr]), api.client.clone())
            .await
            .expect("dns starts");
        let port = server.udp_addr.port().to_string();
        let at = ["@127.0.0.1", "-p", port.as_str()];
        let q = |extra: &[&str]| -> Vec<String> {
            at.iter().chain(extra.iter()).map(|s| s.to_string()).collect()
        };
        // Wait for the first sync.
        let start = Instant::now();
        loop {
            let out = dig(&ns, &q(&["web.default.svc.cluster.local", "A"]).iter().map(|s| s.as_str()).collect::<Vec<_>>()).await;
            if status(&out) == "NOERROR" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never synced: {out}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let run = |extra: Vec<&'static str>| {
            let args = q(&extra);
            let ns = ns.clone();
            async move {
                let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                dig(&ns, &refs).await
            }
        };
        // A over UDP and TCP, case-insensitive.
        for transport in ["+notcp", "+tcp"] {
            let out = run(vec![transport, "+noall", "+answer", "WEB.Default.svc.cluster.local", "A"]).await;
            assert_eq!(answers(&out), vec!["WEB.Default.svc.cluster.local. 5 IN A 10.96.0.20"], "{transport}");
        }
        // Search-path style short name is NXDOMAIN (dig does not search).
        let out = run(vec!["web", "A"]).await;
        assert_eq!(status(&out), "NXDOMAIN", "{out}");
        // Headless: every ready endpoint; SRV with targets; PTR.
        let out = run(vec!["+noall", "+answer", "db.default.svc.cluster.local", "A"]).await;
        assert_eq!(answers(&out).len(), 2, "{out}");
        let out = run(vec!["+noall", "+answer", "_mysql._tcp.db.default.svc.cluster.local", "SRV"]).await;
        assert_eq!(
            answers(&out),
            vec![
                "_mysql._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 3306 db-0.db.default.svc.cluster.local.",
                "_mysql._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 3306 10-244-2-6.db.default.svc.cluster.local.",
            ]
        );
        let out = run(vec!["+noall", "+answer", "-x", "10.96.0.20"]).await;
        assert_eq!(answers(&out), vec!["20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]);
        // Negative answers carry the SOA.
        let out = run(vec!["nope.default.svc.cluster.local", "A"]).await;
        assert_eq!(status(&out), "NXDOMAIN");
        assert!(out.contains("IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local."), "{out}");
        let out = run(vec!["default.svc.cluster.local", "A"]).await;
        assert_eq!(status(&out), "NOERROR");
        assert!(out.contains("ANSWER: 0") && out.contains("AUTHORITY: 1"), "{out}");
        // dns-version.
        let out = run(vec!["+short", "dns-version.cluster.local", "TXT"]).await;
        assert_eq!(out.trim(), "\"1.1.0\"");
        // ExternalName to a name the upstream knows: CNAME + its address.
        let out = run(vec!["+noall", "+answer", "ext.other.svc.cluster.local", "A"]).await;
        assert_eq!(
            answers(&out),
            vec![
                "ext.other.svc.cluster.local. 5 IN CNAME www.example.org.",
                "www.example.org. 60 IN A 192.0.2.10",
            ]
        );

        // A new service resolves within 1 s; a deleted one stops within 1 s.
        let created = Instant::now();
        api.apply("apiVersion: v1\nkind: Service\nmetadata: {name: fresh, namespace: default}\nspec: {clusterIP: 10.96.0.99, ports: [{port: 80}]}\n").await;
        loop {
            let out = run(vec!["+short", "fresh.default.svc.cluster.local", "A"]).await;
            if out.trim() == "10.96.0.99" {
                break;
            }
            assert!(created.elapsed() < Duration::from_secs(1), "new service not resolvable within 1 s");
        }
        let appeared = created.elapsed();
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(api.client.clone(), "default");
        let deleted = Instant::now();
        services.delete("fresh", &Default::default()).await.expect("delete");
        loop {
            let out = run(vec!["fresh.default.svc.cluster.local", "A"]).await;
            if status(&out) == "NXDOMAIN" {
                break;
            }
            assert!(deleted.elapsed() < Duration::from_secs(1), "deleted service still resolvable after 1 s");
        }
        eprintln!("new service resolvable after {appeared:?}, deleted one gone after {:?}", deleted.elapsed());
        drop(server);
    });
}

#[test]
fn truncation_over_udp_edns_and_tcp() {
    let netns = Netns::new("pdns-tc");
    let ns = netns.name.clone();
    netns.run(move || async move {
        let api = Api::start().await;
        let mut slice = String::from("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: big-1, namespace: default, labels: {kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n");
        for index in 0..60 {
            slice.push_str(&format!("- {{addresses: [10.244.7.{index}]}}\n"));
        }
        api.apply("apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: default}\nspec: {clusterIP: None, ports: [{port: 80}]}\n").await;
        api.apply(&slice).await;
        let (server, _watch) = podnet_dns::start(&dns_config(vec![]), api.client.clone())
            .await
            .expect("dns starts");
        let port = server.udp_addr.port().to_string();
        let name = "big.default.svc.cluster.local";
        poll("first sync", Duration::from_secs(10), || server.handler.snapshot.load().synced.then_some(())).await;
        // Wait until the slice is visible.
        let start = Instant::now();
        while server.handler.snapshot.load().services.get(&("default".into(), "big".into())).is_none_or(|s| s.endpoints.len() < 60) {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let plain = dig(&ns, &["@127.0.0.1", "-p", &port, "+noedns", "+ignore", name]).await;
        assert!(plain.contains(" tc"), "TC over plain UDP: {plain}");
        let edns = dig(&ns, &["@127.0.0.1", "-p", &port, "+bufsize=4096", "+ignore", "+noall", "+answer", "+comments", name]).await;
        assert!(!edns.contains(" tc"), "{edns}");
        assert_eq!(answers(&edns).len(), 60, "{edns}");
        assert!(edns.contains("udp: 1232"), "OPT in the response: {edns}");
        // dig retries over TCP on TC by default.
        let retried = dig(&ns, &["@127.0.0.1", "-p", &port, "+noedns", "+noall", "+answer", name]).await;
        assert_eq!(answers(&retried).len(), 60);
        let tcp = dig(&ns, &["@127.0.0.1", "-p", &port, "+tcp", "+noall", "+answer", name]).await;
        assert_eq!(answers(&tcp).len(), 60);
        drop(server);
    });
}

#[test]
fn forwarding_cache_tcp_fallback_and_fast_servfail() {
    let netns = Netns::new("pdns-fwd");
    let ns = netns.name.clone();
    netns.run(move || async move {
        let api = Api::start().await;
        let upstream = Upstream::start().await;
        let (server, _watch) =
            podnet_dns::start(&dns_config(vec![upstream.addr]), api.client.clone())
                .await
                .expect("dns starts");
        let port = server.udp_addr.port().to_string();
        let at = |extra: &[&str]| {
            let mut args = vec!["@127.0.0.1".to_string(), "-p".into(), port.clone()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let go = |args: Vec<String>| {
            let ns = ns.clone();
            async move {
                let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                dig(&ns, &refs).await
            }
        };
        let out = go(at(&["+short", "www.example.org", "A"])).await;
        assert_eq!(out.trim(), "192.0.2.10");
        let before = upstream.queries.load(Ordering::SeqCst);
        let out = go(at(&["+short", "WWW.example.org", "A"])).await;
        assert_eq!(out.trim(), "192.0.2.10");
        assert_eq!(
            upstream.queries.load(Ordering::SeqCst),
            before,
            "second answer came from the cache"
        );
        let out = go(at(&["nothing.invalid", "A"])).await;
        assert_eq!(status(&out), "NXDOMAIN");
        // The upstream truncates big.example.org over UDP: podnet-dns asks again over TCP.
        let out = go(at(&["+tcp", "+noall", "+answer", "big.example.org", "A"])).await;
        assert_eq!(answers(&out).len(), 40, "{out}");
        drop(server);

        // Unreachable upstreams: refused (closed port) and silent (never answers).
        let closed = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (what, upstream) in [
            ("refused", closed),
            ("silent", silent.local_addr().unwrap()),
        ] {
            let (server, _watch) =
                podnet_dns::start(&dns_config(vec![upstream]), api.client.clone())
                    .await
                    .expect("dns starts");
            let port = server.udp_addr.port().to_string();
            let started = Instant::now();
            let out = dig(&ns, &["@127.0.0.1", "-p", &port, "www.example.net", "A"]).await;
            let took = started.elapsed();
            assert_eq!(status(&out), "SERVFAIL", "{what}: {out}");
            assert!(
                took < Duration::from_millis(1900),
                "{what}: SERVFAIL took {took:?}"
            );
            eprintln!("{what} upstream: SERVFAIL after {took:?}");
        }
    });
}

#[test]
fn servfail_until_the_first_sync() {
    let netns = Netns::new("pdns-sync");
    let ns = netns.name.clone();
    netns.run(move || async move {
        // A client for an API that is not there (yet).
        let api = Api::start().await;
        let kubeconfig = std::fs::read_to_string(&api.kubeconfig).unwrap();
        drop(api);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, kubeconfig).unwrap();
        let client = podnet_dns::client(Some(&path)).await.unwrap();
        let (server, _watch) = podnet_dns::start(&dns_config(vec![]), client)
            .await
            .unwrap();
        let port = server.udp_addr.port().to_string();
        let out = dig(
            &ns,
            &[
                "@127.0.0.1",
                "-p",
                &port,
                "kubernetes.default.svc.cluster.local",
                "A",
            ],
        )
        .await;
        assert_eq!(status(&out), "SERVFAIL", "{out}");
        let out = dig(
            &ns,
            &[
                "@127.0.0.1",
                "-p",
                &port,
                "+tcp",
                "dns-version.cluster.local",
                "TXT",
            ],
        )
        .await;
        assert_eq!(status(&out), "SERVFAIL", "{out}");
    });
}
