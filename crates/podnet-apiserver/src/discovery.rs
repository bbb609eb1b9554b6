//! Discovery documents built from the registry: the legacy ones (APIVersions,
//! APIGroupList, APIGroup, APIResourceList) and aggregated discovery
//! (apidiscovery.k8s.io v2 and v2beta1 APIGroupDiscoveryList).

use podnet_model::registry::{self, ResourceInfo};
use serde_json::{json, Value};

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// The groups other than core, each with its versions in registry order
/// (the first is the preferred one).
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for info in registry::resources().iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == info.group) {
            Some((_, versions)) => {
                if !versions.contains(&info.version) {
                    versions.push(info.version)
                }
            }
            None => groups.push((info.group, vec![info.version])),
        }
    }
    groups
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions.clone(),
        "preferredVersion": versions[0].clone(),
    })
}

/// `/apis`.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().iter().map(|(g, v)| api_group(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, None for an unknown group.
pub fn api_group_document(group: &str) -> Option<Value> {
    groups().iter().find(|(g, _)| *g == group).map(|(g, v)| {
        let mut doc = api_group(g, v);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

fn resources_of(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// `/api/v1` or `/apis/<group>/<version>`, None when nothing is served there.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let infos = resources_of(group, version);
    if infos.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for info in infos {
        let mut entry = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs,
        });
        if !info.short_names.is_empty() {
            entry["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            entry["categories"] = json!(info.categories);
        }
        resources.push(entry);
        for sub in info.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", info.plural, sub.name),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != info.group || sub.version != info.version {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// Which aggregated discovery version an Accept header asks for, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let mut best = None;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if !params.contains(&"as=APIGroupDiscoveryList")
            || !params.contains(&"g=apidiscovery.k8s.io")
        {
            continue;
        }
        if params.contains(&"v=v2") {
            return Some("v2");
        }
        if params.contains(&"v=v2beta1") {
            best = Some("v2beta1");
        }
    }
    best
}

/// The Content-Type that marks a reply as aggregated discovery.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn aggregated_version_entry(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_of(group, version)
        .into_iter()
        .map(|info| {
            let mut entry = json!({
                "resource": info.plural,
                "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": info.singular,
                "verbs": info.verbs,
            });
            if !info.short_names.is_empty() {
                entry["shortNames"] = json!(info.short_names);
            }
            if !info.categories.is_empty() {
                entry["categories"] = json!(info.categories);
            }
            if !info.subresources.is_empty() {
                entry["subresources"] = info
                    .subresources
                    .iter()
                    .map(|sub| {
                        json!({
                            "subresource": sub.name,
                            "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                            "verbs": sub.verbs,
                        })
                    })
                    .collect();
            }
            entry
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// Aggregated discovery for `/api` (core) or `/apis` (every group).
pub fn aggregated(core: bool, discovery_version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({
            "metadata": {"name": "", "creationTimestamp": null},
            "versions": [aggregated_version_entry("", "v1")],
        })]
    } else {
        groups()
            .iter()
            .map(|(group, versions)| {
                json!({
                    "metadata": {"name": group, "creationTimestamp": null},
                    "versions": versions.iter().map(|v| aggregated_version_entry(group, v)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_prefers_v2() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        assert_eq!(
            aggregated_version(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            ),
            Some("v2beta1")
        );
        assert_eq!(aggregated_version("application/json, */*"), None);
    }

    #[test]
    fn core_resources_carry_short_names_and_subresources() {
        let list = api_resource_list("", "v1").expect("core is served");
        let resources = list["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(resources.iter().any(|r| r["name"] == "pods/log"));
        let aggregated = aggregated(true, "v2");
        let core_pods = aggregated["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap()
            .clone();
        assert_eq!(core_pods["scope"], "Namespaced");
        assert!(core_pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "exec"));
        assert!(api_group_list()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps"));
    }
}
