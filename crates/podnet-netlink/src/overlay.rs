//! Overlay applier: makes one node namespace match a `podnet-netplan`
//! overlay plan. It adds what is missing and removes stale entries of ours
//! (everything on the VXLAN device, and routes carrying podnet's protocol
//! number), so it converges from any state, including half-applied plans.

use std::net::IpAddr;

use ipnet::IpNet;
use podnet_netplan::overlay::{OverlayPlan, VXLAN_DEVICE_NAME};

use crate::{NetlinkHandle, Result, RouteSpec, VxlanSpec};

/// Formats a MAC the way `ip` prints it.
pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    podnet_netplan::overlay::MacAddress(mac).to_string()
}

/// What an apply changed, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayApplyReport {
    /// Kernel objects added or replaced, one line each.
    pub added: Vec<String>,
    /// Stale kernel objects removed, one line each.
    pub removed: Vec<String>,
}

impl OverlayApplyReport {
    /// True when the kernel already matched the plan.
    pub fn is_unchanged(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Makes the namespace of `handle` match `plan`.
pub fn apply_overlay_plan(
    handle: &NetlinkHandle,
    plan: &OverlayPlan,
) -> Result<OverlayApplyReport> {
    let mut report = OverlayApplyReport::default();
    // Pod traffic from other nodes is forwarded from the overlay to cni0.
    if handle.read_sysctl("net.ipv4.ip_forward")? != "1" {
        handle.write_sysctl("net.ipv4.ip_forward", "1")?;
        report
            .added
            .push("sysctl net.ipv4.ip_forward=1".to_string());
    }

    match &plan.vxlan_device {
        Some(device) => apply_vxlan_device(handle, plan, device, &mut report)?,
        None => {
            // Switching to host-gw (or losing the podCIDR) leaves no VXLAN;
            // deleting the device also drops its neighbours, FDB and routes.
            if handle.delete_link(VXLAN_DEVICE_NAME)? {
                report.removed.push(format!("link {VXLAN_DEVICE_NAME}"));
            }
        }
    }

    apply_routes(handle, plan, &mut report)?;
    Ok(report)
}

fn apply_vxlan_device(
    handle: &NetlinkHandle,
    plan: &OverlayPlan,
    device: &podnet_netplan::overlay::VxlanDeviceSpec,
    report: &mut OverlayApplyReport,
) -> Result<()> {
    let before = handle.link_by_name(&device.name)?;
    let wanted_address = IpNet::V4(device.address);
    let link = handle.ensure_vxlan(&VxlanSpec {
        name: device.name.clone(),
        vni: device.vni,
        local_ip: device.local_ip,
        port: device.port,
        mtu: device.mtu,
        mac: device.mac.0,
        address: Some(wanted_address),
        tx_checksum_offload: device.tx_checksum_offload,
    })?;
    if before.as_ref().map(|link| (link.index, link.mtu, link.mac))
        != Some((link.index, link.mtu, link.mac))
    {
        report.added.push(format!(
            "link {} vxlan id {} mtu {}",
            device.name, device.vni, device.mtu
        ));
    }
    for address in handle.list_addresses(&device.name)? {
        if address != wanted_address && address.addr().is_ipv4() {
            handle.delete_address(&device.name, address)?;
            report
                .removed
                .push(format!("addr {address} dev {}", device.name));
        }
    }

    let existing_neighbours = handle.list_neighbours(&device.name)?;
    for neighbour in &plan.neighbours {
        let present = existing_neighbours.iter().any(|existing| {
            existing.ip == IpAddr::V4(neighbour.ip)
                && existing.mac == Some(neighbour.mac.0)
                && existing.permanent
        });
        if !present {
            handle.replace_permanent_neighbour(&device.name, neighbour.ip, neighbour.mac.0)?;
            report
                .added
                .push(format!("neigh {} lladdr {}", neighbour.ip, neighbour.mac));
        }
    }
    for existing in &existing_neighbours {
        let IpAddr::V4(ip) = existing.ip else {
            continue;
        };
        if existing.permanent && !plan.neighbours.iter().any(|neighbour| neighbour.ip == ip) {
            handle.delete_neighbour(&device.name, ip)?;
            report.removed.push(format!("neigh {ip}"));
        }
    }

    let existing_fdb = handle.list_fdb(&device.name)?;
    for entry in &plan.fdb_entries {
        let present = existing_fdb.iter().any(|existing| {
            existing.mac == entry.mac.0
                && existing.destination == Some(IpAddr::V4(entry.destination_ip))
        });
        if !present {
            handle.append_fdb(&device.name, entry.mac.0, entry.destination_ip)?;
            report
                .added
                .push(format!("fdb {} dst {}", entry.mac, entry.destination_ip));
        }
    }
    for existing in &existing_fdb {
        // Entries without a remote are the device's own address; not ours.
        let Some(IpAddr::V4(destination)) = existing.destination else {
            continue;
        };
        let wanted = plan
            .fdb_entries
            .iter()
            .any(|entry| entry.mac.0 == existing.mac && entry.destination_ip == destination);
        if !wanted {
            handle.delete_fdb(&device.name, existing.mac, Some(destination))?;
            report.removed.push(format!(
                "fdb {} dst {destination}",
                format_mac(existing.mac)
            ));
        }
    }
    Ok(())
}

fn apply_routes(
    handle: &NetlinkHandle,
    plan: &OverlayPlan,
    report: &mut OverlayApplyReport,
) -> Result<()> {
    let existing_routes: Vec<_> = handle
        .list_routes()?
        .into_iter()
        .filter(|route| route.protocol == NetlinkHandle::PODNET_ROUTE_PROTOCOL)
        .collect();
    for route in &plan.routes {
        let device_index = match &route.device {
            Some(device) => Some(handle.require_link(device)?.index),
            None => None,
        };
        let present = existing_routes.iter().any(|existing| {
            existing.destination == IpNet::V4(route.destination)
                && existing.gateway == Some(IpAddr::V4(route.gateway))
                && existing.onlink == route.onlink
                && (device_index.is_none() || existing.output_index == device_index)
        });
        if !present {
            handle.replace_route(&RouteSpec {
                destination: IpNet::V4(route.destination),
                gateway: Some(route.gateway),
                device: route.device.clone(),
                onlink: route.onlink,
                scope_link: false,
                protocol: NetlinkHandle::PODNET_ROUTE_PROTOCOL,
            })?;
            report
                .added
                .push(format!("route {} via {}", route.destination, route.gateway));
        }
    }
    for existing in &existing_routes {
        let IpNet::V4(destination) = existing.destination else {
            continue;
        };
        if !plan
            .routes
            .iter()
            .any(|route| route.destination == destination)
        {
            handle.delete_route(existing.destination)?;
            report.removed.push(format!("route {destination}"));
        }
    }
    Ok(())
}
