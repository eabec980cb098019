//! Pass/fail rules for CI: `p99<50ms`, `loss=0`, `deliveries_per_s>100000`, checked against a summary.

use std::fmt;
use std::str::FromStr;

use super::summary::Summary;

/// A comparison operator of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            // Values are measured counts or rounded figures; an exact compare is what `loss=0` means.
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }
}

/// What kind of quantity a metric is, which decides the units its threshold may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Milliseconds in the summary; thresholds take `ns`, `us`, `ms` (the default) or `s`.
    Duration,
    /// Bytes; thresholds take `B` (the default), `KiB`, `MiB`, `GiB`.
    Bytes,
    /// A plain number; a `%` suffix is allowed only on `loss_pct`.
    Number,
}

/// Every metric a threshold may name, with its kind. The names are the summary's JSON names.
const METRICS: &[(&str, Kind)] = &[
    ("p50", Kind::Duration),
    ("p90", Kind::Duration),
    ("p99", Kind::Duration),
    ("p99.9", Kind::Duration),
    ("p999", Kind::Duration),
    ("max", Kind::Duration),
    ("mean", Kind::Duration),
    ("completion_p50", Kind::Duration),
    ("completion_p99", Kind::Duration),
    ("completion_max", Kind::Duration),
    ("first_delivery_p50", Kind::Duration),
    ("first_delivery_p99", Kind::Duration),
    ("handshake_p99", Kind::Duration),
    ("publisher_lag_p99", Kind::Duration),
    ("publisher_lag_max", Kind::Duration),
    ("loss", Kind::Number),
    ("loss_pct", Kind::Number),
    ("duplicates", Kind::Number),
    ("out_of_order", Kind::Number),
    ("errors", Kind::Number),
    ("connect_errors", Kind::Number),
    ("publish_errors", Kind::Number),
    ("deliveries_per_s", Kind::Number),
    ("connect_per_s", Kind::Number),
    ("bench_cpu_cores", Kind::Number),
    ("hub_ns_per_delivery", Kind::Number),
    ("bench_ns_per_delivery", Kind::Number),
    ("machine_busy_pct", Kind::Number),
    ("machine_steal_pct", Kind::Number),
    ("memory_per_connection", Kind::Bytes),
    ("reconnects", Kind::Number),
    ("replayed", Kind::Number),
    ("resume_failed", Kind::Number),
    ("reconnect_p99", Kind::Duration),
];

/// One parsed `--threshold`, e.g. `p99<50ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as given, for reports.
    pub expr: String,
    pub metric: &'static str,
    pub op: Op,
    /// The limit in the summary's unit for this metric (ms, bytes or a plain number).
    pub limit: f64,
}

/// Why a threshold did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no comparison operator in {0:?} (expected one of < <= > >= = !=)")]
    NoOperator(String),
    #[error("unknown metric {0:?} (known: {known})", known = known_metrics())]
    UnknownMetric(String),
    #[error("invalid number in {0:?}")]
    Number(String),
    #[error("unit {unit:?} does not fit metric {metric:?}")]
    Unit { metric: String, unit: String },
}

fn known_metrics() -> String {
    METRICS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

impl FromStr for Threshold {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact.find(['<', '>', '=', '!']).ok_or_else(|| ParseError::NoOperator(text.into()))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ]
        .into_iter()
        .find_map(|(symbol, op)| rest.strip_prefix(symbol).map(|value| (op, value)))
        .ok_or_else(|| ParseError::NoOperator(text.into()))?;
        let (metric, kind) = METRICS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| ParseError::UnknownMetric(name.into()))?;
        let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(value.len());
        let (number, unit) = value.split_at(split);
        let number: f64 = number.replace('_', "").parse().map_err(|_| ParseError::Number(text.into()))?;
        let scale = unit_scale(metric, kind, unit)
            .ok_or_else(|| ParseError::Unit { metric: metric.into(), unit: unit.into() })?;
        Ok(Threshold { expr: compact.clone(), metric, op, limit: number * scale })
    }
}

/// How many of the summary's units one `unit` is, or `None` when the unit does not fit the metric.
fn unit_scale(metric: &str, kind: Kind, unit: &str) -> Option<f64> {
    match (kind, unit) {
        (Kind::Duration, "ns") => Some(1e-6),
        (Kind::Duration, "us" | "µs") => Some(1e-3),
        (Kind::Duration, "ms" | "") => Some(1.0),
        (Kind::Duration, "s") => Some(1e3),
        (Kind::Bytes, "B" | "") => Some(1.0),
        (Kind::Bytes, "KiB" | "K" | "KB") => Some(1024.0),
        (Kind::Bytes, "MiB" | "M" | "MB") => Some(1024.0 * 1024.0),
        (Kind::Number, "") => Some(1.0),
        (Kind::Number, "%") if metric == "loss_pct" => Some(1.0),
        _ => None,
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.limit)
    }
}

impl Threshold {
    /// Checks the rule against a summary: `Some(true)` holds, `Some(false)` fails, `None` when the run did not
    /// measure the metric (e.g. hub memory on a hub without `/api/v1/stats`), which counts as a failure.
    pub fn check(&self, summary: &Summary) -> (Option<f64>, bool) {
        let value = summary.metric(self.metric);
        (value, value.is_some_and(|v| self.op.holds(v, self.limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latency thresholds accept ns/us/ms/s and store milliseconds.
    #[test]
    fn parses_durations_into_milliseconds() {
        let t: Threshold = "p99<50ms".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), ("p99", Op::Lt, 50.0));
        let t: Threshold = "p99.9 <= 1.5s".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), ("p99.9", Op::Le, 1500.0));
        let t: Threshold = "max<250us".parse().unwrap();
        assert_eq!(t.limit, 0.25);
        let t: Threshold = "p50<3".parse().unwrap();
        assert_eq!(t.limit, 3.0);
    }

    /// Counts, rates and byte sizes parse with their own units; `=` and `==` are the same.
    #[test]
    fn parses_counts_rates_and_bytes() {
        let t: Threshold = "loss=0".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), ("loss", Op::Eq, 0.0));
        assert_eq!("loss==0".parse::<Threshold>().unwrap().op, Op::Eq);
        let t: Threshold = "deliveries_per_s>100_000".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), ("deliveries_per_s", Op::Gt, 100_000.0));
        let t: Threshold = "memory_per_connection<=8KiB".parse().unwrap();
        assert_eq!(t.limit, 8192.0);
        let t: Threshold = "loss_pct<0.1%".parse().unwrap();
        assert_eq!(t.limit, 0.1);
    }

    /// Bad input names what is wrong instead of silently passing.
    #[test]
    fn rejects_bad_thresholds() {
        assert!(matches!("p99 50ms".parse::<Threshold>(), Err(ParseError::NoOperator(_))));
        assert!(matches!("p98<5ms".parse::<Threshold>(), Err(ParseError::UnknownMetric(_))));
        assert!(matches!("p99<fast".parse::<Threshold>(), Err(ParseError::Number(_))));
        assert!(matches!("loss<5ms".parse::<Threshold>(), Err(ParseError::Unit { .. })));
        assert!(matches!("p99<5KiB".parse::<Threshold>(), Err(ParseError::Unit { .. })));
    }

    /// Every operator compares the way its symbol reads.
    #[test]
    fn operators_compare() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0));
        assert!(Op::Le.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0));
        assert!(Op::Gt.holds(3.0, 2.0) && !Op::Gt.holds(2.0, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0) && Op::Ne.holds(1.0, 0.0));
    }
}
