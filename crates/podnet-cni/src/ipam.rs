//! Host-local style IP allocation, compatible on disk with the reference
//! `host-local` plugin: under `<dataDir>/<network>/`, one file per reserved
//! IP named after it (content: container id, CRLF, interface name), a `lock`
//! file held with flock around every change, and `last_reserved_ip.0` so
//! allocation goes round-robin (a released IP is not handed out again at
//! once, which protects against stale ARP caches and late packets).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::spec::IpamConfig;
use crate::CniError;

const LAST_RESERVED_FILE: &str = "last_reserved_ip.0";
const LOCK_FILE: &str = "lock";

/// A reservation found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The reserved address.
    pub ip: Ipv4Addr,
    /// Owner container id.
    pub container_id: String,
    /// Owner interface name (empty for files written by old plugins).
    pub ifname: String,
}

/// The allocator for one network.
pub struct IpAllocator {
    directory: PathBuf,
    first: u32,
    last: u32,
    gateway: Ipv4Addr,
}

/// An exclusive flock on the network's lock file, released on drop.
struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl IpAllocator {
    /// The allocator of network `network_name` configured by `config`.
    pub fn new(network_name: &str, config: &IpamConfig) -> Result<IpAllocator, CniError> {
        if network_name.is_empty() || network_name.contains('/') || network_name.starts_with('.') {
            return Err(CniError::InvalidConfig {
                reason: format!("network name {network_name:?} cannot name a directory; use letters, digits and dashes"),
            });
        }
        let subnet = config.subnet;
        if subnet.prefix_len() > 30 {
            return Err(CniError::InvalidConfig {
                reason: format!("ipam subnet {subnet} is too small for pods; use /30 or larger"),
            });
        }
        let first_host = u32::from(subnet.network()) + 1;
        let last_host = u32::from(subnet.broadcast()) - 1;
        let first = config.range_start.map(u32::from).unwrap_or(first_host);
        let last = config.range_end.map(u32::from).unwrap_or(last_host);
        if first < first_host || last > last_host || first > last {
            return Err(CniError::InvalidConfig {
                reason: format!(
                    "ipam range {}-{} is not inside the hosts of subnet {subnet}",
                    Ipv4Addr::from(first),
                    Ipv4Addr::from(last)
                ),
            });
        }
        Ok(IpAllocator {
            directory: config.data_dir.join(network_name),
            first,
            last,
            gateway: config.gateway_address(),
        })
    }

    /// The directory holding this network's reservations.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn lock(&self) -> Result<LockGuard, CniError> {
        fs::create_dir_all(&self.directory).map_err(|error| {
            CniError::io(self.directory.display(), "create the ipam directory", error)
        })?;
        let path = self.directory.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| CniError::io(path.display(), "open the ipam lock", error))?;
        // SAFETY: flock on a descriptor we own; blocks until other plugin
        // processes of the same network are done.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(CniError::io(
                path.display(),
                "lock",
                io::Error::last_os_error(),
            ));
        }
        Ok(LockGuard { file })
    }

    /// Checks the directory is usable (STATUS).
    pub fn check_usable(&self) -> Result<(), CniError> {
        self.lock().map(|_| ())
    }

    /// Lists every reservation.
    pub fn reservations(&self) -> Result<Vec<Reservation>, CniError> {
        let entries = match fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(CniError::io(
                    self.directory.display(),
                    "list reservations",
                    error,
                ))
            }
        };
        let mut reservations = Vec::new();
        for entry in entries.flatten() {
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let content = match fs::read_to_string(entry.path()) {
                Ok(content) => content,
                // Released concurrently (GC without the lock never happens,
                // but a reader of a foreign plugin's directory may race).
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(CniError::io(
                        entry.path().display(),
                        "read reservation",
                        error,
                    ))
                }
            };
            let mut lines = content.lines();
            let container_id = lines.next().unwrap_or_default().trim().to_string();
            let ifname = lines.next().unwrap_or_default().trim().to_string();
            reservations.push(Reservation {
                ip,
                container_id,
                ifname,
            });
        }
        reservations.sort_by_key(|reservation| reservation.ip);
        Ok(reservations)
    }

    /// Reserves an address for (container, ifname); returns the existing one
    /// if this attachment already holds one (a retried ADD).
    pub fn allocate(&self, container_id: &str, ifname: &str) -> Result<Ipv4Addr, CniError> {
        let _lock = self.lock()?;
        let reservations = self.reservations()?;
        if let Some(existing) = reservations.iter().find(|reservation| {
            reservation.container_id == container_id && reservation.ifname == ifname
        }) {
            return Ok(existing.ip);
        }
        let last_reserved = fs::read_to_string(self.directory.join(LAST_RESERVED_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|value| (self.first..=self.last).contains(value));
        let size = self.last - self.first + 1;
        let start_offset = match last_reserved {
            Some(value) => (value - self.first + 1) % size,
            None => 0,
        };
        for step in 0..size {
            let candidate = Ipv4Addr::from(self.first + (start_offset + step) % size);
            if candidate == self.gateway {
                continue;
            }
            let path = self.directory.join(candidate.to_string());
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(format!("{container_id}\r\n{ifname}").as_bytes())
                        .map_err(|error| {
                            CniError::io(path.display(), "write reservation", error)
                        })?;
                    self.record_last_reserved(candidate).map_err(|error| {
                        CniError::io(self.directory.display(), "record last reserved ip", error)
                    })?;
                    return Ok(candidate);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => {
                    return Err(CniError::io(path.display(), "create reservation", error))
                }
            }
        }
        Err(CniError::AddressesExhausted {
            range: format!(
                "{}-{}",
                Ipv4Addr::from(self.first),
                Ipv4Addr::from(self.last)
            ),
        })
    }

    /// Overwrites `last_reserved_ip.0` in place. Not `O_TRUNC` + write: on
    /// ext4 truncating a file to zero and rewriting it makes the close start
    /// writeback (`auto_da_alloc`), which costs an ADD milliseconds. The
    /// lock is held, so nobody reads the file half-written.
    fn record_last_reserved(&self, ip: Ipv4Addr) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let text = ip.to_string();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.directory.join(LAST_RESERVED_FILE))?;
        file.write_all_at(text.as_bytes(), 0)?;
        // Shortening to a non-zero length does not trigger the writeback.
        file.set_len(text.len() as u64)
    }

    /// Releases every reservation of (container, ifname); returns the
    /// released addresses (none is fine: DEL is idempotent).
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, CniError> {
        let _lock = self.lock()?;
        self.release_where(|reservation| {
            reservation.container_id == container_id
                && (reservation.ifname == ifname || reservation.ifname.is_empty())
        })
    }

    /// Releases every reservation not owned by one of `keep` (GC).
    pub fn release_all_except(&self, keep: &[(String, String)]) -> Result<Vec<Ipv4Addr>, CniError> {
        let _lock = self.lock()?;
        self.release_where(|reservation| {
            !keep.iter().any(|(container_id, ifname)| {
                &reservation.container_id == container_id && &reservation.ifname == ifname
            })
        })
    }

    fn release_where(
        &self,
        should_release: impl Fn(&Reservation) -> bool,
    ) -> Result<Vec<Ipv4Addr>, CniError> {
        let mut released = Vec::new();
        for reservation in self.reservations()? {
            if should_release(&reservation) {
                let path = self.directory.join(reservation.ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => released.push(reservation.ip),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(CniError::io(path.display(), "remove reservation", error))
                    }
                }
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(directory: &Path, subnet: &str) -> IpAllocator {
        let config = IpamConfig {
            subnet: subnet.parse().unwrap(),
            gateway: None,
            range_start: None,
            range_end: None,
            data_dir: directory.to_path_buf(),
            routes: None,
        };
        IpAllocator::new("podnet", &config).unwrap()
    }

    #[test]
    fn allocation_is_round_robin_skips_gateway_and_reuses_own_reservation() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = allocator(directory.path(), "10.244.1.0/24");
        assert_eq!(
            allocator.allocate("a", "eth0").unwrap(),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(
            allocator.allocate("a", "eth0").unwrap(),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(
            allocator.allocate("b", "eth0").unwrap(),
            Ipv4Addr::new(10, 244, 1, 3)
        );
        assert_eq!(
            allocator.release("a", "eth0").unwrap(),
            vec![Ipv4Addr::new(10, 244, 1, 2)]
        );
        assert_eq!(
            allocator.release("a", "eth0").unwrap(),
            Vec::<Ipv4Addr>::new()
        );
        // Round robin: .2 was released but .4 comes next.
        assert_eq!(
            allocator.allocate("c", "eth0").unwrap(),
            Ipv4Addr::new(10, 244, 1, 4)
        );
        let content = fs::read_to_string(directory.path().join("podnet/10.244.1.3")).unwrap();
        assert_eq!(content, "b\r\neth0");
        assert_eq!(
            fs::read_to_string(directory.path().join("podnet/last_reserved_ip.0")).unwrap(),
            "10.244.1.4"
        );
    }

    #[test]
    fn exhaustion_is_reported_with_the_reference_message() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = allocator(directory.path(), "10.244.1.0/29");
        // Hosts .1-.6, gateway .1: five pods fit.
        for index in 0..5 {
            allocator.allocate(&format!("c{index}"), "eth0").unwrap();
        }
        let error = allocator.allocate("c5", "eth0").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("no IP addresses available in range set"));
        // Wrap-around after a release finds the freed address.
        allocator.release("c2", "eth0").unwrap();
        assert_eq!(
            allocator.allocate("c6", "eth0").unwrap(),
            Ipv4Addr::new(10, 244, 1, 4)
        );
    }

    #[test]
    fn gc_releases_everything_not_kept() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = allocator(directory.path(), "10.244.1.0/24");
        allocator.allocate("keep", "eth0").unwrap();
        allocator.allocate("leak", "eth0").unwrap();
        allocator.allocate("keep", "net1").unwrap();
        let released = allocator
            .release_all_except(&[("keep".to_string(), "eth0".to_string())])
            .unwrap();
        assert_eq!(released.len(), 2);
        let left: Vec<_> = allocator
            .reservations()
            .unwrap()
            .into_iter()
            .map(|r| r.container_id)
            .collect();
        assert_eq!(left, vec!["keep".to_string()]);
    }
}
