//! The one ethtool setting pod networking needs: transmit checksum offload
//! on the VXLAN device, off where NAT-ed VXLAN packets with offloaded
//! checksums are known to be dropped (kernels before 5.7), on elsewhere
//! because it carries TSO/GSO (see `podnet_netplan::overlay::TxChecksumOffload`).

use std::io;
use std::os::fd::AsRawFd;

/// `ETHTOOL_STXCSUM` from linux/ethtool.h: set TX checksum offload.
const ETHTOOL_SET_TX_CHECKSUM: u32 = 0x0000_0017;
/// `ETHTOOL_GTXCSUM`: read TX checksum offload.
const ETHTOOL_GET_TX_CHECKSUM: u32 = 0x0000_0016;
/// `SIOCETHTOOL` ioctl request number.
const SIOCETHTOOL: libc::c_ulong = 0x8946;

#[repr(C)]
struct EthtoolValue {
    command: u32,
    data: u32,
}

#[repr(C)]
struct InterfaceRequest {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolValue,
    // struct ifreq is 40 bytes on 64-bit; pad the union.
    _padding: [u8; 16],
}

fn ethtool_value(interface: &str, command: u32, data: u32) -> io::Result<u32> {
    if interface.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // Any socket works as the ioctl target; the interface is looked up in the
    // socket's network namespace, which is the calling thread's.
    // Any socket works as the ioctl target; the interface is looked up in the
    // socket's network namespace, which is the calling thread's.
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw_fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw_fd is a fresh descriptor owned by nobody else.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw_fd) };
    let mut value = EthtoolValue { command, data };
    let mut request = InterfaceRequest {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _padding: [0; 16],
    };
    for (slot, byte) in request.name.iter_mut().zip(interface.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: request points to a properly laid out ifreq whose data field
    // points to a live ethtool_value for the duration of the call.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL as _, &mut request) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Turns TX checksum offload on or off on `interface` in the calling
/// thread's netns (the kernel then re-derives the features that depend on
/// it, TSO and GSO among them).
pub(crate) fn set_tx_checksum_offload(interface: &str, on: bool) -> io::Result<()> {
    ethtool_value(interface, ETHTOOL_SET_TX_CHECKSUM, u32::from(on)).map(|_| ())
}

/// Reads whether TX checksum offload is on for `interface`.
pub(crate) fn tx_checksum_offload_enabled(interface: &str) -> io::Result<bool> {
    ethtool_value(interface, ETHTOOL_GET_TX_CHECKSUM, 0).map(|data| data != 0)
}
