//! SPDY/3.1, the multiplexing protocol behind Kubernetes' `httpstream`:
//! frame encoding ([`frame`]) and a session that multiplexes streams over
//! one byte stream ([`session`]).

pub mod frame;
