//! The per-query fast path for UDP. An answer that comes from the snapshot
//! alone is a pure function of the snapshot and the request bytes other than
//! the ID (with the question name folded to lowercase, since names are
//! case-insensitive). So each UDP thread keeps, for the snapshot it last
//! saw, the encoded reply per such request: a repeated query is answered by
//! copying those bytes and patching in the ID and the question name as the
//! client spelled it. No lock, no allocation and no message building on a
//! hit; a new snapshot (any watch change) empties the cache, so it never
//! serves anything older than the snapshot itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshot::Snapshot;

/// Entries per thread before the cache starts over (a bound on memory:
/// about 200 bytes each).
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Where a request's question name lies, for a request whose shape the
/// cache handles: a query with one question whose name is uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// End of the question name (it starts at offset 12).
    pub name_end: usize,
    /// The name has uppercase letters (the key folds them).
    pub mixed_case: bool,
}

/// The shape of `request`, or None when the cache does not handle it (the
/// slow path answers those: responses, other opcodes, several questions,
/// compressed or malformed names).
pub fn shape(request: &[u8]) -> Option<Shape> {
    if request.len() < 12 + 1 + 4 {
        return None;
    }
    let flags = request[2];
    // QR = 0 (query) and opcode 0 (QUERY).
    if flags & 0xf8 != 0 {
        return None;
    }
    // QDCOUNT = 1, ANCOUNT = 0, NSCOUNT = 0.
    if request[4..10] != [0, 1, 0, 0, 0, 0] {
        return None;
    }
    let mut at = 12;
    let mut mixed_case = false;
    loop {
        let length = *request.get(at)? as usize;
        if length == 0 {
            at += 1;
            break;
        }
        if length > 63 || at + 1 + length > 12 + 255 {
            return None;
        }
        let label = request.get(at + 1..at + 1 + length)?;
        mixed_case |= label.iter().any(u8::is_ascii_uppercase);
        at += 1 + length;
    }
    // Room for QTYPE and QCLASS.
    if at + 4 > request.len() {
        return None;
    }
    Some(Shape {
        name_end: at,
        mixed_case,
    })
}

/// Encoded replies of one thread for one snapshot.
pub struct ReplyCache {
    snapshot: Option<Arc<Snapshot>>,
    entries: HashMap<Box<[u8]>, Box<[u8]>>,
    capacity: usize,
    /// The key of the request being handled (reused buffer).
    key: Vec<u8>,
}

impl ReplyCache {
    pub fn new(capacity: usize) -> ReplyCache {
        ReplyCache {
            snapshot: None,
            entries: HashMap::new(),
            capacity: capacity.max(1),
            key: Vec::with_capacity(512),
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Follow `current`: a different snapshot than last time forgets every
    /// entry (holding the Arc keeps its address from being reused).
    pub fn track(&mut self, current: &Arc<Snapshot>) {
        match &self.snapshot {
            Some(seen) if Arc::ptr_eq(seen, current) => {}
            _ => {
                self.entries.clear();
                self.snapshot = Some(current.clone());
            }
        }
    }

    /// Build the key of `request` (of shape `shape`): every byte after the
    /// ID, the question name in lowercase.
    fn make_key(&mut self, request: &[u8], shape: Shape) {
        self.key.clear();
        self.key.extend_from_slice(&request[2..]);
        if shape.mixed_case {
            self.key[10..shape.name_end - 2].make_ascii_lowercase();
        }
    }

    /// The reply to `request` into `out` when cached.
    pub fn lookup(&mut self, request: &[u8], shape: Shape, out: &mut Vec<u8>) -> bool {
        self.make_key(request, shape);
        let Some(reply) = self.entries.get(self.key.as_slice()) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(reply);
        patch(request, shape, out);
        true
    }

    /// `request` with its question name in lowercase (after a `lookup` of
    /// the same request): what the slow path answers for the cache.
    pub fn folded_request(&self, request: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&request[..2]);
        out.extend_from_slice(&self.key);
    }

    /// Remember `reply`, the answer to the folded request of the last
    /// `lookup`.
    pub fn insert(&mut self, reply: &[u8]) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries
            .insert(self.key.as_slice().into(), reply.into());
    }
}

/// Make a cached reply answer `request`: its ID, and its question name as
/// spelled (replies start with the same header size and question).
pub fn patch(request: &[u8], shape: Shape, reply: &mut [u8]) {
    if reply.len() < 12 {
        return;
    }
    reply[..2].copy_from_slice(&request[..2]);
    // A reply without the question (nothing fit) has nothing to respell.
    if shape.mixed_case && reply.len() >= shape.name_end && reply[4..6] == [0, 1] {
        reply[12..shape.name_end].copy_from_slice(&request[12..shape.name_end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], flags: u8) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, flags, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(label.as_bytes());
        }
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        bytes
    }

    #[test]
    fn shapes_the_cache_handles() {
        let plain = query(&["web", "default"], 1);
        assert_eq!(
            shape(&plain),
            Some(Shape {
                name_end: 25,
                mixed_case: false
            })
        );
        let mixed = query(&["Web", "default"], 1);
        assert!(shape(&mixed).unwrap().mixed_case);
        // A response, another opcode, a compressed name, a short question.
        assert_eq!(shape(&query(&["web"], 0x80)), None);
        assert_eq!(shape(&query(&["web"], 0x10)), None);
        let mut pointer = query(&["web"], 1);
        pointer[12] = 0xc0;
        assert_eq!(shape(&pointer), None);
        let short = query(&["web"], 1);
        assert_eq!(shape(&short[..short.len() - 1]), None);
        let mut two = query(&["web"], 1);
        two[5] = 2;
        assert_eq!(shape(&two), None);
    }

    #[test]
    fn hits_share_case_folded_keys_and_patch_id_and_spelling() {
        let snapshot = Arc::new(Snapshot::unsynced("cluster.local", 5));
        let mut cache = ReplyCache::new(4);
        cache.track(&snapshot);
        let lower = query(&["web", "default"], 1);
        let mut out = Vec::new();
        assert!(!cache.lookup(&lower, shape(&lower).unwrap(), &mut out));
        let mut reply = lower.clone();
        reply[2] |= 0x80;
        cache.insert(&reply);
        let mut upper = query(&["WEB", "Default"], 1);
        upper[0] = 0x99;
        assert!(cache.lookup(&upper, shape(&upper).unwrap(), &mut out));
        assert_eq!(&out[..2], &[0x99, 0x34]);
        assert_eq!(&out[12..25], &upper[12..25]);
        assert_eq!(out[2], 0x81);
        // Other flags are part of the key.
        let no_rd = query(&["web", "default"], 0);
        assert!(!cache.lookup(&no_rd, shape(&no_rd).unwrap(), &mut out));
        // A new snapshot forgets everything.
        cache.track(&Arc::new(Snapshot::unsynced("cluster.local", 5)));
        assert!(cache.is_empty());
    }
}
