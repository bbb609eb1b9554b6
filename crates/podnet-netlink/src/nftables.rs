//! nf_tables changes written as one netlink batch (one kernel transaction)
//! without the `nft` program.
//!
//! Why: `nft -f` first dumps every chain of the namespace into its cache
//! before it adds a rule or a map element (20+ ms at 30k chains). The
//! service proxy's incremental changes use a small, fixed part of the nft
//! language, so [`NftBatch::from_script`] translates exactly that part into
//! nf_tables messages, encoded as `nft` itself encodes them (so `nft list
//! ruleset` shows the same text), and [`NftBatch::apply`] sends them:
//!
//! - `add chain ip T C`, `flush chain ip T C`, `delete chain ip T C`
//! - `add set ip T S { type ipv4_addr; flags dynamic,timeout; timeout Ns; }`
//!   (session affinity sets), `delete set ip T S`
//! - `add element ip T M { … }`, `delete element ip T M { … }` with keys
//!   `ADDR`, `ADDR . PROTO . PORT` or `PROTO . PORT` and verdicts `goto C`,
//!   `jump C`, `drop`, `accept`, `return`
//! - `add rule ip T C …` made of `ip saddr|daddr [!=] ADDR[/LEN]`,
//!   `ip saddr|daddr @SET`, `tcp|udp|sctp dport PORT`, `meta l4proto PROTO`,
//!   `numgen random mod N == K`, `fib saddr|daddr type local`,
//!   `update @SET { ip saddr }`, `dnat to ADDR:PORT`, a final `jump C` or
//!   `goto C`, and `comment "…"`.
//!
//! Anything else makes `from_script` answer `Err` with the line, and the
//! caller runs `nft -f` instead.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_sys::{Socket, SocketAddr};

use crate::{in_netns, NetlinkError};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_IPV4: u8 = 2;

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_ERROR: u16 = 2;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;

const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;

/// Largest batch sent in one message; bigger changes go through `nft -f`.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One nf_tables message of the batch and what it does, for error messages.
struct Message {
    kind: u16,
    flags: u16,
    attributes: Vec<u8>,
    description: String,
}

/// A translated script: nf_tables messages applied as one transaction.
pub struct NftBatch {
    messages: Vec<Message>,
}

impl std::fmt::Debug for NftBatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.messages.iter().map(|m| &m.description))
            .finish()
    }
}

fn put_attribute(buffer: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let length = 4 + payload.len();
    buffer.extend_from_slice(&(length as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(payload);
    while !buffer.len().is_multiple_of(4) {
        buffer.push(0);
    }
}

fn put_string(buffer: &mut Vec<u8>, kind: u16, text: &str) {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    put_attribute(buffer, kind, &bytes);
}

fn put_be32(buffer: &mut Vec<u8>, kind: u16, value: u32) {
    put_attribute(buffer, kind, &value.to_be_bytes());
}

fn put_nested(buffer: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    put_attribute(buffer, kind | NLA_F_NESTED, inner);
}

/// `nft_data` holding a value (`NFTA_DATA_VALUE`).
fn data_value(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_attribute(&mut out, 1, bytes);
    out
}

/// `nft_data` holding a verdict (`NFTA_DATA_VERDICT`).
fn data_verdict(verdict: &Verdict) -> Vec<u8> {
    let mut inner = Vec::new();
    let (code, chain) = match verdict {
        Verdict::Jump(chain) => (NFT_JUMP, Some(chain.as_str())),
        Verdict::Goto(chain) => (NFT_GOTO, Some(chain.as_str())),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Return => (NFT_RETURN, None),
    };
    put_attribute(&mut inner, 1, &code.to_be_bytes());
    if let Some(chain) = chain {
        put_string(&mut inner, 2, chain);
    }
    let mut out = Vec::new();
    put_nested(&mut out, 2, &inner);
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Jump(String),
    Goto(String),
    Drop,
    Accept,
    Return,
}

fn parse_verdict(text: &str) -> Option<Verdict> {
    let mut words = text.split_whitespace();
    let verdict = match words.next()? {
        "jump" => Verdict::Jump(words.next()?.to_string()),
        "goto" => Verdict::Goto(words.next()?.to_string()),
        "drop" => Verdict::Drop,
        "accept" => Verdict::Accept,
        "return" => Verdict::Return,
        _ => return None,
    };
    words.next().is_none().then_some(verdict)
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// A set element key as the kernel stores it: each field of a
/// concatenation padded to 4 bytes, integers in network order.
fn parse_key(text: &str) -> Option<Vec<u8>> {
    let fields: Vec<&str> = text.split(" . ").map(str::trim).collect();
    let mut key = Vec::new();
    match fields.as_slice() {
        [address] => key.extend_from_slice(&address.parse::<Ipv4Addr>().ok()?.octets()),
        [address, protocol, port] => {
            key.extend_from_slice(&address.parse::<Ipv4Addr>().ok()?.octets());
            key.extend_from_slice(&[protocol_number(protocol)?, 0, 0, 0]);
            key.extend_from_slice(&port.parse::<u16>().ok()?.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
        }
        [protocol, port] => {
            key.extend_from_slice(&[protocol_number(protocol)?, 0, 0, 0]);
            key.extend_from_slice(&port.parse::<u16>().ok()?.to_be_bytes());
            key.extend_from_slice(&[0, 0]);
        }
        _ => return None,
    }
    Some(key)
}

/// Builds the expressions of one rule.
struct RuleBuilder {
    expressions: Vec<u8>,
}

impl RuleBuilder {
    fn expression(&mut self, name: &str, data: &[u8]) {
        let mut inner = Vec::new();
        put_string(&mut inner, 1, name);
        put_nested(&mut inner, 2, data);
        put_nested(&mut self.expressions, 1, &inner);
    }

    fn payload(&mut self, base: u32, offset: u32, length: u32) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, NFT_REG_1);
        put_be32(&mut data, 2, base);
        put_be32(&mut data, 3, offset);
        put_be32(&mut data, 4, length);
        self.expression("payload", &data);
    }

    fn compare(&mut self, equal: bool, value: &[u8]) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, NFT_REG_1);
        put_be32(&mut data, 2, if equal { 0 } else { 1 });
        put_nested(&mut data, 3, &data_value(value));
        self.expression("cmp", &data);
    }

    fn bitwise(&mut self, mask: &[u8]) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, NFT_REG_1);
        put_be32(&mut data, 2, NFT_REG_1);
        put_be32(&mut data, 3, mask.len() as u32);
        put_nested(&mut data, 4, &data_value(mask));
        put_nested(&mut data, 5, &data_value(&vec![0; mask.len()]));
        self.expression("bitwise", &data);
    }

    fn meta_l4proto(&mut self, protocol: u8) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, NFT_REG_1);
        // NFT_META_L4PROTO
        put_be32(&mut data, 2, 16);
        self.expression("meta", &data);
        self.compare(true, &[protocol]);
    }

    fn immediate_value(&mut self, register: u32, value: &[u8]) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, register);
        put_nested(&mut data, 2, &data_value(value));
        self.expression("immediate", &data);
    }

    fn verdict(&mut self, verdict: &Verdict) {
        let mut data = Vec::new();
        put_be32(&mut data, 1, NFT_REG_VERDICT);
        put_nested(&mut data, 2, &data_verdict(verdict));
        self.expression("immediate", &data);
    }

    /// `ip saddr|daddr [!=] VALUE` where VALUE is an address, a prefix or `@set`.
    fn address_match(&mut self, offset: u32, equal: bool, value: &str) -> Option<()> {
        if let Some(set) = value.strip_prefix('@') {
            if !equal {
                return None;
            }
            self.payload(1, offset, 4);
            let mut data = Vec::new();
            put_string(&mut data, 1, set);
            put_be32(&mut data, 2, NFT_REG_1);
            self.expression("lookup", &data);
            return Some(());
        }
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, prefix.parse::<u32>().ok()?),
            None => (value, 32),
        };
        let address: Ipv4Addr = address.parse().ok()?;
        if prefix == 0 || prefix > 32 {
            return None;
        }
        // As nft: a byte-aligned prefix loads only the bytes it covers; any
        // other loads the address and masks the bytes the prefix touches.
        let bytes = prefix.div_ceil(8);
        let mask = u32::MAX << (32 - prefix);
        let network = (u32::from(address) & mask).to_be_bytes();
        if prefix.is_multiple_of(8) {
            self.payload(1, offset, bytes);
            self.compare(equal, &network[..bytes as usize]);
        } else {
            self.payload(1, offset, 4);
            self.bitwise(&mask.to_be_bytes());
            self.compare(equal, &network);
        }
        Some(())
    }

    fn build(words: &[&str]) -> Option<Vec<u8>> {
        let mut rule = RuleBuilder {
            expressions: Vec::new(),
        };
        let mut index = 0;
        while index < words.len() {
            let rest = &words[index..];
            match rest {
                ["ip", field @ ("saddr" | "daddr"), "!=", value, ..] => {
                    rule.address_match(if *field == "saddr" { 12 } else { 16 }, false, value)?;
                    index += 4;
                }
                ["ip", field @ ("saddr" | "daddr"), value, ..] => {
                    rule.address_match(if *field == "saddr" { 12 } else { 16 }, true, value)?;
                    index += 3;
                }
                [protocol @ ("tcp" | "udp" | "sctp"), "dport", port, ..] => {
                    let port: u16 = port.parse().ok()?;
                    rule.meta_l4proto(protocol_number(protocol)?);
                    rule.payload(2, 2, 2);
                    rule.compare(true, &port.to_be_bytes());
                    index += 3;
                }
                ["meta", "l4proto", protocol, ..] => {
                    rule.meta_l4proto(protocol_number(protocol)?);
                    index += 3;
                }
                ["numgen", "random", "mod", modulus, "==", value, ..] => {
                    let modulus: u32 = modulus.parse().ok()?;
                    let value: u32 = value.parse().ok()?;
                    if modulus == 0 {
                        return None;
                    }
                    let mut data = Vec::new();
                    put_be32(&mut data, 1, NFT_REG_1);
                    put_be32(&mut data, 2, modulus);
                    // NFT_NG_RANDOM
                    put_be32(&mut data, 3, 1);
                    rule.expression("numgen", &data);
                    // numgen writes a host-order u32.
                    rule.compare(true, &value.to_ne_bytes());
                    index += 6;
                }
                ["fib", field @ ("saddr" | "daddr"), "type", "local", ..] => {
                    let mut data = Vec::new();
                    put_be32(&mut data, 1, NFT_REG_1);
                    // NFT_FIB_RESULT_ADDRTYPE
                    put_be32(&mut data, 2, 3);
                    // NFTA_FIB_F_SADDR / NFTA_FIB_F_DADDR
                    put_be32(&mut data, 3, if *field == "saddr" { 1 } else { 2 });
                    rule.expression("fib", &data);
                    // RTN_LOCAL, host order.
                    rule.compare(true, &2u32.to_ne_bytes());
                    index += 4;
                }
                ["update", set, "{", "ip", "saddr", "}", ..] => {
                    let set = set.strip_prefix('@')?;
                    rule.payload(1, 12, 4);
                    let mut data = Vec::new();
                    put_string(&mut data, 1, set);
                    // NFT_DYNSET_OP_UPDATE
                    put_be32(&mut data, 3, 1);
                    put_be32(&mut data, 4, NFT_REG_1);
                    rule.expression("dynset", &data);
                    index += 6;
                }
                ["dnat", "to", target, ..] => {
                    let (address, port) = target.split_once(':')?;
                    let address: Ipv4Addr = address.parse().ok()?;
                    let port: u16 = port.parse().ok()?;
                    rule.immediate_value(NFT_REG_1, &address.octets());
                    rule.immediate_value(NFT_REG_2, &port.to_be_bytes());
                    let mut data = Vec::new();
                    // NFT_NAT_DNAT, NFPROTO_IPV4
                    put_be32(&mut data, 1, 1);
                    put_be32(&mut data, 2, u32::from(NFPROTO_IPV4));
                    put_be32(&mut data, 3, NFT_REG_1);
                    put_be32(&mut data, 5, NFT_REG_2);
                    // NF_NAT_RANGE_PROTO_SPECIFIED
                    put_be32(&mut data, 7, 0x2);
                    rule.expression("nat", &data);
                    index += 3;
                }
                [kind @ ("jump" | "goto"), chain] => {
                    let verdict = if *kind == "jump" {
                        Verdict::Jump(chain.to_string())
                    } else {
                        Verdict::Goto(chain.to_string())
                    };
                    rule.verdict(&verdict);
                    index += 2;
                }
                _ => return None,
            }
        }
        Some(rule.expressions)
    }
}

/// Splits `ip T NAME rest` into (T, NAME, rest); only the `ip` family.
fn table_and_name(text: &str) -> Option<(&str, &str, &str)> {
    let rest = text.strip_prefix("ip ")?;
    let (table, rest) = rest.split_once(' ')?;
    let (name, rest) = match rest.split_once(' ') {
        Some((name, rest)) => (name, rest),
        None => (rest, ""),
    };
    Some((table, name, rest))
}

/// The attributes naming an object of `table`: the table (attribute 1),
/// then the name under `name_kind`: 3 for a chain, 2 for a rule's chain,
/// a set, or the set of a list of elements.
fn in_table(table: &str, name_kind: u16, name: &str) -> Vec<u8> {
    let mut attributes = Vec::new();
    put_string(&mut attributes, 1, table);
    put_string(&mut attributes, name_kind, name);
    attributes
}

/// The elements between `{` and `}`: (key, verdict).
fn parse_elements(text: &str) -> Option<Vec<(Vec<u8>, Option<Verdict>)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    inner
        .split(',')
        .map(|element| {
            let (key, verdict) = match element.split_once(" : ") {
                Some((key, verdict)) => (key, Some(parse_verdict(verdict)?)),
                None => (element, None),
            };
            Some((parse_key(key.trim())?, verdict))
        })
        .collect()
}

fn element_list(
    table: &str,
    set: &str,
    elements: &[(Vec<u8>, Option<Verdict>)],
    with_data: bool,
) -> Vec<u8> {
    let mut attributes = in_table(table, 2, set);
    let mut list = Vec::new();
    for (key, verdict) in elements {
        let mut element = Vec::new();
        put_nested(&mut element, 1, &data_value(key));
        if let (true, Some(verdict)) = (with_data, verdict) {
            put_nested(&mut element, 2, &data_verdict(verdict));
        }
        put_nested(&mut list, 1, &element);
    }
    put_nested(&mut attributes, 3, &list);
    attributes
}

/// One script line as a message; `sequence` (unique in the batch) also
/// serves as the id the kernel wants for a new set.
fn translate_line(line: &str, sequence: u32) -> Option<Message> {
    // Lines that name one object and nothing more: (prefix, message kind,
    // flags, attribute of the name).
    const NAMING_ONE_OBJECT: [(&str, u16, u16, u16); 4] = [
        ("add chain ", NFT_MSG_NEWCHAIN, NLM_F_CREATE, 3),
        ("delete chain ", NFT_MSG_DELCHAIN, 0, 3),
        ("flush chain ", NFT_MSG_DELRULE, 0, 2),
        ("delete set ", NFT_MSG_DELSET, 0, 2),
    ];
    for (prefix, kind, flags, name_kind) in NAMING_ONE_OBJECT {
        if let Some(rest) = line.strip_prefix(prefix) {
            let (table, name, tail) = table_and_name(rest)?;
            return tail.is_empty().then(|| Message {
                kind,
                flags,
                attributes: in_table(table, name_kind, name),
                description: line.to_string(),
            });
        }
    }
    if let Some(rest) = line.strip_prefix("add rule ") {
        let (table, chain, rule) = table_and_name(rest)?;
        let (rule, comment) = match rule.split_once(" comment \"") {
            Some((rule, comment)) => (rule, Some(comment.strip_suffix('"')?)),
            None => (rule, None),
        };
        if comment.is_some_and(|c| c.contains('"')) {
            return None;
        }
        let words: Vec<&str> = rule.split_whitespace().collect();
        let expressions = RuleBuilder::build(&words)?;
        let mut attributes = in_table(table, 2, chain);
        put_nested(&mut attributes, 4, &expressions);
        if let Some(comment) = comment {
            // NFTNL_UDATA_RULE_COMMENT: type, length, text with its NUL.
            let length = u8::try_from(comment.len() + 1).ok()?;
            let mut userdata = vec![0, length];
            userdata.extend_from_slice(comment.as_bytes());
            userdata.push(0);
            put_attribute(&mut attributes, 7, &userdata);
        }
        return Some(Message {
            kind: NFT_MSG_NEWRULE,
            flags: NLM_F_CREATE | NLM_F_APPEND,
            attributes,
            description: line.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("add set ") {
        let (table, set, declaration) = table_and_name(rest)?;
        let seconds: u64 = declaration
            .strip_prefix("{ type ipv4_addr; flags dynamic,timeout; timeout ")?
            .strip_suffix("s; }")?
            .parse()
            .ok()?;
        let mut attributes = in_table(table, 2, set);
        // NFT_SET_TIMEOUT | NFT_SET_EVAL
        put_be32(&mut attributes, 3, 0x30);
        // key: ipv4_addr (nft's type 7), 4 bytes
        put_be32(&mut attributes, 4, 7);
        put_be32(&mut attributes, 5, 4);
        put_be32(&mut attributes, 10, sequence);
        put_attribute(
            &mut attributes,
            11,
            &(seconds.checked_mul(1000)?).to_be_bytes(),
        );
        // nft's user data: key byte order big endian.
        put_attribute(&mut attributes, 13, &[0, 4, 2, 0, 0, 0]);
        return Some(Message {
            kind: NFT_MSG_NEWSET,
            flags: NLM_F_CREATE,
            attributes,
            description: line.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("add element ") {
        let (table, set, elements) = table_and_name(rest)?;
        let parsed = parse_elements(elements)?;
        return Some(Message {
            kind: NFT_MSG_NEWSETELEM,
            flags: NLM_F_CREATE,
            attributes: element_list(table, set, &parsed, true),
            description: line.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("delete element ") {
        let (table, set, elements) = table_and_name(rest)?;
        let parsed = parse_elements(elements)?;
        if parsed.iter().any(|(_, verdict)| verdict.is_some()) {
            return None;
        }
        return Some(Message {
            kind: NFT_MSG_DELSETELEM,
            flags: 0,
            attributes: element_list(table, set, &parsed, false),
            description: line.to_string(),
        });
    }
    None
}

fn header(buffer: &mut Vec<u8>, kind: u16, flags: u16, sequence: u32, family: u8, resource: u16) {
    // nlmsghdr (length patched later), then nfgenmsg.
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buffer.extend_from_slice(&sequence.to_ne_bytes());
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.push(family);
    buffer.push(0);
    buffer.extend_from_slice(&resource.to_be_bytes());
}

fn finish(buffer: &mut [u8], start: usize) {
    let length = (buffer.len() - start) as u32;
    buffer[start..start + 4].copy_from_slice(&length.to_ne_bytes());
}

impl NftBatch {
    /// Translates an nft script in the supported subset (see the module
    /// documentation). `Err` carries the first line outside it.
    pub fn from_script(script: &str) -> Result<NftBatch, String> {
        let mut messages = Vec::new();
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let sequence = messages.len() as u32 + 1;
            messages.push(translate_line(line, sequence).ok_or_else(|| line.to_string())?);
        }
        Ok(NftBatch { messages })
    }

    /// Number of nf_tables messages (without the batch begin and end).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The bytes sent: batch begin, the messages (sequence numbers from 1),
    /// batch end.
    fn encode(&self) -> Vec<u8> {
        let mut buffer = Vec::with_capacity(
            64 + self
                .messages
                .iter()
                .map(|m| m.attributes.len() + 20)
                .sum::<usize>(),
        );
        header(
            &mut buffer,
            NFNL_MSG_BATCH_BEGIN,
            0,
            0,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        finish(&mut buffer, 0);
        for (index, message) in self.messages.iter().enumerate() {
            let start = buffer.len();
            header(
                &mut buffer,
                (NFNL_SUBSYS_NFTABLES << 8) | message.kind,
                message.flags,
                index as u32 + 1,
                NFPROTO_IPV4,
                0,
            );
            buffer.extend_from_slice(&message.attributes);
            finish(&mut buffer, start);
        }
        let start = buffer.len();
        header(
            &mut buffer,
            NFNL_MSG_BATCH_END,
            0,
            self.messages.len() as u32 + 1,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        finish(&mut buffer, start);
        buffer
    }

    /// Applies the batch in the network namespace at `netns` as one
    /// transaction (all of it or nothing) on a socket opened for it. Closing
    /// that socket waits for the kernel to release what the batch deleted
    /// (an RCU grace period, often 5-15 ms); callers that write often keep an
    /// [`NftSocket`] and use [`NftBatch::apply_on`].
    pub fn apply(&self, netns: &Path) -> Result<(), NetlinkError> {
        if self.messages.is_empty() {
            return Ok(());
        }
        self.apply_on(&NftSocket::open(netns)?)
    }

    /// Applies the batch as one transaction on an open socket.
    pub fn apply_on(&self, socket: &NftSocket) -> Result<(), NetlinkError> {
        if self.messages.is_empty() {
            return Ok(());
        }
        let bytes = self.encode();
        let netns_name = socket.netns.display().to_string();
        let socket_error = |source: io::Error| NetlinkError::Socket {
            netns: netns_name.clone(),
            source,
        };
        if bytes.len() > MAX_BATCH_BYTES {
            return Err(socket_error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "nf_tables batch of {} bytes is over {MAX_BATCH_BYTES}; apply it with nft -f",
                    bytes.len()
                ),
            )));
        }
        let errors = send_batch(&socket.socket, &bytes).map_err(socket_error)?;
        match errors.first() {
            None => Ok(()),
            Some((sequence, errno)) => {
                let description = (*sequence as usize)
                    .checked_sub(1)
                    .and_then(|index| self.messages.get(index))
                    .map(|m| m.description.clone())
                    .unwrap_or_else(|| "commit of the nf_tables batch".to_string());
                Err(NetlinkError::Kernel {
                    object: "nf_tables".to_string(),
                    netns: netns_name,
                    action: description,
                    source: io::Error::from_raw_os_error(*errno),
                })
            }
        }
    }
}

/// A NETLINK_NETFILTER socket bound to one network namespace, kept open
/// across batches: the kernel flushes its deferred releases whenever such a
/// socket closes, so a socket per batch would make every change that deletes
/// something wait for an RCU grace period.
pub struct NftSocket {
    socket: Socket,
    netns: std::path::PathBuf,
    /// (device, inode) of the namespace file when the socket was opened.
    identity: (u64, u64),
}

impl std::fmt::Debug for NftSocket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NftSocket")
            .field("netns", &self.netns)
            .finish()
    }
}

fn netns_identity(netns: &Path) -> Result<(u64, u64), NetlinkError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(netns).map_err(|source| NetlinkError::Netns {
        path: netns.to_path_buf(),
        action: "inspect the netns file",
        source,
    })?;
    Ok((metadata.dev(), metadata.ino()))
}

impl NftSocket {
    /// Opens a socket inside the namespace at `netns`.
    pub fn open(netns: &Path) -> Result<NftSocket, NetlinkError> {
        let identity = netns_identity(netns)?;
        let socket = in_netns(netns, || -> io::Result<Socket> {
            let mut socket = Socket::new(NETLINK_NETFILTER)?;
            socket.bind_auto()?;
            socket.connect(&SocketAddr::new(0, 0))?;
            // Room for the largest batch sent in one message, set once.
            let size = MAX_BATCH_BYTES as libc::c_int;
            // SAFETY: plain setsockopt on a socket we own, with a correctly
            // sized int. Best effort: the send reports a batch that does
            // not fit.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUFFORCE,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            Ok(socket)
        })?
        .map_err(|source| NetlinkError::Socket {
            netns: netns.display().to_string(),
            source,
        })?;
        Ok(NftSocket {
            socket,
            netns: netns.to_path_buf(),
            identity,
        })
    }

    /// True while the namespace file still names the namespace the socket
    /// lives in (a namespace deleted and made again at the same path is
    /// another one).
    pub fn is_current(&self) -> bool {
        netns_identity(&self.netns).is_ok_and(|identity| identity == self.identity)
    }
}

/// Sends the batch and returns the (sequence, errno) of every error
/// reported. The kernel handles a batch inside `sendmsg`, so every answer is
/// queued when it returns; as `nft` does, no acknowledgement is asked for
/// success. Answers left from an earlier batch are read and dropped first.
fn send_batch(socket: &Socket, bytes: &[u8]) -> io::Result<Vec<(u32, i32)>> {
    let mut buffer = vec![0u8; 1 << 16];
    let _ = drain(socket, &mut buffer)?;
    let sent = socket.send(bytes, 0)?;
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "sent {sent} of {} bytes of the nf_tables batch",
                bytes.len()
            ),
        ));
    }
    drain(socket, &mut buffer)
}

/// Reads every queued answer without waiting; returns the errors.
fn drain(socket: &Socket, buffer: &mut [u8]) -> io::Result<Vec<(u32, i32)>> {
    let mut errors = Vec::new();
    loop {
        let received = {
            let mut slice: &mut [u8] = &mut buffer[..];
            match socket.recv(&mut slice, libc::MSG_DONTWAIT) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        };
        let mut offset = 0;
        while offset + 16 <= received {
            let word =
                |at: usize| u32::from_ne_bytes(buffer[at..at + 4].try_into().expect("4 bytes"));
            let length = word(offset) as usize;
            let kind = u16::from_ne_bytes(buffer[offset + 4..offset + 6].try_into().expect("2"));
            let sequence = word(offset + 8);
            if length < 16 || offset + length > received {
                break;
            }
            if kind == NLMSG_ERROR && length >= 20 {
                let code = word(offset + 16) as i32;
                if code != 0 {
                    errors.push((sequence, -code));
                }
            }
            offset += (length + 3) & !3;
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_the_proxy_writes_translates() {
        let script = "add chain ip podnet-proxy-03 service-X-default/web/tcp/http
flush chain ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080
add rule ip podnet-proxy-03 service-X-default/web/tcp/http ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip podnet-proxy-03 service-X-default/web/tcp/http numgen random mod 2 == 0 goto endpoint-Y
add rule ip podnet-proxy-03 service-X-default/web/tcp/http ip saddr @affinity-Z goto endpoint-Y
add rule ip podnet-proxy-03 endpoint-Y update @affinity-Z { ip saddr }
add rule ip podnet-proxy-03 endpoint-Y meta l4proto udp dnat to 10.244.1.5:5353
add rule ip podnet-proxy-03 external-X ip saddr 10.244.0.0/12 goto service-X comment \"short-circuit pod traffic\"
add rule ip podnet-proxy-03 external-X fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"
add rule ip podnet-proxy-03 external-X jump mark-for-masquerade
add element ip podnet-proxy cluster-ips { 10.96.0.20 }
add element ip podnet-proxy-03 service-ips { 10.96.0.20 . tcp . 80 : goto service-X, 10.96.0.21 . sctp . 81 : goto service-Y }
add element ip podnet-proxy no-endpoint-nodeports { udp . 30053 : drop }
delete element ip podnet-proxy-03 service-ips { 10.96.0.20 . tcp . 80 }
delete chain ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080
";
        let batch = NftBatch::from_script(script).unwrap();
        assert_eq!(batch.len(), 15);
        // Batch begin, one message per line, batch end: each message's
        // length leads to the next, and the last ends the buffer.
        let bytes = batch.encode();
        let mut offset = 0;
        let mut messages = 0;
        while offset < bytes.len() {
            let length = u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap());
            assert!(length >= 20, "message {messages} is {length} bytes");
            offset += (length as usize).next_multiple_of(4);
            messages += 1;
        }
        assert_eq!(offset, bytes.len());
        assert_eq!(messages, batch.len() + 2);
    }

    #[test]
    fn lines_outside_the_subset_are_refused() {
        for line in [
            "add set ip podnet-proxy-03 affinity-Z { type ipv4_addr; }",
            "add set ip podnet-proxy-03 affinity-Z { type ipv4_addr; flags dynamic,timeout; timeout 1m; }",
            "add rule ip podnet-proxy-03 c counter",
            "add rule ip podnet-proxy-03 c ip saddr != @set goto x",
            "add rule ip podnet-proxy-03 c goto x y",
            "add rule inet t c goto x",
            "add element ip t m { 10.0.0.1 . icmp . 1 : drop }",
        ] {
            assert_eq!(NftBatch::from_script(line).unwrap_err(), line);
        }
    }

    #[test]
    fn keys_pad_each_field_to_four_bytes() {
        assert_eq!(
            parse_key("10.96.0.20 . tcp . 80").unwrap(),
            vec![10, 96, 0, 20, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(
            parse_key("udp . 30053").unwrap(),
            vec![17, 0, 0, 0, 0x75, 0x65, 0, 0]
        );
    }
}
