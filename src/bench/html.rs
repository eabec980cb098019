//! The self-contained HTML report: summary tables plus inline SVG charts (latency by percentile, latency
//! and deliveries over time). No scripts, fonts or anything else fetched from the network.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::summary::{Percentiles, Summary};

/// Chart size in SVG user units; the page scales it to its width.
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 316.0;
/// Room for the axis labels; the legend sits in the top margin, above the plot, where no line runs.
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 32.0;
const RIGHT: f64 = 40.0;

/// Writes the report for `summary` to `path`.
pub fn write_html(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, page(summary)).with_context(|| format!("cannot write the report to {}", path.display()))
}

/// One data series of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    /// An SVG `stroke-dasharray`, or empty for a solid line.
    dash: &'a str,
    points: Vec<(f64, f64)>,
}

pub fn page(s: &Summary) -> String {
    let mut h = String::new();
    let title = format!("rtctl bench {} — {}", s.scenario, s.started_at);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font:14px system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}}
h1{{font-size:1.4em}} h2{{font-size:1.1em;margin-top:2em}}
table{{border-collapse:collapse}} td,th{{padding:3px 12px;text-align:right;border-bottom:1px solid #ddd}}
td:first-child,th:first-child{{text-align:left}} .bad{{color:#b00020;font-weight:bold}} .good{{color:#137333}}
svg{{width:100%;height:auto;background:#fafafa;border:1px solid #eee}} svg text{{font:11px sans-serif;fill:#555}}
</style></head><body><h1>{}</h1>"#,
        esc(&title),
        esc(&title)
    );
    if s.interrupted {
        let _ = write!(
            h,
            r#"<p class="bad">Interrupted after {:.1} s (Ctrl-C): every figure is of the part that ran.</p>"#,
            s.bench.wall_s
        );
    }
    let version = if s.version.is_empty() { String::new() } else { format!("rtctl {}: ", esc(&s.version)) };
    if !s.command.is_empty() || !version.is_empty() {
        let _ = write!(h, "<p>{version}<code>{}</code></p>", esc(&s.command));
    }
    let set = &s.settings;
    let _ = write!(
        h,
        "<p>{} → <code>{}</code>: {} subscribers, {} msg/s, {:.1} s measured after {:.1} s warm-up, payload {} B.</p>",
        esc(&s.scenario),
        esc(&s.url),
        set.subscribers,
        set.rate,
        set.duration_s,
        set.warmup_s,
        set.payload_bytes
    );
    verdicts(&mut h, s);
    figures(&mut h, s);
    latency_table(&mut h, s);
    if !s.distribution.is_empty() {
        h.push_str("<h2>Latency by percentile</h2>");
        // Percentiles on a log scale of 1/(1-p), as HdrHistogram plots do, so the tail gets the room.
        let x = |p: f64| -(1.0 - (p / 100.0).min(0.99999)).log10();
        let points = s.distribution.iter().map(|d| (x(d.percentile), d.latency_ms)).collect();
        let ticks = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999].iter().map(|&p| (x(p), format!("{p}%"))).collect();
        h.push_str(&chart(&[Series { name: "latency", color: "#1a73e8", dash: "", points }], ticks, "ms"));
    }
    if !s.timeline.is_empty() {
        h.push_str("<h2>Latency over time</h2>");
        let pick = |f: fn(&super::summary::TimelinePoint) -> f64| {
            s.timeline.iter().filter(|p| p.deliveries > 0).map(|p| (p.t_s, f(p))).collect::<Vec<_>>()
        };
        // max last, on top, in a strong colour of its own; dashed, so that p99 (often close to it in
        // short slices) shows through its gaps.
        let series = [
            Series { name: "p50", color: "#1a73e8", dash: "", points: pick(|p| p.p50_ms) },
            Series { name: "p99", color: "#e8710a", dash: "", points: pick(|p| p.p99_ms) },
            Series { name: "max", color: "#8e24aa", dash: "6 4", points: pick(|p| p.max_ms) },
        ];
        h.push_str(&chart(&series, time_ticks(s), "ms"));
        h.push_str("<h2>Deliveries per second</h2>");
        let points = s.timeline.iter().map(|p| (p.t_s, p.per_s)).collect();
        let series = [Series { name: "deliveries/s", color: "#137333", dash: "", points }];
        h.push_str(&chart(&series, time_ticks(s), "/s"));
    }
    h.push_str("<h2>Summary (JSON)</h2><details><summary>show</summary><pre>");
    h.push_str(&esc(&serde_json::to_string_pretty(s).unwrap_or_default()));
    h.push_str("</pre></details></body></html>\n");
    h
}

fn verdicts(h: &mut String, s: &Summary) {
    if let Some(limit) = &s.machine_limit {
        let _ = write!(h, r#"<p class="bad">This machine, not the hub, limited the run: {}</p>"#, esc(limit));
    }
    for warning in super::cpu::warnings(&s.cpu) {
        let _ = write!(h, r#"<p class="bad">Read with care: {}.</p>"#, esc(&warning));
    }
    if s.thresholds.is_empty() {
        return;
    }
    h.push_str("<h2>Thresholds</h2><table><tr><th>threshold</th><th>value</th><th></th></tr>");
    for t in &s.thresholds {
        let value = t.value.map_or("not measured".into(), |v| format!("{v:.3}"));
        let verdict = if t.passed { r#"<span class="good">held</span>"# } else { r#"<span class="bad">failed</span>"# };
        let _ = write!(h, "<tr><td>{}</td><td>{value}</td><td>{verdict}</td></tr>", esc(&t.expr));
    }
    h.push_str("</table>");
}

fn figures(h: &mut String, s: &Summary) {
    let c = &s.connections;
    let d = &s.deliveries;
    let mut rows = vec![
        (
            "connections",
            format!(
                "{}/{} in {:.2} s ({:.0}/s), {} closed early",
                c.established, c.attempted, c.connect_s, c.connect_per_s, c.closed_early
            ),
        ),
        (
            "messages",
            format!(
                "{} measured, {} accepted, {} failed",
                s.messages.scheduled, s.messages.accepted, s.messages.failed
            ),
        ),
        ("deliveries", format!("{}/{} received, {:.0}/s", d.received, d.expected, d.per_s)),
        (
            "lost / duplicated / out of order",
            format!("{} ({:.3} %) / {} / {}", d.lost, d.loss_pct, d.duplicates, d.out_of_order),
        ),
        ("bench CPU", format!("{:.2} cores ({:.1} s over {:.1} s)", s.bench.cpu_cores, s.bench.cpu_s, s.bench.wall_s)),
    ];
    if let Some(cores) = s.hub.cpu_cores {
        rows.push(("hub CPU", format!("{cores:.2} cores")));
    }
    rows.push(("CPU while measuring", super::report::window_line(&s.cpu)));
    if let Some(line) = super::report::cost_line(&s.cost) {
        rows.push(("CPU per delivery", line));
    }
    if let Some(per) = s.hub.memory_per_connection_bytes {
        rows.push(("hub memory per connection", format!("{:.1} KiB", per / 1024.0)));
    }
    if let Some(resume) = &s.resume {
        rows.push(("resume", super::report::resume_line(resume)));
    }
    if !s.errors.is_empty() {
        rows.push(("errors", s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")));
    }
    h.push_str("<h2>Figures</h2><table>");
    for (name, value) in rows {
        let _ = write!(h, "<tr><td>{name}</td><td>{}</td></tr>", esc(&value));
    }
    h.push_str("</table>");
}

fn latency_table(h: &mut String, s: &Summary) {
    h.push_str("<h2>Latency (ms)</h2><table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
    let mut rows: Vec<(&str, &Percentiles)> = vec![
        ("delivery", &s.latency_ms),
        ("first delivery", &s.first_delivery_ms),
        ("broadcast completion", &s.completion_ms),
        ("publisher lag", &s.publisher_lag_ms),
        ("handshake", &s.connections.handshake_ms),
    ];
    if let Some(resume) = &s.resume {
        rows.push(("reconnect", &resume.reconnect_ms));
    }
    for (name, p) in rows {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            p.count, p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
        );
    }
    h.push_str("</table>");
}

fn time_ticks(s: &Summary) -> Vec<(f64, String)> {
    let end = s.timeline.last().map_or(1.0, |p| p.t_s).max(1.0);
    let step = nice_step(end / 8.0);
    (0..=((end / step) as usize)).map(|i| (i as f64 * step, format!("{}s", i as f64 * step))).collect()
}

/// A round step (1, 2 or 5 times a power of ten) near `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|&s| s >= raw).unwrap_or(10.0 * power)
}

/// An SVG line chart of `series` with the given x ticks and a y axis from 0 in `unit`.
fn chart(series: &[Series], x_ticks: Vec<(f64, String)>, unit: &str) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_min = x_ticks.first().map_or(0.0, |t| t.0).min(all().map(|p| p.0).fold(f64::MAX, f64::min));
    let x_max = x_ticks.last().map_or(1.0, |t| t.0).max(all().map(|p| p.0).fold(f64::MIN, f64::max));
    let y_step = nice_step(all().map(|p| p.1).fold(0.0, f64::max).max(1e-3) / 5.0);
    // A step of headroom above the highest point: a flat line at the top must not sit on the edge.
    let y_max = ((all().map(|p| p.1).fold(0.0, f64::max) / y_step).floor() + 1.0) * y_step;
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let px = |x: f64| LEFT + (x - x_min) / (x_max - x_min).max(1e-9) * plot_w;
    let py = |y: f64| TOP + plot_h - y / y_max * plot_h;
    let mut svg = format!(r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">"#);
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} {unit}</text>"##,
            WIDTH - RIGHT,
            py(y),
            py(y),
            LEFT - 6.0,
            py(y) + 4.0,
            trim(y)
        );
        y += y_step;
    }
    for (x, label) in &x_ticks {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#e0e0e0"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
            px(*x),
            TOP,
            TOP + plot_h,
            HEIGHT - BOTTOM + 16.0,
            esc(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let dash = if s.dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{}""#, s.dash) };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            s.color,
            path.join(" ")
        );
        let lx = LEFT + 12.0 + i as f64 * 110.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            TOP / 2.0 - 4.0,
            s.color,
            lx + 18.0,
            TOP / 2.0 + 1.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A number without needless decimals.
fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
