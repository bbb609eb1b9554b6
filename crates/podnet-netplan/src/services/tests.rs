use super::*;
use expect_test::{expect, Expect};

fn context() -> ProxyContext {
    ProxyContext {
        node_name: "node1".into(),
        node_ips: vec!["172.18.0.2".parse().unwrap()],
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        sctp: true,
    }
}

fn service(
    name: &str,
    cluster_ip: &str,
    ports: &[(&str, Protocol, u16, Option<u16>)],
) -> ProxyService {
    ProxyService {
        namespace: "default".into(),
        name: name.into(),
        labels: BTreeMap::new(),
        service_type: if ports.iter().any(|p| p.3.is_some()) {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIp
        },
        cluster_ip: cluster_ip.parse().ok(),
        ports: ports
            .iter()
            .map(|(name, protocol, port, node_port)| ServicePortSpec {
                name: name.to_string(),
                protocol: *protocol,
                port: *port,
                node_port: *node_port,
            })
            .collect(),
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        affinity_timeout_seconds: None,
        internal_traffic_local: false,
        external_traffic_local: false,
    }
}

fn endpoint(ip: &str, node: &str) -> SliceEndpoint {
    SliceEndpoint {
        addresses: vec![ip.parse().unwrap()],
        ready: true,
        serving: true,
        terminating: false,
        node_name: Some(node.into()),
    }
}

fn slice(
    service: &str,
    ports: &[(&str, Protocol, u16)],
    endpoints: Vec<SliceEndpoint>,
) -> ProxyEndpointSlice {
    ProxyEndpointSlice {
        namespace: "default".into(),
        name: format!("{service}-abc"),
        service_name: service.into(),
        ports: ports
            .iter()
            .map(|(name, protocol, port)| SlicePort {
                name: name.to_string(),
                protocol: *protocol,
                port: *port,
            })
            .collect(),
        endpoints,
    }
}

fn resolve(service: &ProxyService, slices: &[ProxyEndpointSlice]) -> Vec<ResolvedServicePort> {
    let refs: Vec<&ProxyEndpointSlice> = slices.iter().collect();
    resolve_service(&context(), service, &refs)
}

fn check_piece(mode: ProxyMode, ports: &[ResolvedServicePort], expected: Expect) {
    let piece = match mode {
        ProxyMode::Nftables => nft::Nftables::default().render(&context(), ports),
        ProxyMode::Iptables => iptables::Iptables.render(&context(), ports),
    };
    let mut text = String::new();
    for ((table, chain), rules) in &piece.chains {
        text.push_str(&format!("chain {table} {chain}\n"));
        for rule in rules {
            text.push_str(&format!("  {rule}\n"));
        }
    }
    for (set, declaration) in &piece.sets {
        text.push_str(&format!("set {set} {declaration}\n"));
    }
    for ((container, key), value) in &piece.elements {
        text.push_str(&format!("element {container} {{ {key} }} {value}\n"));
    }
    expected.assert_eq(&text);
}

fn web() -> (ProxyService, Vec<ProxyEndpointSlice>) {
    let service = service("web", "10.96.0.20", &[("http", Protocol::Tcp, 80, None)]);
    let slices = vec![slice(
        "web",
        &[("http", Protocol::Tcp, 8080)],
        vec![
            endpoint("10.244.1.5", "node1"),
            endpoint("10.244.2.7", "node2"),
        ],
    )];
    (service, slices)
}

#[test]
fn clusterip_with_two_endpoints_nftables() {
    let (service, slices) = web();
    check_piece(
        ProxyMode::Nftables,
        &resolve(&service, &slices),
        expect![[r#"
            chain podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
              ip saddr 10.244.2.7 jump mark-for-masquerade
              meta l4proto tcp dnat to 10.244.2.7:8080
            chain podnet-proxy-11 endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080
              ip saddr 10.244.1.5 jump mark-for-masquerade
              meta l4proto tcp dnat to 10.244.1.5:8080
            chain podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http
              ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
              numgen random mod 2 == 0 goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080
              goto endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
            element podnet-proxy cluster-ips { 10.96.0.20 } 
            element podnet-proxy-11 service-ips { 10.96.0.20 . tcp . 80 } goto service-SUSTUHLJ-default/web/tcp/http
        "#]],
    );
}

#[test]
fn clusterip_with_two_endpoints_iptables() {
    let (service, slices) = web();
    check_piece(
        ProxyMode::Iptables,
        &resolve(&service, &slices),
        expect![[r#"
            chain nat KUBE-SEP-2RIJ5GIYXEFH6G4D
              -m comment --comment "default/web:http" -s 10.244.2.7/32 -j KUBE-MARK-MASQ
              -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.2.7:8080
            chain nat KUBE-SEP-AFGSLHOD2HFNCBX4
              -m comment --comment "default/web:http" -s 10.244.1.5/32 -j KUBE-MARK-MASQ
              -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080
            chain nat KUBE-SVC-CDGGSHYLG3RE2FKL
              -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20/32 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
              -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-AFGSLHOD2HFNCBX4
              -m comment --comment "default/web:http -> 10.244.2.7:8080" -j KUBE-SEP-2RIJ5GIYXEFH6G4D
            element nat/KUBE-SERVICES { -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20/32 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL } 
        "#]],
    );
}

#[test]
fn no_endpoints_rejects_and_nodeport_rejects() {
    let service = service(
        "empty",
        "10.96.0.30",
        &[("", Protocol::Udp, 53, Some(30053))],
    );
    let ports = resolve(&service, &[]);
    check_piece(
        ProxyMode::Nftables,
        &ports,
        expect![[r#"
            element podnet-proxy cluster-ips { 10.96.0.30 } 
            element podnet-proxy no-endpoint-nodeports { udp . 30053 } goto reject-chain
            element podnet-proxy no-endpoint-services { 10.96.0.30 . udp . 53 } goto reject-chain
        "#]],
    );
    check_piece(
        ProxyMode::Iptables,
        &ports,
        expect![[r#"
        element filter/KUBE-EXTERNAL-SERVICES { -m comment --comment "default/empty has no endpoints" -m addrtype --dst-type LOCAL -m udp -p udp --dport 30053 -j REJECT } 
        element filter/KUBE-SERVICES { -m comment --comment "default/empty has no endpoints" -m udp -p udp -d 10.96.0.30/32 --dport 53 -j REJECT } 
    "#]],
    );
}

#[test]
fn terminating_endpoints_are_used_only_when_none_is_ready() {
    let (service, mut slices) = web();
    slices[0].endpoints[0].ready = false;
    slices[0].endpoints[0].terminating = true;
    let ports = resolve(&service, &slices);
    assert_eq!(ports[0].endpoints.len(), 1, "the ready endpoint alone");
    slices[0].endpoints[1].ready = false;
    slices[0].endpoints[1].terminating = true;
    let ports = resolve(&service, &slices);
    assert_eq!(
        ports[0].endpoints.len(),
        2,
        "both serving terminating endpoints"
    );
    slices[0].endpoints[1].serving = false;
    let ports = resolve(&service, &slices);
    let ips: Vec<String> = ports[0].endpoints.iter().map(|e| e.to_string()).collect();
    assert_eq!(ips, vec!["10.244.1.5:8080"], "not serving is never used");
}

#[test]
fn ignored_services() {
    let (mut service, slices) = web();
    service
        .labels
        .insert(SERVICE_PROXY_NAME_LABEL.into(), "other".into());
    assert!(resolve(&service, &slices).is_empty());
    service.labels.clear();
    service.labels.insert(HEADLESS_LABEL.into(), String::new());
    assert!(resolve(&service, &slices).is_empty());
    service.labels.clear();
    service.cluster_ip = None;
    assert!(resolve(&service, &slices).is_empty());
}

#[test]
fn traffic_policy_local_affinity_external_and_load_balancer_ips() {
    let mut service = service(
        "edge",
        "10.96.0.40",
        &[("", Protocol::Tcp, 80, Some(32023))],
    );
    service.service_type = ServiceType::LoadBalancer;
    service.external_traffic_local = true;
    service.internal_traffic_local = true;
    service.external_ips = vec!["203.0.113.9".parse().unwrap()];
    service.load_balancer_ips = vec!["172.18.255.1".parse().unwrap()];
    service.affinity_timeout_seconds = Some(60);
    let slices = vec![slice(
        "edge",
        &[("", Protocol::Tcp, 8080)],
        vec![
            endpoint("10.244.1.5", "node1"),
            endpoint("10.244.2.7", "node2"),
        ],
    )];
    let ports = resolve(&service, &slices);
    check_piece(
        ProxyMode::Nftables,
        &ports,
        expect![[r#"
            chain podnet-proxy-14 endpoint-4Y7I25SH-default/edge/tcp/__10.244.2.7/8080
              ip saddr 10.244.2.7 jump mark-for-masquerade
              update @affinity-A2JPENOO-default/edge/tcp/__10.244.2.7/8080 { ip saddr }
              meta l4proto tcp dnat to 10.244.2.7:8080
            chain podnet-proxy-14 endpoint-D2XGQAT3-default/edge/tcp/__10.244.1.5/8080
              ip saddr 10.244.1.5 jump mark-for-masquerade
              update @affinity-OSBQVMMK-default/edge/tcp/__10.244.1.5/8080 { ip saddr }
              meta l4proto tcp dnat to 10.244.1.5:8080
            chain podnet-proxy-14 external-VTHUR5WX-default/edge/tcp/
              ip saddr 10.244.0.0/16 goto service-VTHUR5WX-default/edge/tcp/ comment "short-circuit pod traffic"
              fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
              fib saddr type local goto service-VTHUR5WX-default/edge/tcp/ comment "short-circuit local traffic"
              goto local-VTHUR5WX-default/edge/tcp/
            chain podnet-proxy-14 local-VTHUR5WX-default/edge/tcp/
              ip daddr 10.96.0.40 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
              ip saddr @affinity-OSBQVMMK-default/edge/tcp/__10.244.1.5/8080 goto endpoint-D2XGQAT3-default/edge/tcp/__10.244.1.5/8080
              goto endpoint-D2XGQAT3-default/edge/tcp/__10.244.1.5/8080
            chain podnet-proxy-14 service-VTHUR5WX-default/edge/tcp/
              ip saddr @affinity-OSBQVMMK-default/edge/tcp/__10.244.1.5/8080 goto endpoint-D2XGQAT3-default/edge/tcp/__10.244.1.5/8080
              ip saddr @affinity-A2JPENOO-default/edge/tcp/__10.244.2.7/8080 goto endpoint-4Y7I25SH-default/edge/tcp/__10.244.2.7/8080
              numgen random mod 2 == 0 goto endpoint-D2XGQAT3-default/edge/tcp/__10.244.1.5/8080
              goto endpoint-4Y7I25SH-default/edge/tcp/__10.244.2.7/8080
            set podnet-proxy-14 affinity-A2JPENOO-default/edge/tcp/__10.244.2.7/8080 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }
            set podnet-proxy-14 affinity-OSBQVMMK-default/edge/tcp/__10.244.1.5/8080 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }
            element podnet-proxy cluster-ips { 10.96.0.40 } 
            element podnet-proxy-14 service-ips { 10.96.0.40 . tcp . 80 } goto local-VTHUR5WX-default/edge/tcp/
            element podnet-proxy-14 service-ips { 172.18.255.1 . tcp . 80 } goto external-VTHUR5WX-default/edge/tcp/
            element podnet-proxy-14 service-ips { 203.0.113.9 . tcp . 80 } goto external-VTHUR5WX-default/edge/tcp/
            element podnet-proxy-14 service-nodeports { tcp . 32023 } goto external-VTHUR5WX-default/edge/tcp/
        "#]],
    );
    check_piece(
        ProxyMode::Iptables,
        &ports,
        expect![[r#"
        chain nat KUBE-EXT-Z2O42GJTWQAMWARO
          -m comment --comment "pod traffic for default/edge external destinations" -s 10.244.0.0/16 -j KUBE-SVC-Z2O42GJTWQAMWARO
          -m comment --comment "masquerade LOCAL traffic for default/edge external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
          -m comment --comment "route LOCAL traffic for default/edge external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-Z2O42GJTWQAMWARO
          -j KUBE-SVL-Z2O42GJTWQAMWARO
        chain nat KUBE-SEP-HXDVDP6HZC3IQXKM
          -m comment --comment "default/edge" -s 10.244.1.5/32 -j KUBE-MARK-MASQ
          -m comment --comment "default/edge" -m recent --name KUBE-SEP-HXDVDP6HZC3IQXKM --set -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080
        chain nat KUBE-SEP-NERDBNRCTELAYRVG
          -m comment --comment "default/edge" -s 10.244.2.7/32 -j KUBE-MARK-MASQ
          -m comment --comment "default/edge" -m recent --name KUBE-SEP-NERDBNRCTELAYRVG --set -m tcp -p tcp -j DNAT --to-destination 10.244.2.7:8080
        chain nat KUBE-SVC-Z2O42GJTWQAMWARO
          -m comment --comment "default/edge -> 10.244.1.5:8080" -m recent --name KUBE-SEP-HXDVDP6HZC3IQXKM --rcheck --seconds 60 --reap -j KUBE-SEP-HXDVDP6HZC3IQXKM
          -m comment --comment "default/edge -> 10.244.2.7:8080" -m recent --name KUBE-SEP-NERDBNRCTELAYRVG --rcheck --seconds 60 --reap -j KUBE-SEP-NERDBNRCTELAYRVG
          -m comment --comment "default/edge -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-HXDVDP6HZC3IQXKM
          -m comment --comment "default/edge -> 10.244.2.7:8080" -j KUBE-SEP-NERDBNRCTELAYRVG
        chain nat KUBE-SVL-Z2O42GJTWQAMWARO
          -m comment --comment "default/edge cluster IP" -m tcp -p tcp -d 10.96.0.40/32 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
          -m comment --comment "default/edge -> 10.244.1.5:8080" -m recent --name KUBE-SEP-HXDVDP6HZC3IQXKM --rcheck --seconds 60 --reap -j KUBE-SEP-HXDVDP6HZC3IQXKM
          -m comment --comment "default/edge -> 10.244.1.5:8080" -j KUBE-SEP-HXDVDP6HZC3IQXKM
        element nat/KUBE-NODEPORTS { -m comment --comment "default/edge" -m tcp -p tcp --dport 32023 -j KUBE-EXT-Z2O42GJTWQAMWARO } 
        element nat/KUBE-SERVICES { -m comment --comment "default/edge cluster IP" -m tcp -p tcp -d 10.96.0.40/32 --dport 80 -j KUBE-SVL-Z2O42GJTWQAMWARO } 
        element nat/KUBE-SERVICES { -m comment --comment "default/edge external IP" -m tcp -p tcp -d 172.18.255.1/32 --dport 80 -j KUBE-EXT-Z2O42GJTWQAMWARO } 
        element nat/KUBE-SERVICES { -m comment --comment "default/edge external IP" -m tcp -p tcp -d 203.0.113.9/32 --dport 80 -j KUBE-EXT-Z2O42GJTWQAMWARO } 
    "#]],
    );
}

#[test]
fn local_policies_without_local_endpoints_drop() {
    let mut service = service("far", "10.96.0.50", &[("", Protocol::Tcp, 80, Some(30080))]);
    service.external_traffic_local = true;
    service.internal_traffic_local = true;
    let slices = vec![slice(
        "far",
        &[("", Protocol::Tcp, 8080)],
        vec![endpoint("10.244.2.7", "node2")],
    )];
    let ports = resolve(&service, &slices);
    check_piece(
        ProxyMode::Nftables,
        &ports,
        expect![[r#"
            element podnet-proxy cluster-ips { 10.96.0.50 } 
            element podnet-proxy no-endpoint-nodeports { tcp . 30080 } drop
            element podnet-proxy no-endpoint-services { 10.96.0.50 . tcp . 80 } drop
        "#]],
    );
}

fn planner_with(mode: ProxyMode) -> ProxyPlanner {
    let mut planner = ProxyPlanner::new(mode, context());
    let (service, slices) = web();
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let first = planner.plan(&[]);
    assert!(first.full);
    planner
}

/// The full nft batch with the shard skeletons after the first replaced by
/// one line (they differ only in the table name).
fn elide_shard_skeletons(script: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut elided = 0;
    for line in script.lines() {
        if skipping {
            skipping = line != "}";
            continue;
        }
        if line.starts_with("table ip podnet-proxy-")
            && !line.starts_with("table ip podnet-proxy-00 ")
        {
            skipping = true;
            elided += 1;
            if elided == 1 {
                out.push_str("(shard skeletons 01 to 15 alike)\n");
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn planner_first_batch_is_full_then_incremental_nftables() {
    let mut planner = ProxyPlanner::new(ProxyMode::Nftables, context());
    let (service, slices) = web();
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    // A stray shard of another layout is deleted.
    let first = planner.plan(&[("podnet-proxy-99".to_string(), String::new())]);
    assert!(first.full);
    expect![[r#"
        delete table ip podnet-proxy-99
        add table ip podnet-proxy
        delete table ip podnet-proxy
        add table ip podnet-proxy-00
        delete table ip podnet-proxy-00
        add table ip podnet-proxy-01
        delete table ip podnet-proxy-01
        add table ip podnet-proxy-02
        delete table ip podnet-proxy-02
        add table ip podnet-proxy-03
        delete table ip podnet-proxy-03
        add table ip podnet-proxy-04
        delete table ip podnet-proxy-04
        add table ip podnet-proxy-05
        delete table ip podnet-proxy-05
        add table ip podnet-proxy-06
        delete table ip podnet-proxy-06
        add table ip podnet-proxy-07
        delete table ip podnet-proxy-07
        add table ip podnet-proxy-08
        delete table ip podnet-proxy-08
        add table ip podnet-proxy-09
        delete table ip podnet-proxy-09
        add table ip podnet-proxy-10
        delete table ip podnet-proxy-10
        add table ip podnet-proxy-11
        delete table ip podnet-proxy-11
        add table ip podnet-proxy-12
        delete table ip podnet-proxy-12
        add table ip podnet-proxy-13
        delete table ip podnet-proxy-13
        add table ip podnet-proxy-14
        delete table ip podnet-proxy-14
        add table ip podnet-proxy-15
        delete table ip podnet-proxy-15
        table ip podnet-proxy {
        	comment "podnet service proxy: shared checks and masquerading; services are in tables podnet-proxy-00 to -15"
        	set cluster-ips { type ipv4_addr; comment "Active ClusterIPs"; }
        	set nodeport-ips { type ipv4_addr; comment "IPs that accept NodePort traffic"; elements = { 172.18.0.2 }; }
        	map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; comment "vmap to drop or reject packets to services with no endpoints"; }
        	map no-endpoint-nodeports { type inet_proto . inet_service : verdict; comment "vmap to drop or reject packets to service nodeports with no endpoints"; }
        	chain filter-prerouting { type filter hook prerouting priority -110; policy accept;
        		ct state new jump service-endpoints-check
        		ct state new jump nodeport-endpoints-check
        	}
        	chain filter-prerouting-post-dnat { type filter hook prerouting priority -90; policy accept;
        		ct state new jump cluster-ips-check
        	}
        	chain filter-output { type filter hook output priority -110; policy accept;
        		ct state new jump service-endpoints-check
        		ct state new jump nodeport-endpoints-check
        	}
        	chain filter-output-post-dnat { type filter hook output priority -90; policy accept;
        		ct state new jump cluster-ips-check
        	}
        	chain nat-postrouting { type nat hook postrouting priority 100; policy accept;
        		jump masquerading
        	}
        	chain masquerading {
        		meta mark & 0x4000 == 0 return
        		meta mark set meta mark ^ 0x4000
        		masquerade fully-random
        	}
        	chain service-endpoints-check {
        		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        	}
        	chain nodeport-endpoints-check {
        		ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
        	}
        	chain cluster-ips-check {
        		ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
        		ip daddr 10.96.0.0/12 drop comment "Drop traffic to unallocated ClusterIPs"
        	}
        	chain reject-chain {
        		reject
        	}
        }
        table ip podnet-proxy-00 {
        	comment "podnet service proxy: services shard 0 of 16"
        	set nodeport-ips { type ipv4_addr; comment "IPs that accept NodePort traffic"; elements = { 172.18.0.2 }; }
        	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"; }
        	map service-nodeports { type inet_proto . inet_service : verdict; comment "NodePort traffic"; }
        	chain nat-prerouting { type nat hook prerouting priority -100; policy accept;
        		jump services
        	}
        	chain nat-output { type nat hook output priority -100; policy accept;
        		jump services
        	}
        	chain mark-for-masquerade {
        		meta mark set meta mark | 0x4000
        	}
        	chain services {
        		ip daddr . meta l4proto . th dport vmap @service-ips
        		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
        	}
        }
        (shard skeletons 01 to 15 alike)
        add chain ip podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
        add chain ip podnet-proxy-11 endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080
        add chain ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http
        add rule ip podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 ip saddr 10.244.2.7 jump mark-for-masquerade
        add rule ip podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 meta l4proto tcp dnat to 10.244.2.7:8080
        add rule ip podnet-proxy-11 endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 ip saddr 10.244.1.5 jump mark-for-masquerade
        add rule ip podnet-proxy-11 endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 meta l4proto tcp dnat to 10.244.1.5:8080
        add rule ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http numgen random mod 2 == 0 goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080
        add rule ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http goto endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
        add element ip podnet-proxy cluster-ips { 10.96.0.20 }
        add element ip podnet-proxy-11 service-ips { 10.96.0.20 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http }
    "#]].assert_eq(&elide_shard_skeletons(&first.script));

    // Nothing changed: nothing to write.
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    assert!(!planner.has_pending());
    let again = planner.plan(&[]);
    assert_eq!(again.script, "");

    // One endpoint goes away: only that endpoint's chain and the service chain.
    let mut fewer = slices.clone();
    fewer[0].endpoints.pop();
    planner.set_service("default", "web", Some(resolve(&service, &fewer)));
    let batch = planner.plan(&[]);
    expect![[r#"
        flush chain ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http
        flush chain ip podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
        add rule ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip podnet-proxy-11 service-SUSTUHLJ-default/web/tcp/http goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080
        delete chain ip podnet-proxy-11 endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080
    "#]].assert_eq(&batch.script);

    // A second service: its chains and map elements only.
    let other = self::service("other", "10.96.0.21", &[("", Protocol::Udp, 53, None)]);
    let other_slices = vec![slice(
        "other",
        &[("", Protocol::Udp, 5353)],
        vec![endpoint("10.244.2.9", "node2")],
    )];
    planner.set_service("default", "other", Some(resolve(&other, &other_slices)));
    let batch = planner.plan(&[]);
    expect![[r#"
        add chain ip podnet-proxy-15 endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353
        add chain ip podnet-proxy-15 service-E6QV3ZKR-default/other/udp/
        add rule ip podnet-proxy-15 endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353 ip saddr 10.244.2.9 jump mark-for-masquerade
        add rule ip podnet-proxy-15 endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353 meta l4proto udp dnat to 10.244.2.9:5353
        add rule ip podnet-proxy-15 service-E6QV3ZKR-default/other/udp/ ip daddr 10.96.0.21 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        add rule ip podnet-proxy-15 service-E6QV3ZKR-default/other/udp/ goto endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353
        add element ip podnet-proxy cluster-ips { 10.96.0.21 }
        add element ip podnet-proxy-15 service-ips { 10.96.0.21 . udp . 53 : goto service-E6QV3ZKR-default/other/udp/ }
    "#]].assert_eq(&batch.script);
    expect![[r#"[ConntrackDeletion { args: ["-p", "udp", "--orig-dst", "10.96.0.21", "--orig-port-dst", "53"] }]"#]].assert_eq(&format!("{:?}", batch.conntrack));

    // Removing it deletes its elements, then its chains; UDP flows cleared.
    planner.set_service("default", "other", None);
    let batch = planner.plan(&[]);
    expect![[r#"
        flush chain ip podnet-proxy-15 endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353
        flush chain ip podnet-proxy-15 service-E6QV3ZKR-default/other/udp/
        delete element ip podnet-proxy cluster-ips { 10.96.0.21 }
        delete element ip podnet-proxy-15 service-ips { 10.96.0.21 . udp . 53 }
        delete chain ip podnet-proxy-15 endpoint-TV26EWKP-default/other/udp/__10.244.2.9/5353
        delete chain ip podnet-proxy-15 service-E6QV3ZKR-default/other/udp/
    "#]]
    .assert_eq(&batch.script);
    expect![[r#"[ConntrackDeletion { args: ["-p", "udp", "--orig-dst", "10.96.0.21", "--dst-nat", "10.244.2.9"] }]"#]].assert_eq(&format!("{:?}", batch.conntrack));
}

#[test]
fn planner_incremental_iptables_rewrites_only_touched_chains() {
    let mut planner = planner_with(ProxyMode::Iptables);
    let (service, mut slices) = web();
    slices[0].endpoints.push(endpoint("10.244.1.6", "node1"));
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let batch = planner.plan(&[]);
    expect![[r#"
        *nat
        :KUBE-SEP-F7BHZ7WL3PFYMSRY - [0:0]
        :KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
        -A KUBE-SEP-F7BHZ7WL3PFYMSRY -m comment --comment "default/web:http" -s 10.244.1.6/32 -j KUBE-MARK-MASQ
        -A KUBE-SEP-F7BHZ7WL3PFYMSRY -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.1.6:8080
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20/32 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-AFGSLHOD2HFNCBX4
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.6:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-F7BHZ7WL3PFYMSRY
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.2.7:8080" -j KUBE-SEP-2RIJ5GIYXEFH6G4D
        COMMIT
    "#]].assert_eq(&batch.script);
    planner.set_service("default", "web", None);
    let batch = planner.plan(&[]);
    expect![[r#"
        *nat
        :KUBE-SEP-2RIJ5GIYXEFH6G4D - [0:0]
        :KUBE-SEP-AFGSLHOD2HFNCBX4 - [0:0]
        :KUBE-SEP-F7BHZ7WL3PFYMSRY - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -X KUBE-SEP-2RIJ5GIYXEFH6G4D
        -X KUBE-SEP-AFGSLHOD2HFNCBX4
        -X KUBE-SEP-F7BHZ7WL3PFYMSRY
        -X KUBE-SVC-CDGGSHYLG3RE2FKL
        COMMIT
    "#]].assert_eq(&batch.script);
}

#[test]
fn iptables_full_batch_removes_stray_chains() {
    let mut planner = ProxyPlanner::new(ProxyMode::Iptables, context());
    let (service, slices) = web();
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let batch = planner.plan(&[
        ("nat".into(), "KUBE-SVC-STALESTALESTALE1".into()),
        ("nat".into(), "KUBE-SERVICES".into()),
        ("nat".into(), "OTHER-CHAIN".into()),
    ]);
    expect![[r#"
        *filter
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-SERVICES - [0:0]
        -A KUBE-SERVICES -m comment --comment "drop traffic to unallocated or unused ClusterIPs" -d 10.96.0.0/12 -j DROP
        COMMIT
        *nat
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-NODEPORTS - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-2RIJ5GIYXEFH6G4D - [0:0]
        :KUBE-SEP-AFGSLHOD2HFNCBX4 - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
        :KUBE-SVC-STALESTALESTALE1 - [0:0]
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
        -A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20/32 --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-SEP-2RIJ5GIYXEFH6G4D -m comment --comment "default/web:http" -s 10.244.2.7/32 -j KUBE-MARK-MASQ
        -A KUBE-SEP-2RIJ5GIYXEFH6G4D -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.2.7:8080
        -A KUBE-SEP-AFGSLHOD2HFNCBX4 -m comment --comment "default/web:http" -s 10.244.1.5/32 -j KUBE-MARK-MASQ
        -A KUBE-SEP-AFGSLHOD2HFNCBX4 -m comment --comment "default/web:http" -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20/32 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-AFGSLHOD2HFNCBX4
        -A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.2.7:8080" -j KUBE-SEP-2RIJ5GIYXEFH6G4D
        -X KUBE-SVC-STALESTALESTALE1
        COMMIT
    "#]].assert_eq(&batch.script);
}

#[test]
fn affinity_timeout_change_makes_new_sets() {
    let mut planner = planner_with(ProxyMode::Nftables);
    let (mut service, slices) = web();
    service.affinity_timeout_seconds = Some(10800);
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let on = planner.plan(&[]);
    assert!(
        on.script.contains("add set ip podnet-proxy-") && on.script.contains(" affinity-"),
        "{}",
        on.script
    );
    service.affinity_timeout_seconds = Some(30);
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let changed = planner.plan(&[]);
    assert!(changed.script.contains("delete set"), "{}", changed.script);
    assert!(changed.script.contains("timeout 30s"), "{}", changed.script);
    service.affinity_timeout_seconds = None;
    planner.set_service("default", "web", Some(resolve(&service, &slices)));
    let off = planner.plan(&[]);
    assert!(!off.script.contains("add set"), "{}", off.script);
    assert!(off.script.contains("delete set"), "{}", off.script);
}

#[test]
fn name_hash_matches_kube_proxy_base32_sha256() {
    // kube-proxy: KUBE-SVC- + base32(sha256("ns1/svc1:p80tcp"))[:16]
    assert_eq!(name_hash("ns1/svc1:p80tcp", 16), "XPGD46QRK7WJZT7O");
}
