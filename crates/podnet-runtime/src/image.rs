//! The image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) plus `layers/<diffid-hex>/`, each layer unpacked
//! once and shared by every container and cluster on the machine.
//!
//! Every write is crash- and race-safe: blobs and unpacked layers are
//! written under a temporary name and renamed into place, and `index.json`
//! is rewritten under an exclusive `flock` on `<root>/.lock`.

use crate::error::{io_error, Result, RuntimeError};
use crate::reference::ImageReference;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Annotation holding the image name in `index.json`, as the OCI spec defines it.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and docker use for the full image name.
const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// OCI media types used in this store.
pub mod media_type {
    /// An OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index (multi-platform).
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// An uncompressed layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// A gzip-compressed layer.
    pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker's manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
}

/// A content descriptor as OCI defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (the image name lives here in `index.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, for entries of an image index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

/// What the runtime needs from an image: its process defaults and layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// Normalised reference the image was resolved from.
    pub reference: String,
    /// Digest of the image manifest (the "repo digest").
    pub manifest_digest: String,
    /// Digest of the image config (the image id).
    pub config_digest: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, `KEY=value` entries.
    pub env: Vec<String>,
    /// `WorkingDir`, empty when unset.
    pub working_dir: String,
    /// `User` (`name`, `uid`, `name:group` or `uid:gid`), empty for root.
    pub user: String,
    /// `ExposedPorts` keys such as `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// `StopSignal`, e.g. `SIGQUIT`.
    pub stop_signal: Option<String>,
    /// Unpacked layer directories, bottom layer first.
    pub layer_dirs: Vec<PathBuf>,
}

/// One tagged image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// The normalised reference.
    pub reference: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Size of the manifest blob plus its config and layers, when known.
    pub size: u64,
}

/// A content-addressed OCI image layout on disk.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// Holds the store-wide exclusive lock until dropped.
struct StoreLock {
    _file: fs::File,
}

impl ImageStore {
    /// The machine-wide default location.
    pub const DEFAULT_ROOT: &'static str = "/var/lib/podnet/images";

    /// Opens (creating if needed) the image store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore> {
        let root = root.into();
        for dir in [
            root.join("blobs/sha256"),
            root.join("layers"),
            root.join("tmp"),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        }
        let store = ImageStore { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.root.join("index.json");
        if !index.exists() {
            let _lock = store.lock()?;
            if !index.exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the blob with `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Directory a layer with uncompressed digest `diff_id` unpacks to.
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    fn lock(&self) -> Result<StoreLock> {
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("open lock file", &path))?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is free.
        let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if status != 0 {
            return Err(io_error("lock", &path)(std::io::Error::last_os_error()));
        }
        Ok(StoreLock { _file: file })
    }

    fn temporary_path(&self, hint: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{hint}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ))
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let temporary = self.temporary_path("write");
        fs::write(&temporary, bytes).map_err(io_error("write", &temporary))?;
        fs::rename(&temporary, path).map_err(io_error("rename into place", path))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            self.write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Moves the file at `source` into the blob store, verifying its digest
    /// when `expected_digest` is given; returns the digest and size.
    pub fn adopt_blob_file(
        &self,
        source: &Path,
        expected_digest: Option<&str>,
    ) -> Result<(String, u64)> {
        let (digest, size) = hash_file(source)?;
        if let Some(expected) = expected_digest {
            if expected != digest {
                return Err(RuntimeError::ImageCorrupt {
                    what: source.display().to_string(),
                    reason: format!("its content hashes to {digest}, not {expected}"),
                });
            }
        }
        let destination = self.blob_path(&digest)?;
        if !destination.exists() {
            let temporary = self.temporary_path("blob");
            fs::copy(source, &temporary).map_err(io_error("copy blob", source))?;
            fs::rename(&temporary, &destination)
                .map_err(io_error("rename into place", &destination))?;
        }
        Ok((digest, size))
    }

    /// Reads a blob fully.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(io_error("read blob", &path))
    }

    fn read_json_blob(&self, digest: &str) -> Result<Value> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
            what: format!("blob {digest}"),
            source,
        })
    }

    fn read_index(&self) -> Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let index: Value = serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Json {
            what: path.display().to_string(),
            source,
        })?;
        serde_json::from_value(index.get("manifests").cloned().unwrap_or(json!([]))).map_err(
            |source| RuntimeError::Json {
                what: path.display().to_string(),
                source,
            },
        )
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec_pretty(&index).map_err(|source| RuntimeError::Json {
            what: "index.json".to_string(),
            source,
        })?;
        self.write_atomically(&self.root.join("index.json"), &bytes)
    }

    /// Points `reference` (normalised here) at `manifest`, replacing any
    /// previous image with that name.
    pub fn tag(&self, reference: &str, manifest: &Descriptor) -> Result<()> {
        let reference = ImageReference::parse(reference)?.to_string();
        let _lock = self.lock()?;
        let mut manifests = self.read_index()?;
        manifests.retain(|entry| entry.annotations.get(REF_NAME_ANNOTATION) != Some(&reference));
        let mut entry = manifest.clone();
        entry.annotations = BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), reference)]);
        manifests.push(entry);
        self.write_index(&manifests)
    }

    /// Removes the name `reference`; blobs and layers stay (no garbage collection yet).
    pub fn untag(&self, reference: &str) -> Result<bool> {
        let reference = ImageReference::parse(reference)?.to_string();
        let _lock = self.lock()?;
        let mut manifests = self.read_index()?;
        let before = manifests.len();
        manifests.retain(|entry| entry.annotations.get(REF_NAME_ANNOTATION) != Some(&reference));
        let removed = manifests.len() != before;
        if removed {
            self.write_index(&manifests)?;
        }
        Ok(removed)
    }

    /// Every tagged image.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let mut summaries = Vec::new();
        for entry in self.read_index()? {
            let Some(reference) = entry.annotations.get(REF_NAME_ANNOTATION) else {
                continue;
            };
            let size = self
                .platform_manifest(&entry)
                .ok()
                .map(|(_, manifest)| {
                    let config = manifest["config"]["size"].as_u64().unwrap_or(0);
                    let layers: u64 = manifest["layers"]
                        .as_array()
                        .map(|layers| layers.iter().filter_map(|l| l["size"].as_u64()).sum())
                        .unwrap_or(0);
                    entry.size + config + layers
                })
                .unwrap_or(entry.size);
            summaries.push(ImageSummary {
                reference: reference.clone(),
                manifest_digest: entry.digest.clone(),
                size,
            });
        }
        summaries.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(summaries)
    }

    /// Finds the index entry for a normalised reference. A reference with a
    /// digest matches an entry with that manifest digest.
    fn find_entry(&self, reference: &ImageReference) -> Result<Option<Descriptor>> {
        let manifests = self.read_index()?;
        let full = reference.to_string();
        if let Some(entry) = manifests
            .iter()
            .find(|entry| entry.annotations.get(REF_NAME_ANNOTATION) == Some(&full))
        {
            return Ok(Some(entry.clone()));
        }
        if let Some(digest) = &reference.digest {
            let name = reference.name();
            let found = manifests.iter().find(|entry| {
                entry.digest == *digest
                    && entry
                        .annotations
                        .get(REF_NAME_ANNOTATION)
                        .and_then(|stored| ImageReference::parse(stored).ok())
                        .is_some_and(|stored| stored.name() == name)
            });
            return Ok(found.cloned());
        }
        Ok(None)
    }

    /// Follows an index entry down to a linux/amd64 image manifest.
    fn platform_manifest(&self, entry: &Descriptor) -> Result<(String, Value)> {
        let mut digest = entry.digest.clone();
        for _ in 0..4 {
            let document = self.read_json_blob(&digest)?;
            let media = document["mediaType"].as_str().unwrap_or_default();
            let is_index = media == media_type::INDEX
                || media == media_type::DOCKER_MANIFEST_LIST
                || (media.is_empty() && document.get("manifests").is_some());
            if !is_index {
                return Ok((digest, document));
            }
            let candidates = document["manifests"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let chosen = candidates
                .iter()
                .find(|candidate| {
                    candidate["platform"]["os"] == "linux"
                        && candidate["platform"]["architecture"] == host_architecture()
                })
                .or_else(|| candidates.iter().find(|c| c.get("platform").is_none()))
                .ok_or_else(|| RuntimeError::ImageCorrupt {
                    what: digest.clone(),
                    reason: format!("the image index has no linux/{} image", host_architecture()),
                })?;
            digest = chosen["digest"]
                .as_str()
                .ok_or_else(|| RuntimeError::ImageCorrupt {
                    what: digest.clone(),
                    reason: "an index entry has no digest".to_string(),
                })?
                .to_string();
        }
        Err(RuntimeError::ImageCorrupt {
            what: entry.digest.clone(),
            reason: "image indexes nest too deeply".to_string(),
        })
    }

    /// Looks `reference` up, unpacks its layers if they are not yet, and
    /// returns its configuration; `None` when the store has no such image.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageConfig>> {
        let parsed = ImageReference::parse(reference)?;
        let Some(entry) = self.find_entry(&parsed)? else {
            return Ok(None);
        };
        let (manifest_digest, manifest) = self.platform_manifest(&entry)?;
        let corrupt = |reason: &str| RuntimeError::ImageCorrupt {
            what: manifest_digest.clone(),
            reason: reason.to_string(),
        };
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| corrupt("the manifest has no config digest"))?
            .to_string();
        let config = self.read_json_blob(&config_digest)?;
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(corrupt(
                "the manifest and config disagree on the number of layers",
            ));
        }
        let mut layer_dirs = Vec::new();
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let layer_digest = layer["digest"]
                .as_str()
                .ok_or_else(|| corrupt("a layer has no digest"))?;
            let diff_id = diff_id
                .as_str()
                .ok_or_else(|| corrupt("a diff id is not a string"))?;
            layer_dirs.push(self.unpack_layer(layer_digest, diff_id)?);
        }
        let process = &config["config"];
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let exposed_ports = process["ExposedPorts"]
            .as_object()
            .map(|ports| ports.keys().cloned().collect())
            .unwrap_or_default();
        Ok(Some(ImageConfig {
            reference: parsed.to_string(),
            manifest_digest,
            config_digest,
            entrypoint: strings(&process["Entrypoint"]),
            cmd: strings(&process["Cmd"]),
            env: strings(&process["Env"]),
            working_dir: process["WorkingDir"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            user: process["User"].as_str().unwrap_or_default().to_string(),
            exposed_ports,
            stop_signal: process["StopSignal"]
                .as_str()
                .filter(|signal| !signal.is_empty())
                .map(str::to_string),
            layer_dirs,
        }))
    }

    /// Unpacks a layer blob to `layers/<diffid-hex>/` unless already there.
    fn unpack_layer(&self, layer_digest: &str, diff_id: &str) -> Result<PathBuf> {
        let destination = self.layer_dir(diff_id)?;
        if destination.is_dir() {
            return Ok(destination);
        }
        let blob = self.blob_path(layer_digest)?;
        let temporary = self.temporary_path(&format!("layer-{}", digest_hex(diff_id)?));
        fs::create_dir_all(&temporary).map_err(io_error("create directory", &temporary))?;
        let outcome = unpack_layer_into(&blob, &temporary).and_then(|actual_diff_id| {
            if actual_diff_id != diff_id {
                return Err(RuntimeError::ImageCorrupt {
                    what: layer_digest.to_string(),
                    reason: format!(
                        "the layer's uncompressed content hashes to {actual_diff_id}, the config says {diff_id}"
                    ),
                });
            }
            Ok(())
        });
        if let Err(error) = outcome {
            let _ = fs::remove_dir_all(&temporary);
            return Err(error);
        }
        if let Err(error) = fs::rename(&temporary, &destination) {
            // Another process finished the same layer first: theirs is as good as ours.
            let _ = fs::remove_dir_all(&temporary);
            if !destination.is_dir() {
                return Err(io_error("rename layer into place", &destination)(error));
            }
        }
        Ok(destination)
    }

    /// Imports every image in an OCI layout tarball or a `docker save`
    /// archive (optionally gzip-compressed) and returns the references tagged.
    pub fn import_tar(&self, path: &Path) -> Result<Vec<String>> {
        let unpacked = self.temporary_path("import");
        fs::create_dir_all(&unpacked).map_err(io_error("create directory", &unpacked))?;
        let outcome = self.import_unpacked_archive(path, &unpacked);
        let _ = fs::remove_dir_all(&unpacked);
        outcome
    }

    fn import_unpacked_archive(&self, path: &Path, unpacked: &Path) -> Result<Vec<String>> {
        let file = fs::File::open(path).map_err(io_error("open", path))?;
        let mut archive =
            tar::Archive::new(maybe_gunzip(BufReader::new(file)).map_err(io_error("read", path))?);
        archive
            .unpack(unpacked)
            .map_err(io_error("unpack archive", path))?;
        let unsupported = |reason: &str| RuntimeError::UnsupportedArchive {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if unpacked.join("manifest.json").exists() {
            self.import_docker_archive(path, unpacked)
        } else if unpacked.join("index.json").exists() && unpacked.join("oci-layout").exists() {
            self.import_oci_layout(path, unpacked)
        } else {
            Err(unsupported(
                "it has neither manifest.json (docker save) nor oci-layout and index.json (OCI layout)",
            ))
        }
    }

    fn import_oci_layout(&self, path: &Path, unpacked: &Path) -> Result<Vec<String>> {
        let blobs = unpacked.join("blobs/sha256");
        let entries = fs::read_dir(&blobs).map_err(io_error("read directory", &blobs))?;
        for entry in entries {
            let entry = entry.map_err(io_error("read directory", &blobs))?;
            let name = entry.file_name().to_string_lossy().to_string();
            self.adopt_blob_file(&entry.path(), Some(&format!("sha256:{name}")))?;
        }
        let index_path = unpacked.join("index.json");
        let index: Value =
            serde_json::from_slice(&fs::read(&index_path).map_err(io_error("read", &index_path))?)
                .map_err(|source| RuntimeError::Json {
                    what: index_path.display().to_string(),
                    source,
                })?;
        let manifests: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
            .map_err(|source| RuntimeError::Json {
                what: index_path.display().to_string(),
                source,
            })?;
        let mut tagged = Vec::new();
        for manifest in manifests {
            let name = manifest
                .annotations
                .get(CONTAINERD_NAME_ANNOTATION)
                .or_else(|| manifest.annotations.get(REF_NAME_ANNOTATION))
                .cloned();
            let Some(name) = name else { continue };
            // A bare tag such as "latest" names nothing we can pull by.
            let Ok(reference) = ImageReference::parse(&name) else {
                continue;
            };
            if !name.contains('/')
                && !name.contains(':')
                && name == reference.tag.clone().unwrap_or_default()
            {
                continue;
            }
            self.tag(&reference.to_string(), &manifest)?;
            tagged.push(reference.to_string());
        }
        if tagged.is_empty() {
            return Err(RuntimeError::UnsupportedArchive {
                path: path.to_path_buf(),
                reason: "its index.json names no image (add an org.opencontainers.image.ref.name annotation with a full reference such as docker.io/library/app:v1)".to_string(),
            });
        }
        Ok(tagged)
    }

    fn import_docker_archive(&self, path: &Path, unpacked: &Path) -> Result<Vec<String>> {
        let manifest_path = unpacked.join("manifest.json");
        let images: Value = serde_json::from_slice(
            &fs::read(&manifest_path).map_err(io_error("read", &manifest_path))?,
        )
        .map_err(|source| RuntimeError::Json {
            what: manifest_path.display().to_string(),
            source,
        })?;
        let unsupported = |reason: String| RuntimeError::UnsupportedArchive {
            path: path.to_path_buf(),
            reason,
        };
        let inside = |relative: &str| -> Result<PathBuf> {
            let relative = Path::new(relative);
            if relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(unsupported(format!(
                    "manifest.json names a file outside the archive: {}",
                    relative.display()
                )));
            }
            Ok(unpacked.join(relative))
        };
        let mut tagged = Vec::new();
        for image in images.as_array().cloned().unwrap_or_default() {
            let config_file = image["Config"].as_str().ok_or_else(|| {
                unsupported("an image in manifest.json has no Config".to_string())
            })?;
            let (config_digest, config_size) = self.adopt_blob_file(&inside(config_file)?, None)?;
            let mut layers = Vec::new();
            for layer in image["Layers"].as_array().cloned().unwrap_or_default() {
                let layer_file = layer.as_str().ok_or_else(|| {
                    unsupported("a layer in manifest.json is not a path".to_string())
                })?;
                let layer_path = inside(layer_file)?;
                let compressed = is_gzip(&layer_path)?;
                let (digest, size) = self.adopt_blob_file(&layer_path, None)?;
                layers.push(json!({
                    "mediaType": if compressed { media_type::LAYER_TAR_GZIP } else { media_type::LAYER_TAR },
                    "digest": digest,
                    "size": size,
                }));
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": media_type::MANIFEST,
                "config": {"mediaType": media_type::CONFIG, "digest": config_digest, "size": config_size},
                "layers": layers,
            });
            let manifest_bytes =
                serde_json::to_vec(&manifest).map_err(|source| RuntimeError::Json {
                    what: "generated manifest".to_string(),
                    source,
                })?;
            let manifest_digest = self.write_blob(&manifest_bytes)?;
            let descriptor = Descriptor {
                media_type: media_type::MANIFEST.to_string(),
                digest: manifest_digest,
                size: manifest_bytes.len() as u64,
                annotations: BTreeMap::new(),
                platform: None,
            };
            for repo_tag in image["RepoTags"].as_array().cloned().unwrap_or_default() {
                let Some(repo_tag) = repo_tag.as_str() else {
                    continue;
                };
                let reference = ImageReference::parse(repo_tag)?.to_string();
                self.tag(&reference, &descriptor)?;
                tagged.push(reference);
            }
        }
        if tagged.is_empty() {
            return Err(unsupported(
                "its manifest.json has no RepoTags: save the image by name (docker save NAME:TAG)"
                    .to_string(),
            ));
        }
        Ok(tagged)
    }
}

/// The architecture name OCI uses for this machine.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The hex part of a `sha256:` digest.
pub(crate) fn digest_hex(digest: &str) -> Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| RuntimeError::ImageCorrupt {
            what: digest.to_string(),
            reason: "it is not a sha256 digest".to_string(),
        })
}

fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = fs::File::open(path).map_err(io_error("open", path))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io_error("read", path))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut file = fs::File::open(path).map_err(io_error("open", path))?;
    let read = file.read(&mut magic).map_err(io_error("read", path))?;
    Ok(read == 2 && magic == [0x1f, 0x8b])
}

/// Wraps a reader in a gzip decoder when the stream starts with the gzip magic.
fn maybe_gunzip<R: Read + 'static>(mut reader: BufReader<R>) -> std::io::Result<Box<dyn Read>> {
    use std::io::BufRead;
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "zstd-compressed layers are not supported",
        ))
    } else {
        Ok(Box::new(reader))
    }
}

/// Passes bytes through while hashing them, to compute a layer's diff id
/// in the same pass that unpacks it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        Ok(count)
    }
}

/// Unpacks one layer tarball into `destination`, turning OCI whiteouts into
/// overlayfs ones (a 0:0 character device for a deleted file, the
/// `trusted.overlay.opaque` xattr for an opaque directory). Returns the diff id.
fn unpack_layer_into(blob: &Path, destination: &Path) -> Result<String> {
    let file = fs::File::open(blob).map_err(io_error("open layer", blob))?;
    let reader = maybe_gunzip(BufReader::new(file)).map_err(io_error("read layer", blob))?;
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let entries = archive.entries().map_err(io_error("read layer", blob))?;
        for entry in entries {
            let mut entry = entry.map_err(io_error("read layer entry in", blob))?;
            let raw_path = entry
                .path()
                .map_err(io_error("read layer entry in", blob))?
                .into_owned();
            let relative =
                sanitize_entry_path(&raw_path).ok_or_else(|| RuntimeError::ImageCorrupt {
                    what: blob.display().to_string(),
                    reason: format!("entry {} escapes the layer root", raw_path.display()),
                })?;
            if relative.as_os_str().is_empty() {
                continue;
            }
            let target = destination.join(&relative);
            let file_name = relative
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            if let Some(whiteout) = file_name.strip_prefix(b".wh.") {
                let parent = target.parent().unwrap_or(destination).to_path_buf();
                fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))?;
                if whiteout == b".wh..opq" {
                    set_opaque(&parent)?;
                } else {
                    let hidden = parent.join(std::ffi::OsStr::from_bytes(whiteout));
                    make_device(&hidden, libc::S_IFCHR, 0, 0)?;
                }
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                let header = entry.header();
                let file_type = if kind.is_character_special() {
                    libc::S_IFCHR
                } else if kind.is_block_special() {
                    libc::S_IFBLK
                } else {
                    libc::S_IFIFO
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
                }
                let mode = header.mode().unwrap_or(0o644);
                make_device(&target, file_type | (mode & 0o7777), major, minor)?;
                continue;
            }
            entry
                .unpack_in(destination)
                .map_err(io_error("unpack layer entry into", &target))?;
        }
    }
    // Drain trailing padding so the hash covers the whole tar stream.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_error("read layer", blob))?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

fn sanitize_entry_path(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(clean)
}

fn make_device(path: &Path, mode: u32, major: u32, minor: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io_error("create device node", path)(std::io::Error::from(std::io::ErrorKind::InvalidInput))
    })?;
    // SAFETY: plain mknod(2) on a NUL-terminated path.
    let status = unsafe { libc::mknod(c_path.as_ptr(), mode, libc::makedev(major, minor)) };
    if status != 0 {
        return Err(io_error("create device node", path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn set_opaque(directory: &Path) -> Result<()> {
    let c_path = std::ffi::CString::new(directory.as_os_str().as_bytes()).map_err(|_| {
        io_error("mark opaque", directory)(std::io::Error::from(std::io::ErrorKind::InvalidInput))
    })?;
    // SAFETY: lsetxattr(2) with NUL-terminated name and path and a 1-byte value.
    let status = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if status != 0 {
        return Err(io_error("mark opaque", directory)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` with a trailing fsync-free atomic rename; used by
/// other modules for small state files.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&temporary).map_err(io_error("write", &temporary))?;
    file.write_all(bytes)
        .map_err(io_error("write", &temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error("rename into place", path))
}
