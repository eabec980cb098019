//! The summary as a colored terminal table. `colored` follows NO_COLOR, CLICOLOR(_FORCE) and the tty.

use std::fmt::Write as _;
use std::io::{self, Write};

use colored::Colorize;

use super::cpu;
use super::summary::{CpuWindow, DeliveryCost, Percentiles, ResumeStats, Summary};

/// Reconnects, replays and the restart of a `--churn` or `--restart-hub-at` run, as plain text.
pub fn resume_line(r: &ResumeStats) -> String {
    let mut line = String::new();
    if r.churn_pct_per_s > 0.0 {
        let _ = write!(line, "churn {}%/s, ", r.churn_pct_per_s);
    }
    if let Some(restart) = &r.restart {
        let _ = write!(line, "hub killed at {:.1} s and back {:.0} ms later, ", restart.at_s, restart.outage_ms);
    }
    let _ = write!(
        line,
        "{} reconnects ({} failed attempts), {} messages replayed",
        r.reconnects, r.failed_attempts, r.replayed
    );
    if r.resume_failed > 0 {
        let _ = write!(line, ", {} resumes failed", r.resume_failed);
    }
    line
}

/// Writes the table to stdout.
pub fn print_table(summary: &Summary) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(table(summary).as_bytes())?;
    out.flush()
}

/// The whole table as text.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let set = &s.settings;
    let _ = writeln!(
        t,
        "{} {} → {}  ({} subscribers, {} msg/s, {:.1} s measured, {:.1} s warm-up)",
        "rtctl bench".bold(),
        s.scenario.bold(),
        s.url,
        set.subscribers,
        set.rate,
        set.duration_s,
        set.warmup_s
    );
    if s.interrupted {
        let line = format!("interrupted after {:.1} s: the figures are of the part that ran", s.bench.wall_s);
        let _ = writeln!(t, "{:<13}{}", "", line.yellow().bold());
    }
    let c = &s.connections;
    let connected = format!("{}/{}", c.established, c.attempted);
    let connected = if c.failed == 0 { connected.green() } else { connected.red() };
    let _ = writeln!(
        t,
        "{:<13}{connected} established in {:.2} s ({:.0}/s){}",
        "connections",
        c.connect_s,
        c.connect_per_s,
        if c.closed_early > 0 {
            format!(", {} closed early by the hub", c.closed_early).red().to_string()
        } else {
            String::new()
        }
    );
    if s.scenario != "idle" {
        let m = &s.messages;
        let _ = writeln!(
            t,
            "{:<13}{} sent ({} warm-up excluded), {} accepted, {} failed",
            "messages", m.scheduled, m.warmup, m.accepted, m.failed
        );
        let d = &s.deliveries;
        let ok = d.lost == 0 && d.duplicates == 0 && d.out_of_order == 0;
        let counts = format!(
            "lost {} ({:.3} %), duplicates {}, out of order {}",
            d.lost, d.loss_pct, d.duplicates, d.out_of_order
        );
        let _ = writeln!(
            t,
            "{:<13}{}/{} ({}), {} deliveries/s",
            "deliveries",
            d.received,
            d.expected,
            if ok { counts.green() } else { counts.red() },
            format!("{:.0}", d.per_s).bold()
        );
        header(&mut t);
        row(&mut t, "delivery", &s.latency_ms);
        row(&mut t, "first delivery", &s.first_delivery_ms);
        row(&mut t, "completion", &s.completion_ms);
        row(&mut t, "publisher lag", &s.publisher_lag_ms);
        if let Some(r) = &s.resume {
            row(&mut t, "reconnect", &r.reconnect_ms);
        }
    } else {
        header(&mut t);
    }
    row(&mut t, "handshake", &s.connections.handshake_ms);
    t.push('\n');
    if let Some(r) = &s.resume {
        let line = resume_line(r);
        let line = if r.resume_failed > 0 { line.red().to_string() } else { line };
        let _ = writeln!(t, "{:<13}{line}", "resume");
    }
    if !s.errors.is_empty() {
        let list: Vec<String> = s.errors.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        let _ = writeln!(t, "{:<13}{}", "errors", list.join(", ").red());
    }
    if let Some(limit) = &s.machine_limit {
        let _ = writeln!(
            t,
            "{:<13}{}",
            "machine",
            format!("this machine, not the hub, limited the run: {limit}").yellow().bold()
        );
    }
    let b = &s.bench;
    let _ = writeln!(
        t,
        "{:<13}{:.2} cores ({:.1} s CPU over {:.1} s){}",
        "bench CPU",
        b.cpu_cores,
        b.cpu_s,
        b.wall_s,
        if b.includes_hub { ", includes the in-process hub" } else { "" }
    );
    if let Some(line) = hub_line(s) {
        let _ = writeln!(t, "{:<13}{line}", "hub");
    }
    let _ = writeln!(t, "{:<13}{}", "measured", window_line(&s.cpu));
    if let Some(line) = cost_line(&s.cost) {
        let _ = writeln!(t, "{:<13}{line}", "per delivery");
    }
    for warning in cpu::warnings(&s.cpu) {
        let _ = writeln!(t, "{:<13}{}", "", warning.yellow().bold());
    }
    if let Some(find) = &s.find_max {
        let _ = writeln!(t, "\n{}", "find-max".bold());
        for step in &find.steps {
            let mark = if step.passed { "✔".green() } else { "✘".red() };
            let _ = writeln!(
                t,
                "  {mark} {:>9.0} msg/s  {:>10.0} deliveries/s  p99 {:>8.2} ms  {}",
                step.rate,
                step.deliveries_per_s,
                step.p99_ms,
                step.failed.join(" ")
            );
        }
        let verdict = match find.max_rate {
            Some(rate) => format!("highest rate that held: {rate:.0} msg/s").green(),
            None => "no rate held".red(),
        };
        let _ = writeln!(t, "  {}", verdict.bold());
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(t, "\n{}", "thresholds".bold());
        for th in &s.thresholds {
            let value = th.value.map_or("not measured".to_owned(), |v| format!("{v:.3}"));
            let mark = if th.passed { "✔".green() } else { "✘".red() };
            let _ = writeln!(t, "  {mark} {:<28} {value}", th.expr);
        }
    }
    t
}

/// The column heads of the latency table.
fn header(t: &mut String) {
    let _ = writeln!(
        t,
        "\n{:<17}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "latency (ms)".bold(),
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "mean"
    );
}

fn row(t: &mut String, name: &str, p: &Percentiles) {
    if p.count == 0 {
        let _ = writeln!(t, "  {name:<15}{:>9}", "-");
        return;
    }
    let _ = writeln!(
        t,
        "  {name:<15}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
        p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
    );
}

/// CPU use while the run measured: machine, bench and hub.
pub fn window_line(cpu: &CpuWindow) -> String {
    let mut parts = Vec::new();
    if let (Some(cores), Some(busy)) = (cpu.machine_cores, cpu.machine_busy_pct) {
        parts.push(format!(
            "machine {busy:.0} % busy of {cores} CPUs (softirq {:.0} %, steal {:.1} %)",
            cpu.machine_softirq_pct.unwrap_or(0.0),
            cpu.machine_steal_pct.unwrap_or(0.0)
        ));
    }
    parts.push(format!("bench {:.2} cores", cpu.bench_cores));
    if let Some(cores) = cpu.hub_cores {
        parts.push(format!("hub {cores:.2} cores"));
    }
    format!("{} over {:.1} s", parts.join(", "), cpu.window_s)
}

/// CPU per delivery: `hub 2.1 µs (1.6 sys), bench 1.2 µs (0.7 sys), softirq 0.9 µs, machine 4.5 µs`.
pub fn cost_line(cost: &DeliveryCost) -> Option<String> {
    let us = |ns: f64| format!("{:.2} µs", ns / 1000.0);
    let party = |name: &str, ns: Option<f64>, system: Option<f64>| {
        ns.map(|ns| match system {
            Some(system) => format!("{name} {} ({:.2} in system calls)", us(ns), system / 1000.0),
            None => format!("{name} {}", us(ns)),
        })
    };
    let parts: Vec<String> = [
        party("hub", cost.hub_ns, cost.hub_system_ns),
        party("bench", cost.bench_ns, cost.bench_system_ns),
        cost.softirq_ns.map(|ns| format!("softirq {}", us(ns))),
        cost.machine_ns.map(|ns| format!("machine {}", us(ns))),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| format!("{} of CPU", parts.join(", ")))
}

fn hub_line(s: &Summary) -> Option<String> {
    let h = &s.hub;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut parts = Vec::new();
    if let (Some(layer), Some(store)) = (&h.layer, &h.store) {
        parts.push(format!("{layer} layer, {store} store"));
    }
    if let Some(cores) = h.cpu_cores {
        parts.push(format!("CPU {cores:.2} cores"));
    }
    if let (Some(before), Some(connected)) = (h.memory_rss_before_bytes, h.memory_rss_connected_bytes) {
        let per = h
            .memory_per_connection_bytes
            .map_or(String::new(), |b| format!(" ({:+.1} KiB per connection)", b / 1024.0));
        parts.push(format!("memory {:.1} MiB → {:.1} MiB{per}", mib(before), mib(connected)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}
