//! `podnet`: the one binary (server, agent, up, down, node exec, tooling).
fn main() {}
