//! podnet-netplan (being built).
