//! SPDY/3.1 frames as values, and their byte encoding.
//!
//! Encoding and decoding are pure: header blocks are handed to the caller's
//! [`HeaderBlockCompressor`] / [`HeaderBlockDecompressor`] because SPDY keeps
//! one zlib context per direction for the whole connection, so the order in
//! which frames are encoded matters and belongs to the session.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::StreamingError;

/// The only protocol version podnet speaks.
pub const SPDY_VERSION: u16 = 3;

/// Largest payload a frame can carry (24-bit length field).
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;

/// Stream and session window every SPDY/3.1 peer starts with.
pub const DEFAULT_INITIAL_WINDOW: u32 = 64 * 1024;

/// Control frame type numbers (SPDY/3 section 2.6).
mod frame_type {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// FLAG_FIN on data frames and on SYN_STREAM / SYN_REPLY / HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// SETTINGS id of the initial stream window size.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes used by podnet.
pub mod rst_status {
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame arrived for a stream that is not open.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// Something failed on this side.
    pub const INTERNAL_ERROR: u32 = 6;
    /// The peer sent more than its window allowed.
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// Header name/value pairs of a SYN_STREAM, SYN_REPLY or HEADERS frame.
///
/// SPDY requires lowercase names; multiple values of one name travel as one
/// value joined with NUL bytes and are kept joined here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    pairs: Vec<(String, String)>,
}

impl HeaderList {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a list from pairs; names are lowercased as SPDY requires.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut list = Self::new();
        for (name, value) in pairs {
            list.insert(name, value);
        }
        list
    }

    /// Sets `name` (lowercased) to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into().to_ascii_lowercase();
        let value = value.into();
        if let Some(existing) = self
            .pairs
            .iter_mut()
            .find(|(existing, _)| *existing == name)
        {
            existing.1 = value;
        } else {
            self.pairs.push((name, value));
        }
    }

    /// The first value of `name` (case-insensitive), as Go's `Header.Get` does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.split('\0').next().unwrap_or(""))
    }

    /// All pairs in wire order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Serialises the uncompressed name/value block (SPDY/3 section 2.6.10).
    pub fn encode_uncompressed(&self) -> Vec<u8> {
        let mut block = Vec::new();
        block.put_u32(self.pairs.len() as u32);
        for (name, value) in &self.pairs {
            block.put_u32(name.len() as u32);
            block.put_slice(name.as_bytes());
            block.put_u32(value.len() as u32);
            block.put_slice(value.as_bytes());
        }
        block
    }

    /// Parses an uncompressed name/value block.
    pub fn decode_uncompressed(mut block: &[u8]) -> Result<Self, StreamingError> {
        fn take_u32(block: &mut &[u8]) -> Result<u32, StreamingError> {
            if block.remaining() < 4 {
                return Err(protocol_error("truncated spdy header block"));
            }
            Ok(block.get_u32())
        }
        fn take_string(block: &mut &[u8]) -> Result<String, StreamingError> {
            let length = take_u32(block)? as usize;
            if block.remaining() < length {
                return Err(protocol_error("truncated spdy header block"));
            }
            let text = String::from_utf8_lossy(&block[..length]).into_owned();
            block.advance(length);
            Ok(text)
        }
        let count = take_u32(&mut block)?;
        let mut list = Self::new();
        for _ in 0..count {
            let name = take_string(&mut block)?;
            let value = take_string(&mut block)?;
            list.pairs.push((name.to_ascii_lowercase(), value));
        }
        Ok(list)
    }
}

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        stream_id: u32,
        associated_stream_id: u32,
        priority: u8,
        flags: u8,
        headers: HeaderList,
    },
    /// Accepts a stream opened by the peer.
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: HeaderList,
    },
    /// Aborts a stream.
    RstStream { stream_id: u32, status: u32 },
    /// Connection parameters as (flags, id, value).
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness check; the receiver echoes pings it did not send.
    Ping { id: u32 },
    /// The sender will accept no new streams after `last_good_stream_id`.
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// Extra headers on an open stream.
    Headers {
        stream_id: u32,
        flags: u8,
        headers: HeaderList,
    },
    /// Grants the peer `delta` more bytes on a stream (0: the session).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Stream payload.
    Data {
        stream_id: u32,
        flags: u8,
        payload: Bytes,
    },
    /// A control frame of a type SPDY/3.1 tells receivers to ignore.
    Unknown { frame_type: u16 },
}

impl Frame {
    /// Whether the frame carries FLAG_FIN.
    pub fn is_fin(&self) -> bool {
        match self {
            Frame::SynStream { flags, .. }
            | Frame::SynReply { flags, .. }
            | Frame::Headers { flags, .. }
            | Frame::Data { flags, .. } => flags & FLAG_FIN != 0,
            _ => false,
        }
    }
}

/// The zlib context compressing header blocks this side sends.
pub struct HeaderBlockCompressor {
    zlib: Compress,
}

impl Default for HeaderBlockCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderBlockCompressor {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(&spdy3_dictionary())
            .expect("a fresh zlib stream accepts a preset dictionary");
        Self { zlib }
    }

    /// Compresses one header block, ending it with a sync flush so the peer
    /// can decode it without waiting for later frames.
    pub fn compress(&mut self, headers: &HeaderList) -> Result<Vec<u8>, StreamingError> {
        let input = headers.encode_uncompressed();
        let mut output = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0usize;
        loop {
            if output.capacity() - output.len() < 64 {
                output.reserve(256);
            }
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(&input[consumed..], &mut output, FlushCompress::Sync)
                .map_err(|error| {
                    protocol_error(&format!("compressing a spdy header block: {error}"))
                })?;
            consumed += (self.zlib.total_in() - before_in) as usize;
            // A sync flush is complete once all input is taken and zlib left
            // spare room in the output buffer.
            if consumed == input.len() && output.len() < output.capacity() {
                return Ok(output);
            }
        }
    }
}

/// The zlib context decoding header blocks the peer sends.
pub struct HeaderBlockDecompressor {
    zlib: Decompress,
}

impl Default for HeaderBlockDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderBlockDecompressor {
    /// A fresh context; the dictionary is supplied when zlib asks for it.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses one header block and parses it.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<HeaderList, StreamingError> {
        let mut output: Vec<u8> = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            if output.capacity() - output.len() < 256 {
                output.reserve(1024);
            }
            let before_in = self.zlib.total_in();
            let before_out = self.zlib.total_out();
            match self.zlib.decompress_vec(
                &compressed[consumed..],
                &mut output,
                FlushDecompress::Sync,
            ) {
                Ok(Status::StreamEnd) => {
                    return Err(protocol_error(
                        "the peer ended its spdy header compression stream",
                    ))
                }
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    consumed += (self.zlib.total_in() - before_in) as usize;
                    self.zlib
                        .set_dictionary(&spdy3_dictionary())
                        .map_err(|error| {
                            protocol_error(&format!("priming spdy header decompression: {error}"))
                        })?;
                    continue;
                }
                Err(error) => {
                    return Err(protocol_error(&format!(
                        "decompressing a spdy header block: {error}"
                    )))
                }
            }
            consumed += (self.zlib.total_in() - before_in) as usize;
            let produced = self.zlib.total_out() - before_out;
            let room_left = output.len() < output.capacity();
            if consumed == compressed.len() && (room_left || produced == 0) {
                return HeaderList::decode_uncompressed(&output);
            }
            if produced == 0
                && consumed < compressed.len()
                && (self.zlib.total_in() - before_in) == 0
            {
                return Err(protocol_error("spdy header block does not decompress"));
            }
        }
    }
}

/// The SPDY/3 header compression dictionary (SPDY/3 section 2.6.10.1):
/// length-prefixed common header names and values followed by a run of
/// common status lines, dates and content types.
pub fn spdy3_dictionary() -> Vec<u8> {
    const LENGTH_PREFIXED_WORDS: [&str; 66] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
        "",
    ];
    const TRAILING_TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    );
    let mut dictionary = Vec::with_capacity(1423);
    // The final empty entry in the word list only marks the end; the text
    // after "origin" follows without a length prefix.
    for word in LENGTH_PREFIXED_WORDS.iter().filter(|word| !word.is_empty()) {
        dictionary.put_u32(word.len() as u32);
        dictionary.put_slice(word.as_bytes());
    }
    dictionary.put_slice(TRAILING_TEXT.as_bytes());
    dictionary
}

fn protocol_error(message: &str) -> StreamingError {
    StreamingError::Protocol {
        message: message.to_string(),
    }
}

/// Encodes `frame`, compressing any header block with `compressor`.
pub fn encode_frame(
    frame: &Frame,
    compressor: &mut HeaderBlockCompressor,
) -> Result<Bytes, StreamingError> {
    let mut out = BytesMut::new();
    match frame {
        Frame::Data {
            stream_id,
            flags,
            payload,
        } => {
            if payload.len() > MAX_FRAME_PAYLOAD {
                return Err(protocol_error("spdy data frame payload exceeds 16 MiB"));
            }
            out.put_u32(stream_id & 0x7fff_ffff);
            out.put_u32(((*flags as u32) << 24) | payload.len() as u32);
            out.put_slice(payload);
        }
        Frame::SynStream {
            stream_id,
            associated_stream_id,
            priority,
            flags,
            headers,
        } => {
            let block = compressor.compress(headers)?;
            let mut body = BytesMut::with_capacity(10 + block.len());
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_u32(associated_stream_id & 0x7fff_ffff);
            body.put_u8((priority & 0x7) << 5);
            body.put_u8(0);
            body.put_slice(&block);
            put_control(&mut out, frame_type::SYN_STREAM, *flags, &body);
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            let block = compressor.compress(headers)?;
            let mut body = BytesMut::with_capacity(4 + block.len());
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_slice(&block);
            put_control(&mut out, frame_type::SYN_REPLY, *flags, &body);
        }
        Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            let block = compressor.compress(headers)?;
            let mut body = BytesMut::with_capacity(4 + block.len());
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_slice(&block);
            put_control(&mut out, frame_type::HEADERS, *flags, &body);
        }
        Frame::RstStream { stream_id, status } => {
            let mut body = BytesMut::with_capacity(8);
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_u32(*status);
            put_control(&mut out, frame_type::RST_STREAM, 0, &body);
        }
        Frame::Settings { flags, entries } => {
            let mut body = BytesMut::with_capacity(4 + entries.len() * 8);
            body.put_u32(entries.len() as u32);
            for (entry_flags, id, value) in entries {
                body.put_u32(((*entry_flags as u32) << 24) | (id & 0x00ff_ffff));
                body.put_u32(*value);
            }
            put_control(&mut out, frame_type::SETTINGS, *flags, &body);
        }
        Frame::Ping { id } => put_control(&mut out, frame_type::PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            let mut body = BytesMut::with_capacity(8);
            body.put_u32(last_good_stream_id & 0x7fff_ffff);
            body.put_u32(*status);
            put_control(&mut out, frame_type::GOAWAY, 0, &body);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut body = BytesMut::with_capacity(8);
            body.put_u32(stream_id & 0x7fff_ffff);
            body.put_u32(delta & 0x7fff_ffff);
            put_control(&mut out, frame_type::WINDOW_UPDATE, 0, &body);
        }
        Frame::Unknown { frame_type } => put_control(&mut out, *frame_type, 0, &[]),
    }
    Ok(out.freeze())
}

fn put_control(out: &mut BytesMut, frame_type: u16, flags: u8, body: &[u8]) {
    out.put_u16(0x8000 | SPDY_VERSION);
    out.put_u16(frame_type);
    out.put_u32(((flags as u32) << 24) | body.len() as u32);
    out.put_slice(body);
}

/// Takes one whole frame off the front of `buffer`, or returns `Ok(None)`
/// when more bytes are needed.
pub fn decode_frame(
    buffer: &mut BytesMut,
    decompressor: &mut HeaderBlockDecompressor,
) -> Result<Option<Frame>, StreamingError> {
    if buffer.len() < 8 {
        return Ok(None);
    }
    let first_word = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let flags = buffer[4];
    let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
    if buffer.len() < 8 + length {
        return Ok(None);
    }
    buffer.advance(8);
    let mut body = buffer.split_to(length).freeze();
    if first_word & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: first_word & 0x7fff_ffff,
            flags,
            payload: body,
        }));
    }
    let version = ((first_word >> 16) & 0x7fff) as u16;
    if version != SPDY_VERSION {
        return Err(protocol_error(&format!(
            "peer speaks spdy version {version}, only 3 is supported"
        )));
    }
    let frame_type = (first_word & 0xffff) as u16;
    let need = |body: &Bytes, bytes: usize| {
        if body.len() < bytes {
            Err(protocol_error(&format!(
                "spdy control frame type {frame_type} is too short"
            )))
        } else {
            Ok(())
        }
    };
    let frame = match frame_type {
        frame_type::SYN_STREAM => {
            need(&body, 10)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            let associated_stream_id = body.get_u32() & 0x7fff_ffff;
            let priority = body.get_u8() >> 5;
            let _credential_slot = body.get_u8();
            let headers = decompressor.decompress(&body)?;
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                flags,
                headers,
            }
        }
        frame_type::SYN_REPLY => {
            need(&body, 4)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            let headers = decompressor.decompress(&body)?;
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
        }
        frame_type::HEADERS => {
            need(&body, 4)?;
            let stream_id = body.get_u32() & 0x7fff_ffff;
            let headers = decompressor.decompress(&body)?;
            Frame::Headers {
                stream_id,
                flags,
                headers,
            }
        }
        frame_type::RST_STREAM => {
            need(&body, 8)?;
            Frame::RstStream {
                stream_id: body.get_u32() & 0x7fff_ffff,
                status: body.get_u32(),
            }
        }
        frame_type::SETTINGS => {
            need(&body, 4)?;
            let count = body.get_u32() as usize;
            need(&body, count.saturating_mul(8))?;
            let entries = (0..count)
                .map(|_| {
                    let flags_and_id = body.get_u32();
                    (
                        (flags_and_id >> 24) as u8,
                        flags_and_id & 0x00ff_ffff,
                        body.get_u32(),
                    )
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        frame_type::PING => {
            need(&body, 4)?;
            Frame::Ping { id: body.get_u32() }
        }
        frame_type::GOAWAY => {
            need(&body, 4)?;
            let last_good_stream_id = body.get_u32() & 0x7fff_ffff;
            let status = if body.len() >= 4 { body.get_u32() } else { 0 };
            Frame::GoAway {
                last_good_stream_id,
                status,
            }
        }
        frame_type::WINDOW_UPDATE => {
            need(&body, 8)?;
            Frame::WindowUpdate {
                stream_id: body.get_u32() & 0x7fff_ffff,
                delta: body.get_u32() & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown { frame_type: other },
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in data {
            a = (a + *byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_matches_the_spdy3_specification() {
        let dictionary = spdy3_dictionary();
        assert_eq!(dictionary.len(), 1423);
        // The zlib dictionary id every SPDY/3 implementation puts in the
        // stream header.
        assert_eq!(adler32(&dictionary), 0xe3c6_a7c2);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
    }

    #[test]
    fn header_blocks_roundtrip_through_one_compression_context_per_direction() {
        let mut compressor = HeaderBlockCompressor::new();
        let mut decompressor = HeaderBlockDecompressor::new();
        let first = HeaderList::from_pairs([
            ("streamType", "error"),
            ("port", "8080"),
            ("requestID", "0"),
        ]);
        let second =
            HeaderList::from_pairs([("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
        let empty = HeaderList::new();
        for headers in [&first, &second, &empty, &first] {
            let block = compressor.compress(headers).unwrap();
            let decoded = decompressor.decompress(&block).unwrap();
            assert_eq!(&decoded, headers);
        }
        assert_eq!(first.get("STREAMTYPE"), Some("error"));
        assert_eq!(first.pairs()[0].0, "streamtype");
    }

    fn from_hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_blocks_compressed_by_another_zlib_with_the_dictionary() {
        // Two consecutive blocks from one zlib context (C zlib, level 9,
        // preset SPDY/3 dictionary, sync flush after each block), as a port
        // forward client sends them for its error and data streams.
        let first = from_hex(
            "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc64610024398b209198094adc8c8600000000ffff",
        );
        let second = from_hex("c2aa15540a2512d209000000ffff");
        let mut decompressor = HeaderBlockDecompressor::new();
        let error_headers = decompressor.decompress(&first).unwrap();
        let data_headers = decompressor.decompress(&second).unwrap();
        assert_eq!(
            error_headers,
            HeaderList::from_pairs([("streamtype", "error"), ("port", "80"), ("requestid", "1")])
        );
        assert_eq!(
            data_headers,
            HeaderList::from_pairs([("streamtype", "data"), ("port", "80"), ("requestid", "1")])
        );
    }

    #[test]
    fn compressed_stream_declares_the_spdy_dictionary() {
        let mut compressor = HeaderBlockCompressor::new();
        let block = compressor
            .compress(&HeaderList::from_pairs([("streamtype", "stdout")]))
            .unwrap();
        // zlib header: CMF, FLG with FDICT (0x20) set, then the dictionary id.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(
            u32::from_be_bytes([block[2], block[3], block[4], block[5]]),
            0xe3c6_a7c2
        );
        // A sync flush ends with an empty stored block.
        assert_eq!(&block[block.len() - 4..], &[0, 0, 0xff, 0xff]);
    }

    #[test]
    fn frames_roundtrip_and_partial_input_waits_for_more() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 0,
                flags: 0,
                headers: HeaderList::from_pairs([("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: HeaderList::new(),
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                payload: Bytes::from_static(b"hello"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst_status::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 5,
                status: 0,
            },
            Frame::Headers {
                stream_id: 1,
                flags: FLAG_FIN,
                headers: HeaderList::from_pairs([("a", "b")]),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 4096,
            },
        ];
        let mut compressor = HeaderBlockCompressor::new();
        let mut decompressor = HeaderBlockDecompressor::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            wire.extend_from_slice(&encode_frame(frame, &mut compressor).unwrap());
        }
        // Feed the bytes one at a time: the decoder must never return a
        // frame before it is complete.
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(frame) = decode_frame(&mut buffer, &mut decompressor).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn data_frame_layout_is_stream_id_then_flags_and_length() {
        let mut compressor = HeaderBlockCompressor::new();
        let bytes = encode_frame(
            &Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                payload: Bytes::from_static(b"ab"),
            },
            &mut compressor,
        )
        .unwrap();
        assert_eq!(&bytes[..], &[0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        let ping = encode_frame(&Frame::Ping { id: 1 }, &mut compressor).unwrap();
        assert_eq!(&ping[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
    }
}
