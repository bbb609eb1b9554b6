//! podnet-cni (being built).
