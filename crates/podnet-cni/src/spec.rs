//! CNI wire types: the plugin configuration, the result, the error, the
//! version answer, and version negotiation.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::CniError;

/// Versions this plugin answers to, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest version, used for answers that have no config to echo.
pub const LATEST_VERSION: &str = "1.1.0";

/// Fails unless `version` is supported.
pub fn ensure_supported_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::IncompatibleVersion {
            version: version.to_string(),
            supported: SUPPORTED_VERSIONS.join(", "),
        })
    }
}

/// Orders CNI versions numerically (`0.4.0 < 1.0.0 < 1.1.0`).
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parse = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    parse(version) >= parse(minimum)
}

/// The IPAM section of the podnet-cni configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// The node's pod subnet, e.g. `10.244.1.0/24`.
    pub subnet: Ipv4Net,
    /// Gateway (the bridge address); default: first address of the subnet.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// First allocatable address; default: first host after the gateway.
    #[serde(default)]
    pub range_start: Option<Ipv4Addr>,
    /// Last allocatable address; default: last host of the subnet.
    #[serde(default)]
    pub range_end: Option<Ipv4Addr>,
    /// Directory holding one sub-directory per network with the reservations.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Routes to install in the pod; default: a default route via the gateway.
    #[serde(default)]
    pub routes: Option<Vec<RouteEntry>>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/cni/networks")
}

impl IpamConfig {
    /// The gateway address in effect.
    pub fn gateway_address(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.subnet.network()) + 1))
    }
}

/// The podnet-cni plugin configuration (one entry of a conflist, with
/// `name`, `cniVersion` and possibly `prevResult` injected by the runtime).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConfig {
    /// CNI version of the configuration.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (`podnet-cni`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Bridge name.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// MTU of the bridge and both veth ends.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Hairpin mode on the host veth (a pod reaching itself via a Service).
    #[serde(default)]
    pub hairpin_mode: bool,
    /// Put the gateway address on the bridge and enable forwarding.
    #[serde(default)]
    pub is_gateway: bool,
    /// IP allocation settings.
    pub ipam: IpamConfig,
    /// Result of the previous plugin (CHECK, DEL).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// GC: attachments to keep.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn default_bridge() -> String {
    "cni0".to_string()
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// A route of a result or of the IPAM config.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination.
    pub dst: IpNet,
    /// Gateway; absent means the IPAM gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<std::net::IpAddr>,
}

/// Interface of a result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultInterface {
    /// Name.
    pub name: String,
    /// MAC address.
    #[serde(default)]
    pub mac: String,
    /// MTU (CNI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path for container interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// IP of a result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultIp {
    /// Address with prefix.
    pub address: IpNet,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<std::net::IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// An ADD result, version-independent; [`AddResult::to_json`] renders it in
/// the requested version's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddResult {
    /// Interfaces (bridge, host veth, container interface).
    pub interfaces: Vec<ResultInterface>,
    /// Addresses.
    pub ips: Vec<ResultIp>,
    /// Routes.
    pub routes: Vec<RouteEntry>,
}

impl AddResult {
    /// Renders the result for `cni_version` (0.3.x/0.4.0 tag IPs with
    /// `"version": "4"`; 1.x dropped that field, 1.1 added `mtu`).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let is_legacy = !version_at_least(cni_version, "1.0.0");
        let has_mtu = version_at_least(cni_version, "1.1.0");
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|interface| {
                let mut interface = interface.clone();
                if !has_mtu {
                    interface.mtu = None;
                }
                serde_json::to_value(interface).expect("interface serializes")
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut value = serde_json::to_value(ip).expect("ip serializes");
                if is_legacy {
                    value["version"] = json!(if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    });
                }
                value
            })
            .collect();
        json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": {},
        })
    }
}

/// The error JSON printed on stdout when a command fails.
pub fn error_json(cni_version: &str, error: &CniError) -> Value {
    json!({
        "cniVersion": cni_version,
        "code": error.code(),
        "msg": error.to_string(),
        "details": "",
    })
}

/// The VERSION answer.
pub fn version_json(cni_version: &str) -> Value {
    json!({
        "cniVersion": cni_version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn sample_result() -> AddResult {
        AddResult {
            interfaces: vec![
                ResultInterface {
                    name: "cni0".to_string(),
                    mac: "02:00:00:00:00:01".to_string(),
                    mtu: Some(1450),
                    sandbox: None,
                },
                ResultInterface {
                    name: "eth0".to_string(),
                    mac: "02:00:00:00:00:02".to_string(),
                    mtu: Some(1450),
                    sandbox: Some("/run/netns/cni-1".to_string()),
                },
            ],
            ips: vec![ResultIp {
                address: "10.244.1.5/24".parse().unwrap(),
                gateway: Some("10.244.1.1".parse().unwrap()),
                interface: Some(1),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: Some("10.244.1.1".parse().unwrap()),
            }],
        }
    }

    #[test]
    fn result_shape_follows_the_requested_version() {
        expect![[r#"{"cniVersion":"1.1.0","interfaces":[{"name":"cni0","mac":"02:00:00:00:00:01","mtu":1450},{"name":"eth0","mac":"02:00:00:00:00:02","mtu":1450,"sandbox":"/run/netns/cni-1"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":1}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}"#]]
            .assert_eq(&sample_result().to_json("1.1.0").to_string());
        expect![[r#"{"cniVersion":"0.4.0","interfaces":[{"name":"cni0","mac":"02:00:00:00:00:01"},{"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/cni-1"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":1,"version":"4"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}"#]]
            .assert_eq(&sample_result().to_json("0.4.0").to_string());
    }

    #[test]
    fn versions_are_negotiated() {
        assert!(ensure_supported_version("1.1.0").is_ok());
        assert!(ensure_supported_version("1.0.0").is_ok());
        assert!(ensure_supported_version("0.4.0").is_ok());
        let error = ensure_supported_version("2.0.0").unwrap_err();
        assert_eq!(error.code(), 1);
        assert!(version_at_least("1.1.0", "1.0.0"));
        assert!(!version_at_least("0.4.0", "1.0.0"));
        expect![[r#"{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#]]
            .assert_eq(&version_json("1.1.0").to_string());
    }

    #[test]
    fn config_parses_with_defaults() {
        let config: PluginConfig = serde_json::from_str(
            r#"{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","mtu":1450,"hairpinMode":true,
                "isGateway":true,"ipam":{"subnet":"10.244.1.0/24","dataDir":"/tmp/x"}}"#,
        )
        .unwrap();
        assert_eq!(config.bridge, "cni0");
        assert_eq!(
            config.ipam.gateway_address(),
            "10.244.1.1".parse::<Ipv4Addr>().unwrap()
        );
        assert!(config.hairpin_mode && config.is_gateway);
    }
}
