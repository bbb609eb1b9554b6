//! Pod status as the kubelet reports it, computed purely from what the agent
//! observed (sandbox, containers, probes). No I/O.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the agent knows about one container right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerObservation {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// `podnet://<id>` once created.
    pub container_id: Option<String>,
    pub state: ObservedState,
    /// The previous attempt's termination, if any.
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
    /// Readiness probe result (true when there is no probe and it runs).
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObservedState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: jiff::Timestamp,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub container_id: Option<String>,
}

/// Everything observed about a pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodObservation {
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<jiff::Timestamp>,
    pub init_containers: Vec<ContainerObservation>,
    pub containers: Vec<ContainerObservation>,
    /// A pod-level failure such as an image that cannot be pulled is reported
    /// through the containers' Waiting reasons; this one is for the sandbox.
    pub sandbox_error: Option<String>,
}

fn time(ts: jiff::Timestamp) -> Time {
    Time(ts)
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(time),
        finished_at: t.finished_at.map(time),
        container_id: t.container_id.clone(),
    }
}

fn container_status(observation: &ContainerObservation) -> ContainerStatus {
    let state = match &observation.state {
        ObservedState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        ObservedState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        ObservedState::Terminated(t) => ContainerState {
            terminated: Some(terminated_state(t)),
            ..Default::default()
        },
    };
    let running = matches!(observation.state, ObservedState::Running { .. });
    ContainerStatus {
        name: observation.name.clone(),
        image: observation.image.clone(),
        image_id: observation.image_id.clone(),
        container_id: observation.container_id.clone(),
        ready: observation.ready && running,
        started: Some(running && observation.started),
        restart_count: observation.restart_count,
        state: Some(state),
        last_state: Some(match &observation.last_terminated {
            Some(t) => ContainerState {
                terminated: Some(terminated_state(t)),
                ..Default::default()
            },
            None => ContainerState::default(),
        }),
        ..Default::default()
    }
}

/// The pod phase by the kubelet's rules.
pub fn phase(restart_policy: &str, observation: &PodObservation) -> &'static str {
    // Init containers: a failed one with restartPolicy Never fails the pod; any
    // not yet successfully completed keeps the pod Pending.
    for init in &observation.init_containers {
        match &init.state {
            ObservedState::Terminated(t) if t.exit_code == 0 => continue,
            ObservedState::Terminated(_) if restart_policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    if observation.containers.is_empty() {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in &observation.containers {
        match &container.state {
            ObservedState::Running { .. } => running += 1,
            ObservedState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            ObservedState::Waiting { .. } if container.last_terminated.is_some() => stopped += 1,
            ObservedState::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if succeeded == stopped {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    previous: Option<&PodStatus>,
    now: jiff::Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last_transition = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: Some(last_transition),
        last_probe_time: None,
        ..Default::default()
    }
}

/// The full status to report. `previous` keeps condition transition times stable.
pub fn pod_status(
    pod: &Pod,
    observation: &PodObservation,
    previous: Option<&PodStatus>,
    now: jiff::Timestamp,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = phase(restart_policy, observation);
    let initialized = observation
        .init_containers
        .iter()
        .all(|c| matches!(&c.state, ObservedState::Terminated(t) if t.exit_code == 0));
    let containers_ready = !observation.containers.is_empty()
        && observation
            .containers
            .iter()
            .all(|c| c.ready && matches!(c.state, ObservedState::Running { .. }));
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            observation.sandbox_ready,
            None,
            previous,
            now,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            previous,
            now,
        ),
        condition(
            "Ready",
            containers_ready,
            Some(not_ready_reason),
            previous,
            now,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(not_ready_reason),
            previous,
            now,
        ),
        condition("PodScheduled", true, None, previous, now),
    ];
    let pod_ips = observation
        .pod_ip
        .as_ref()
        .map(|ip| vec![PodIP { ip: ip.clone() }]);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(observation.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: observation.host_ip.clone(),
        }]),
        pod_ip: observation.pod_ip.clone(),
        pod_ips,
        start_time: observation.start_time.map(time),
        qos_class: Some(qos_class(pod).to_string()),
        init_container_statuses: if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
            Some(
                observation
                    .init_containers
                    .iter()
                    .map(container_status)
                    .collect(),
            )
        } else {
            None
        },
        container_statuses: Some(
            observation
                .containers
                .iter()
                .map(container_status)
                .collect(),
        ),
        message: observation.sandbox_error.clone(),
        ..Default::default()
    }
}

/// Guaranteed / Burstable / BestEffort, by upstream's rules (simplified to cpu and memory).
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for container in spec.containers.iter() {
        let resources = container.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Kubelet's container restart back-off: 10 s doubling to 5 minutes.
pub fn restart_backoff(restart_count: i32) -> std::time::Duration {
    let seconds = 10u64.saturating_mul(1u64 << restart_count.clamp(0, 5).min(5));
    std::time::Duration::from_secs(seconds.min(300))
}

/// How long after an exit the next restart waits: immediately after the
/// first exit of a streak, then 10 s doubling to 5 minutes. `streak` counts
/// the restarts since the back-off was last reset.
pub fn restart_delay(streak: u32) -> std::time::Duration {
    match streak {
        0 => std::time::Duration::ZERO,
        n => restart_backoff(n as i32 - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, ready: bool) -> ContainerObservation {
        ContainerObservation {
            name: name.into(),
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            container_id: Some("podnet://1".into()),
            state: ObservedState::Running {
                started_at: jiff::Timestamp::UNIX_EPOCH,
            },
            last_terminated: None,
            restart_count: 0,
            ready,
            started: true,
        }
    }

    fn exited(name: &str, code: i32) -> ContainerObservation {
        ContainerObservation {
            state: ObservedState::Terminated(Terminated {
                exit_code: code,
                signal: None,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message: None,
                started_at: None,
                finished_at: None,
                container_id: None,
            }),
            ..running(name, false)
        }
    }

    fn crash_looping(name: &str) -> ContainerObservation {
        let last = match exited(name, 1).state {
            ObservedState::Terminated(t) => t,
            _ => unreachable!(),
        };
        ContainerObservation {
            state: ObservedState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            last_terminated: Some(last),
            restart_count: 3,
            ..running(name, false)
        }
    }

    fn observation(containers: Vec<ContainerObservation>) -> PodObservation {
        PodObservation {
            sandbox_ready: true,
            pod_ip: Some("10.244.1.2".into()),
            host_ip: "172.18.0.2".into(),
            containers,
            ..Default::default()
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase("Always", &observation(vec![running("a", true)])),
            "Running"
        );
        assert_eq!(
            phase("Always", &observation(vec![crash_looping("a")])),
            "Running"
        );
        assert_eq!(
            phase("Never", &observation(vec![exited("a", 0)])),
            "Succeeded"
        );
        assert_eq!(
            phase("Never", &observation(vec![exited("a", 0), exited("b", 2)])),
            "Failed"
        );
        assert_eq!(
            phase("OnFailure", &observation(vec![exited("a", 2)])),
            "Running"
        );
        let mut pending = observation(vec![running("a", true)]);
        pending.containers[0].state = ObservedState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(phase("Always", &pending), "Pending");
        let mut init = observation(vec![running("a", true)]);
        init.init_containers = vec![exited("init", 1)];
        assert_eq!(phase("Never", &init), "Failed");
        assert_eq!(phase("Always", &init), "Pending");
    }

    #[test]
    fn ready_condition_follows_readiness() {
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: p}\nspec: {containers: [{name: a}, {name: b}]}\n",
        )
        .unwrap();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let status = pod_status(
            &pod,
            &observation(vec![running("a", true), running("b", false)]),
            None,
            now,
        );
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        let status = pod_status(
            &pod,
            &observation(vec![running("a", true), running("b", true)]),
            Some(&status),
            now,
        );
        let ready = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.2"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(restart_backoff(0).as_secs(), 10);
        assert_eq!(restart_backoff(1).as_secs(), 20);
        assert_eq!(restart_backoff(4).as_secs(), 160);
        assert_eq!(restart_backoff(9).as_secs(), 300);
        let delays: Vec<u64> = (0..9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
