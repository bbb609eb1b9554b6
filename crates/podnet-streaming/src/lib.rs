//! podnet-streaming (being built).
