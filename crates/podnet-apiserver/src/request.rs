//! Pure request interpretation: which endpoint a path names, and query strings.

use podnet_model::registry::{self, ResourceInfo};

/// The endpoint a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    /// `/api`: APIVersions or the aggregated core discovery.
    LegacyApi,
    /// `/apis`: APIGroupList or aggregated discovery of the groups.
    Apis,
    /// `/apis/<group>`.
    ApiGroup(String),
    /// `/api/v1` or `/apis/<group>/<version>`: an APIResourceList.
    GroupVersion {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Index,
    /// `/openapi/v3/<path>`, the path as the index names it ("api/v1").
    OpenApiV3Document(String),
    Resource(ResourceTarget),
    NotFound,
}

/// A resource path: collection, object or subresource.
#[derive(Debug, Clone)]
pub struct ResourceTarget {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Reached through the deprecated `/watch/` path prefix.
    pub legacy_watch: bool,
}

impl PartialEq for ResourceTarget {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.info, other.info)
            && self.namespace == other.namespace
            && self.name == other.name
            && self.subresource == other.subresource
            && self.legacy_watch == other.legacy_watch
    }
}
impl Eq for ResourceTarget {}

/// Interpret a request path (without the query).
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::LegacyApi,
        ["apis"] => Route::Apis,
        ["apis", group] => Route::ApiGroup(group.to_string()),
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3Document(rest.join("/")),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if *plural != "status" && *plural != "finalize" =>
        {
            (Some(namespace.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Route::NotFound,
    };
    let Some(info) = registry::find(group, version, plural) else {
        return Route::NotFound;
    };
    // Short names are a client convenience; the server serves plurals only.
    if info.plural != plural {
        return Route::NotFound;
    }
    if namespace.is_some() && !info.namespaced {
        return Route::NotFound;
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Route::NotFound,
    };
    if let Some(sub) = &subresource {
        if !info.subresources.iter().any(|s| s.name == sub) {
            return Route::NotFound;
        }
    }
    if info.namespaced && namespace.is_none() && name.is_some() {
        return Route::NotFound;
    }
    Route::Resource(ResourceTarget {
        info,
        namespace,
        name,
        subresource,
        legacy_watch,
    })
}

/// Decoded query parameters in order.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
    raw: String,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let raw = raw.unwrap_or("");
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query {
            pairs,
            raw: raw.to_string(),
        }
    }
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// Every value of `key` (exec's repeated `command`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// A boolean parameter as upstream parses it ("true", "1").
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
    /// The query string exactly as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }
    /// Whether `dryRun=All` was asked for.
    pub fn dry_run(&self) -> bool {
        self.all("dryRun").contains(&"All")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> ResourceTarget {
        match route(path) {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn resource_paths_resolve() {
        let pods = target("/api/v1/namespaces/default/pods");
        assert_eq!(pods.info.plural, "pods");
        assert_eq!(pods.namespace.as_deref(), Some("default"));
        assert_eq!(pods.name, None);
        let log = target("/api/v1/namespaces/ns1/pods/web/log");
        assert_eq!(log.name.as_deref(), Some("web"));
        assert_eq!(log.subresource.as_deref(), Some("log"));
        let all_pods = target("/api/v1/pods");
        assert_eq!(all_pods.namespace, None);
        let ns = target("/api/v1/namespaces/kube-system");
        assert_eq!(ns.info.plural, "namespaces");
        assert_eq!(ns.name.as_deref(), Some("kube-system"));
        let finalize = target("/api/v1/namespaces/x/finalize");
        assert_eq!(finalize.subresource.as_deref(), Some("finalize"));
        let deploy = target("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(deploy.legacy_watch);
        assert_eq!(deploy.info.group, "apps");
        assert_eq!(route("/api/v1/namespaces/default/nosuch"), Route::NotFound);
        assert_eq!(route("/api/v1/pods/x"), Route::NotFound);
        assert_eq!(route("/api/v1/namespaces/a/nodes"), Route::NotFound);
        assert_eq!(route("/api/v1/namespaces/a/po"), Route::NotFound);
        assert_eq!(
            route("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3Document("apis/apps/v1".into())
        );
    }

    #[test]
    fn query_decodes() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&command=ls&command=-l&dryRun=All",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.all("command"), vec!["ls", "-l"]);
        assert!(q.dry_run());
        assert!(!q.flag("watch"));
    }
}
