//! Bytes in, bytes out: parsing requests, sizing and truncating responses.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::answer::response_to;

/// Largest UDP response regardless of what the client advertises.
pub const MAX_UDP: usize = 4096;
/// Plain DNS over UDP without EDNS.
pub const MIN_UDP: usize = 512;

/// How large a UDP response to `request` may be.
pub fn udp_limit(request: &Message) -> usize {
    match &request.edns {
        Some(edns) => (edns.max_payload() as usize).clamp(MIN_UDP, MAX_UDP),
        None => MIN_UDP,
    }
}

/// Parse a request. `Err(Some(reply))`: malformed but answerable (FORMERR);
/// `Err(None)`: drop silently (too short, or a response).
pub fn parse(bytes: &[u8]) -> Result<Message, Option<Vec<u8>>> {
    match Message::from_vec(bytes) {
        Ok(message) => Ok(message),
        Err(_) => {
            if bytes.len() < 12 {
                return Err(None);
            }
            let mut decoder = BinDecoder::new(&bytes[..12]);
            let Ok(header) = hickory_proto::op::Header::read(&mut decoder) else {
                return Err(None);
            };
            if header.metadata.message_type != hickory_proto::op::MessageType::Query {
                return Err(None);
            }
            let mut skeleton = Message::new(
                header.metadata.id,
                hickory_proto::op::MessageType::Query,
                header.metadata.op_code,
            );
            skeleton.metadata.recursion_desired = header.metadata.recursion_desired;
            let reply = response_to(&skeleton, ResponseCode::FormErr);
            Err(reply.to_vec().ok())
        }
    }
}

/// Encode `response` to fit in `limit` bytes: drop additional records first;
/// if the answers still do not fit keep as many as fit and set TC.
pub fn encode(mut response: Message, limit: usize) -> Vec<u8> {
    if let Ok(bytes) = response.to_vec() {
        if bytes.len() <= limit {
            return bytes;
        }
    }
    response.additionals.clear();
    if let Ok(bytes) = response.to_vec() {
        if bytes.len() <= limit {
            return bytes;
        }
    }
    response.metadata.truncation = true;
    response.authorities.clear();
    let answers = std::mem::take(&mut response.answers);
    // Binary search the number of answers that fit.
    let (mut low, mut high) = (0usize, answers.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        response.answers = answers[..mid].to_vec();
        match response.to_vec() {
            Ok(bytes) if bytes.len() <= limit => low = mid,
            _ => high = mid - 1,
        }
    }
    response.answers = answers[..low].to_vec();
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        _ => {
            // Even the question does not fit (or cannot be encoded).
            let mut bare = Message::response(response.metadata.id, response.metadata.op_code);
            bare.metadata.truncation = true;
            bare.metadata.response_code = ResponseCode::ServFail;
            bare.to_vec().unwrap_or_default()
        }
    }
}
