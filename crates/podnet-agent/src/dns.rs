//! /etc/resolv.conf and /etc/hosts for a pod, as the kubelet writes them.
//! Pure functions of the pod spec and the node's own resolver configuration.

use k8s_openapi::api::core::v1::Pod;

/// Upstream limits (kubelet validation): at most 3 nameservers, 32 search
/// domains and 2048 characters of search list.
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A parsed resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    conf.searches = words.map(str::to_string).collect()
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        for server in &self.nameservers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The cluster's DNS settings (kubelet's --cluster-dns and --cluster-domain).
#[derive(Debug, Clone)]
pub struct ClusterDns {
    pub server: String,
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            server: "10.96.0.10".into(),
            domain: "cluster.local".into(),
        }
    }
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|existing| existing == item) {
        list.push(item.to_string());
    }
}

/// The resolv.conf of `pod` per its dnsPolicy and dnsConfig.
pub fn pod_resolv_conf(pod: &Pod, node: &ResolvConf, cluster: &ClusterDns) -> ResolvConf {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        _ if cluster_first => {
            let mut searches = vec![
                format!("{namespace}.svc.{}", cluster.domain),
                format!("svc.{}", cluster.domain),
                cluster.domain.clone(),
            ];
            for search in &node.searches {
                push_unique(&mut searches, search);
            }
            ResolvConf {
                nameservers: vec![cluster.server.clone()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => node.clone(),
    };
    if let Some(config) = &spec.dns_config {
        for server in config.nameservers.iter().flatten() {
            push_unique(&mut conf.nameservers, server);
        }
        for search in config.searches.iter().flatten() {
            push_unique(&mut conf.searches, search);
        }
        for option in config.options.iter().flatten() {
            let rendered = match &option.value {
                Some(value) => format!("{}:{value}", option.name.as_deref().unwrap_or("")),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = rendered.split(':').next().unwrap_or("").to_string();
            conf.options
                .retain(|existing| existing.split(':').next() != Some(name.as_str()));
            conf.options.push(rendered);
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    while conf.searches.join(" ").len() > MAX_SEARCH_CHARS {
        conf.searches.pop();
    }
    conf
}

/// The pod's hostname: `spec.hostname`, else its name.
pub fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.hostname.clone())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default())
}

/// The kubelet-managed /etc/hosts of a pod.
pub fn pod_hosts_file(pod: &Pod, pod_ip: &str, cluster: &ClusterDns) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = pod_hostname(pod);
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        match &spec.subdomain {
            Some(subdomain) if !subdomain.is_empty() => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                text.push_str(&format!(
                    "{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{}\t{hostname}\n",
                    cluster.domain
                ));
            }
            _ => text.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    if let Some(aliases) = &spec.host_aliases {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            text.push_str(&format!(
                "{}\t{}\n",
                alias.ip,
                alias.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn node() -> ResolvConf {
        ResolvConf::parse(
            "# generated\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n",
        )
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_search_path() {
        let pod = pod("metadata: {name: web, namespace: shop}\nspec: {containers: []}\n");
        expect![[r#"
            nameserver 10.96.0.10
            search shop.svc.cluster.local svc.cluster.local cluster.local corp.example
            options ndots:5
        "#]]
        .assert_eq(&pod_resolv_conf(&pod, &node(), &ClusterDns::default()).render());
    }

    #[test]
    fn default_policy_copies_the_node() {
        let pod = pod("metadata: {name: web}\nspec: {dnsPolicy: Default, containers: []}\n");
        assert_eq!(
            pod_resolv_conf(&pod, &node(), &ClusterDns::default()),
            node()
        );
    }

    #[test]
    fn none_policy_takes_only_dns_config_and_applies_limits() {
        let pod = pod(
            "metadata: {name: web}\nspec:\n  dnsPolicy: None\n  containers: []\n  dnsConfig:\n    nameservers: [1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4]\n    searches: [a.example]\n    options: [{name: ndots, value: '2'}, {name: edns0}]\n",
        );
        expect![[r#"
            nameserver 1.1.1.1
            nameserver 2.2.2.2
            nameserver 3.3.3.3
            search a.example
            options ndots:2 edns0
        "#]]
        .assert_eq(&pod_resolv_conf(&pod, &node(), &ClusterDns::default()).render());
    }

    #[test]
    fn dns_config_options_override_cluster_first_defaults() {
        let pod = pod(
            "metadata: {name: web, namespace: default}\nspec:\n  containers: []\n  dnsConfig:\n    options: [{name: ndots, value: '1'}]\n",
        );
        let conf = pod_resolv_conf(&pod, &ResolvConf::default(), &ClusterDns::default());
        assert_eq!(conf.options, vec!["ndots:1".to_string()]);
    }

    #[test]
    fn host_network_cluster_first_falls_back_to_node() {
        let pod = pod("metadata: {name: web}\nspec: {hostNetwork: true, containers: []}\n");
        assert_eq!(
            pod_resolv_conf(&pod, &node(), &ClusterDns::default()),
            node()
        );
        let with_host_net = pod_with_policy("ClusterFirstWithHostNet");
        assert_eq!(
            pod_resolv_conf(&with_host_net, &node(), &ClusterDns::default()).nameservers,
            vec!["10.96.0.10".to_string()]
        );
    }

    fn pod_with_policy(policy: &str) -> Pod {
        pod(&format!("metadata: {{name: web}}\nspec: {{hostNetwork: true, dnsPolicy: {policy}, containers: []}}\n"))
    }

    #[test]
    fn hosts_file_with_subdomain() {
        let pod = pod("metadata: {name: web-0, namespace: db}\nspec: {hostname: web-0, subdomain: web, containers: []}\n");
        expect![[r#"
            # Kubernetes-managed hosts file.
            127.0.0.1	localhost
            ::1	localhost ip6-localhost ip6-loopback
            fe00::0	ip6-localnet
            fe00::0	ip6-mcastprefix
            fe00::1	ip6-allnodes
            fe00::2	ip6-allrouters
            10.244.1.7	web-0.web.db.svc.cluster.local	web-0
        "#]]
        .assert_eq(&pod_hosts_file(&pod, "10.244.1.7", &ClusterDns::default()));
    }
}
