//! A blocking rtnetlink socket: one request at a time, answers collected
//! until the kernel's acknowledgement or the end of a dump.

use std::cell::Cell;
use std::io;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub(crate) struct NetlinkSocket {
    socket: Socket,
    next_sequence: Cell<u32>,
    receive_buffer: std::cell::RefCell<Vec<u8>>,
}

impl NetlinkSocket {
    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<NetlinkSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended acks make the kernel explain EINVAL-style rejections; not
        // fatal on kernels without them.
        let _ = socket.set_ext_ack(true);
        Ok(NetlinkSocket {
            socket,
            next_sequence: Cell::new(1),
            receive_buffer: std::cell::RefCell::new(vec![0u8; 64 * 1024]),
        })
    }

    /// Sends a request that the kernel acknowledges (get, create, change,
    /// delete) and returns the answers that came before the acknowledgement.
    pub(crate) fn request(
        &self,
        message: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | extra_flags)
    }

    /// Sends a dump request and returns every answer.
    pub(crate) fn dump(
        &self,
        message: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// Sends several acknowledged requests in one datagram (the kernel
    /// handles them in order) and returns each one's outcome: its answers
    /// or the kernel's error. One system call out instead of one per
    /// request, and no wait for each acknowledgement before the next send.
    pub(crate) fn request_batch(
        &self,
        messages: Vec<(RouteNetlinkMessage, u16)>,
    ) -> io::Result<Vec<io::Result<Vec<RouteNetlinkMessage>>>> {
        let first = self.next_sequence.get();
        let count = messages.len() as u32;
        self.next_sequence.set(first.wrapping_add(count));
        let mut send_buffer = Vec::new();
        for (offset, (message, extra_flags)) in messages.into_iter().enumerate() {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
            header.sequence_number = first.wrapping_add(offset as u32);
            let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
            request.finalize();
            let start = send_buffer.len();
            send_buffer.resize(start + ((request.buffer_len() + 3) & !3), 0);
            request.serialize(&mut send_buffer[start..]);
        }
        self.socket.send(&send_buffer, 0)?;

        let mut outcomes: Vec<Option<io::Result<Vec<RouteNetlinkMessage>>>> =
            (0..count).map(|_| None).collect();
        let mut answers: Vec<Vec<RouteNetlinkMessage>> = (0..count).map(|_| Vec::new()).collect();
        let mut pending = count as usize;
        while pending > 0 {
            for parsed in self.receive()? {
                let index = parsed.header.sequence_number.wrapping_sub(first) as usize;
                if index >= count as usize || outcomes[index].is_some() {
                    // A late answer to an earlier request; not ours.
                    continue;
                }
                match parsed.payload {
                    NetlinkPayload::Error(error) => {
                        outcomes[index] = Some(match error.code {
                            None => Ok(std::mem::take(&mut answers[index])),
                            Some(_) => Err(error.to_io()),
                        });
                        pending -= 1;
                    }
                    NetlinkPayload::InnerMessage(inner) => answers[index].push(inner),
                    _ => {}
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every request answered"))
            .collect())
    }

    fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence.wrapping_add(1));
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        request.finalize();
        let mut send_buffer = vec![0u8; request.buffer_len()];
        request.serialize(&mut send_buffer);
        self.socket.send(&send_buffer, 0)?;

        let mut answers = Vec::new();
        loop {
            for parsed in self.receive()? {
                if parsed.header.sequence_number != sequence {
                    // A late answer to an earlier request; not ours.
                    continue;
                }
                match parsed.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(_) => Err(error.to_io()),
                        };
                    }
                    // Answers of a dump end with Done; those of a request
                    // with the acknowledgement (an Error without code).
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Receives one datagram and parses every message in it.
    fn receive(&self) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let mut buffer = self.receive_buffer.borrow_mut();
        let received = {
            let mut slice: &mut [u8] = &mut buffer[..];
            self.socket.recv(&mut slice, 0)?
        };
        let invalid = |error: String| io::Error::new(io::ErrorKind::InvalidData, error);
        let mut messages = Vec::new();
        let mut offset = 0;
        while offset < received {
            let bytes = &buffer[offset..received];
            let length = NetlinkBuffer::new_checked(bytes)
                .map_err(|error| invalid(error.to_string()))?
                .length() as usize;
            if length == 0 {
                break;
            }
            messages.push(
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..length])
                    .map_err(|error| invalid(error.to_string()))?,
            );
            offset += (length + 3) & !3;
        }
        Ok(messages)
    }
}
