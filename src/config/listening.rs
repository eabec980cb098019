//! The listen file: `rtctl serve` writes `rtctl.listen` beside its config file while it runs, so that
//! the other commands run with that config (`status`, `notify`, `connect`, ...) reach that hub instead
//! of assuming the default address, which may be another hub's with other secrets.
//!
//! The file is removed when the hub stops cleanly; one left behind by a killed hub is ignored because
//! its process is gone or nothing answers at its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a client waits for the recorded address to accept a connection before it treats the file
/// as stale: a local hub accepts in well under a millisecond.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// What the file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The `rtctl serve` process that wrote it.
    pid: u32,
    /// The hub's base URL, as the client commands take it.
    url: String,
}

/// The listen file of the config file at `config_path`: `rtctl.toml` → `rtctl.listen`.
pub fn path_for(config_path: &Path) -> PathBuf {
    config_path.with_extension("listen")
}

/// The URL clients use for a hub listening on `addr` (`https://` when it serves TLS): an unspecified
/// address (`0.0.0.0`, `[::]`) is reached through the loopback address of its family.
pub fn url_for(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// The listen file of a running hub; dropping it removes the file unless another node of the same
/// config has written its own since.
#[derive(Debug)]
pub struct Recorded {
    path: PathBuf,
    pid: u32,
}

/// Records that this process serves on `addr` for the config file at `config_path`. Written whole under
/// a temporary name, then renamed, so a client never reads half of it; a later node in the same
/// directory replaces it (any node of one config is the same hub to a client).
pub fn record(config_path: &Path, addr: SocketAddr, tls: bool) -> std::io::Result<Recorded> {
    use std::io::Write;
    let path = path_for(config_path);
    let pid = std::process::id();
    let text = toml::to_string(&Record { pid, url: url_for(addr, tls) }).map_err(std::io::Error::other)?;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(text.as_bytes())?;
    file.persist(&path).map_err(|e| e.error)?;
    Ok(Recorded { path, pid })
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if read(&self.path).is_some_and(|record| record.pid == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The URL of the hub recorded beside `config_path`, when its process is alive and it accepts
/// connections; `None` for no file, an unreadable one, or a stale one.
pub fn find(config_path: &Path) -> Option<String> {
    let record = read(&path_for(config_path))?;
    if !process_exists(record.pid) {
        return None;
    }
    let host = record.url.strip_prefix("http://").or_else(|| record.url.strip_prefix("https://"))?;
    let addr = host.to_socket_addrs().ok()?.next()?;
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    Some(record.url)
}

fn read(path: &Path) -> Option<Record> {
    toml::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Whether a process with this id exists (signal 0 checks without sending; EPERM means it exists but
/// belongs to someone else).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 has no memory preconditions and sends nothing.
    unsafe { libc::kill(pid, 0) == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded hub is found while it accepts connections; its file goes when the record is dropped,
    /// and a file whose process is gone or whose address answers nothing is ignored.
    #[test]
    fn a_live_hub_is_found_and_a_stale_file_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rtctl.toml");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = record(&config, addr, false).unwrap();
        assert_eq!(find(&config), Some(format!("http://{addr}")));
        drop(recorded);
        assert!(!path_for(&config).exists(), "the file is removed with its record");
        assert_eq!(find(&config), None);

        let write = |pid: u32, url: &str| {
            std::fs::write(path_for(&config), toml::to_string(&Record { pid, url: url.into() }).unwrap()).unwrap();
        };
        // A pid far above any pid_max: no such process.
        write(i32::MAX as u32, &format!("http://{addr}"));
        assert_eq!(find(&config), None, "the process is gone");
        drop(listener);
        write(std::process::id(), &format!("http://{addr}"));
        assert_eq!(find(&config), None, "nothing answers");
    }

    /// `0.0.0.0` and `[::]` are reached through the loopback address.
    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(url_for("0.0.0.0:8011".parse().unwrap(), false), "http://127.0.0.1:8011");
        assert_eq!(url_for("[::]:8011".parse().unwrap(), false), "http://[::1]:8011");
        assert_eq!(url_for("10.0.0.5:80".parse().unwrap(), false), "http://10.0.0.5:80");
        assert_eq!(url_for("0.0.0.0:8443".parse().unwrap(), true), "https://127.0.0.1:8443");
    }
}
