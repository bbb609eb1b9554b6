//! Cluster DNS end to end: the `coredns` Deployment `podnet up` installs
//! (podnet dns pods behind kube-dns at 10.96.0.10), queried from busybox and
//! netshoot pods with the real kubectl. Names outside the cluster go to an
//! unbound the test starts itself inside node 1's network namespace.
//! Needs root, runc, kubectl, unbound.

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::*;

/// Node 1's underlay address: the test upstream listens there.
const UPSTREAM: &str = "172.18.0.2:5300";

const APPS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: other}
spec:
  selector: {app: api}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: mysql, port: 3306}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: www.example.org}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, labels: {app: db}}
spec:
  hostname: db-1
  subdomain: db
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug}
spec:
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, "3600"]}]
"#;

/// unbound inside a node's network namespace, killed (by PID) on drop.
struct TestUpstream {
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestUpstream {
    fn start(node: &str) -> TestUpstream {
        let dir = tempfile::tempdir().unwrap();
        let (ip, port) = UPSTREAM.split_once(':').unwrap();
        let conf = format!(
            "server:\n  interface: {ip}@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  do-ip6: no\n  access-control: 0.0.0.0/0 allow\n  local-zone: \".\" static\n  local-zone: \"example.org.\" static\n  local-data: \"www.example.org. 300 IN A 192.0.2.10\"\nremote-control:\n  control-enable: no\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("unbound.conf"), conf).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", node, "unbound", "-d", "-c"])
            .arg(dir.path().join("unbound.conf"))
            .spawn()
            .expect("unbound starts");
        TestUpstream { child, _dir: dir }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn can_run_dns() -> bool {
    can_run()
        && skip_unless(
            Command::new("sh")
                .args(["-c", "command -v unbound"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false),
            "needs unbound (the test's upstream resolver)",
        )
}

struct DnsCluster {
    cluster: Cluster,
    _upstream: TestUpstream,
}

fn dns_cluster(prefix: &str) -> DnsCluster {
    let cluster = Cluster::up(prefix, 2, &["--dns-upstream", UPSTREAM]);
    let upstream = TestUpstream::start(&format!("{}-node1", cluster.name));
    cluster.wait_for("2 ready DNS pods", Duration::from_secs(180), || {
        let ready = cluster.kubectl_ok(&[
            "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}",
        ]);
        ready.split_whitespace().filter(|s| *s == "True").count() >= 2
    });
    DnsCluster {
        cluster,
        _upstream: upstream,
    }
}

fn exec(cluster: &Cluster, pod: &str, command: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(command);
    let output = cluster.kubectl(&args);
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn apply_apps(cluster: &Cluster) {
    cluster.kubectl_stdin(&["apply", "-f", "-"], APPS);
    for pod in ["db-0", "db-1", "client", "debug"] {
        cluster.wait_phase(pod, "Running", Duration::from_secs(120));
    }
}

#[test]
fn busybox_nslookup_services_headless_and_pod_hostnames() {
    if !can_run_dns() {
        return;
    }
    let dns = dns_cluster("dnsa");
    let cluster = &dns.cluster;
    apply_apps(cluster);
    let web_ip = cluster.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let api_ip = cluster.kubectl_ok(&[
        "get",
        "svc",
        "api",
        "-n",
        "other",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let db0 = pod_ip(cluster, "db-0");
    let db1 = pod_ip(cluster, "db-1");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("kubernetes.default", vec!["10.96.0.1".into()]),
        ("web", vec![web_ip.clone()]),
        ("web.default", vec![web_ip.clone()]),
        ("web.default.svc.cluster.local", vec![web_ip.clone()]),
        ("api.other", vec![api_ip.clone()]),
        ("db", vec![db0.clone(), db1.clone()]),
        ("db-0.db", vec![db0.clone()]),
        ("db-1.db.default.svc.cluster.local", vec![db1.clone()]),
    ];
    let mut failures = Vec::new();
    for (name, expected) in &cases {
        let mut last = String::new();
        // busybox 1.35's nslookup applies the search path only to names
        // without dots; its libc resolver (ping) applies it as every client does.
        let searched = name.contains('.') && !name.ends_with("cluster.local");
        let ok = (0..20).any(|_| {
            let (_, out) = if searched {
                exec(cluster, "client", &["ping", "-c", "1", "-W", "1", name])
            } else {
                exec(cluster, "client", &["nslookup", name])
            };
            last = out;
            let found = if searched {
                expected.iter().any(|ip| last.contains(&format!("({ip})")))
            } else {
                expected
                    .iter()
                    .all(|ip| last.contains(&format!("Address: {ip}")))
            };
            if !found {
                std::thread::sleep(Duration::from_millis(250));
            }
            found
        });
        if !ok {
            failures.push(format!("nslookup {name}: want {expected:?}\n{last}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One row of the conformance table: dig arguments, expected status, and
/// strings the answer must contain (after substitution of pod/service IPs).
struct Row {
    what: &'static str,
    args: &'static str,
    status: &'static str,
    contains: &'static [&'static str],
}

const TABLE: &[Row] = &[
    Row {
        what: "ClusterIP A",
        args: "web.default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["IN\tA\t$WEB"],
    },
    Row {
        what: "case-insensitive",
        args: "WEB.Default.SVC.cluster.local A",
        status: "NOERROR",
        contains: &["WEB.Default.SVC.cluster.local.", "$WEB"],
    },
    Row {
        what: "AAAA on IPv4 service is NODATA",
        args: "web.default.svc.cluster.local AAAA",
        status: "NOERROR",
        contains: &["ANSWER: 0", "SOA\tns.dns.cluster.local."],
    },
    Row {
        what: "SRV named port",
        args: "_http._tcp.web.default.svc.cluster.local SRV",
        status: "NOERROR",
        contains: &["SRV\t0 100 80 web.default.svc.cluster.local."],
    },
    Row {
        what: "SRV unknown port",
        args: "_nope._tcp.web.default.svc.cluster.local SRV",
        status: "NXDOMAIN",
        contains: &["SOA"],
    },
    Row {
        what: "headless A per endpoint",
        args: "db.default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["$DB0", "$DB1"],
    },
    Row {
        what: "headless endpoint hostname",
        args: "db-0.db.default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["$DB0"],
    },
    Row {
        what: "headless SRV",
        args: "_mysql._tcp.db.default.svc.cluster.local SRV",
        status: "NOERROR",
        contains: &[
            "3306 db-0.db.default.svc.cluster.local.",
            "3306 db-1.db.default.svc.cluster.local.",
        ],
    },
    Row {
        what: "PTR service IP",
        args: "-x $WEB",
        status: "NOERROR",
        contains: &["PTR\tweb.default.svc.cluster.local."],
    },
    Row {
        what: "PTR endpoint IP",
        args: "-x $DB0",
        status: "NOERROR",
        contains: &["PTR\tdb-0.db.default.svc.cluster.local."],
    },
    Row {
        what: "ExternalName CNAME",
        args: "ext.default.svc.cluster.local CNAME",
        status: "NOERROR",
        contains: &["CNAME\twww.example.org."],
    },
    Row {
        what: "ExternalName A chases upstream",
        args: "ext.default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["CNAME\twww.example.org.", "192.0.2.10"],
    },
    Row {
        what: "dns-version TXT",
        args: "dns-version.cluster.local TXT",
        status: "NOERROR",
        contains: &["\"1.1.0\""],
    },
    Row {
        what: "forwarded name",
        args: "www.example.org A",
        status: "NOERROR",
        contains: &["192.0.2.10"],
    },
    Row {
        what: "NXDOMAIN unknown service",
        args: "nope.default.svc.cluster.local A",
        status: "NXDOMAIN",
        contains: &["SOA"],
    },
    Row {
        what: "NXDOMAIN unknown namespace",
        args: "web.nowhere.svc.cluster.local A",
        status: "NXDOMAIN",
        contains: &["SOA"],
    },
    Row {
        what: "NXDOMAIN wrong second label",
        args: "web.default.xyz.cluster.local A",
        status: "NXDOMAIN",
        contains: &["SOA"],
    },
    Row {
        what: "NXDOMAIN too many labels",
        args: "a.b.c.web.default.svc.cluster.local A",
        status: "NXDOMAIN",
        contains: &["SOA"],
    },
    Row {
        what: "NODATA apex",
        args: "cluster.local A",
        status: "NOERROR",
        contains: &["ANSWER: 0", "SOA"],
    },
    Row {
        what: "NODATA svc",
        args: "svc.cluster.local A",
        status: "NOERROR",
        contains: &["ANSWER: 0", "SOA"],
    },
    Row {
        what: "NODATA namespace",
        args: "default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["ANSWER: 0", "SOA"],
    },
    Row {
        what: "NODATA other type",
        args: "web.default.svc.cluster.local TXT",
        status: "NOERROR",
        contains: &["ANSWER: 0", "SOA"],
    },
    Row {
        what: "TCP",
        args: "+tcp web.default.svc.cluster.local A",
        status: "NOERROR",
        contains: &["$WEB"],
    },
];

/// One row of [`TABLE`] against its own cluster, dig from a debug pod.
fn conformance_row(what: &str) {
    let row = TABLE
        .iter()
        .find(|row| row.what == what)
        .unwrap_or_else(|| panic!("no conformance row {what:?}"));
    if !can_run_dns() {
        return;
    }
    let dns = dns_cluster("dnsb");
    let cluster = &dns.cluster;
    apply_apps(cluster);
    let web = cluster.kubectl_ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let db0 = pod_ip(cluster, "db-0");
    let db1 = pod_ip(cluster, "db-1");
    let fill = |text: &str| {
        text.replace("$WEB", &web)
            .replace("$DB0", &db0)
            .replace("$DB1", &db1)
    };
    // The headless service's endpoints appear once both pods are ready.
    cluster.wait_for("headless endpoints", Duration::from_secs(60), || {
        let (_, out) = exec(
            cluster,
            "debug",
            &["dig", "+short", "db.default.svc.cluster.local"],
        );
        out.contains(&db0) && out.contains(&db1)
    });
    let mut report = Vec::new();
    let mut failed = 0;
    {
        let args = fill(row.args);
        let mut command = vec!["dig", "+time=2", "+tries=2"];
        command.extend(args.split_whitespace());
        let (_, out) = exec(cluster, "debug", &command);
        let status_ok = out.contains(&format!("status: {}", row.status));
        // dig separates fields with tabs, or with one space once a long
        // owner name has passed its tab stops: compare with whitespace folded.
        let fold = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let folded = fold(&out);
        let contains_ok = row
            .contains
            .iter()
            .all(|needle| folded.contains(&fold(&fill(needle))));
        let pass = status_ok && contains_ok;
        if !pass {
            failed += 1;
        }
        report.push(format!(
            "{:<4} {:<36} dig {args}{}",
            if pass { "ok" } else { "FAIL" },
            row.what,
            if pass {
                String::new()
            } else {
                format!("\n{out}")
            }
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(failed, 0, "{}", report.join("\n"));
}

/// One test per conformance row, each against its own cluster.
macro_rules! conformance_rows {
    ($($test:ident => $what:expr,)*) => {
        $(
            #[test]
            fn $test() {
                conformance_row($what);
            }
        )*
        /// Every row of [`TABLE`] has its test.
        #[test]
        fn every_conformance_row_has_a_test() {
            let covered = [$($what),*];
            let missing: Vec<&str> = TABLE
                .iter()
                .map(|row| row.what)
                .filter(|what| !covered.contains(what))
                .collect();
            assert!(missing.is_empty(), "rows without a test: {missing:?}");
        }
    };
}

conformance_rows! {
    dig_clusterip_a => "ClusterIP A",
    dig_case_insensitive => "case-insensitive",
    dig_aaaa_on_ipv4_service_is_nodata => "AAAA on IPv4 service is NODATA",
    dig_srv_named_port => "SRV named port",
    dig_srv_unknown_port => "SRV unknown port",
    dig_headless_a_per_endpoint => "headless A per endpoint",
    dig_headless_endpoint_hostname => "headless endpoint hostname",
    dig_headless_srv => "headless SRV",
    dig_ptr_service_ip => "PTR service IP",
    dig_ptr_endpoint_ip => "PTR endpoint IP",
    dig_externalname_cname => "ExternalName CNAME",
    dig_externalname_a_chases_upstream => "ExternalName A chases upstream",
    dig_dns_version_txt => "dns-version TXT",
    dig_forwarded_name => "forwarded name",
    dig_nxdomain_unknown_service => "NXDOMAIN unknown service",
    dig_nxdomain_unknown_namespace => "NXDOMAIN unknown namespace",
    dig_nxdomain_wrong_second_label => "NXDOMAIN wrong second label",
    dig_nxdomain_too_many_labels => "NXDOMAIN too many labels",
    dig_nodata_apex => "NODATA apex",
    dig_nodata_svc => "NODATA svc",
    dig_nodata_namespace => "NODATA namespace",
    dig_nodata_other_type => "NODATA other type",
    dig_tcp => "TCP",
}

#[test]
fn new_and_deleted_services_within_one_second() {
    if !can_run_dns() {
        return;
    }
    let dns = dns_cluster("dnsc");
    let cluster = &dns.cluster;
    cluster.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: debug}\nspec:\n  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, \"3600\"]}]\n");
    cluster.wait_phase("debug", "Running", Duration::from_secs(120));
    // The pod polls every 20 ms and prints the time it first sees the change.
    let watch = |name: &str, want_nx: bool| {
        format!(
            "i=0; while [ $i -lt 250 ]; do out=$(dig +time=1 +tries=1 {name}.default.svc.cluster.local A); if {cond}; then cut -d' ' -f1 /proc/uptime; exit 0; fi; i=$((i+1)); sleep 0.02; done; echo never",
            cond = if want_nx { "echo \"$out\" | grep -q 'status: NXDOMAIN'" } else { "echo \"$out\" | grep -q 'status: NOERROR' && echo \"$out\" | grep -q 'IN\tA'" }
        )
    };
    // Pod and host read the same clock: /proc/uptime is not namespaced
    // (busybox `date` has no %N, so wall-clock nanoseconds are not available).
    let now_ns = || uptime_ns(&std::fs::read_to_string("/proc/uptime").unwrap());
    let poller = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["exec", "debug", "--", "sh", "-c", &watch("fresh", false)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let created = now_ns();
    cluster.kubectl_ok(&["create", "service", "clusterip", "fresh", "--tcp=80:80"]);
    let output = poller.wait_with_output().unwrap();
    let seen = uptime_ns(&String::from_utf8_lossy(&output.stdout));
    let appear_ms = (seen - created) as f64 / 1e6;

    let poller = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["exec", "debug", "--", "sh", "-c", &watch("fresh", true)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let deleted = now_ns();
    cluster.kubectl_ok(&["delete", "service", "fresh"]);
    let output = poller.wait_with_output().unwrap();
    let gone = uptime_ns(&String::from_utf8_lossy(&output.stdout));
    let disappear_ms = (gone - deleted) as f64 / 1e6;
    eprintln!("new service resolvable after {appear_ms:.0} ms; deleted one NXDOMAIN after {disappear_ms:.0} ms");
    assert!(appear_ms < 1000.0, "new service took {appear_ms} ms");
    assert!(
        disappear_ms < 1000.0,
        "deleted service took {disappear_ms} ms"
    );
}

/// Nanoseconds from the first field of /proc/uptime ("12345.67 ..."); the
/// poller prints "never" when the change was not seen in its window.
fn uptime_ns(text: &str) -> i128 {
    let seconds: f64 = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("the change was never seen by the polling pod: {text:?}"));
    (seconds * 1e9) as i128
}

#[test]
fn dns_pods_come_back_and_rollout_restart_loses_no_query() {
    if !can_run_dns() {
        return;
    }
    let dns = dns_cluster("dnsd");
    let cluster = &dns.cluster;
    cluster.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: debug}\nspec:\n  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, \"3600\"]}]\n");
    cluster.wait_phase("debug", "Running", Duration::from_secs(120));

    let before = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
        "-o",
        "name",
    ]);
    cluster.kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-dns",
    ]);
    cluster.wait_for("2 new ready DNS pods", Duration::from_secs(120), || {
        let now = cluster.kubectl_ok(&["get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"]);
        let ready: Vec<&str> = now.split_whitespace().filter(|p| p.ends_with("=True")).collect();
        ready.len() >= 2 && ready.iter().all(|p| !before.contains(p.split('=').next().unwrap()))
    });

    // A client querying throughout a rollout restart sees no failed query.
    let client = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["exec", "debug", "--", "sh", "-c",
            "ok=0; fail=0; end=$(( $(date +%s) + 40 )); while [ $(date +%s) -lt $end ]; do if dig +time=2 +tries=1 +short kubernetes.default.svc.cluster.local A | grep -q '^10.96.0.1$'; then ok=$((ok+1)); else fail=$((fail+1)); fi; sleep 0.05; done; echo ok=$ok fail=$fail"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    cluster.kubectl_ok(&[
        "rollout",
        "restart",
        "deployment/coredns",
        "-n",
        "kube-system",
    ]);
    let status = cluster.kubectl(&[
        "rollout",
        "status",
        "deployment/coredns",
        "-n",
        "kube-system",
        "--timeout=30s",
    ]);
    eprintln!(
        "rollout finished after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&status.stdout)
    );
    let output = client.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&output.stdout).trim().to_string();
    eprintln!("queries during the rollout restart: {summary}");
    assert!(
        summary.ends_with("fail=0") && !summary.starts_with("ok=0"),
        "{summary}"
    );
}
