//! Container specs and the OCI bundle `config.json` generated from them.
//!
//! [`bundle_config`] is a pure function of the spec, the image and the
//! resolved user, so the exact document runc receives is snapshot-tested.
//! Defaults follow containerd's CRI plugin: the same capability set, masked
//! and read-only paths and default mounts.

use crate::error::{Result, RuntimeError};
use crate::image::ImageConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The pod a container belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodRef {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name (also the hostname inside the pod).
    pub name: String,
    /// Pod UID.
    pub uid: String,
}

/// Namespaces the container joins by path; `None` means "the host's" for
/// network (hostNetwork pods) and "a new one" for ipc and uts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodNamespaces {
    /// The pod's network namespace file (e.g. `<node>/run/netns/cni-<id>`).
    pub network: Option<PathBuf>,
    /// The pod's pinned IPC namespace (see [`crate::create_pod_ipc_uts`]).
    pub ipc: Option<PathBuf>,
    /// The pod's pinned UTS namespace.
    pub uts: Option<PathBuf>,
}

/// A bind mount into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Absolute path inside the container.
    pub container_path: String,
    /// Host file or directory (subPath already applied by the agent).
    pub host_path: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

/// Resource limits, already converted from Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    /// cgroup v1 `cpu.shares` (from the CPU request; kubelet: millicores * 1024 / 1000, min 2).
    pub cpu_shares: Option<u64>,
    /// `cpu.cfs_quota_us` (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// `cpu.cfs_period_us`, 100000 when a quota is set and this is not.
    pub cpu_period: Option<u64>,
    /// `memory.limit_in_bytes`.
    pub memory_limit_bytes: Option<i64>,
    /// `/proc/<pid>/oom_score_adj` for the container process.
    pub oom_score_adj: Option<i32>,
}

/// The parts of a securityContext the runtime applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Security {
    /// All capabilities, no masked paths, writable /sys.
    pub privileged: bool,
    /// `runAsUser`, overriding the image's user.
    pub run_as_user: Option<u32>,
    /// `runAsGroup`.
    pub run_as_group: Option<u32>,
    /// Capabilities to add, with or without the `CAP_` prefix.
    pub add_capabilities: Vec<String>,
    /// Capabilities to drop (`ALL` drops every default one).
    pub drop_capabilities: Vec<String>,
    /// Mount the root filesystem read-only.
    pub read_only_root_filesystem: bool,
}

/// Everything the runtime needs to create one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ContainerSpec {
    /// The owning pod.
    pub pod: PodRef,
    /// Container name in the pod spec.
    pub container_name: String,
    /// Restart count of this container (0 for the first run).
    pub attempt: u32,
    /// The resolved image.
    pub image: ImageConfig,
    /// `command` (overrides the image entrypoint).
    pub command: Vec<String>,
    /// `args` (override the image cmd).
    pub args: Vec<String>,
    /// Environment, applied over the image's.
    pub env: Vec<(String, String)>,
    /// `workingDir`, overriding the image's.
    pub working_dir: Option<String>,
    /// The hostname set in the pod's UTS namespace (the pod name); exported as `HOSTNAME`.
    pub hostname: String,
    /// Namespaces shared with the pod.
    pub namespaces: PodNamespaces,
    /// Volume, `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` bind mounts.
    pub mounts: Vec<BindMount>,
    /// cgroup limits.
    pub resources: Resources,
    /// Security settings.
    pub security: Security,
    /// Allocate a TTY (`tty: true`).
    pub tty: bool,
    /// Keep stdin open for attach (`stdin: true`).
    pub stdin: bool,
    /// Close stdin after the first attach session ends (`stdinOnce`).
    pub stdin_once: bool,
    /// CRI log file, usually from [`crate::container_log_path`].
    pub log_path: PathBuf,
}

impl ContainerSpec {
    /// `namespace/pod/container`, for messages.
    pub fn display_name(&self) -> String {
        format!(
            "{}/{}/{}",
            self.pod.namespace, self.pod.name, self.container_name
        )
    }
}

/// uid, gid and supplementary groups the container process runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Resolves the user a container runs as from the spec, the image's `User`
/// and the contents of the image's `/etc/passwd` and `/etc/group`.
pub fn resolve_user(spec: &ContainerSpec, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let invalid = |reason: String| RuntimeError::InvalidSpec {
        container: spec.display_name(),
        reason,
    };
    let (user_part, group_part) = match spec.image.user.split_once(':') {
        Some((user, group)) => (user.to_string(), Some(group.to_string())),
        None => (spec.image.user.clone(), None),
    };
    let passwd_entry = |predicate: &dyn Fn(&[&str]) -> bool| -> Option<(String, u32, u32)> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && predicate(&fields) {
                Some((
                    fields[0].to_string(),
                    fields[2].parse().ok()?,
                    fields[3].parse().ok()?,
                ))
            } else {
                None
            }
        })
    };
    let (user_name, uid, mut gid) = if let Some(uid) = spec.security.run_as_user {
        match passwd_entry(&|fields| fields[2] == uid.to_string()) {
            Some((name, _, gid)) => (Some(name), uid, gid),
            None => (None, uid, 0),
        }
    } else if user_part.is_empty() {
        (Some("root".to_string()), 0, 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entry(&|fields| fields[2] == user_part) {
            Some((name, _, gid)) => (Some(name), uid, gid),
            None => (None, uid, 0),
        }
    } else {
        let (name, uid, gid) = passwd_entry(&|fields| fields[0] == user_part)
            .ok_or_else(|| invalid(format!("the image user {user_part:?} is not in the image's /etc/passwd: set securityContext.runAsUser")))?;
        (Some(name), uid, gid)
    };
    if let Some(group_part) = group_part.filter(|_| spec.security.run_as_user.is_none()) {
        gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    (fields.len() >= 3 && fields[0] == group_part)
                        .then(|| fields[2].parse().ok())?
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "the image group {group_part:?} is not in the image's /etc/group"
                    ))
                })?,
        };
    }
    if let Some(run_as_group) = spec.security.run_as_group {
        gid = run_as_group;
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = &user_name {
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() >= 4 && fields[3].split(',').any(|member| member == name) {
                if let Ok(member_gid) = fields[2].parse::<u32>() {
                    if member_gid != gid && !additional_gids.contains(&member_gid) {
                        additional_gids.push(member_gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// The process arguments with Kubernetes semantics: `command` replaces the
/// entrypoint (and drops the image cmd), `args` replace the cmd.
pub fn process_args(spec: &ContainerSpec) -> Result<Vec<String>> {
    let arguments: Vec<String> = if !spec.command.is_empty() {
        spec.command.iter().chain(&spec.args).cloned().collect()
    } else {
        let tail = if spec.args.is_empty() {
            &spec.image.cmd
        } else {
            &spec.args
        };
        spec.image.entrypoint.iter().chain(tail).cloned().collect()
    };
    if arguments.is_empty() {
        return Err(RuntimeError::InvalidSpec {
            container: spec.display_name(),
            reason: "neither the image nor the pod spec gives a command: set command or args"
                .to_string(),
        });
    }
    Ok(arguments)
}

/// The environment: the image's, then the spec's overriding by name, with
/// `PATH` defaulted and `HOSTNAME` set as containerd does.
pub fn process_env(spec: &ContainerSpec) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(existing) => existing.1 = value.to_string(),
        None => env.push((key.to_string(), value.to_string())),
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOSTNAME", &spec.hostname);
    for entry in &spec.image.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        set(key, value);
    }
    for (key, value) in &spec.env {
        set(key, value);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn capability_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The effective capability list after privileged/add/drop.
pub fn capabilities(security: &Security) -> Vec<String> {
    if security.privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let drops: Vec<String> = security
        .drop_capabilities
        .iter()
        .map(|c| capability_name(c))
        .collect();
    let drop_all = drops.iter().any(|c| c == "CAP_ALL");
    let mut capabilities: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drops.contains(c))
            .collect()
    };
    for added in &security.add_capabilities {
        let added = capability_name(added);
        if added == "CAP_ALL" {
            return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        }
        if !capabilities.contains(&added) {
            capabilities.push(added);
        }
    }
    capabilities
}

/// Generates the OCI runtime `config.json` for a container whose root
/// filesystem is mounted at `<bundle>/rootfs`. `nofile_limit` is the
/// RLIMIT_NOFILE the container gets (soft and hard); it cannot exceed the
/// caller's own hard limit because containers lack CAP_SYS_RESOURCE.
pub fn bundle_config(
    spec: &ContainerSpec,
    user: &ResolvedUser,
    cgroups_path: &str,
    nofile_limit: u64,
) -> Result<Value> {
    let args = process_args(spec)?;
    let cwd = spec
        .working_dir
        .clone()
        .filter(|dir| !dir.is_empty())
        .or_else(|| Some(spec.image.working_dir.clone()).filter(|dir| !dir.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    let capabilities = capabilities(&spec.security);
    let privileged = spec.security.privileged;
    let mut process = json!({
        "terminal": spec.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": process_env(spec),
        "cwd": cwd,
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile_limit, "soft": nofile_limit}],
        "noNewPrivileges": false,
    });
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if let Some(adjustment) = spec.resources.oom_score_adj {
        process["oomScoreAdj"] = json!(adjustment);
    }
    let sysfs_options = if privileged {
        json!(["nosuid", "noexec", "nodev", "rw"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sysfs_options}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
    ];
    for mount in &spec.mounts {
        if !mount.container_path.starts_with('/') {
            return Err(RuntimeError::InvalidSpec {
                container: spec.display_name(),
                reason: format!("mount path {:?} is not absolute", mount.container_path),
            });
        }
        let mut options = vec!["rbind", "rprivate"];
        options.push(if mount.read_only { "ro" } else { "rw" });
        mounts.push(json!({
            "destination": mount.container_path,
            "type": "bind",
            "source": mount.host_path,
            "options": options,
        }));
    }
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    for (kind, path) in [
        ("network", &spec.namespaces.network),
        ("ipc", &spec.namespaces.ipc),
        ("uts", &spec.namespaces.uts),
    ] {
        match path {
            Some(path) => namespaces.push(json!({"type": kind, "path": path})),
            // A container without a pod network namespace uses the host's
            // network (hostNetwork); ipc and uts default to private ones.
            None if kind == "network" => {}
            None => namespaces.push(json!({"type": kind})),
        }
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = spec.resources.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = spec.resources.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert(
            "period".into(),
            json!(spec.resources.cpu_period.unwrap_or(100_000)),
        );
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = spec.resources.memory_limit_bytes {
        resources["memory"] = json!({"limit": limit});
    }
    if privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    let mut linux = json!({
        "resources": resources,
        "cgroupsPath": cgroups_path,
        "namespaces": namespaces,
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": spec.security.read_only_root_filesystem},
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.pod.namespace": spec.pod.namespace,
            "io.kubernetes.pod.name": spec.pod.name,
            "io.kubernetes.pod.uid": spec.pod.uid,
            "io.kubernetes.container.name": spec.container_name,
        },
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn sample_spec() -> ContainerSpec {
        ContainerSpec {
            pod: PodRef {
                namespace: "default".into(),
                name: "web-0".into(),
                uid: "0b5d5c1e".into(),
            },
            container_name: "nginx".into(),
            attempt: 0,
            image: ImageConfig {
                reference: "docker.io/library/nginx:latest".into(),
                entrypoint: vec![],
                cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                env: vec![
                    "PATH=/usr/sbin:/usr/bin".into(),
                    "NGINX_VERSION=1.22".into(),
                ],
                user: String::new(),
                ..Default::default()
            },
            env: vec![
                ("NGINX_VERSION".into(), "custom".into()),
                ("MODE".into(), "test".into()),
            ],
            hostname: "web-0".into(),
            namespaces: PodNamespaces {
                network: Some("/run/netns/cni-1".into()),
                ipc: Some("/var/lib/podnet/pods/0b5d5c1e/ipc".into()),
                uts: Some("/var/lib/podnet/pods/0b5d5c1e/uts".into()),
            },
            mounts: vec![BindMount {
                container_path: "/etc/hosts".into(),
                host_path: "/var/lib/podnet/pods/0b5d5c1e/etc-hosts".into(),
                read_only: true,
            }],
            resources: Resources {
                cpu_shares: Some(102),
                cpu_quota: Some(50_000),
                cpu_period: None,
                memory_limit_bytes: Some(134_217_728),
                oom_score_adj: None,
            },
            log_path: "/var/log/pods/default_web-0_0b5d5c1e/nginx/0.log".into(),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_follow_kubernetes_semantics() {
        let mut spec = sample_spec();
        spec.image.entrypoint = vec!["/entry".into()];
        spec.image.cmd = vec!["default".into()];
        let render = |spec: &ContainerSpec| format!("{:?}", process_args(spec).unwrap());
        assert_eq!(render(&spec), r#"["/entry", "default"]"#);
        spec.args = vec!["given".into()];
        assert_eq!(render(&spec), r#"["/entry", "given"]"#);
        spec.command = vec!["sh".into()];
        spec.args.clear();
        assert_eq!(render(&spec), r#"["sh"]"#);
        spec.args = vec!["-c".into(), "true".into()];
        assert_eq!(render(&spec), r#"["sh", "-c", "true"]"#);
    }

    #[test]
    fn resolves_users_from_image_files() {
        let passwd = "root:x:0:0::/root:/bin/sh\nnginx:x:101:101::/:/bin/false\n";
        let group = "root:x:0:\nnginx:x:101:\nwww:x:33:nginx\n";
        let mut spec = sample_spec();
        let render = |spec: &ContainerSpec| match resolve_user(spec, passwd, group) {
            Ok(user) => format!("{}:{} {:?}", user.uid, user.gid, user.additional_gids),
            Err(error) => error.to_string(),
        };
        let mut lines = vec![render(&spec)];
        spec.image.user = "nginx".into();
        lines.push(render(&spec));
        spec.image.user = "1000:33".into();
        lines.push(render(&spec));
        spec.image.user = "nobody".into();
        lines.push(render(&spec));
        spec.security.run_as_user = Some(101);
        spec.security.run_as_group = Some(7);
        lines.push(render(&spec));
        expect![[r#"
            0:0 []
            101:101 [33]
            1000:33 []
            invalid spec for container default/web-0/nginx: the image user "nobody" is not in the image's /etc/passwd: set securityContext.runAsUser
            101:7 [33]"#]]
        .assert_eq(&lines.join("\n"));
    }

    #[test]
    fn capabilities_apply_add_and_drop() {
        let security = Security {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["MKNOD".into(), "CAP_KILL".into()],
            ..Default::default()
        };
        expect![[r#"["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_NET_ADMIN"]"#]]
            .assert_eq(&format!("{:?}", capabilities(&security)));
        let drop_all = Security {
            drop_capabilities: vec!["ALL".into()],
            add_capabilities: vec!["net_bind_service".into()],
            ..Default::default()
        };
        expect![[r#"["CAP_NET_BIND_SERVICE"]"#]]
            .assert_eq(&format!("{:?}", capabilities(&drop_all)));
    }

    #[test]
    fn bundle_config_snapshot() {
        let spec = sample_spec();
        let user = ResolvedUser::default();
        let config = bundle_config(&spec, &user, "/podnet/pod0b5d5c1e/abc", 1048576).unwrap();
        expect![[r#"
            {
              "ociVersion": "1.0.2",
              "process": {
                "terminal": false,
                "user": {
                  "uid": 0,
                  "gid": 0
                },
                "args": [
                  "nginx",
                  "-g",
                  "daemon off;"
                ],
                "env": [
                  "PATH=/usr/sbin:/usr/bin",
                  "HOSTNAME=web-0",
                  "NGINX_VERSION=custom",
                  "MODE=test"
                ],
                "cwd": "/",
                "capabilities": {
                  "bounding": [
                    "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE",
                    "CAP_FSETID",
                    "CAP_FOWNER",
                    "CAP_MKNOD",
                    "CAP_NET_RAW",
                    "CAP_SETGID",
                    "CAP_SETUID",
                    "CAP_SETFCAP",
                    "CAP_SETPCAP",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_SYS_CHROOT",
                    "CAP_KILL",
                    "CAP_AUDIT_WRITE"
                  ],
                  "effective": [
                    "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE",
                    "CAP_FSETID",
                    "CAP_FOWNER",
                    "CAP_MKNOD",
                    "CAP_NET_RAW",
                    "CAP_SETGID",
                    "CAP_SETUID",
                    "CAP_SETFCAP",
                    "CAP_SETPCAP",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_SYS_CHROOT",
                    "CAP_KILL",
                    "CAP_AUDIT_WRITE"
                  ],
                  "permitted": [
                    "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE",
                    "CAP_FSETID",
                    "CAP_FOWNER",
                    "CAP_MKNOD",
                    "CAP_NET_RAW",
                    "CAP_SETGID",
                    "CAP_SETUID",
                    "CAP_SETFCAP",
                    "CAP_SETPCAP",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_SYS_CHROOT",
                    "CAP_KILL",
                    "CAP_AUDIT_WRITE"
                  ]
                },
                "rlimits": [
                  {
                    "type": "RLIMIT_NOFILE",
                    "hard": 1048576,
                    "soft": 1048576
                  }
                ],
                "noNewPrivileges": false
              },
              "root": {
                "path": "rootfs",
                "readonly": false
              },
              "mounts": [
                {
                  "destination": "/proc",
                  "type": "proc",
                  "source": "proc",
                  "options": [
                    "nosuid",
                    "noexec",
                    "nodev"
                  ]
                },
                {
                  "destination": "/dev",
                  "type": "tmpfs",
                  "source": "tmpfs",
                  "options": [
                    "nosuid",
                    "strictatime",
                    "mode=755",
                    "size=65536k"
                  ]
                },
                {
                  "destination": "/dev/pts",
                  "type": "devpts",
                  "source": "devpts",
                  "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5"
                  ]
                },
                {
                  "destination": "/dev/shm",
                  "type": "tmpfs",
                  "source": "shm",
                  "options": [
                    "nosuid",
                    "noexec",
                    "nodev",
                    "mode=1777",
                    "size=65536k"
                  ]
                },
                {
                  "destination": "/dev/mqueue",
                  "type": "mqueue",
                  "source": "mqueue",
                  "options": [
                    "nosuid",
                    "noexec",
                    "nodev"
                  ]
                },
                {
                  "destination": "/sys",
                  "type": "sysfs",
                  "source": "sysfs",
                  "options": [
                    "nosuid",
                    "noexec",
                    "nodev",
                    "ro"
                  ]
                },
                {
                  "destination": "/sys/fs/cgroup",
                  "type": "cgroup",
                  "source": "cgroup",
                  "options": [
                    "nosuid",
                    "noexec",
                    "nodev",
                    "relatime",
                    "ro"
                  ]
                },
                {
                  "destination": "/etc/hosts",
                  "type": "bind",
                  "source": "/var/lib/podnet/pods/0b5d5c1e/etc-hosts",
                  "options": [
                    "rbind",
                    "rprivate",
                    "ro"
                  ]
                }
              ],
              "annotations": {
                "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.uid": "0b5d5c1e",
                "io.kubernetes.container.name": "nginx"
              },
              "linux": {
                "resources": {
                  "devices": [
                    {
                      "allow": false,
                      "access": "rwm"
                    }
                  ],
                  "cpu": {
                    "shares": 102,
                    "quota": 50000,
                    "period": 100000
                  },
                  "memory": {
                    "limit": 134217728
                  }
                },
                "cgroupsPath": "/podnet/pod0b5d5c1e/abc",
                "namespaces": [
                  {
                    "type": "pid"
                  },
                  {
                    "type": "mount"
                  },
                  {
                    "type": "network",
                    "path": "/run/netns/cni-1"
                  },
                  {
                    "type": "ipc",
                    "path": "/var/lib/podnet/pods/0b5d5c1e/ipc"
                  },
                  {
                    "type": "uts",
                    "path": "/var/lib/podnet/pods/0b5d5c1e/uts"
                  }
                ],
                "maskedPaths": [
                  "/proc/acpi",
                  "/proc/asound",
                  "/proc/kcore",
                  "/proc/keys",
                  "/proc/latency_stats",
                  "/proc/timer_list",
                  "/proc/timer_stats",
                  "/proc/sched_debug",
                  "/proc/scsi",
                  "/sys/firmware",
                  "/sys/devices/virtual/powercap"
                ],
                "readonlyPaths": [
                  "/proc/bus",
                  "/proc/fs",
                  "/proc/irq",
                  "/proc/sys",
                  "/proc/sysrq-trigger"
                ]
              }
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&config).unwrap());
    }
}
