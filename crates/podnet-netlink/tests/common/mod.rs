//! Helpers for the root-only tests: uniquely named throwaway namespaces in
//! /run/netns (so `ip -n NAME` can inspect them), removed on drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use podnet_netlink::OwnedNetns;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A namespace named `pnl-<pid>-<counter>-<role>` in /run/netns.
pub struct TestNetns {
    pub name: String,
    pub owned: OwnedNetns,
}

impl TestNetns {
    pub fn new(role: &str) -> TestNetns {
        let name = format!(
            "pnl-{}-{}-{role}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let owned =
            OwnedNetns::create(PathBuf::from("/run/netns").join(&name)).expect("create test netns");
        TestNetns { name, owned }
    }

    pub fn path(&self) -> PathBuf {
        self.owned.path().to_path_buf()
    }

    /// Runs `ip -j -n NAME <args>` and parses the JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let output = Command::new("ip")
            .args(["-j", "-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            output.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Runs `bridge -j -n NAME fdb show dev DEV`.
    pub fn fdb_json(&self, device: &str) -> serde_json::Value {
        let output = Command::new("bridge")
            .args(["-j", "-n", &self.name, "fdb", "show", "dev", device])
            .output()
            .expect("run bridge");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Runs a command inside the namespace; true on success.
    pub fn exec(&self, command: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(command)
            .status()
            .expect("run ip netns exec")
            .success()
    }

    /// Pings `target` (an address inside our own namespaces) once.
    pub fn ping(&self, target: &str, payload_size: u32) -> bool {
        self.exec(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &payload_size.to_string(),
            target,
        ])
    }
}

/// True when running as root (these tests need CAP_NET_ADMIN and mounts).
/// Under the project's test command (PODNET_REQUIRE_PRIVILEGED_TESTS set) not
/// being root is a failure rather than a skip.
pub fn is_root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    assert!(
        root || std::env::var_os("PODNET_REQUIRE_PRIVILEGED_TESTS").is_none(),
        "needs root (PODNET_REQUIRE_PRIVILEGED_TESTS is set)"
    );
    root
}
