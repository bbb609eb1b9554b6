//! Image reference normalisation, following docker's rules: the default
//! registry is `docker.io`, single-component repositories live under
//! `library/`, and a reference without tag or digest means `:latest`.

use crate::error::{Result, RuntimeError};
use std::fmt;

/// A fully qualified image reference such as `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host, e.g. `docker.io` or `registry.example:5000`.
    pub domain: String,
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Content digest (`sha256:<hex>`) when the reference pins one.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalises `reference` as docker does.
    pub fn parse(reference: &str) -> Result<ImageReference> {
        let invalid = |reason: &str| RuntimeError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.is_empty() {
            return Err(invalid("it is empty"));
        }
        if reference.chars().any(|c| c.is_whitespace()) {
            return Err(invalid("it contains whitespace"));
        }
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| invalid("only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid(
                        "the digest must be sha256 followed by 64 hex digits",
                    ));
                }
                (name, Some(digest.to_ascii_lowercase()))
            }
            None => (reference, None),
        };
        // A tag is the part after the last ':' only if that ':' comes after the
        // last '/', otherwise it is a registry port.
        let last_slash = name_and_tag.rfind('/');
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => (
                &name_and_tag[..colon],
                Some(name_and_tag[colon + 1..].to_string()),
            ),
            _ => (name_and_tag, None),
        };
        if let Some(tag) = &tag {
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(invalid(
                    "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (domain, remainder) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            "docker.io".to_string()
        } else {
            domain
        };
        let repository = if domain == "docker.io" && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder
        };
        if repository.is_empty()
            || repository.split('/').any(|component| {
                component.is_empty()
                    || !component
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            })
        {
            return Err(invalid(
                "repository names are lowercase letters, digits and . _ - separated by /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(ImageReference {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// `domain/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// The same image name with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageReference {
        ImageReference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.domain, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(formatter, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises a reference to its fully qualified string form.
pub fn normalize_reference(reference: &str) -> Result<String> {
    Ok(ImageReference::parse(reference)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn normalises_like_docker() {
        let inputs = [
            "busybox",
            "busybox:1.36",
            "nicolaka/netshoot",
            "nginx:1.27-alpine",
            "docker.io/library/nginx",
            "index.docker.io/library/nginx:latest",
            "localhost:5000/app",
            "registry.example.com/team/app:v1",
            "localhost/app",
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "busybox:1.36@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "Busybox",
            "busybox:",
            "busybox@md5:00",
            "",
        ];
        let rendered: Vec<String> = inputs
            .iter()
            .map(|input| match normalize_reference(input) {
                Ok(normalised) => format!("{input} => {normalised}"),
                Err(error) => format!("{input} => error: {error}"),
            })
            .collect();
        expect![[r#"
            busybox => docker.io/library/busybox:latest
            busybox:1.36 => docker.io/library/busybox:1.36
            nicolaka/netshoot => docker.io/nicolaka/netshoot:latest
            nginx:1.27-alpine => docker.io/library/nginx:1.27-alpine
            docker.io/library/nginx => docker.io/library/nginx:latest
            index.docker.io/library/nginx:latest => docker.io/library/nginx:latest
            localhost:5000/app => localhost:5000/app:latest
            registry.example.com/team/app:v1 => registry.example.com/team/app:v1
            localhost/app => localhost/app:latest
            busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000 => docker.io/library/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000
            busybox:1.36@sha256:0000000000000000000000000000000000000000000000000000000000000000 => docker.io/library/busybox:1.36@sha256:0000000000000000000000000000000000000000000000000000000000000000
            Busybox => error: invalid image reference "Busybox": repository names are lowercase letters, digits and . _ - separated by /
            busybox: => error: invalid image reference "busybox:": the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -
            busybox@md5:00 => error: invalid image reference "busybox@md5:00": only sha256 digests are supported
             => error: invalid image reference "": it is empty"#]]
        .assert_eq(&rendered.join("\n"));
    }
}
