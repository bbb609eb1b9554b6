//! The registry of served resources.

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

/// Every served resource, in discovery order.
pub fn resources() -> &'static [ResourceInfo] {
    unimplemented!("owned by the registry work")
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

impl ResourceInfo {
    /// "v1" for core, "group/version" otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}
