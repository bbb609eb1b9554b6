//! Root-only: nf_tables batches sent by `podnet_netlink::nftables` against the
//! real kernel. The same script is applied with `nft -f` in one namespace
//! and with our netlink batch in another; `nft list ruleset` must print the
//! same text (so what users inspect is what nft itself would have written),
//! and a failing batch changes nothing and names the failing line.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::TestNetns;
use podnet_netlink::nftables::NftBatch;

fn nft(netns: &TestNetns, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &netns.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "nft -f: {}\n{script}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ruleset(netns: &TestNetns) -> String {
    let output = Command::new("ip")
        .args(["netns", "exec", &netns.name, "nft", "list", "ruleset"])
        .output()
        .expect("run nft");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).to_string()
}

const SKELETON: &str = r#"table ip podnet-proxy {
	set cluster-ips { type ipv4_addr; }
	map no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
	chain reject-chain {
		reject
	}
}
table ip podnet-proxy-03 {
	set affinity-Z { type ipv4_addr; flags dynamic,timeout; timeout 60s; }
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
	chain nat-output { type nat hook output priority -100; policy accept;
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x4000
	}
}
"#;

const CHANGE: &str = r#"add set ip podnet-proxy-03 affinity-W { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }
add chain ip podnet-proxy-03 service-X-default/web/tcp/http
add chain ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080
add chain ip podnet-proxy-03 external-X-default/web/tcp/http
add rule ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080 ip saddr 10.244.1.5 jump mark-for-masquerade
add rule ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080 update @affinity-Z { ip saddr }
add rule ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080 update @affinity-W { ip saddr }
add rule ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080 meta l4proto tcp dnat to 10.244.1.5:8080
add rule ip podnet-proxy-03 service-X-default/web/tcp/http ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip podnet-proxy-03 service-X-default/web/tcp/http ip saddr @affinity-Z goto endpoint-Y-default/web/tcp/http__10.244.1.5/8080
add rule ip podnet-proxy-03 service-X-default/web/tcp/http numgen random mod 2 == 0 goto endpoint-Y-default/web/tcp/http__10.244.1.5/8080
add rule ip podnet-proxy-03 service-X-default/web/tcp/http goto endpoint-Y-default/web/tcp/http__10.244.1.5/8080
add rule ip podnet-proxy-03 external-X-default/web/tcp/http ip saddr 10.240.0.0/12 goto service-X-default/web/tcp/http comment "short-circuit pod traffic"
add rule ip podnet-proxy-03 external-X-default/web/tcp/http fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip podnet-proxy-03 external-X-default/web/tcp/http udp dport 53 ip daddr != 10.96.0.0/12 goto service-X-default/web/tcp/http
add rule ip podnet-proxy-03 external-X-default/web/tcp/http jump mark-for-masquerade
add element ip podnet-proxy cluster-ips { 10.96.0.20, 10.96.0.21 }
add element ip podnet-proxy-03 service-ips { 10.96.0.20 . tcp . 80 : goto service-X-default/web/tcp/http, 10.96.0.21 . udp . 53 : goto external-X-default/web/tcp/http }
add element ip podnet-proxy no-endpoint-nodeports { udp . 30053 : drop, tcp . 30080 : goto reject-chain }
"#;

const SECOND_CHANGE: &str = r#"flush chain ip podnet-proxy-03 service-X-default/web/tcp/http
flush chain ip podnet-proxy-03 endpoint-Y-default/web/tcp/http__10.244.1.5/8080
delete set ip podnet-proxy-03 affinity-W
flush chain ip podnet-proxy-03 external-X-default/web/tcp/http
delete element ip podnet-proxy cluster-ips { 10.96.0.21 }
delete element ip podnet-proxy-03 service-ips { 10.96.0.21 . udp . 53 }
delete element ip podnet-proxy no-endpoint-nodeports { udp . 30053 }
add rule ip podnet-proxy-03 service-X-default/web/tcp/http goto endpoint-Y-default/web/tcp/http__10.244.1.5/8080
delete chain ip podnet-proxy-03 external-X-default/web/tcp/http
"#;

#[test]
fn netlink_batches_list_exactly_as_nft_writes_them() {
    if !common::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let by_nft = TestNetns::new("nftcli");
    let by_netlink = TestNetns::new("nftnl");
    nft(&by_nft, SKELETON);
    nft(&by_netlink, SKELETON);

    nft(&by_nft, CHANGE);
    NftBatch::from_script(CHANGE)
        .expect("every line is in the subset")
        .apply(&by_netlink.path())
        .expect("apply the batch");
    let expected = ruleset(&by_nft);
    assert!(expected.contains("dnat to 10.244.1.5:8080"), "{expected}");
    assert!(expected.contains("timeout 3h"), "{expected}");
    assert_eq!(ruleset(&by_netlink), expected);

    nft(&by_nft, SECOND_CHANGE);
    NftBatch::from_script(SECOND_CHANGE)
        .unwrap()
        .apply(&by_netlink.path())
        .expect("apply the second batch");
    let expected = ruleset(&by_nft);
    assert!(!expected.contains("external-X"), "{expected}");
    assert!(!expected.contains("affinity-W"), "{expected}");
    assert_eq!(ruleset(&by_netlink), expected);
}

#[test]
fn a_failing_batch_changes_nothing_and_names_the_line() {
    if !common::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let netns = TestNetns::new("nftfail");
    nft(&netns, SKELETON);
    let before = ruleset(&netns);
    let script = "add chain ip podnet-proxy-03 fresh\n\
                  add rule ip podnet-proxy-03 fresh goto no-such-chain\n";
    let error = NftBatch::from_script(script)
        .unwrap()
        .apply(&netns.path())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("add rule ip podnet-proxy-03 fresh goto no-such-chain"),
        "{error}"
    );
    assert_eq!(ruleset(&netns), before, "the transaction was aborted");
}

#[test]
fn a_kept_socket_applies_batch_after_batch_and_notices_a_new_namespace() {
    if !common::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let netns = TestNetns::new("nftkeep");
    nft(&netns, SKELETON);
    let socket = podnet_netlink::nftables::NftSocket::open(&netns.path()).unwrap();
    assert!(socket.is_current());
    NftBatch::from_script(CHANGE)
        .unwrap()
        .apply_on(&socket)
        .unwrap();
    NftBatch::from_script(SECOND_CHANGE)
        .unwrap()
        .apply_on(&socket)
        .unwrap();
    let listed = ruleset(&netns);
    assert!(
        listed.contains("service-X") && !listed.contains("external-X"),
        "{listed}"
    );

    // The same path made into a new namespace is not the socket's any more.
    let path = netns.path();
    let name = netns.name.clone();
    drop(netns);
    let again = podnet_netlink::OwnedNetns::create(&path).unwrap();
    assert!(!socket.is_current(), "{name} was made again");
    drop(again);
}
