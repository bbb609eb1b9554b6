//! podnet-netplan: pure planners for the node dataplane. Given the cluster's
//! nodes, pods, services and policies they return the desired kernel state
//! (overlay routes, FDB and neighbour entries, nftables rulesets) as values;
//! appliers elsewhere make the kernel match. Nothing here does I/O.

pub mod netpol;
pub mod netpol_oracle;
pub mod overlay;
pub mod services;
