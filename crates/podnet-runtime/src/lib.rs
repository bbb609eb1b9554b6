//! podnet-runtime (being built).
