//! The pure answer function: a parsed query and a [`Snapshot`] in, a
//! response (or "ask upstream") out. Mirrors how CoreDNS's kubernetes plugin
//! answers (Kubernetes DNS-based service discovery, schema 1.1.0).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::snapshot::{ServiceKind, Snapshot};

/// The schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` TXT record (as CoreDNS).
pub const VERSION_TTL: u32 = 28800;
/// The UDP payload size advertised in responses.
pub const SERVER_UDP_PAYLOAD: u16 = 1232;
/// Longest CNAME chain followed inside the zone.
const MAX_CHAIN: usize = 8;

/// What to do with a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this response.
    Reply(Message),
    /// Not the cluster's name: forward the query to the upstream resolvers.
    Forward,
    /// An ExternalName CNAME to a name outside the zone: resolve `target`
    /// (same type) upstream and append its answers to `reply`; when that
    /// fails answer `nodata` (as CoreDNS, which drops the CNAME then).
    Chase(Box<Chase>),
    /// A response or garbage: no answer at all.
    Drop,
}

/// An ExternalName answer waiting for its target's records.
#[derive(Debug, Clone, PartialEq)]
pub struct Chase {
    pub reply: Message,
    pub target: Name,
    pub query_type: RecordType,
    pub nodata: Message,
}

/// The response skeleton for `request`: same id, question, RD and CD, an OPT
/// record when the query had one.
pub fn response_to(request: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.response_code = code;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(SERVER_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// One thing a name stands for, as CoreDNS's `msg.Service`.
#[derive(Debug, Clone, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(Name),
}

#[derive(Debug, Clone, PartialEq)]
struct Item {
    host: Host,
    /// None: no declared port (no SRV).
    port: Option<u16>,
    /// The owner name SRV records point at.
    key: Name,
}

/// Why a name has no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    NxDomain,
}

/// Answer `request` from `snapshot`. Pure.
pub fn answer(request: &Message, snapshot: &Snapshot) -> Outcome {
    if request.metadata.message_type != hickory_proto::op::MessageType::Query {
        return Outcome::Drop;
    }
    if request.metadata.op_code != OpCode::Query {
        return Outcome::Reply(response_to(request, ResponseCode::NotImp));
    }
    if request.queries.len() != 1 {
        return Outcome::Reply(response_to(request, ResponseCode::FormErr));
    }
    if let Some(edns) = &request.edns {
        if edns.version() > 0 {
            return Outcome::Reply(response_to(request, ResponseCode::BADVERS));
        }
    }
    let query = &request.queries[0];
    let qname = query.name.to_lowercase();
    let qtype = query.query_type;
    if query.query_class != DNSClass::IN {
        return if snapshot.zone.zone_of(&qname) {
            Outcome::Reply(response_to(request, ResponseCode::Refused))
        } else {
            Outcome::Forward
        };
    }
    if !snapshot.zone.zone_of(&qname) {
        if qtype == RecordType::PTR {
            if let Some(reply) = reverse(request, snapshot, &qname) {
                return Outcome::Reply(reply);
            }
        }
        return Outcome::Forward;
    }
    if !snapshot.synced {
        return Outcome::Reply(response_to(request, ResponseCode::ServFail));
    }
    zone_answer(request, snapshot, &qname, qtype)
}

fn authoritative(request: &Message, code: ResponseCode) -> Message {
    let mut response = response_to(request, code);
    response.metadata.authoritative = true;
    response
}

/// The zone's SOA record.
pub fn soa(snapshot: &Snapshot) -> Record {
    let zone = snapshot.zone.clone();
    let mname = zone
        .prepend_label("dns")
        .and_then(|n| n.prepend_label("ns"));
    let rname = zone.prepend_label("hostmaster");
    Record::from_rdata(
        zone.clone(),
        snapshot.ttl.min(300),
        RData::SOA(SOA::new(
            mname.unwrap_or_else(|_| zone.clone()),
            rname.unwrap_or_else(|_| zone.clone()),
            snapshot.serial,
            7200,
            1800,
            86400,
            snapshot.ttl,
        )),
    )
}

fn negative(request: &Message, snapshot: &Snapshot, code: ResponseCode) -> Message {
    let mut response = authoritative(request, code);
    response.add_authority(soa(snapshot));
    response
}

fn nodata(request: &Message, snapshot: &Snapshot) -> Outcome {
    Outcome::Reply(negative(request, snapshot, ResponseCode::NoError))
}

fn nxdomain(request: &Message, snapshot: &Snapshot) -> Outcome {
    Outcome::Reply(negative(request, snapshot, ResponseCode::NXDomain))
}

fn labels_of(name: &Name, count: usize) -> Vec<String> {
    name.iter()
        .take(count)
        .map(|label| String::from_utf8_lossy(label).into_owned())
        .collect()
}

fn ns_name(snapshot: &Snapshot) -> Name {
    snapshot
        .zone
        .prepend_label("dns")
        .and_then(|n| n.prepend_label("ns"))
        .unwrap_or_else(|_| snapshot.zone.clone())
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(v4.into()),
        IpAddr::V6(v6) => RData::AAAA(v6.into()),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

fn wants(qtype: RecordType, ip: &IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_))
    )
}

fn zone_answer(request: &Message, snapshot: &Snapshot, qname: &Name, qtype: RecordType) -> Outcome {
    let owner = &request.queries[0].name;
    let relative = qname.num_labels() as usize - snapshot.zone.num_labels() as usize;
    let labels = labels_of(qname, relative);
    let ttl = snapshot.ttl;
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Outcome::Reply(authoritative(request, ResponseCode::Refused));
    }
    // The apex.
    if labels.is_empty() {
        let mut response = authoritative(request, ResponseCode::NoError);
        match qtype {
            RecordType::SOA => {
                let mut record = soa(snapshot);
                record.name = owner.clone();
                response.add_answer(record);
            }
            RecordType::NS => {
                let ns = ns_name(snapshot);
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::NS(NS(ns.clone())),
                ));
                for ip in &snapshot.dns_ips {
                    response.add_additional(address_record(&ns, ttl, *ip));
                }
            }
            _ => return nodata(request, snapshot),
        }
        return Outcome::Reply(response);
    }
    if labels.len() == 1 && labels[0] == "dns-version" && qtype == RecordType::TXT {
        let mut response = authoritative(request, ResponseCode::NoError);
        response.add_answer(Record::from_rdata(
            owner.clone(),
            VERSION_TTL,
            RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
        ));
        return Outcome::Reply(response);
    }
    if labels.len() == 2 && labels[0] == "ns" && labels[1] == "dns" {
        let mut response = authoritative(request, ResponseCode::NoError);
        for ip in snapshot.dns_ips.iter().filter(|ip| wants(qtype, ip)) {
            response.add_answer(address_record(owner, ttl, *ip));
        }
        if response.answers.is_empty() {
            return nodata(request, snapshot);
        }
        return Outcome::Reply(response);
    }
    let items = match find(snapshot, &labels) {
        Ok(items) => items,
        Err(Miss::NxDomain) => return nxdomain(request, snapshot),
    };
    let mut response = authoritative(request, ResponseCode::NoError);
    match qtype {
        RecordType::A | RecordType::AAAA => {
            let mut chase = None;
            let mut seen: Vec<IpAddr> = Vec::new();
            for item in &items {
                match &item.host {
                    Host::Ip(ip) => {
                        if wants(qtype, ip) && !seen.contains(ip) {
                            seen.push(*ip);
                            response.add_answer(address_record(owner, ttl, *ip));
                        }
                    }
                    Host::Name(target) => {
                        let cname = Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::CNAME(CNAME(target.clone())),
                        );
                        if snapshot.zone.zone_of(target) {
                            let followed = follow_in_zone(snapshot, target, qtype, 1);
                            if !followed.is_empty() {
                                response.add_answer(cname);
                                response.add_answers(followed);
                            }
                        } else if chase.is_none() {
                            response.add_answer(cname);
                            chase = Some(target.clone());
                        }
                    }
                }
            }
            if let Some(target) = chase {
                return Outcome::Chase(Box::new(Chase {
                    reply: response,
                    target,
                    query_type: qtype,
                    nodata: negative(request, snapshot, ResponseCode::NoError),
                }));
            }
        }
        RecordType::CNAME => {
            if let Some(Item {
                host: Host::Name(target),
                ..
            }) = items.first()
            {
                response.add_answer(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::CNAME(CNAME(target.clone())),
                ));
            }
        }
        RecordType::SRV => {
            let with_ports: Vec<&Item> = items
                .iter()
                .filter(|item| item.port.is_some() && matches!(item.host, Host::Ip(_)))
                .collect();
            let total = items
                .iter()
                .filter(|i| matches!(i.host, Host::Ip(_)))
                .count()
                .max(1);
            let weight = ((100.0 / total as f64).floor() as u16).max(1);
            let mut seen_srv: Vec<(Name, u16)> = Vec::new();
            let mut seen_extra: Vec<(Name, IpAddr)> = Vec::new();
            for item in with_ports {
                let Host::Ip(ip) = item.host else { continue };
                let port = item.port.unwrap_or(0);
                if !seen_srv.iter().any(|(n, p)| *p == port && n == &item.key) {
                    seen_srv.push((item.key.clone(), port));
                    response.add_answer(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::SRV(SRV::new(0, weight, port, item.key.clone())),
                    ));
                }
                if !seen_extra.iter().any(|(n, i)| *i == ip && n == &item.key) {
                    seen_extra.push((item.key.clone(), ip));
                    response.add_additional(address_record(&item.key, ttl, ip));
                }
            }
        }
        // Other types on an existing name: NODATA (CoreDNS's "fake A lookup").
        _ => {}
    }
    if response.answers.is_empty() {
        return nodata(request, snapshot);
    }
    Outcome::Reply(response)
}

/// Addresses (and CNAMEs) for an in-zone ExternalName target.
fn follow_in_zone(
    snapshot: &Snapshot,
    target: &Name,
    qtype: RecordType,
    depth: usize,
) -> Vec<Record> {
    if depth > MAX_CHAIN {
        return Vec::new();
    }
    let target = target.to_lowercase();
    let relative = target.num_labels() as usize - snapshot.zone.num_labels() as usize;
    let labels = labels_of(&target, relative);
    let Ok(items) = find(snapshot, &labels) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for item in items {
        match item.host {
            Host::Ip(ip) if wants(qtype, &ip) => {
                let record = address_record(&target, snapshot.ttl, ip);
                if !records.contains(&record) {
                    records.push(record);
                }
            }
            Host::Name(next) if snapshot.zone.zone_of(&next) && next != target => {
                let more = follow_in_zone(snapshot, &next, qtype, depth + 1);
                if !more.is_empty() {
                    records.push(Record::from_rdata(
                        target.clone(),
                        snapshot.ttl,
                        RData::CNAME(CNAME(next)),
                    ));
                    records.extend(more);
                }
            }
            _ => {}
        }
    }
    records
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// What a name inside the zone stands for (labels relative to the zone,
/// lowercase): CoreDNS's parseRequest + findServices/findPods. `Ok(empty)`
/// is NODATA.
fn find(snapshot: &Snapshot, labels: &[String]) -> Result<Vec<Item>, Miss> {
    let Some((kind, rest)) = labels.split_last() else {
        return Ok(Vec::new());
    };
    if kind != "svc" && kind != "pod" {
        return Err(Miss::NxDomain);
    }
    let Some((namespace, rest)) = rest.split_last() else {
        return Ok(Vec::new());
    };
    if !snapshot.namespaces.contains(namespace.as_str()) {
        return Err(Miss::NxDomain);
    }
    let Some((service, rest)) = rest.split_last() else {
        return Ok(Vec::new());
    };
    let (endpoint, port, protocol) = match rest {
        [] => (None, None, None),
        [endpoint] => (Some(endpoint.as_str()), None, None),
        [port, protocol] => (
            None,
            Some(strip_underscore(port)),
            Some(strip_underscore(protocol)),
        ),
        _ => return Err(Miss::NxDomain),
    };
    if kind == "pod" {
        return find_pod(snapshot, service, rest.is_empty());
    }
    let Some(entry) = snapshot.services.get(&(namespace.clone(), service.clone())) else {
        return Err(Miss::NxDomain);
    };
    let port_matches = |name: &str, proto: &str| {
        port.is_none_or(|p| p == "*" || p == "any" || p == name)
            && protocol.is_none_or(|p| p == "*" || p == "any" || p == proto)
    };
    let mut items = Vec::new();
    match &entry.kind {
        ServiceKind::External(target) => {
            if endpoint.is_none() {
                items.push(Item {
                    host: Host::Name(target.clone()),
                    port: None,
                    key: entry.name.clone(),
                });
            }
        }
        kind if *kind == ServiceKind::Headless || endpoint.is_some() => {
            for ep in &entry.endpoints {
                if endpoint.is_some_and(|label| label != ep.label) {
                    continue;
                }
                if ep.ports.is_empty() {
                    if port.is_none() && protocol.is_none() {
                        items.push(Item {
                            host: Host::Ip(ep.ip),
                            port: None,
                            key: ep.name_in(&entry.name),
                        });
                    }
                    continue;
                }
                for p in ep.ports.iter() {
                    if port_matches(&p.name, &p.protocol) {
                        items.push(Item {
                            host: Host::Ip(ep.ip),
                            port: Some(p.port),
                            key: ep.name_in(&entry.name),
                        });
                    }
                }
            }
            if let (Some(label), None, None) = (endpoint, port, protocol) {
                if let Some(ips) = entry.pod_hosts.get(label) {
                    let key = entry
                        .name
                        .prepend_label(label)
                        .unwrap_or_else(|_| entry.name.clone());
                    for ip in ips {
                        if !items.iter().any(|i| i.host == Host::Ip(*ip)) {
                            items.push(Item {
                                host: Host::Ip(*ip),
                                port: None,
                                key: key.clone(),
                            });
                        }
                    }
                }
            }
        }
        ServiceKind::ClusterIp(ips) => {
            for p in &entry.ports {
                if port_matches(&p.name, &p.protocol) {
                    for ip in ips {
                        items.push(Item {
                            host: Host::Ip(*ip),
                            port: Some(p.port),
                            key: entry.name.clone(),
                        });
                    }
                }
            }
        }
        ServiceKind::Headless => {}
    }
    if items.is_empty() {
        return Err(Miss::NxDomain);
    }
    Ok(items)
}

/// `a-b-c-d.<ns>.pod.<zone>` (CoreDNS `pods insecure`).
fn find_pod(snapshot: &Snapshot, label: &str, exact: bool) -> Result<Vec<Item>, Miss> {
    if !exact {
        return Err(Miss::NxDomain);
    }
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    let ip: IpAddr = text.parse().map_err(|_| Miss::NxDomain)?;
    Ok(vec![Item {
        host: Host::Ip(ip),
        port: None,
        key: snapshot.zone.clone(),
    }])
}

/// Parse `4.3.2.1.in-addr.arpa.` / nibble `ip6.arpa.` names.
pub fn reverse_address(name: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            format!("{a}.{b}.{c}.{d}").parse().ok().filter(|_| {
                [a, b, c, d]
                    .iter()
                    .all(|part| part == &"0" || !part.starts_with('0'))
            })
        }
        [nibbles @ .., ip6, arpa] if ip6 == "ip6" && arpa == "arpa" && nibbles.len() == 32 => {
            let mut hex = String::with_capacity(39);
            for (index, nibble) in nibbles.iter().rev().enumerate() {
                if nibble.len() != 1 || !nibble.chars().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                if index > 0 && index % 4 == 0 {
                    hex.push(':');
                }
                hex.push_str(nibble);
            }
            hex.parse().ok()
        }
        _ => None,
    }
}

fn reverse(request: &Message, snapshot: &Snapshot, qname: &Name) -> Option<Message> {
    let ip = reverse_address(qname)?;
    let names = snapshot.ptr.get(&ip)?;
    if !snapshot.synced {
        return None;
    }
    let owner = &request.queries[0].name;
    let mut response = authoritative(request, ResponseCode::NoError);
    for name in names {
        response.add_answer(Record::from_rdata(
            owner.clone(),
            snapshot.ttl,
            RData::PTR(PTR(name.clone())),
        ));
    }
    Some(response)
}
