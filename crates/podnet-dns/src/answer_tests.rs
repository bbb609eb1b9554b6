//! The answer function against the spec, one test per record kind and per
//! negative answer, on a fixed cluster built from API objects.

use std::fmt::Write;

use expect_test::{expect, Expect};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::answer::{answer, Outcome};
use crate::snapshot::{
    namespace_name, object_key, pod_info, service_info, slice_info, Snapshot, World,
};

const OBJECTS: &str = r#"
- {kind: Namespace, metadata: {name: default}}
- {kind: Namespace, metadata: {name: kube-system}}
- {kind: Namespace, metadata: {name: other}}
- {kind: Namespace, metadata: {name: quiet}}
- kind: Service
  metadata: {name: kubernetes, namespace: default}
  spec: {clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1], ports: [{name: https, port: 443, protocol: TCP}]}
- kind: Service
  metadata: {name: kube-dns, namespace: kube-system}
  spec: {clusterIP: 10.96.0.10, ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]}
- kind: Service
  metadata: {name: web, namespace: default}
  spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}, {name: metrics, port: 9090}]}
- kind: Service
  metadata: {name: web-dual, namespace: default}
  spec: {clusterIP: 10.96.0.21, clusterIPs: [10.96.0.21, "fd00:10:96::21"], ports: [{name: http, port: 80}]}
- kind: Service
  metadata: {name: api, namespace: other}
  spec: {clusterIP: 10.96.5.5, ports: [{port: 8080}]}
- kind: Service
  metadata: {name: db, namespace: default}
  spec: {clusterIP: None, ports: [{name: mysql, port: 3306}]}
- kind: Service
  metadata: {name: empty, namespace: default}
  spec: {clusterIP: None, ports: [{name: http, port: 80}]}
- kind: Service
  metadata: {name: ext, namespace: default}
  spec: {type: ExternalName, externalName: example.com}
- kind: Service
  metadata: {name: alias, namespace: default}
  spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
- kind: EndpointSlice
  metadata: {name: db-abc, namespace: default, labels: {kubernetes.io/service-name: db}}
  addressType: IPv4
  ports: [{name: mysql, port: 3306, protocol: TCP}]
  endpoints:
  - {addresses: [10.244.1.5], hostname: db-0, conditions: {ready: true}}
  - {addresses: [10.244.2.6], conditions: {ready: true}}
  - {addresses: [10.244.2.7], conditions: {ready: false}}
- kind: EndpointSlice
  metadata: {name: empty-abc, namespace: default, labels: {kubernetes.io/service-name: empty}}
  addressType: IPv4
  ports: [{name: http, port: 80, protocol: TCP}]
  endpoints:
  - {addresses: [10.244.2.9], conditions: {ready: false}}
- kind: EndpointSlice
  metadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
  - {addresses: [10.244.1.8], conditions: {ready: true}}
- kind: Pod
  metadata: {name: box-7, namespace: default}
  spec: {hostname: box, subdomain: db, containers: []}
  status: {podIP: 10.244.3.3, conditions: [{type: Ready, status: "True"}]}
- kind: Pod
  metadata: {name: plain, namespace: default}
  spec: {containers: []}
  status: {podIP: 10.244.3.4}
"#;

fn world() -> World {
    let objects: Vec<serde_json::Value> = serde_yaml::from_str(OBJECTS).unwrap();
    let mut world = World::default();
    for object in objects {
        match object["kind"].as_str().unwrap() {
            "Namespace" => {
                let namespace: Namespace = serde_json::from_value(object).unwrap();
                world.namespaces.insert(namespace_name(&namespace));
            }
            "Service" => {
                let service: Service = serde_json::from_value(object).unwrap();
                world
                    .services
                    .insert(object_key(&service), service_info(&service));
            }
            "EndpointSlice" => {
                let slice: EndpointSlice = serde_json::from_value(object).unwrap();
                world
                    .slices
                    .insert(object_key(&slice), slice_info(&slice).unwrap());
            }
            "Pod" => {
                let pod: Pod = serde_json::from_value(object).unwrap();
                if let Some(info) = pod_info(&pod) {
                    world.pods.insert(object_key(&pod), info);
                }
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    world
}

fn snapshot() -> Snapshot {
    Snapshot::build(&world(), "cluster.local", 5, 1700000000)
}

fn request(name: &str, query_type: RecordType) -> Message {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
    message
}

/// dig-like text of an outcome.
fn render(outcome: &Outcome) -> String {
    let message = match outcome {
        Outcome::Reply(message) => message,
        Outcome::Forward => return "FORWARD\n".into(),
        Outcome::Drop => return "DROP\n".into(),
        Outcome::Chase(chase) => {
            let mut text = format!("CHASE {} {}\n", chase.target, chase.query_type);
            text.push_str(&render(&Outcome::Reply(chase.reply.clone())));
            return text;
        }
    };
    let mut text = String::new();
    let m = &message.metadata;
    let mut flags = vec!["qr"];
    if m.authoritative {
        flags.push("aa");
    }
    if m.truncation {
        flags.push("tc");
    }
    if m.recursion_desired {
        flags.push("rd");
    }
    if m.recursion_available {
        flags.push("ra");
    }
    writeln!(
        text,
        "{} id={} flags: {}{}",
        m.response_code,
        m.id,
        flags.join(" "),
        if message.edns.is_some() { " edns" } else { "" }
    )
    .unwrap();
    for (section, records) in [
        ("ANSWER", &message.answers),
        ("AUTHORITY", &message.authorities),
        ("ADDITIONAL", &message.additionals),
    ] {
        for record in records.iter() {
            writeln!(text, "{section}: {record}").unwrap();
        }
    }
    text
}

fn check(name: &str, query_type: RecordType, expected: Expect) {
    expected.assert_eq(&render(&answer(&request(name, query_type), &snapshot())));
}

#[test]
fn cluster_ip_service_a() {
    check(
        "web.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: web.default.svc.cluster.local. 5 IN A 10.96.0.20
        "#]],
    );
}

#[test]
fn names_are_case_insensitive_and_keep_the_query_case() {
    check(
        "WeB.DeFault.SVC.Cluster.Local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: WeB.DeFault.SVC.Cluster.Local. 5 IN A 10.96.0.20
        "#]],
    );
}

#[test]
fn dual_stack_service_aaaa() {
    check(
        "web-dual.default.svc.cluster.local.",
        RecordType::AAAA,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: web-dual.default.svc.cluster.local. 5 IN AAAA fd00:10:96::21
        "#]],
    );
}

#[test]
fn aaaa_for_an_ipv4_service_is_nodata() {
    check(
        "web.default.svc.cluster.local.",
        RecordType::AAAA,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn srv_for_a_named_port() {
    check(
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: _http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.
            ADDITIONAL: web.default.svc.cluster.local. 5 IN A 10.96.0.20
        "#]],
    );
}

#[test]
fn srv_for_the_service_name_lists_every_port() {
    check(
        "web.default.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: web.default.svc.cluster.local. 5 IN SRV 0 50 80 web.default.svc.cluster.local.
            ANSWER: web.default.svc.cluster.local. 5 IN SRV 0 50 9090 web.default.svc.cluster.local.
            ADDITIONAL: web.default.svc.cluster.local. 5 IN A 10.96.0.20
        "#]],
    );
}

#[test]
fn srv_for_an_unknown_port_is_nxdomain() {
    check(
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            Non-Existent Domain id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn srv_protocol_must_match() {
    check(
        "_dns._tcp.kube-dns.kube-system.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            Non-Existent Domain id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
    check(
        "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: _dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.
            ADDITIONAL: kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10
        "#]],
    );
}

#[test]
fn headless_service_has_one_a_per_ready_endpoint() {
    check(
        "db.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: db.default.svc.cluster.local. 5 IN A 10.244.1.5
            ANSWER: db.default.svc.cluster.local. 5 IN A 10.244.2.6
        "#]],
    );
}

#[test]
fn headless_endpoint_hostname_and_dashed_address() {
    check(
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5
        "#]],
    );
    check(
        "10-244-2-6.db.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: 10-244-2-6.db.default.svc.cluster.local. 5 IN A 10.244.2.6
        "#]],
    );
}

#[test]
fn headless_not_ready_endpoint_is_nxdomain() {
    check(
        "10-244-2-7.db.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            Non-Existent Domain id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn headless_srv_targets_each_endpoint() {
    check(
        "_mysql._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: _mysql._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 3306 db-0.db.default.svc.cluster.local.
            ANSWER: _mysql._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 3306 10-244-2-6.db.default.svc.cluster.local.
            ADDITIONAL: db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5
            ADDITIONAL: 10-244-2-6.db.default.svc.cluster.local. 5 IN A 10.244.2.6
        "#]],
    );
}

#[test]
fn headless_without_ready_endpoints_is_nxdomain() {
    check(
        "empty.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            Non-Existent Domain id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn cluster_ip_service_endpoint_names_resolve_too() {
    check(
        "10-244-1-8.web.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: 10-244-1-8.web.default.svc.cluster.local. 5 IN A 10.244.1.8
        "#]],
    );
}

#[test]
fn pod_hostname_subdomain() {
    check(
        "box.db.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: box.db.default.svc.cluster.local. 5 IN A 10.244.3.3
        "#]],
    );
}

#[test]
fn pod_address_records() {
    check(
        "10-244-3-4.default.pod.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: 10-244-3-4.default.pod.cluster.local. 5 IN A 10.244.3.4
        "#]],
    );
    check(
        "10-244-3-4.nowhere.pod.cluster.local.",
        RecordType::A,
        expect![[r#"
            Non-Existent Domain id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn ptr_for_service_and_endpoint_addresses() {
    check(
        "20.0.96.10.in-addr.arpa.",
        RecordType::PTR,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: 20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.
        "#]],
    );
    check(
        "5.1.244.10.in-addr.arpa.",
        RecordType::PTR,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: 5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local.
        "#]],
    );
    check(
        "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        RecordType::PTR,
        expect![[r#"
            FORWARD
        "#]],
    );
}

#[test]
fn ptr_for_other_addresses_is_forwarded() {
    check(
        "1.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        expect!["FORWARD\n"],
    );
}

#[test]
fn external_name_cname() {
    check(
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: ext.default.svc.cluster.local. 5 IN CNAME example.com.
        "#]],
    );
}

#[test]
fn external_name_a_chases_the_target_upstream() {
    check(
        "ext.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            CHASE example.com. A
            No Error id=4242 flags: qr aa rd
            ANSWER: ext.default.svc.cluster.local. 5 IN CNAME example.com.
        "#]],
    );
}

#[test]
fn external_name_inside_the_zone_is_followed() {
    check(
        "alias.default.svc.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.
            ANSWER: web.default.svc.cluster.local. 5 IN A 10.96.0.20
        "#]],
    );
}

#[test]
fn external_name_has_no_srv() {
    check(
        "ext.default.svc.cluster.local.",
        RecordType::SRV,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            AUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
}

#[test]
fn dns_version_txt() {
    check(
        "dns-version.cluster.local.",
        RecordType::TXT,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: dns-version.cluster.local. 28800 IN TXT 1.1.0
        "#]],
    );
}

#[test]
fn apex_records() {
    check(
        "cluster.local.",
        RecordType::SOA,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5
        "#]],
    );
    check(
        "cluster.local.",
        RecordType::NS,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: cluster.local. 5 IN NS ns.dns.cluster.local.
            ADDITIONAL: ns.dns.cluster.local. 5 IN A 10.96.0.10
        "#]],
    );
    check(
        "ns.dns.cluster.local.",
        RecordType::A,
        expect![[r#"
            No Error id=4242 flags: qr aa rd
            ANSWER: ns.dns.cluster.local. 5 IN A 10.96.0.10
        "#]],
    );
}

const NODATA: &str = "No Error id=4242 flags: qr aa rd\nAUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5\n";
const NXDOMAIN: &str = "Non-Existent Domain id=4242 flags: qr aa rd\nAUTHORITY: cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5\n";

fn assert_negative(name: &str, query_type: RecordType, expected: &str) {
    let text = render(&answer(&request(name, query_type), &snapshot()));
    assert_eq!(text, expected, "{name} {query_type}");
}

#[test]
fn nodata_for_the_apex_svc_and_existing_namespace() {
    assert_negative("cluster.local.", RecordType::A, NODATA);
    assert_negative("svc.cluster.local.", RecordType::A, NODATA);
    assert_negative("pod.cluster.local.", RecordType::A, NODATA);
    assert_negative("default.svc.cluster.local.", RecordType::A, NODATA);
    // A namespace without services still exists.
    assert_negative("quiet.svc.cluster.local.", RecordType::A, NODATA);
}

#[test]
fn nodata_for_other_types_on_existing_names() {
    for query_type in [
        RecordType::TXT,
        RecordType::MX,
        RecordType::PTR,
        RecordType::NS,
        RecordType::CNAME,
        RecordType::SOA,
    ] {
        assert_negative("web.default.svc.cluster.local.", query_type, NODATA);
    }
    assert_negative("dns-version.cluster.local.", RecordType::TXT, &{
        // (positive: covered by dns_version_txt)
        render(&answer(
            &request("dns-version.cluster.local.", RecordType::TXT),
            &snapshot(),
        ))
    });
}

#[test]
fn nxdomain_for_unknown_service_namespace_label_and_depth() {
    assert_negative("nope.default.svc.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative("nowhere.svc.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative("web.nowhere.svc.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative("web.default.foo.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative("foo.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative(
        "a.b.c.web.default.svc.cluster.local.",
        RecordType::A,
        NXDOMAIN,
    );
    assert_negative("x.web.default.svc.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative("nope.default.svc.cluster.local.", RecordType::TXT, NXDOMAIN);
    assert_negative("dns-version.cluster.local.", RecordType::A, NXDOMAIN);
    assert_negative(
        "ext.ext.default.svc.cluster.local.",
        RecordType::A,
        NXDOMAIN,
    );
}

#[test]
fn zone_transfers_are_refused() {
    check(
        "cluster.local.",
        RecordType::AXFR,
        expect![[r#"
            Query Refused id=4242 flags: qr aa rd
        "#]],
    );
}

#[test]
fn names_outside_the_zone_are_forwarded() {
    check("example.org.", RecordType::A, expect!["FORWARD\n"]);
    check("local.", RecordType::A, expect!["FORWARD\n"]);
}

#[test]
fn servfail_until_first_sync() {
    let unsynced = Snapshot::unsynced("cluster.local", 5);
    expect![[r#"
        Server Failure id=4242 flags: qr rd
    "#]]
    .assert_eq(&render(&answer(
        &request("web.default.svc.cluster.local.", RecordType::A),
        &unsynced,
    )));
    expect!["FORWARD\n"].assert_eq(&render(&answer(
        &request("example.org.", RecordType::A),
        &unsynced,
    )));
}

#[test]
fn edns_is_echoed_and_unknown_versions_get_badvers() {
    let mut query = request("web.default.svc.cluster.local.", RecordType::A);
    query.set_edns(Edns::new());
    expect![[r#"
        No Error id=4242 flags: qr aa rd edns
        ANSWER: web.default.svc.cluster.local. 5 IN A 10.96.0.20
    "#]]
    .assert_eq(&render(&answer(&query, &snapshot())));
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    expect![[r#"
        Bad option versions id=4242 flags: qr rd edns
    "#]]
    .assert_eq(&render(&answer(&query, &snapshot())));
}

#[test]
fn malformed_requests() {
    let mut two = request("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    expect![[r#"
        Form Error id=4242 flags: qr rd
    "#]]
    .assert_eq(&render(&answer(&two, &snapshot())));
    let mut notify = request("web.default.svc.cluster.local.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    expect![[r#"
        Not Implemented id=4242 flags: qr rd
    "#]]
    .assert_eq(&render(&answer(&notify, &snapshot())));
    let mut response = request("web.default.svc.cluster.local.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    expect!["DROP\n"].assert_eq(&render(&answer(&response, &snapshot())));
    // Garbage after a valid header: FORMERR with the same id.
    let reply = crate::wire::parse(&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]).unwrap_err();
    let reply = Message::from_vec(&reply.unwrap()).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(
        reply.metadata.response_code,
        hickory_proto::op::ResponseCode::FormErr
    );
    assert!(crate::wire::parse(&[1, 2, 3]).is_err());
}

fn big_headless() -> Snapshot {
    let mut world = world();
    let mut objects = String::from(
        "kind: EndpointSlice\nmetadata: {name: big, namespace: default, labels: {kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n",
    );
    for index in 0..100 {
        writeln!(objects, "- {{addresses: [10.244.9.{index}]}}").unwrap();
    }
    let slice: EndpointSlice = serde_yaml::from_str(&objects).unwrap();
    world
        .slices
        .insert(object_key(&slice), slice_info(&slice).unwrap());
    let service: Service = serde_yaml::from_str(
        "metadata: {name: big, namespace: default}\nspec: {clusterIP: None}\n",
    )
    .unwrap();
    world
        .services
        .insert(object_key(&service), service_info(&service));
    Snapshot::build(&world, "cluster.local", 5, 1)
}

#[test]
fn truncation_over_udp_and_full_answers_over_tcp() {
    let snapshot = big_headless();
    let query = request("big.default.svc.cluster.local.", RecordType::A);
    let Outcome::Reply(response) = answer(&query, &snapshot) else {
        panic!("expected a reply")
    };
    assert_eq!(response.answers.len(), 100);
    let udp = Message::from_vec(&crate::wire::encode(response.clone(), 512)).unwrap();
    assert!(udp.metadata.truncation, "TC set over plain UDP");
    assert!(udp.answers.len() < 100 && !udp.answers.is_empty());
    let tcp = Message::from_vec(&crate::wire::encode(response.clone(), 65535)).unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);
    // An EDNS client with a large buffer gets everything over UDP.
    let mut edns_query = query.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_query.set_edns(edns);
    let limit = crate::wire::udp_limit(&edns_query);
    assert_eq!(limit, 4096);
    let Outcome::Reply(response) = answer(&edns_query, &snapshot) else {
        panic!("expected a reply")
    };
    let big = Message::from_vec(&crate::wire::encode(response, limit)).unwrap();
    assert!(!big.metadata.truncation);
    assert_eq!(big.answers.len(), 100);
}

#[test]
fn publish_not_ready_addresses_include_unready_endpoints() {
    let mut world = world();
    let key = ("default".to_string(), "empty".to_string());
    world.services.get_mut(&key).unwrap().publish_not_ready = true;
    let snapshot = Snapshot::build(&world, "cluster.local", 5, 1);
    let Outcome::Reply(response) = answer(
        &request("empty.default.svc.cluster.local.", RecordType::A),
        &snapshot,
    ) else {
        panic!("reply")
    };
    assert_eq!(response.answers.len(), 1);
}

/// The UDP fast path answers exactly what the slow path answers: on the
/// miss that fills the cache and on every hit, byte for byte (lowercase
/// names), and with the client's spelling of the question (mixed case).
#[test]
fn cached_udp_replies_match_the_slow_path() {
    use std::sync::Arc;

    use arc_swap::ArcSwap;

    use crate::fast::{self, ReplyCache};
    use crate::forward::{ForwardConfig, Forwarder};
    use crate::server::{Handler, Step, UdpStep};

    let handler = Handler::new(
        Arc::new(ArcSwap::from_pointee(snapshot())),
        Arc::new(Forwarder::new(ForwardConfig::default())),
    );
    let mut cache = ReplyCache::new(fast::DEFAULT_CAPACITY);
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let cases = [
        ("kubernetes.default.svc.cluster.local.", RecordType::A),
        ("kubernetes.default.svc.cluster.local.", RecordType::AAAA),
        (
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
        ),
        ("nope.default.svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::SOA),
        ("1.0.96.10.in-addr.arpa.", RecordType::PTR),
        ("dns-version.cluster.local.", RecordType::TXT),
    ];
    for (name, query_type) in cases {
        for edns in [false, true] {
            let mut message = request(name, query_type);
            if edns {
                let mut options = Edns::new();
                options.set_max_payload(1232);
                message.set_edns(options);
            }
            let bytes = message.to_vec().unwrap();
            let Step::Done(Some(slow)) = handler.start(&bytes, false) else {
                panic!("{name} {query_type}: the slow path has no reply");
            };
            for round in ["miss", "hit"] {
                let mut again = bytes.clone();
                again[..2].copy_from_slice(&[0x0b, 0xad]);
                let UdpStep::Reply = handler.start_udp(&again, &mut cache, &mut scratch, &mut out)
                else {
                    panic!("{name} {query_type} {round}: no reply");
                };
                assert_eq!(&out[..2], &[0x0b, 0xad], "{name} {query_type} {round}");
                assert_eq!(&out[2..], &slow[2..], "{name} {query_type} {round}");
            }
            // The same name spelled differently: one entry, the client's spelling.
            let upper = request(&name.to_ascii_uppercase(), query_type);
            let mut upper = upper;
            if edns {
                let mut options = Edns::new();
                options.set_max_payload(1232);
                upper.set_edns(options);
            }
            let upper_bytes = upper.to_vec().unwrap();
            let before = cache.len();
            let UdpStep::Reply =
                handler.start_udp(&upper_bytes, &mut cache, &mut scratch, &mut out)
            else {
                panic!("{name} {query_type} uppercase: no reply");
            };
            assert_eq!(cache.len(), before, "{name}: case-folded key reused");
            let reply = Message::from_vec(&out).unwrap();
            let expected = Message::from_vec(&slow).unwrap();
            assert_eq!(reply.queries, upper.queries, "{name}: question as asked");
            assert_eq!(
                reply.metadata.response_code,
                expected.metadata.response_code
            );
            let data = |m: &Message| m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>();
            assert_eq!(data(&reply), data(&expected), "{name} {query_type}");
        }
    }
    // A new snapshot (a watch event) is never answered from the old cache.
    handler.snapshot.store(Arc::new(Snapshot::build(
        &World::default(),
        "cluster.local",
        5,
        2,
    )));
    let bytes = request("kubernetes.default.svc.cluster.local.", RecordType::A)
        .to_vec()
        .unwrap();
    let UdpStep::Reply = handler.start_udp(&bytes, &mut cache, &mut scratch, &mut out) else {
        panic!("no reply after the snapshot changed");
    };
    assert_eq!(
        Message::from_vec(&out).unwrap().metadata.response_code,
        hickory_proto::op::ResponseCode::NXDomain
    );
}
