//! podnet-netlink (being built).
