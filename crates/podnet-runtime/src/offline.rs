//! The offline image builder: assembles `busybox`, `nginx` and
//! `nicolaka/netshoot` equivalents from the host's own packages and stores
//! them as ordinary OCI images, so the stock manifests run without a registry.
//!
//! Building is split in two: [`plan_offline_image`] inspects the host (which
//! binaries exist, which libraries `ldd` says they need) and returns a
//! [`RootfsPlan`], a sorted map of image paths to contents; [`write_layer`]
//! serialises a plan into a deterministic tar (fixed owners and mtimes), so
//! the same host always yields the same digests.

use crate::error::{io_error, Result, RuntimeError};
use crate::image::{host_architecture, media_type, Descriptor, ImageConfig, ImageStore};
use crate::reference::ImageReference;
use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Images the offline builder can assemble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineImage {
    /// `docker.io/library/busybox`, from busybox-static.
    Busybox,
    /// `docker.io/library/nginx`, from the host's nginx and its libraries.
    Nginx,
    /// `docker.io/nicolaka/netshoot`, network debugging tools.
    Netshoot,
    /// `docker.io/podnet/podnet`: the running podnet executable (stripped)
    /// with its shared libraries and a busybox shell; runs `podnet dns` by
    /// default. Tag it with something that identifies the binary (see
    /// [`podnet_image_reference`]) so a rebuilt binary gets a new image.
    Podnet,
}

/// The reference of the podnet image for the running executable: the tag
/// is derived from its size and modification time.
pub fn podnet_image_reference() -> String {
    let identity = std::env::current_exe()
        .and_then(fs::metadata)
        .map(|meta| {
            use std::os::unix::fs::MetadataExt;
            format!("{:x}-{:x}", meta.size(), meta.mtime())
        })
        .unwrap_or_else(|_| "latest".to_string());
    format!("docker.io/podnet/podnet:{identity}")
}

impl OfflineImage {
    /// Which offline image, if any, `reference` names (any tag; no digest).
    pub fn for_reference(reference: &ImageReference) -> Option<OfflineImage> {
        if reference.digest.is_some() || reference.domain != "docker.io" {
            return None;
        }
        match reference.repository.as_str() {
            "library/busybox" => Some(OfflineImage::Busybox),
            "library/nginx" => Some(OfflineImage::Nginx),
            "nicolaka/netshoot" => Some(OfflineImage::Netshoot),
            "podnet/podnet" => Some(OfflineImage::Podnet),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            OfflineImage::Busybox => "busybox",
            OfflineImage::Nginx => "nginx",
            OfflineImage::Netshoot => "nicolaka/netshoot",
            OfflineImage::Podnet => "podnet/podnet",
        }
    }
}

/// Returns the image for `reference` from the store, building it from host
/// packages first when it is one of the offline images.
pub fn ensure_offline_image(store: &ImageStore, reference: &str) -> Result<ImageConfig> {
    let parsed = ImageReference::parse(reference)?;
    if let Some(image) = store.resolve(reference)? {
        return Ok(image);
    }
    let Some(kind) = OfflineImage::for_reference(&parsed) else {
        return Err(RuntimeError::ImageNotPresent {
            reference: parsed.to_string(),
        });
    };
    let manifest = build_offline_image(store, kind)?;
    store.tag(&parsed.to_string(), &manifest)?;
    if parsed.tag.as_deref() != Some("latest") {
        store.tag(&parsed.with_tag("latest").to_string(), &manifest)?;
    }
    store
        .resolve(reference)?
        .ok_or_else(|| RuntimeError::ImageNotPresent {
            reference: parsed.to_string(),
        })
}

/// Builds the image and stores its blobs; returns the manifest descriptor (untagged).
pub fn build_offline_image(store: &ImageStore, kind: OfflineImage) -> Result<Descriptor> {
    let plan = plan_offline_image(kind)?;
    let layer = write_layer(&plan).map_err(|error| RuntimeError::OfflineBuild {
        image: kind.name().to_string(),
        reason: error.to_string(),
    })?;
    let layer_digest = store.write_blob(&layer)?;
    let config = image_config_json(kind, &layer_digest);
    let config_bytes = serde_json::to_vec(&config).map_err(|source| RuntimeError::Json {
        what: "offline image config".to_string(),
        source,
    })?;
    let config_digest = store.write_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::MANIFEST,
        "config": {"mediaType": media_type::CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": media_type::LAYER_TAR, "digest": layer_digest, "size": layer.len()}],
        "annotations": {"org.opencontainers.image.description": format!("{} assembled by podnet from host packages", kind.name())},
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| RuntimeError::Json {
        what: "offline image manifest".to_string(),
        source,
    })?;
    let manifest_digest = store.write_blob(&manifest_bytes)?;
    Ok(Descriptor {
        media_type: media_type::MANIFEST.to_string(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI image config for an offline image whose single layer has `diff_id`.
pub fn image_config_json(kind: OfflineImage, diff_id: &str) -> serde_json::Value {
    let process = match kind {
        OfflineImage::Busybox | OfflineImage::Netshoot => json!({
            "Env": [DEFAULT_PATH],
            "Cmd": ["sh"],
            "WorkingDir": "/",
        }),
        OfflineImage::Nginx => json!({
            "Env": [DEFAULT_PATH],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/",
            "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT",
        }),
        OfflineImage::Podnet => json!({
            "Env": [DEFAULT_PATH],
            "Entrypoint": ["/usr/local/bin/podnet"],
            "Cmd": ["dns"],
            "WorkingDir": "/",
            "ExposedPorts": {"53/udp": {}, "53/tcp": {}},
        }),
    };
    json!({
        "architecture": host_architecture(),
        "os": "linux",
        "config": process,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": format!("podnet offline builder: {}", kind.name())}],
    })
}

/// What one path in a planned root filesystem holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanEntry {
    /// A directory with this mode.
    Directory {
        /// Permission bits.
        mode: u32,
    },
    /// A copy of a host file.
    HostFile {
        /// Where to read it on the host.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// A file with literal content.
    Content {
        /// The bytes.
        bytes: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, verbatim.
        target: PathBuf,
    },
}

/// A root filesystem to be written as one layer: image-relative paths
/// (no leading `/`) to their contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootfsPlan {
    /// The entries; sorted, so parents come before children.
    pub entries: BTreeMap<PathBuf, PlanEntry>,
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect()
}

impl RootfsPlan {
    /// Adds `path` and its missing ancestors as directories.
    pub fn add_directory(&mut self, path: impl AsRef<Path>, mode: u32) {
        let path = relative(path.as_ref());
        self.add_ancestors(&path);
        self.entries
            .entry(path)
            .or_insert(PlanEntry::Directory { mode });
    }

    fn add_ancestors(&mut self, path: &Path) {
        let mut ancestor = PathBuf::new();
        let components: Vec<_> = path.components().collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            ancestor.push(component);
            self.entries
                .entry(ancestor.clone())
                .or_insert(PlanEntry::Directory { mode: 0o755 });
        }
    }

    /// Adds a file with literal content.
    pub fn add_content(&mut self, path: impl AsRef<Path>, bytes: impl Into<Vec<u8>>, mode: u32) {
        let path = relative(path.as_ref());
        self.add_ancestors(&path);
        self.entries.insert(
            path,
            PlanEntry::Content {
                bytes: bytes.into(),
                mode,
            },
        );
    }

    /// Adds a symbolic link unless something already occupies `path`.
    pub fn add_symlink(&mut self, path: impl AsRef<Path>, target: impl Into<PathBuf>) {
        let path = relative(path.as_ref());
        self.add_ancestors(&path);
        self.entries.entry(path).or_insert(PlanEntry::Symlink {
            target: target.into(),
        });
    }

    /// Whether something already occupies `path`.
    pub fn contains(&self, path: impl AsRef<Path>) -> bool {
        self.entries.contains_key(&relative(path.as_ref()))
    }

    /// Copies the host path `host_path` into the image at the same place,
    /// reproducing every symlink met on the way (`/lib -> usr/lib`,
    /// `/etc/alternatives/...`) so the image's layout matches the host's.
    /// Directories are copied recursively. Returns the resolved host path.
    pub fn add_host_path(&mut self, host_path: &Path) -> Result<PathBuf> {
        let mut pending: Vec<PathBuf> = relative(host_path)
            .components()
            .rev()
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        let mut resolved = PathBuf::from("/");
        let mut hops = 0;
        while let Some(component) = pending.pop() {
            if component.as_os_str() == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&component);
            let metadata = fs::symlink_metadata(&candidate)
                .map_err(io_error("inspect host path", &candidate))?;
            if metadata.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(io_error("resolve host path", host_path)(
                        std::io::Error::from_raw_os_error(libc::ELOOP),
                    ));
                }
                let target =
                    fs::read_link(&candidate).map_err(io_error("read link", &candidate))?;
                self.add_symlink(&candidate, target.clone());
                let absolute_target = if target.is_absolute() {
                    resolved = PathBuf::from("/");
                    target
                } else {
                    target
                };
                for part in absolute_target
                    .components()
                    .rev()
                    .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
                {
                    pending.push(PathBuf::from(part.as_os_str()));
                }
                continue;
            }
            resolved = candidate;
        }
        let metadata = fs::metadata(&resolved).map_err(io_error("inspect host path", &resolved))?;
        let mode = metadata.permissions().mode() & 0o7777;
        if metadata.is_dir() {
            self.add_directory(&resolved, mode);
            let children =
                fs::read_dir(&resolved).map_err(io_error("read directory", &resolved))?;
            let mut names: Vec<PathBuf> = children
                .filter_map(|child| child.ok().map(|child| child.path()))
                .collect();
            names.sort();
            for child in names {
                self.add_host_path(&child)?;
            }
        } else {
            let path = relative(&resolved);
            self.add_ancestors(&path);
            self.entries.insert(
                path,
                PlanEntry::HostFile {
                    source: resolved.clone(),
                    mode,
                },
            );
        }
        Ok(resolved)
    }

    /// Adds a host executable and every shared library `ldd` lists for it.
    pub fn add_host_binary(&mut self, host_path: &Path) -> Result<()> {
        self.add_host_path(host_path)?;
        for library in shared_libraries(host_path)? {
            self.add_host_path(&library)?;
        }
        Ok(())
    }
}

/// Parses `ldd` output into the library paths it resolved; fails on
/// libraries `ldd` could not find.
pub fn parse_ldd_output(binary: &Path, output: &str) -> Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            continue;
        }
        if line.contains("=> not found") {
            return Err(RuntimeError::OfflineBuild {
                image: binary.display().to_string(),
                reason: format!("ldd cannot find a library it needs: {line}"),
            });
        }
        let path_part = match line.split_once("=>") {
            Some((_, resolved)) => resolved.trim(),
            None => line,
        };
        let path = path_part.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output =
        Command::new("ldd")
            .arg(binary)
            .output()
            .map_err(|error| RuntimeError::Command {
                command: format!("ldd {}", binary.display()),
                reason: format!("{error} (install libc-bin)"),
            })?;
    // ldd exits 1 for static binaries; its stdout is still meaningful.
    parse_ldd_output(binary, &String::from_utf8_lossy(&output.stdout))
}

/// Finds `tool` in the host's standard binary directories.
fn find_host_tool(image: OfflineImage, tool: &str, package: &str) -> Result<PathBuf> {
    for directory in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let candidate = Path::new(directory).join(tool);
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(RuntimeError::OfflineBuild {
        image: image.name().to_string(),
        reason: format!("{tool} is not installed on this host (install the {package} package)"),
    })
}

fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|error| RuntimeError::Command {
            command: format!("{} --list", busybox.display()),
            reason: error.to_string(),
        })?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|applet| !applet.is_empty() && *applet != "busybox" && !applet.contains('/'))
        .map(str::to_string)
        .collect())
}

/// The account files every image gets; `extra_users` are `(name, uid)` pairs
/// with a same-named group.
fn add_accounts(plan: &mut RootfsPlan, extra_users: &[(&str, u32)]) {
    let mut passwd =
        String::from("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n");
    let mut group = String::from("root:x:0:\ndaemon:x:1:\ntty:x:5:\n");
    for (name, uid) in extra_users {
        passwd.push_str(&format!(
            "{name}:x:{uid}:{uid}:{name}:/nonexistent:/bin/false\n"
        ));
        group.push_str(&format!("{name}:x:{uid}:\n"));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    group.push_str("nogroup:x:65534:\n");
    plan.add_content("etc/passwd", passwd, 0o644);
    plan.add_content("etc/group", group, 0o644);
    plan.add_content("etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n", 0o644);
}

/// Skeleton directories every image has (mount points runc fills and the
/// usual writable places).
fn add_skeleton(plan: &mut RootfsPlan) {
    for directory in [
        "dev",
        "proc",
        "sys",
        "etc",
        "root",
        "home",
        "var",
        "run",
        "usr/local/bin",
    ] {
        plan.add_directory(directory, 0o755);
    }
    plan.add_directory("root", 0o700);
    plan.add_directory("tmp", 0o1777);
    plan.add_directory("var/tmp", 0o1777);
    // The agent bind-mounts these; empty files keep the targets regular files.
    for file in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        plan.add_content(file, Vec::new(), 0o644);
    }
}

/// Puts busybox at `busybox_path` (already in the plan) and an applet
/// symlink in `applet_dir` for every applet no real tool provides.
fn add_busybox_applets(
    plan: &mut RootfsPlan,
    busybox_host: &Path,
    applet_dir: &str,
    link_target: &str,
) -> Result<()> {
    for applet in busybox_applets(busybox_host)? {
        let taken = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .any(|directory| plan.contains(Path::new(directory).join(&applet)));
        if !taken {
            plan.add_symlink(Path::new(applet_dir).join(&applet), link_target);
        }
    }
    Ok(())
}

fn host_busybox(image: OfflineImage) -> Result<PathBuf> {
    let busybox = find_host_tool(image, "busybox", "busybox-static")?;
    let libraries = shared_libraries(&busybox)?;
    if !libraries.is_empty() {
        return Err(RuntimeError::OfflineBuild {
            image: image.name().to_string(),
            reason: format!(
                "{} is dynamically linked (install the busybox-static package)",
                busybox.display()
            ),
        });
    }
    Ok(busybox)
}

const NGINX_CONF: &str = r#"user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
"#;

const NGINX_DEFAULT_SERVER: &str = r#"server {
    listen       80;
    listen  [::]:80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"#;

const NGINX_INDEX: &str = r#"<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"#;

/// Inspects the host and plans the root filesystem of `kind`.
pub fn plan_offline_image(kind: OfflineImage) -> Result<RootfsPlan> {
    let mut plan = RootfsPlan::default();
    add_skeleton(&mut plan);
    match kind {
        OfflineImage::Busybox => {
            // The classic busybox image layout: real /bin with applet links.
            let busybox = host_busybox(kind)?;
            plan.entries.insert(
                PathBuf::from("bin/busybox"),
                PlanEntry::HostFile {
                    source: busybox.clone(),
                    mode: 0o755,
                },
            );
            plan.add_directory("bin", 0o755);
            add_busybox_applets(&mut plan, &busybox, "bin", "busybox")?;
            add_accounts(&mut plan, &[]);
        }
        OfflineImage::Nginx => {
            let nginx = find_host_tool(kind, "nginx", "nginx-light")?;
            plan.add_host_binary(&nginx)?;
            add_host_shell(&mut plan, kind)?;
            add_accounts(&mut plan, &[("nginx", 101)]);
            plan.add_content("etc/nginx/nginx.conf", NGINX_CONF, 0o644);
            plan.add_content("etc/nginx/conf.d/default.conf", NGINX_DEFAULT_SERVER, 0o644);
            let mime_types = Path::new("/etc/nginx/mime.types");
            if mime_types.exists() {
                plan.entries.insert(
                    PathBuf::from("etc/nginx/mime.types"),
                    PlanEntry::HostFile {
                        source: mime_types.to_path_buf(),
                        mode: 0o644,
                    },
                );
            } else {
                plan.add_content("etc/nginx/mime.types", "types {\n    text/html html htm;\n    text/css css;\n    application/javascript js;\n    application/json json;\n    image/png png;\n}\n", 0o644);
            }
            plan.add_content("usr/share/nginx/html/index.html", NGINX_INDEX, 0o644);
            plan.add_content(
                "usr/share/nginx/html/50x.html",
                "<html><body><h1>An error occurred.</h1></body></html>\n",
                0o644,
            );
            plan.add_directory("var/log/nginx", 0o755);
            // As in the official image, logs go to the container's stdout/stderr.
            plan.add_symlink("var/log/nginx/access.log", "/dev/stdout");
            plan.add_symlink("var/log/nginx/error.log", "/dev/stderr");
            plan.add_directory("var/cache/nginx", 0o755);
            plan.add_directory("var/lib/nginx", 0o755);
            plan.add_directory("var/lock", 0o755);
        }
        OfflineImage::Netshoot => {
            let tools = [
                ("curl", "curl"),
                ("dig", "bind9-dnsutils"),
                ("nslookup", "bind9-dnsutils"),
                ("host", "bind9-host"),
                ("ip", "iproute2"),
                ("ss", "iproute2"),
                ("ping", "iputils-ping"),
                ("traceroute", "traceroute"),
                ("tcpdump", "tcpdump"),
                ("iperf3", "iperf3"),
                ("nc", "netcat-openbsd"),
            ];
            for (tool, package) in tools {
                let path = find_host_tool(kind, tool, package)?;
                plan.add_host_binary(&path)?;
            }
            for data in [
                "/etc/services",
                "/etc/protocols",
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/iproute2",
            ] {
                if Path::new(data).exists() {
                    plan.add_host_path(Path::new(data))?;
                }
            }
            add_host_shell(&mut plan, kind)?;
            add_accounts(&mut plan, &[("tcpdump", 102)]);
        }
        OfflineImage::Podnet => {
            let exe = std::env::current_exe().map_err(|error| RuntimeError::OfflineBuild {
                image: kind.name().to_string(),
                reason: format!("locating the running podnet executable: {error}"),
            })?;
            plan.add_directory("usr/local/bin", 0o755);
            plan.entries.insert(
                PathBuf::from("usr/local/bin/podnet"),
                stripped_executable(&exe),
            );
            for library in shared_libraries(&exe)? {
                plan.add_host_path(&library)?;
            }
            add_host_shell(&mut plan, kind)?;
            add_accounts(&mut plan, &[]);
        }
    }
    Ok(plan)
}

/// The executable without debug information (`strip`), or as it is when
/// strip is not available.
fn stripped_executable(exe: &Path) -> PlanEntry {
    let scratch = std::env::temp_dir().join(format!("podnet-image-{}.bin", std::process::id()));
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&scratch)
        .arg(exe)
        .status()
        .ok()
        .filter(|status| status.success())
        .and_then(|_| fs::read(&scratch).ok());
    let _ = fs::remove_file(&scratch);
    match stripped {
        Some(bytes) => PlanEntry::Content { bytes, mode: 0o755 },
        None => PlanEntry::HostFile {
            source: exe.to_path_buf(),
            mode: 0o755,
        },
    }
}

/// Adds busybox as the shell and basic tools of a host-layout image.
fn add_host_shell(plan: &mut RootfsPlan, kind: OfflineImage) -> Result<()> {
    let busybox = host_busybox(kind)?;
    let resolved = plan.add_host_path(&busybox)?;
    let usr_bin_is_real_dir = !matches!(
        plan.entries.get(Path::new("usr/bin")),
        Some(PlanEntry::Symlink { .. })
    );
    let applet_dir = if usr_bin_is_real_dir {
        "usr/bin"
    } else {
        "bin"
    };
    add_busybox_applets(plan, &busybox, applet_dir, &resolved.display().to_string())?;
    Ok(())
}

/// Serialises a plan into a tar layer: owner root, mtime 0, entries in
/// path order, so identical plans give identical bytes.
pub fn write_layer(plan: &RootfsPlan) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in &plan.entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let failed = |error: std::io::Error| io_error("write layer entry", path)(error);
        match entry {
            PlanEntry::Directory { mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .map_err(failed)?;
            }
            PlanEntry::HostFile { source, mode } => {
                let bytes = fs::read(source).map_err(io_error("read host file", source))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, path, bytes.as_slice())
                    .map_err(failed)?;
            }
            PlanEntry::Content { bytes, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, path, bytes.as_slice())
                    .map_err(failed)?;
            }
            PlanEntry::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(failed)?;
            }
        }
    }
    builder
        .into_inner()
        .map_err(io_error("finish layer", "tar"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn parses_ldd_output() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f9e)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f9e72c90000)\n";
        let libraries = parse_ldd_output(Path::new("/usr/sbin/nginx"), output).unwrap();
        expect![[r#"
            [
                "/lib/x86_64-linux-gnu/libcrypt.so.1",
                "/lib64/ld-linux-x86-64.so.2",
            ]"#]]
        .assert_eq(&format!("{libraries:#?}"));
        let missing =
            parse_ldd_output(Path::new("/x"), "\tlibfoo.so.1 => not found\n").unwrap_err();
        expect!["cannot build image /x offline: ldd cannot find a library it needs: libfoo.so.1 => not found"]
            .assert_eq(&missing.to_string());
    }

    #[test]
    fn recognises_offline_references() {
        let kinds: Vec<String> = [
            "busybox",
            "busybox:1.36",
            "nginx:1.25",
            "nicolaka/netshoot",
            "alpine",
            "quay.io/library/busybox",
        ]
        .iter()
        .map(|r| {
            format!(
                "{r} => {:?}",
                OfflineImage::for_reference(&ImageReference::parse(r).unwrap())
            )
        })
        .collect();
        expect![[r#"
            busybox => Some(Busybox)
            busybox:1.36 => Some(Busybox)
            nginx:1.25 => Some(Nginx)
            nicolaka/netshoot => Some(Netshoot)
            alpine => None
            quay.io/library/busybox => None"#]]
        .assert_eq(&kinds.join("\n"));
    }

    #[test]
    fn layers_are_deterministic_and_parents_first() {
        let mut plan = RootfsPlan::default();
        plan.add_content("etc/nginx/nginx.conf", "x", 0o644);
        plan.add_symlink("bin", "usr/bin");
        plan.add_directory("tmp", 0o1777);
        let first = write_layer(&plan).unwrap();
        assert_eq!(first, write_layer(&plan).unwrap());
        let mut archive = tar::Archive::new(first.as_slice());
        let listing: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                format!(
                    "{} {:o} {:?}",
                    entry.path().unwrap().display(),
                    entry.header().mode().unwrap(),
                    entry.header().entry_type()
                )
            })
            .collect();
        expect![[r#"
            bin 777 Symlink
            etc 755 Directory
            etc/nginx 755 Directory
            etc/nginx/nginx.conf 644 Regular
            tmp 1777 Directory"#]]
        .assert_eq(&listing.join("\n"));
    }
}
