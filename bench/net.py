#!/usr/bin/env python3
"""Pod-to-pod TCP throughput (iperf3, 5 s each) on the same node and across
nodes of a 2-node `podnet up` cluster, against a raw veth pair between two
namespaces in the same run. iperf3 is the host's binary run inside the pods'
network namespaces (nsenter), so only the network path differs. The three
paths are measured in turn, `--rounds` times (default 3): on a shared machine
the load drifts, so each round's ratios compare paths measured seconds apart,
and the reported figures are medians over the rounds (every round is kept in
the JSON). All traffic stays inside namespaces this script creates;
everything is removed at the end.

Each round also measures a bare path: the same kernel pieces as a podnet
pod path (pods on a bridge, nodes joined by a flannel-style VXLAN device over
an underlay bridge in a namespace of its own, the same MTUs), built by hand
with no firewall hooks at all (bridge netfilter off, no nftables). The pod
figures against it show what podnet's own rules and settings cost; the bare
figures against the veth pair show what the topology itself costs."""
import argparse, shutil, json, os, statistics, subprocess, sys, tempfile, time

def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

def ksoftirqd_seconds():
    """CPU time of every ksoftirqd thread so far (softirq work deferred to them)."""
    total = 0
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        if "(ksoftirqd/" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")

def cpu_seconds(rusage):
    return rusage.ru_utime + rusage.ru_stime

def iperf(server_prefix, client_prefix, address, seconds):
    """(Gbit/s, CPU ms per GB): the CPU is the client's, the server's and the
    ksoftirqd threads' during the test. Softirq work done while iperf3 runs
    is charged to it, so this is the path's cost per byte, which depends far
    less on what else the machine runs than the throughput does."""
    server = subprocess.Popen(server_prefix + ["iperf3", "-s", "-1", "-B", address, "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            softirq_before = ksoftirqd_seconds()
            with tempfile.TemporaryFile(mode="w+") as errors:
                probe = subprocess.Popen(client_prefix + ["iperf3", "-c", address, "-p", "5201", "-t", str(seconds),
                                                          "-J"], stdout=subprocess.PIPE, stderr=errors, text=True)
                out = probe.stdout.read()
                # Reaped here rather than by Popen, for its resource usage.
                _, _, client_usage = os.wait4(probe.pid, 0)
                probe.returncode = 0
                errors.seek(0)
                err = errors.read()
            try:
                report = json.loads(out)
            except ValueError:
                report = {"error": "no report"}
            if "error" not in report:
                _, _, server_usage = os.wait4(server.pid, 0)
                server.returncode = 0
                gbps = report["end"]["sum_received"]["bits_per_second"] / 1e9
                gigabytes = report["end"]["sum_received"]["bytes"] / 1e9
                cpu = (ksoftirqd_seconds() - softirq_before + cpu_seconds(server_usage)
                       + cpu_seconds(client_usage))
                return round(gbps, 3), round(cpu * 1e3 / gigabytes, 1)
            # The server may not listen yet.
            time.sleep(0.1)
        raise RuntimeError("iperf3 client failed: " + out[-500:] + err[-500:])
    finally:
        if server.returncode is None:
            server.kill()
            server.wait()

VETH_NETNS = ("netbench-%d-a" % os.getpid(), "netbench-%d-b" % os.getpid())

def veth_pair_up():
    """Two namespaces joined by a raw veth pair (defaults: MTU 1500, no GRO)."""
    a, b = VETH_NETNS
    sh(["ip", "netns", "add", a]); sh(["ip", "netns", "add", b])
    sh(["ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b])
    sh(["ip", "-n", a, "addr", "add", "10.250.0.1/30", "dev", "va"])
    sh(["ip", "-n", b, "addr", "add", "10.250.0.2/30", "dev", "vb"])
    for ns, dev in [(a, "va"), (b, "vb")]:
        sh(["ip", "-n", ns, "link", "set", dev, "up"]); sh(["ip", "-n", ns, "link", "set", "lo", "up"])

def veth_pair_down():
    for ns in VETH_NETNS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)

def veth_baseline(seconds):
    a, b = VETH_NETNS
    return iperf(["ip", "netns", "exec", b], ["ip", "netns", "exec", a], "10.250.0.2", seconds)

BARE = "netbench-%d" % os.getpid()

def bare_ns(name):
    return "%s-%s" % (BARE, name)

BARE_NAMESPACES = ["ul", "n1", "n2", "p1", "p2", "p3"]

def bare_up():
    """Underlay bridge ul0 in its own namespace; nodes n1 and n2 with eth0 on
    it (10.252.0.N), bridge br0 (10.253.N.1/24), VXLAN vx0 (VNI 1, port 8472,
    nolearning, static neighbour + FDB + onlink route per remote node, as
    flannel does); pods p1, p2 on n1 and p3 on n2, MTU 1450."""
    ip = lambda ns, *args: sh(["ip", "-n", bare_ns(ns)] + list(args))
    sysctl = lambda ns, setting: sh(["ip", "netns", "exec", bare_ns(ns), "sysctl", "-qw", setting])
    for ns in BARE_NAMESPACES:
        sh(["ip", "netns", "add", bare_ns(ns)])
        sysctl(ns, "net.bridge.bridge-nf-call-iptables=0")
        ip(ns, "link", "set", "lo", "up")
    ip("ul", "link", "add", "ul0", "type", "bridge")
    ip("ul", "link", "set", "ul0", "up")
    mac = lambda n: "02:00:00:00:0%d:00" % n
    for n in (1, 2):
        node = "n%d" % n
        ip(node, "link", "add", "eth0", "type", "veth", "peer", "name", node, "netns", bare_ns("ul"))
        ip("ul", "link", "set", node, "master", "ul0", "up")
        ip(node, "addr", "add", "10.252.0.%d/24" % n, "dev", "eth0")
        ip(node, "link", "set", "eth0", "up")
        sysctl(node, "net.ipv4.ip_forward=1")
        ip(node, "link", "add", "br0", "type", "bridge")
        ip(node, "addr", "add", "10.253.%d.1/24" % n, "dev", "br0")
        ip(node, "link", "add", "vx0", "address", mac(n), "mtu", "1450", "type", "vxlan", "id", "1",
           "local", "10.252.0.%d" % n, "dstport", "8472", "nolearning", "udpcsum")
        ip(node, "addr", "add", "10.253.%d.0/32" % n, "dev", "vx0")
        ip(node, "link", "set", "vx0", "up")
    for n, other in ((1, 2), (2, 1)):
        node = "n%d" % n
        ip(node, "neigh", "add", "10.253.%d.0" % other, "lladdr", mac(other), "dev", "vx0", "nud", "permanent")
        sh(["bridge", "-n", bare_ns(node), "fdb", "append", mac(other), "dev", "vx0", "dst", "10.252.0.%d" % other])
        ip(node, "route", "add", "10.253.%d.0/24" % other, "via", "10.253.%d.0" % other, "dev", "vx0", "onlink")
    for pod, n, host in (("p1", 1, 2), ("p2", 1, 3), ("p3", 2, 2)):
        node = "n%d" % n
        ip(node, "link", "add", "veth" + pod, "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns",
           bare_ns(pod))
        ip(node, "link", "set", "veth" + pod, "master", "br0", "up")
        ip(pod, "addr", "add", "10.253.%d.%d/24" % (n, host), "dev", "eth0")
        ip(pod, "link", "set", "eth0", "mtu", "1450", "up")
        ip(pod, "route", "add", "default", "via", "10.253.%d.1" % n)
    for n in (1, 2):
        ip("n%d" % n, "link", "set", "br0", "mtu", "1450", "up")

def bare_down():
    for ns in BARE_NAMESPACES:
        subprocess.run(["ip", "netns", "del", bare_ns(ns)], capture_output=True)

def bare_paths(seconds):
    """(same node, cross node) on the bare path, both to p1."""
    server = ["ip", "netns", "exec", bare_ns("p1")]
    same = iperf(server, ["ip", "netns", "exec", bare_ns("p2")], "10.253.1.2", seconds)
    cross = iperf(server, ["ip", "netns", "exec", bare_ns("p3")], "10.253.1.2", seconds)
    return same, cross

def pod_netns(node_root, ip):
    netns_dir = os.path.join(node_root, "run/netns")
    for name in os.listdir(netns_dir):
        path = os.path.join(netns_dir, name)
        out = subprocess.run(["nsenter", "--net=" + path, "ip", "-4", "-o", "addr", "show", "eth0"],
                             capture_output=True, text=True).stdout
        if (" %s/" % ip) in out:
            return path
    raise RuntimeError("no sandbox with %s under %s" % (ip, netns_dir))

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--podnet", required=True)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--backend", default="vxlan")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = {"seconds": args.seconds, "backend": args.backend, "rounds": [],
               "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}
    root = tempfile.mkdtemp(prefix="podnet-netbench-")
    env = dict(os.environ, PODNET_ROOT=root)
    name = "netb%d" % (os.getpid() % 10000)
    kubectl = ["kubectl", "--kubeconfig", os.path.join(root, name, "server", "kubeconfig")]
    try:
        sh([args.podnet, "up", "--name", name, "--nodes", "2", "--backend", args.backend, "--no-kubeconfig"], env=env)
        nodes = ["%s-node1" % name, "%s-node2" % name]
        manifest = ""
        for pod, node in [("server", nodes[0]), ("same", nodes[0]), ("other", nodes[1])]:
            manifest += ("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  terminationGracePeriodSeconds: 1\n"
                         "  nodeSelector: {kubernetes.io/hostname: %s}\n  containers:\n  - name: c\n    image: busybox\n"
                         "    command: [sleep, '3600']\n---\n") % (pod, node)
        sh(kubectl + ["apply", "-f", "-"], input=manifest)
        sh(kubectl + ["wait", "--for=condition=Ready", "pod/server", "pod/same", "pod/other", "--timeout=120s"])
        ip = lambda pod: sh(kubectl + ["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]).stdout.strip()
        node_root = lambda node: os.path.join(root, name, "nodes", node)
        server_ns = pod_netns(node_root(nodes[0]), ip("server"))
        same_ns = pod_netns(node_root(nodes[0]), ip("same"))
        other_ns = pod_netns(node_root(nodes[1]), ip("other"))
        server = ["nsenter", "--net=" + server_ns]
        veth_pair_up()
        bare_up()
        for _ in range(args.rounds):
            veth, veth_cost = veth_baseline(args.seconds)
            (bare_same, bare_same_cost), (bare_cross, bare_cross_cost) = bare_paths(args.seconds)
            same, same_cost = iperf(server, ["nsenter", "--net=" + same_ns], ip("server"), args.seconds)
            cross, cross_cost = iperf(server, ["nsenter", "--net=" + other_ns], ip("server"), args.seconds)
            results["rounds"].append({"veth_pair_gbps": veth, "pod_same_node_gbps": same,
                                      "pod_cross_node_gbps": cross,
                                      "same_node_vs_veth": round(same / veth, 3),
                                      "cross_node_vs_veth": round(cross / veth, 3),
                                      "veth_pair_cpu_ms_per_gb": veth_cost,
                                      "pod_same_node_cpu_ms_per_gb": same_cost,
                                      "pod_cross_node_cpu_ms_per_gb": cross_cost,
                                      "same_node_cost_vs_veth": round(same_cost / veth_cost, 3),
                                      "cross_node_cost_vs_veth": round(cross_cost / veth_cost, 3),
                                      "bare_same_node_gbps": bare_same, "bare_cross_node_gbps": bare_cross,
                                      "bare_same_node_vs_veth": round(bare_same / veth, 3),
                                      "bare_cross_node_vs_veth": round(bare_cross / veth, 3),
                                      "same_node_vs_bare": round(same / bare_same, 3),
                                      "cross_node_vs_bare": round(cross / bare_cross, 3),
                                      "bare_same_node_cpu_ms_per_gb": bare_same_cost,
                                      "bare_cross_node_cpu_ms_per_gb": bare_cross_cost})
            print("round %d: veth %.2f  same node %.2f (%.3f)  cross node %.2f (%.3f)"
                  "  bare same %.2f (%.3f)  bare cross %.2f (%.3f) Gbit/s;"
                  " CPU ms/GB veth %.0f same %.0f cross %.0f bare same %.0f bare cross %.0f" % (
                len(results["rounds"]), veth, same, same / veth, cross, cross / veth,
                bare_same, bare_same / veth, bare_cross, bare_cross / veth,
                veth_cost, same_cost, cross_cost, bare_same_cost, bare_cross_cost), file=sys.stderr)
    finally:
        veth_pair_down()
        bare_down()
        down = subprocess.run([args.podnet, "down", "--name", name], env=env, capture_output=True)
        if down.returncode == 0 or not os.path.exists(os.path.join(root, name)):
            shutil.rmtree(root, ignore_errors=True)
    # Medians over the rounds; the ratios are medians of each round's ratio.
    keys = ["veth_pair_gbps", "pod_same_node_gbps", "pod_cross_node_gbps", "same_node_vs_veth", "cross_node_vs_veth",
            "veth_pair_cpu_ms_per_gb", "pod_same_node_cpu_ms_per_gb", "pod_cross_node_cpu_ms_per_gb",
            "same_node_cost_vs_veth", "cross_node_cost_vs_veth",
            "bare_same_node_gbps", "bare_cross_node_gbps", "bare_same_node_vs_veth", "bare_cross_node_vs_veth",
            "same_node_vs_bare", "cross_node_vs_bare",
            "bare_same_node_cpu_ms_per_gb", "bare_cross_node_cpu_ms_per_gb"]
    for key in keys:
        results[key] = round(statistics.median(r[key] for r in results["rounds"]), 3)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print("%-32s %s" % ("metric (median of %d rounds)" % len(results["rounds"]), "value"))
    for key in keys:
        print("%-32s %s" % (key, results[key]))
    return 0

if __name__ == "__main__":
    sys.exit(main())
