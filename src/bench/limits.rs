//! Machine limits for many connections: the open-file limit, ephemeral ports, loopback source addresses,
//! and telling a machine limit apart from a hub failure.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    // SAFETY: get/setrlimit read and write only the struct we pass.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(raised.rlim_cur as u64);
            }
        }
        Ok(limit.rlim_cur as u64)
    }
}

/// How many local ports Linux hands out per source address (`ip_local_port_range`), if known.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>());
    let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
    Some(high.saturating_sub(low) + 1)
}

/// Parses `--source-ips`: a comma list of addresses and IPv4 ranges, e.g. `127.0.0.1-127.0.0.8,127.0.1.1`.
pub fn parse_source_ips(spec: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let first: Ipv4Addr = first.trim().parse().with_context(|| format!("invalid address {first:?}"))?;
                let last: Ipv4Addr = last.trim().parse().with_context(|| format!("invalid address {last:?}"))?;
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first || last - first >= 65_536 {
                    bail!("invalid source address range {part:?}");
                }
                ips.extend((first..=last).map(|ip| IpAddr::V4(ip.into())));
            }
            None => ips.push(part.parse().with_context(|| format!("invalid address {part:?}"))?),
        }
    }
    if ips.is_empty() {
        bail!("no source addresses in {spec:?}");
    }
    Ok(ips)
}

/// Opens a TCP connection, from `source` when given. The port is left to `connect` (IP_BIND_ADDRESS_NO_PORT)
/// so each source address gets the whole ephemeral range per destination, not one shared range.
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        let on: libc::c_int = 1;
        // SAFETY: a plain setsockopt on a socket we own; a failure only costs port range, so it is ignored.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A short stable label for an I/O error, used as an error kind in the summary.
pub fn io_kind(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EMFILE) => return "emfile",
        Some(libc::ENFILE) => return "enfile",
        Some(libc::EADDRNOTAVAIL) => return "eaddrnotavail",
        Some(libc::EADDRINUSE) => return "eaddrinuse",
        _ => {}
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionAborted => "aborted",
        io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::UnexpectedEof => "eof",
        _ => "io",
    }
}

/// When an error kind means this machine, not the hub, ran out of something: what ran out and what to do.
pub fn machine_limit(kind: &str) -> Option<&'static str> {
    match kind {
        "emfile" => Some("the bench hit its open-file limit (EMFILE): raise `ulimit -n` (hard limit)"),
        "enfile" => Some("the system-wide open-file table is full (ENFILE): raise fs.file-max"),
        "eaddrnotavail" | "eaddrinuse" => {
            Some("ephemeral ports ran out (EADDRNOTAVAIL): spread sockets with --source-ips 127.0.0.1-127.0.0.8")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges expand inclusively and mix with single addresses.
    #[test]
    fn parses_source_ranges() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.3, 127.0.1.9").unwrap();
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.9"]);
        assert!(parse_source_ips("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_source_ips("localhost").is_err());
    }

    /// EMFILE and EADDRNOTAVAIL are reported as machine limits; a refusal is the hub's.
    #[test]
    fn machine_limits_are_told_apart() {
        assert_eq!(io_kind(&io::Error::from_raw_os_error(libc::EMFILE)), "emfile");
        assert_eq!(io_kind(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)), "eaddrnotavail");
        assert!(machine_limit("emfile").is_some());
        assert!(machine_limit("refused").is_none());
    }
}
