//! The registry of served resources.
//!
//! The data mirrors what an upstream API server of the 1.33 line advertises in
//! discovery (plural, singular, scope, short names, categories, verbs and
//! subresources), because kubectl resolves `po`, `svc`, `get all` and
//! subresource verbs from exactly these fields.

/// A subresource such as `status`, `scale`, `binding`, `exec`.
#[derive(Debug, Clone, Copy)]
pub struct Subresource {
    pub name: &'static str,
    /// group/version/kind of what the subresource returns ("" group = core).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

/// The verbs of an ordinary resource.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection upstream.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// `status`-like subresources: read and write the parent object.
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
/// Streaming subresources accept both the WebSocket (GET) and SPDY (POST) forms.
const STREAM_VERBS: &[&str] = &["create", "get"];
const CREATE_ONLY: &[&str] = &["create"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const CATEGORY_ALL: &[&str] = &["all"];
const NO_NAMES: &[&str] = &[];

const fn status_of(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

/// A namespaced, fully-featured resource without subresources; the entries
/// below override what differs.
const fn plain(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        list_kind,
        plural,
        singular,
        namespaced: true,
        short_names: NO_NAMES,
        categories: NO_NAMES,
        verbs: ALL_VERBS,
        subresources: &[],
    }
}

static RESOURCES: &[ResourceInfo] = &[
    // core/v1, alphabetical by plural as upstream discovery lists it.
    ResourceInfo {
        verbs: CREATE_ONLY,
        ..plain("", "v1", "Binding", "BindingList", "bindings", "binding")
    },
    ResourceInfo {
        short_names: &["cm"],
        ..plain(
            "",
            "v1",
            "ConfigMap",
            "ConfigMapList",
            "configmaps",
            "configmap",
        )
    },
    ResourceInfo {
        short_names: &["ep"],
        ..plain(
            "",
            "v1",
            "Endpoints",
            "EndpointsList",
            "endpoints",
            "endpoints",
        )
    },
    ResourceInfo {
        short_names: &["ev"],
        ..plain("", "v1", "Event", "EventList", "events", "event")
    },
    ResourceInfo {
        namespaced: false,
        short_names: &["ns"],
        verbs: NAMESPACE_VERBS,
        subresources: &[
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
            status_of("", "v1", "Namespace"),
        ],
        ..plain(
            "",
            "v1",
            "Namespace",
            "NamespaceList",
            "namespaces",
            "namespace",
        )
    },
    ResourceInfo {
        namespaced: false,
        short_names: &["no"],
        subresources: &[
            Subresource {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "NodeProxyOptions",
                verbs: PROXY_VERBS,
            },
            status_of("", "v1", "Node"),
        ],
        ..plain("", "v1", "Node", "NodeList", "nodes", "node")
    },
    ResourceInfo {
        short_names: &["pvc"],
        subresources: &[status_of("", "v1", "PersistentVolumeClaim")],
        ..plain(
            "",
            "v1",
            "PersistentVolumeClaim",
            "PersistentVolumeClaimList",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
        )
    },
    ResourceInfo {
        namespaced: false,
        short_names: &["pv"],
        subresources: &[status_of("", "v1", "PersistentVolume")],
        ..plain(
            "",
            "v1",
            "PersistentVolume",
            "PersistentVolumeList",
            "persistentvolumes",
            "persistentvolume",
        )
    },
    ResourceInfo {
        short_names: &["po"],
        categories: CATEGORY_ALL,
        subresources: &[
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: STREAM_VERBS,
            },
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: STREAM_VERBS,
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: STREAM_VERBS,
            },
            status_of("", "v1", "Pod"),
        ],
        ..plain("", "v1", "Pod", "PodList", "pods", "pod")
    },
    plain("", "v1", "Secret", "SecretList", "secrets", "secret"),
    ResourceInfo {
        short_names: &["sa"],
        ..plain(
            "",
            "v1",
            "ServiceAccount",
            "ServiceAccountList",
            "serviceaccounts",
            "serviceaccount",
        )
    },
    ResourceInfo {
        short_names: &["svc"],
        categories: CATEGORY_ALL,
        subresources: &[
            Subresource {
                name: "proxy",
                group: "",
                version: "v1",
                kind: "ServiceProxyOptions",
                verbs: PROXY_VERBS,
            },
            status_of("", "v1", "Service"),
        ],
        ..plain("", "v1", "Service", "ServiceList", "services", "service")
    },
    // apps/v1
    ResourceInfo {
        short_names: &["ds"],
        categories: CATEGORY_ALL,
        subresources: &[status_of("apps", "v1", "DaemonSet")],
        ..plain(
            "apps",
            "v1",
            "DaemonSet",
            "DaemonSetList",
            "daemonsets",
            "daemonset",
        )
    },
    ResourceInfo {
        short_names: &["deploy"],
        categories: CATEGORY_ALL,
        subresources: &[scale(), status_of("apps", "v1", "Deployment")],
        ..plain(
            "apps",
            "v1",
            "Deployment",
            "DeploymentList",
            "deployments",
            "deployment",
        )
    },
    ResourceInfo {
        short_names: &["rs"],
        categories: CATEGORY_ALL,
        subresources: &[scale(), status_of("apps", "v1", "ReplicaSet")],
        ..plain(
            "apps",
            "v1",
            "ReplicaSet",
            "ReplicaSetList",
            "replicasets",
            "replicaset",
        )
    },
    ResourceInfo {
        short_names: &["sts"],
        categories: CATEGORY_ALL,
        subresources: &[scale(), status_of("apps", "v1", "StatefulSet")],
        ..plain(
            "apps",
            "v1",
            "StatefulSet",
            "StatefulSetList",
            "statefulsets",
            "statefulset",
        )
    },
    // events.k8s.io/v1
    ResourceInfo {
        short_names: &["ev"],
        ..plain(
            "events.k8s.io",
            "v1",
            "Event",
            "EventList",
            "events",
            "event",
        )
    },
    // networking.k8s.io/v1
    ResourceInfo {
        namespaced: false,
        ..plain(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "IngressClassList",
            "ingressclasses",
            "ingressclass",
        )
    },
    ResourceInfo {
        short_names: &["ing"],
        subresources: &[status_of("networking.k8s.io", "v1", "Ingress")],
        ..plain(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "IngressList",
            "ingresses",
            "ingress",
        )
    },
    ResourceInfo {
        short_names: &["netpol"],
        ..plain(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "NetworkPolicyList",
            "networkpolicies",
            "networkpolicy",
        )
    },
    // storage.k8s.io/v1
    ResourceInfo {
        namespaced: false,
        short_names: &["sc"],
        ..plain(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "StorageClassList",
            "storageclasses",
            "storageclass",
        )
    },
    // coordination.k8s.io/v1
    plain(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "LeaseList",
        "leases",
        "lease",
    ),
    // discovery.k8s.io/v1
    plain(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "EndpointSliceList",
        "endpointslices",
        "endpointslice",
    ),
];

/// Every served resource, in discovery order.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Look a resource up by group, version and plural (or short name).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    resources().iter().find(|r| {
        r.group == group
            && r.version == version
            && (r.plural == plural || r.short_names.contains(&plural))
    })
}

/// Look a resource up by `apiVersion` ("v1", "apps/v1") and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    resources()
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The served group-versions in discovery order, as (group, version); the
/// core group is "".
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen: Vec<(&'static str, &'static str)> = Vec::new();
    for resource in resources() {
        let pair = (resource.group, resource.version);
        if !seen.contains(&pair) {
            seen.push(pair);
        }
    }
    seen
}

impl ResourceInfo {
    /// "v1" for core, "group/version" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The subresource of this name, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether objects of this kind are only created, never stored
    /// (`Binding` is an action on a pod).
    pub fn is_create_only(&self) -> bool {
        self.verbs == CREATE_ONLY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_unique_by_group_version_plural() {
        let mut keys: Vec<String> = resources()
            .iter()
            .map(|r| format!("{}/{}/{}", r.group, r.version, r.plural))
            .collect();
        let before = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(before, keys.len());
    }

    #[test]
    fn short_names_and_kinds_resolve() {
        assert_eq!(find("", "v1", "po").unwrap().kind, "Pod");
        assert_eq!(find("", "v1", "svc").unwrap().kind, "Service");
        assert_eq!(find("apps", "v1", "deploy").unwrap().kind, "Deployment");
        assert_eq!(
            find("networking.k8s.io", "v1", "netpol").unwrap().plural,
            "networkpolicies"
        );
        assert!(!find_kind("v1", "Namespace").unwrap().namespaced);
        assert!(find_kind("storage.k8s.io/v1", "StorageClass").is_some());
        assert!(find_kind("apps/v1", "Pod").is_none());
    }

    #[test]
    fn category_all_matches_upstream() {
        let all: Vec<&str> = resources()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        assert_eq!(
            all,
            [
                "pods",
                "services",
                "daemonsets",
                "deployments",
                "replicasets",
                "statefulsets"
            ]
        );
    }

    #[test]
    fn scale_subresources_return_autoscaling_scale() {
        for plural in ["deployments", "replicasets", "statefulsets"] {
            let scale = find("apps", "v1", plural)
                .unwrap()
                .subresource("scale")
                .unwrap();
            assert_eq!(
                (scale.group, scale.version, scale.kind),
                ("autoscaling", "v1", "Scale")
            );
        }
        assert!(find("apps", "v1", "daemonsets")
            .unwrap()
            .subresource("scale")
            .is_none());
    }

    #[test]
    fn group_versions_are_in_discovery_order() {
        assert_eq!(
            group_versions(),
            [
                ("", "v1"),
                ("apps", "v1"),
                ("events.k8s.io", "v1"),
                ("networking.k8s.io", "v1"),
                ("storage.k8s.io", "v1"),
                ("coordination.k8s.io", "v1"),
                ("discovery.k8s.io", "v1"),
            ]
        );
    }
}
