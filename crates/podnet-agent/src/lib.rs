//! podnet-agent (being built).
