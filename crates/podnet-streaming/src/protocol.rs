//! Pure protocol decisions: query parsing, protocol negotiation, the Status
//! documents of the error channel, channel framing and resize decoding.

use base64::Engine;
use bytes::Bytes;
use serde_json::json;

use crate::{LogOptions, StdioOptions, StreamingError, TerminalSize};

/// Remote command protocols in the SPDY `X-Stream-Protocol-Version`
/// handshake, most preferred first.
pub const SPDY_REMOTE_COMMAND_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The one port-forward protocol of the SPDY handshake.
pub const SPDY_PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// WebSocket subprotocol for SPDY tunnelled in WebSocket (port-forward,
/// kubectl 1.31+).
pub const WEBSOCKET_SPDY_PORT_FORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// WebSocket subprotocols for exec and attach, most preferred first.
pub const WEBSOCKET_REMOTE_COMMAND_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// Channel numbers of the remote command protocols.
pub mod channel {
    /// Client → process input.
    pub const STDIN: u8 = 0;
    /// Process output.
    pub const STDOUT: u8 = 1;
    /// Process error output.
    pub const STDERR: u8 = 2;
    /// The final status.
    pub const ERROR: u8 = 3;
    /// Terminal size changes.
    pub const RESIZE: u8 = 4;
    /// v5: `[255, n]` closes channel n.
    pub const CLOSE: u8 = 255;
}

/// How a negotiated remote command protocol behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteCommandDialect {
    /// The error channel carries Status JSON (v4+) instead of plain text.
    pub status_json: bool,
    /// The client can close stdin with a CLOSE message (v5 WebSocket).
    pub close_channel: bool,
    /// Terminal resizing exists (v3+).
    pub resize: bool,
    /// WebSocket messages are base64 text instead of binary.
    pub base64: bool,
}

impl RemoteCommandDialect {
    /// The dialect of a remote command protocol name (SPDY or WebSocket);
    /// an empty name is the original `channel.k8s.io`.
    pub fn for_protocol(name: &str) -> Self {
        let base64 = name.contains("base64.");
        match name {
            "v5.channel.k8s.io" => Self {
                status_json: true,
                close_channel: true,
                resize: true,
                base64,
            },
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Self {
                status_json: true,
                close_channel: false,
                resize: true,
                base64,
            },
            "v3.channel.k8s.io" => Self {
                status_json: false,
                close_channel: false,
                resize: true,
                base64,
            },
            "v2.channel.k8s.io" | "channel.k8s.io" | "" => Self {
                status_json: false,
                close_channel: false,
                resize: false,
                base64,
            },
            // The WebSocket flavours of the pre-v4 protocol carry resize on
            // channel 4 too.
            _ => Self {
                status_json: false,
                close_channel: false,
                resize: true,
                base64,
            },
        }
    }
}

/// Picks the first protocol the client offers that the server supports, as
/// the Kubernetes handshake does (the client's order wins). Header values
/// may repeat or be comma-separated.
pub fn negotiate_spdy_protocol<'a>(
    client_offers: impl IntoIterator<Item = &'a str>,
    supported: &[&str],
) -> Option<String> {
    client_offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|offer| supported.contains(offer))
        .map(str::to_string)
}

/// Parsed query of an exec or attach request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommandQuery {
    /// The command (exec only): every `command` parameter in order.
    pub command: Vec<String>,
    /// The requested streams.
    pub stdio: StdioOptions,
    /// The `container` parameter, used when the path has none.
    pub container: Option<String>,
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            other => decoded.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// kubectl sends `true`/`false` through the API server; the kubelet
/// convention is `1`. Both are accepted.
fn is_true(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}

/// Parses the query of an exec (`exec = true`) or attach request.
pub fn parse_remote_command_query(
    query: &str,
    exec: bool,
) -> Result<RemoteCommandQuery, StreamingError> {
    let mut parsed = RemoteCommandQuery {
        command: Vec::new(),
        stdio: StdioOptions::default(),
        container: None,
    };
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "command" => parsed.command.push(value),
            "stdin" | "input" => parsed.stdio.stdin = is_true(&value),
            "stdout" | "output" => parsed.stdio.stdout = is_true(&value),
            "stderr" | "error" => parsed.stdio.stderr = is_true(&value),
            "tty" => parsed.stdio.tty = is_true(&value),
            "container" if !value.is_empty() => parsed.container = Some(value),
            _ => {}
        }
    }
    // A terminal has a single output stream.
    if parsed.stdio.tty {
        parsed.stdio.stderr = false;
    }
    if !parsed.stdio.stdin && !parsed.stdio.stdout && !parsed.stdio.stderr {
        return Err(StreamingError::BadRequest {
            message: "you must specify at least 1 of stdin, stdout, stderr".to_string(),
        });
    }
    if exec && parsed.command.is_empty() {
        return Err(StreamingError::BadRequest {
            message: "exec needs a command: add one or more command= query parameters".to_string(),
        });
    }
    Ok(parsed)
}

/// Parses the query of a log request.
pub fn parse_log_query(query: &str) -> Result<LogOptions, StreamingError> {
    let mut options = LogOptions::default();
    let number = |name: &str, value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| StreamingError::BadRequest {
                message: format!("query parameter {name}={value:?} is not a number"),
            })
    };
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "follow" => options.follow = is_true(&value),
            "timestamps" => options.timestamps = is_true(&value),
            "previous" => options.previous = is_true(&value),
            // Negative values mean "no limit" to the kubelet.
            "tailLines" => options.tail_lines = u64::try_from(number(&name, &value)?).ok(),
            "sinceSeconds" => options.since_seconds = u64::try_from(number(&name, &value)?).ok(),
            "limitBytes" => options.limit_bytes = u64::try_from(number(&name, &value)?).ok(),
            _ => {}
        }
    }
    Ok(options)
}

/// Parses one port number, refusing 0.
pub fn parse_port(text: &str) -> Result<u16, StreamingError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(StreamingError::BadRequest {
            message: format!("unable to parse {text:?} as a port: use 1-65535"),
        }),
    }
}

/// How a remote command ended, as reported on the error channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusReport {
    /// The process exited 0 (or the attach ended).
    Success,
    /// The process exited with a non-zero code.
    ExitCode(i32),
    /// The command could not be run.
    Failure(String),
    /// The container or pod does not exist here.
    NotFound(String),
}

impl StatusReport {
    /// The report for a backend error.
    pub fn from_error(error: &StreamingError) -> Self {
        match error {
            StreamingError::NotFound { .. } => StatusReport::NotFound(error.to_string()),
            other => StatusReport::Failure(other.to_string()),
        }
    }

    /// The v4+ error channel payload: a `metav1.Status` document as the
    /// kubelet writes it. kubectl exits with the code in the ExitCode cause.
    pub fn to_status_json(&self) -> Vec<u8> {
        let document = match self {
            StatusReport::Success => json!({"metadata": {}, "status": "Success"}),
            StatusReport::ExitCode(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            StatusReport::Failure(message) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": message}]},
                "code": 500,
            }),
            StatusReport::NotFound(message) => json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "NotFound",
                "code": 404,
            }),
        };
        serde_json::to_vec(&document).expect("a json value serialises")
    }

    /// The pre-v4 error channel payload: plain text, nothing on success.
    pub fn to_plain_text(&self) -> Vec<u8> {
        match self {
            StatusReport::Success => Vec::new(),
            StatusReport::ExitCode(code) => {
                format!("command terminated with non-zero exit code: exit status {code}")
                    .into_bytes()
            }
            StatusReport::Failure(message) | StatusReport::NotFound(message) => {
                message.clone().into_bytes()
            }
        }
    }

    /// The payload for `dialect`.
    pub fn encode(&self, dialect: RemoteCommandDialect) -> Vec<u8> {
        if dialect.status_json {
            self.to_status_json()
        } else {
            self.to_plain_text()
        }
    }
}

/// Turns the resize channel's byte stream into sizes; JSON documents may be
/// split across or packed into messages.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    pending: Vec<u8>,
}

impl ResizeDecoder {
    /// Adds bytes and returns every size completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<TerminalSize> {
        self.pending.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut consumed = 0;
        let mut documents =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
        loop {
            match documents.next() {
                Some(Ok(size)) => {
                    sizes.push(size);
                    consumed = documents.byte_offset();
                }
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(_)) => {
                    // Garbage: drop what we have rather than stall forever.
                    consumed = self.pending.len();
                    break;
                }
                None => {
                    consumed = self.pending.len();
                    break;
                }
            }
        }
        self.pending.drain(..consumed);
        sizes
    }
}

/// One decoded WebSocket message of the channel protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelMessage {
    /// Data on a channel.
    Data(u8, Bytes),
    /// v5: the client will send nothing more on this channel.
    Close(u8),
}

/// Decodes a binary (or base64 text) WebSocket message.
pub fn decode_channel_message(
    payload: &[u8],
    dialect: RemoteCommandDialect,
) -> Option<ChannelMessage> {
    let (&first, rest) = payload.split_first()?;
    if dialect.base64 {
        let channel = first.checked_sub(b'0')?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        return Some(ChannelMessage::Data(channel, Bytes::from(data)));
    }
    if first == channel::CLOSE && dialect.close_channel {
        return rest.first().map(|closed| ChannelMessage::Close(*closed));
    }
    Some(ChannelMessage::Data(first, Bytes::copy_from_slice(rest)))
}

/// Encodes data on `channel` as the payload of one message (binary, or
/// base64 text for the base64 dialects).
pub fn encode_channel_message(channel: u8, data: &[u8], dialect: RemoteCommandDialect) -> Vec<u8> {
    if dialect.base64 {
        let mut text = vec![b'0' + channel];
        text.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .as_bytes(),
        );
        return text;
    }
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn status_documents_match_what_kubectl_reads() {
        let render = |report: StatusReport| String::from_utf8(report.to_status_json()).unwrap();
        expect![[r#"{"metadata":{},"status":"Success"}"#]]
            .assert_eq(&render(StatusReport::Success));
        expect![[r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#]]
            .assert_eq(&render(StatusReport::ExitCode(3)));
        expect![[r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: runc exec failed","reason":"InternalError","details":{"causes":[{"message":"runc exec failed"}]},"code":500}"#]]
            .assert_eq(&render(StatusReport::Failure("runc exec failed".to_string())));
        assert!(StatusReport::Success.to_plain_text().is_empty());
    }

    #[test]
    fn exec_query_accepts_both_boolean_spellings_and_repeated_commands() {
        let query = parse_remote_command_query(
            "command=sh&command=-c&command=echo%20hi%3Bexit+3&stdin=true&stdout=1&stderr=true&tty=false&container=app",
            true,
        )
        .unwrap();
        assert_eq!(query.command, vec!["sh", "-c", "echo hi;exit 3"]);
        assert_eq!(
            query.stdio,
            StdioOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        assert_eq!(query.container.as_deref(), Some("app"));
        let tty =
            parse_remote_command_query("command=sh&stdin=1&stdout=1&stderr=1&tty=1", true).unwrap();
        assert!(!tty.stdio.stderr, "a terminal has no separate stderr");
        assert!(parse_remote_command_query("stdout=1", true).is_err());
        assert!(parse_remote_command_query("command=ls", true).is_err());
        assert!(parse_remote_command_query("stdin=1", false).is_ok());
    }

    #[test]
    fn log_and_port_queries() {
        let options =
            parse_log_query("follow=true&tailLines=10&timestamps=1&sinceSeconds=-1&limitBytes=500")
                .unwrap();
        assert_eq!(
            options,
            LogOptions {
                follow: true,
                tail_lines: Some(10),
                timestamps: true,
                previous: false,
                since_seconds: None,
                limit_bytes: Some(500)
            }
        );
        assert!(parse_log_query("tailLines=ten").is_err());
        assert_eq!(parse_port("8080").unwrap(), 8080);
        assert!(parse_port("0").is_err());
        assert!(parse_port("70000").is_err());
    }

    #[test]
    fn spdy_negotiation_follows_client_order() {
        let offers = [
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io",
        ];
        assert_eq!(
            negotiate_spdy_protocol(offers, &SPDY_REMOTE_COMMAND_PROTOCOLS).as_deref(),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate_spdy_protocol(
                ["v9.channel.k8s.io, v3.channel.k8s.io"],
                &SPDY_REMOTE_COMMAND_PROTOCOLS
            )
            .as_deref(),
            Some("v3.channel.k8s.io")
        );
        assert_eq!(
            negotiate_spdy_protocol(["nope"], &[SPDY_PORT_FORWARD_PROTOCOL]),
            None
        );
    }

    #[test]
    fn resize_decoder_handles_split_and_packed_documents() {
        let mut decoder = ResizeDecoder::default();
        assert_eq!(decoder.push(br#"{"Width":80,"#), vec![]);
        assert_eq!(
            decoder.push(br#""Height":24}{"Width":100,"Height":40}"#),
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ]
        );
        assert_eq!(decoder.push(b"\n"), vec![]);
    }

    #[test]
    fn channel_messages_in_binary_base64_and_v5_close() {
        let v5 = RemoteCommandDialect::for_protocol("v5.channel.k8s.io");
        let v4 = RemoteCommandDialect::for_protocol("v4.channel.k8s.io");
        let base64 = RemoteCommandDialect::for_protocol("base64.channel.k8s.io");
        assert_eq!(
            decode_channel_message(&[255, 0], v5),
            Some(ChannelMessage::Close(0))
        );
        assert_eq!(
            decode_channel_message(&[255, 0], v4),
            Some(ChannelMessage::Data(255, Bytes::from_static(&[0])))
        );
        assert_eq!(
            decode_channel_message(b"0aGk=", base64),
            Some(ChannelMessage::Data(0, Bytes::from_static(b"hi")))
        );
        assert_eq!(encode_channel_message(1, b"hi", base64), b"1aGk=".to_vec());
        assert_eq!(encode_channel_message(1, b"hi", v5), vec![1, b'h', b'i']);
        assert!(!v4.close_channel && v5.close_channel && base64.base64 && !base64.status_json);
    }
}
