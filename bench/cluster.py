#!/usr/bin/env python3
"""Cluster benchmarks: `podnet up` (3 nodes until Ready and kubectl answers),
pod create -> Running-with-IP latency through the API (a watch, client
side) on a one-node cluster, measured two ways:
  - sequential: PODS pods created one after another, each once the previous
    one is Running with an IP: the latency of a pod on a node that is not
    saturated (what upstream's pod-startup SLI measures); p50/p99;
  - burst: PODS more pods posted at once: the time until all are Running,
    and their per-pod p50/p99 (dominated by queueing behind each other);
and the agent's and server's RSS with the burst's pods running.
Everything runs against a throwaway cluster in its own PODNET_ROOT and is
removed at the end, even on failure. Bounded: at most --pods pods, and every
wait has a deadline."""
import argparse, shutil, base64, http.client, json, os, ssl, statistics, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[index]

class Api:
    def __init__(self, kubeconfig):
        import yaml
        with open(kubeconfig) as f:
            config = yaml.safe_load(f)
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.context = ssl.create_default_context(cadata=ca)
        self.connection = None

    def request(self, method, path, body=None, timeout=30):
        """One request on a kept-alive HTTPS connection (as kubectl and
        controllers do), so a measured create is not a TLS handshake."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"}
        for attempt in range(2):
            if self.connection is None:
                url = urllib.parse.urlsplit(self.server)
                self.connection = http.client.HTTPSConnection(
                    url.hostname, url.port, context=self.context, timeout=timeout)
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
                continue
            if response.status >= 400:
                raise RuntimeError("%s %s: %d %s" % (method, path, response.status, payload[:300]))
            return json.loads(payload or b"{}")

    def watch_running(self, namespace, seen, stop, changed):
        """Record the first time each pod is Running with an IP (watch stream);
        `changed` (a Condition) is notified on every new entry."""
        path = "/api/v1/namespaces/%s/pods?watch=1&timeoutSeconds=600" % namespace
        req = urllib.request.Request(self.server + path)
        req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, context=self.context, timeout=600) as response:
            for line in response:
                if stop.is_set():
                    return
                event = json.loads(line)
                item = event.get("object", {})
                status = item.get("status", {})
                name = item.get("metadata", {}).get("name")
                if status.get("phase") == "Running" and status.get("podIP") and name not in seen:
                    with changed:
                        seen[name] = time.monotonic()
                        changed.notify_all()

def rss_kib(pid_file, field="VmRSS"):
    """A memory figure of /proc/PID/status in KiB: VmRSS, or RssAnon (heap,
    stacks) and RssFile (mapped binary and libraries) which make it up."""
    with open(pid_file) as f:
        pid = f.read().strip()
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None

def run(cmd, env):
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--podnet", required=True)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--up-runs", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="podnet-bench-")
    env = dict(os.environ, PODNET_ROOT=root)
    name = "bench%d" % (os.getpid() % 10000)
    results = {"podnet_up_3_nodes_ms": [], "pods": args.pods}
    try:
        for _ in range(args.up_runs):
            start = time.monotonic()
            run([args.podnet, "up", "--name", name, "--nodes", "3", "--no-kubeconfig"], env)
            run(["kubectl", "--kubeconfig", os.path.join(root, name, "server", "kubeconfig"), "get", "nodes"], env)
            results["podnet_up_3_nodes_ms"].append(round((time.monotonic() - start) * 1000, 1))
            run([args.podnet, "down", "--name", name], env)
        run([args.podnet, "up", "--name", name, "--nodes", "1", "--no-kubeconfig"], env)
        api = Api(os.path.join(root, name, "server", "kubeconfig"))
        seen, stop, changed = {}, threading.Event(), threading.Condition()
        watcher = threading.Thread(target=api.watch_running, args=("default", seen, stop, changed), daemon=True)
        watcher.start()
        time.sleep(0.3)
        # Warm the image store so the first pod does not pay for the build.
        run([args.podnet, "image", "build", "busybox"], env)

        def pod(pod_name):
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name},
                    "spec": {"terminationGracePeriodSeconds": 1,
                             "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}

        # (a) Sequential: each pod is created once the previous one runs.
        sequential, pending = [], set()
        for i in range(args.pods):
            pod_name = "seq-%d" % i
            created = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod(pod_name))
            with changed:
                changed.wait_for(lambda: pod_name in seen, timeout=30)
            if pod_name not in seen:
                pending.add(pod_name)
                break
            sequential.append((seen[pod_name] - created) * 1000)
        results["sequential_pods_running"] = len(sequential)
        if sequential:
            results["sequential_create_to_running_p50_ms"] = round(percentile(sequential, 50), 1)
            results["sequential_create_to_running_p99_ms"] = round(percentile(sequential, 99), 1)
            results["sequential_create_to_running_max_ms"] = round(max(sequential), 1)
        # The burst starts from an empty node.
        api.request("DELETE", "/api/v1/namespaces/default/pods")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and api.request("GET", "/api/v1/namespaces/default/pods")["items"]:
            time.sleep(0.2)

        # (b) Burst: every pod posted at once.
        batch_start = time.monotonic()
        created = {}
        for i in range(args.pods):
            created["bench-%d" % i] = time.monotonic()
            api.request("POST", "/api/v1/namespaces/default/pods", pod("bench-%d" % i))
        with changed:
            changed.wait_for(lambda: not (set(created) - set(seen)), timeout=300)
        pending |= set(created) - set(seen)
        latencies = [(seen[n] - created[n]) * 1000 for n in created if n in seen]
        results["pods_running"] = len(latencies)
        results["all_pods_running_s"] = round(max(seen[n] for n in created) - batch_start, 2) if not (set(created) - set(seen)) else None
        time.sleep(3)  # settle: the agent's steady state with every pod running
        node_root = os.path.join(root, name, "nodes", name + "-node1")
        results["agent_rss_mib_with_pods"] = round(rss_kib(os.path.join(node_root, "agent.pid")) / 1024, 1)
        results["agent_rss_anon_file_mib"] = "%.1f / %.1f" % tuple(
            rss_kib(os.path.join(node_root, "agent.pid"), field) / 1024 for field in ("RssAnon", "RssFile"))
        results["server_rss_mib_with_pods"] = round(rss_kib(os.path.join(root, name, "server", "server.pid")) / 1024, 1)
        stop.set()
        if latencies:
            results["burst_create_to_running_p50_ms"] = round(percentile(latencies, 50), 1)
            results["burst_create_to_running_p99_ms"] = round(percentile(latencies, 99), 1)
    finally:
        down = subprocess.run([args.podnet, "down", "--name", name], env=env, capture_output=True)
        if down.returncode == 0 or not os.path.exists(os.path.join(root, name)):
            shutil.rmtree(root, ignore_errors=True)
    results["podnet_up_3_nodes_ms_median"] = statistics.median(results["podnet_up_3_nodes_ms"]) if results["podnet_up_3_nodes_ms"] else None
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print("%-40s %s" % ("metric", "value"))
    for key in ["podnet_up_3_nodes_ms_median", "pods",
                "sequential_pods_running", "sequential_create_to_running_p50_ms",
                "sequential_create_to_running_p99_ms", "sequential_create_to_running_max_ms",
                "pods_running", "all_pods_running_s",
                "burst_create_to_running_p50_ms", "burst_create_to_running_p99_ms",
                "agent_rss_mib_with_pods", "agent_rss_anon_file_mib", "server_rss_mib_with_pods"]:
        print("%-40s %s" % (key, results.get(key)))
    return 0 if not pending else 1

if __name__ == "__main__":
    sys.exit(main())
