//! CPU use over the measured window: the bench's, the hub's and the whole machine's.
//!
//! The bench usually shares its machine with the hub it measures. A p99 taken while the CPUs were
//! saturated says as much about the machine as about the hub: the hub's pushes then wait for a core the
//! bench holds, and the bench reads them late. So every run says how busy the machine was while it
//! measured (connecting and draining left out, since they would dilute it), and how much of that
//! a hypervisor stole for other guests, which makes any figure of the run unreliable.

use std::time::{Duration, Instant};

use super::summary::CpuWindow;

/// Busy share from which the machine counts as saturated. An average hides bursts: in our 10,000 × 10/s
/// runs, 80–90 % busy on average, each broadcast held both cores for about 80 of every 100 ms. From 90 %
/// on, even the gaps between bursts are nearly gone.
const SATURATED_PCT: f64 = 90.0;
/// Steal from which a run's figures say more about the neighbours than about the hub.
const STEAL_WARNING_PCT: f64 = 5.0;

/// The CPU counters at one instant.
pub struct Sample {
    at: Instant,
    bench: Times,
    hub: Option<Times>,
    machine: Option<Ticks>,
}

/// A process's CPU time, split where it was spent: its own code, or the kernel working for it
/// (system calls: most of a socket's cost). Softirq work the kernel does for nobody in particular, such
/// as loopback's receive side, is in neither; [`Ticks`] counts it machine-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub user: Duration,
    pub system: Duration,
}

impl Times {
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    fn since(self, start: Times) -> Times {
        Times { user: self.user.saturating_sub(start.user), system: self.system.saturating_sub(start.system) }
    }
}

impl Sample {
    /// Reads the counters now; `hub_pid` is the hub's process when it is a separate one on this machine.
    pub fn take(hub_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            bench: process_times(),
            hub: hub_pid.and_then(pid_times),
            machine: std::fs::read_to_string("/proc/stat").ok().and_then(|stat| Ticks::parse(&stat)),
        }
    }

    /// CPU use between `start` and this sample.
    pub fn since(&self, start: &Sample) -> CpuWindow {
        let window = self.at.duration_since(start.at).as_secs_f64();
        let cores = |used: Duration| if window > 0.0 { used.as_secs_f64() / window } else { 0.0 };
        let hub = self.hub.zip(start.hub).map(|(end, start)| end.since(start));
        let bench = self.bench.since(start.bench);
        let machine = self.machine.zip(start.machine).and_then(|(end, start)| end.since(&start));
        CpuWindow {
            window_s: window,
            bench_cores: cores(bench.total()),
            bench_system_cores: Some(cores(bench.system)),
            hub_cores: hub.map(|hub| cores(hub.total())),
            hub_system_cores: hub.map(|hub| cores(hub.system)),
            machine_cores: machine.map(|m| m.cores),
            machine_busy_pct: machine.map(|m| m.busy_pct),
            machine_softirq_pct: machine.map(|m| m.softirq_pct),
            machine_steal_pct: machine.map(|m| m.steal_pct),
            saturated: machine.is_some_and(|m| m.busy_pct >= SATURATED_PCT),
        }
    }
}

/// The machine's CPU time summed over its CPUs (the `cpu` line of `/proc/stat`), in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    total: u64,
    /// Idle plus waiting for I/O: time no task wanted the CPU.
    idle: u64,
    softirq: u64,
    steal: u64,
    /// CPUs online (`cpuN` lines).
    cores: u64,
}

/// Busy shares between two [`Ticks`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    cores: u64,
    busy_pct: f64,
    softirq_pct: f64,
    steal_pct: f64,
}

impl Ticks {
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already in user.
        let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        if fields.len() < 4 {
            return None;
        }
        let cores = stat
            .lines()
            .filter(|l| l.strip_prefix("cpu").is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
            .count();
        Some(Self {
            total: (0..8).map(field).sum(),
            idle: field(3) + field(4),
            softirq: field(6),
            steal: field(7),
            cores: cores as u64,
        })
    }

    fn since(&self, start: &Ticks) -> Option<Usage> {
        let total = self.total.checked_sub(start.total).filter(|&t| t > 0)? as f64;
        let pct = |end: u64, start: u64| 100.0 * end.saturating_sub(start) as f64 / total;
        Some(Usage {
            cores: self.cores,
            busy_pct: 100.0 - pct(self.idle, start.idle),
            softirq_pct: pct(self.softirq, start.softirq),
            steal_pct: pct(self.steal, start.steal),
        })
    }
}

/// What the CPU figures say about the trust a reader can put in the latencies.
pub fn warnings(cpu: &CpuWindow) -> Vec<String> {
    let mut warnings = Vec::new();
    if cpu.saturated {
        warnings.push(
            "the machine's CPUs were saturated: latency includes waiting for a CPU, and the hub competed with \
             the bench for cores"
                .to_owned(),
        );
    }
    if let Some(steal) = cpu.machine_steal_pct.filter(|&steal| steal >= STEAL_WARNING_PCT) {
        warnings
            .push(format!("the hypervisor gave {steal:.0} % of the CPU time to other guests: figures are unreliable"));
    }
    warnings
}

/// User plus system CPU time this process has used so far.
pub fn process_cpu() -> Duration {
    process_times().total()
}

/// User plus system CPU time of another process (Linux only).
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    pid_times(pid).map(Times::total)
}

/// The CPU time this process has used so far (getrusage `RUSAGE_SELF`).
fn process_times() -> Times {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Times::default();
        }
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Times { user: time(usage.ru_utime), system: time(usage.ru_stime) }
}

/// The CPU time of another process, from `/proc/PID/stat` (Linux only).
fn pid_times(pid: u32) -> Option<Times> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 11 and 12 after the name.
    let (user, system): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let time = |ticks: u64| Duration::from_secs_f64(ticks as f64 / per_second as f64);
    (per_second > 0).then(|| Times { user: time(user), system: time(system) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 200 600 20 0 70 5 0 0\n\
                        cpu0 50 5 100 300 10 0 35 3 0 0\n\
                        cpu1 50 0 100 300 10 0 35 2 0 0\n\
                        intr 12345 0 0\nctxt 999\ncpus_seen 2\n";

    #[test]
    fn parses_the_summed_cpu_line_and_counts_cpus() {
        let ticks = Ticks::parse(STAT).unwrap();
        assert_eq!(ticks, Ticks { total: 1000, idle: 620, softirq: 70, steal: 5, cores: 2 });
        assert_eq!(Ticks::parse("intr 1 2\n"), None);
        assert_eq!(Ticks::parse("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn shares_are_of_the_time_between_two_samples() {
        let start = Ticks::parse(STAT).unwrap();
        // 400 more ticks: 40 idle, 120 softirq, 12 steal.
        let end = Ticks { total: 1400, idle: 660, softirq: 190, steal: 17, cores: 2 };
        let usage = end.since(&start).unwrap();
        assert_eq!(usage, Usage { cores: 2, busy_pct: 90.0, softirq_pct: 30.0, steal_pct: 3.0 });
        // No tick passed (or the counters went backwards): nothing to say.
        assert_eq!(start.since(&start), None);
        assert_eq!(start.since(&end), None);
    }

    #[test]
    fn a_window_reports_cores_and_saturation() {
        let start = Sample {
            at: Instant::now(),
            bench: Times { user: Duration::from_millis(300), system: Duration::from_millis(200) },
            hub: Some(Times { user: Duration::from_millis(400), system: Duration::from_millis(600) }),
            machine: Ticks::parse(STAT),
        };
        let end = Sample {
            at: start.at + Duration::from_secs(2),
            bench: Times { user: Duration::from_millis(1100), system: Duration::from_millis(1000) },
            hub: Some(Times { user: Duration::from_millis(900), system: Duration::from_millis(1600) }),
            machine: Some(Ticks { total: 1400, idle: 660, softirq: 190, steal: 17, cores: 2 }),
        };
        let window = end.since(&start);
        assert_eq!(window.window_s, 2.0);
        assert!((window.bench_cores - 0.8).abs() < 1e-9, "{}", window.bench_cores);
        assert_eq!(window.hub_cores, Some(0.75));
        // Of which system calls: 0.8 s of the bench's 1.6 s, 1 s of the hub's 1.5 s.
        assert_eq!((window.bench_system_cores, window.hub_system_cores), (Some(0.4), Some(0.5)));
        assert_eq!((window.machine_cores, window.machine_busy_pct), (Some(2), Some(90.0)));
        assert!(window.saturated);
        let idler = Sample { machine: Some(Ticks { idle: 700, ..end.machine.unwrap() }), ..end };
        assert_eq!(idler.since(&start).machine_busy_pct, Some(80.0));
        assert!(!idler.since(&start).saturated);
        // A hub that could not be observed, or a machine without /proc/stat.
        let blind = Sample { hub: None, machine: None, at: idler.at, bench: idler.bench };
        let window = blind.since(&start);
        assert_eq!((window.hub_cores, window.machine_busy_pct, window.saturated), (None, None, false));
    }

    #[test]
    fn warns_of_saturation_and_steal() {
        let calm = CpuWindow { machine_busy_pct: Some(60.0), machine_steal_pct: Some(4.9), ..CpuWindow::default() };
        assert!(warnings(&calm).is_empty());
        let busy = CpuWindow { saturated: true, ..calm.clone() };
        assert_eq!(warnings(&busy).len(), 1);
        assert!(warnings(&busy)[0].contains("saturated"), "{:?}", warnings(&busy));
        let robbed = CpuWindow { machine_steal_pct: Some(12.0), ..calm };
        assert_eq!(
            warnings(&robbed),
            ["the hypervisor gave 12 % of the CPU time to other guests: figures are unreliable"]
        );
    }
}
