//! SPDY/3.1, the multiplexing protocol behind Kubernetes' `httpstream`:
//! frame encoding ([`frame`]) and a session that multiplexes streams over
//! one byte stream ([`session`]).

pub mod frame;
pub mod session;

pub use frame::HeaderList;
pub use session::{
    Role, SessionCloser, SpdySession, SpdyStream, SpdyStreamReceiver, SpdyStreamSender,
};

#[cfg(test)]
mod tests;
