//! One bench run from connecting to the summary, and `--find-max`, which repeats runs at rising rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::clock::{self, now_ns};
use super::cpu;
use super::publisher::{self, Channel};
use super::resume::Resuming;
use super::scenario::{self, Plan, Scenario};
use super::stats::{Completion, Recorder, Sends, Shards, latency_histogram};
use super::subscriber::{self, ACCEPTED, FAILED, Outcome, PENDING, Shared};
use super::summary::*;
use super::target::Target;
use super::workers::Workers;
use super::{Config, limits};
use crate::auth::{Minter, SigningKey};

/// Delay between scheduling the first message and sending it, so the publisher starts on time.
const SCHEDULE_LEAD: Duration = Duration::from_millis(50);
/// Pause after connecting before reading the hub's memory, so its allocations settle.
const MEMORY_SETTLE: Duration = Duration::from_secs(1);
/// Queue of chat frames per member; beyond it a send counts as a publish error.
const CHAT_QUEUE: usize = 1024;
/// Room creation requests in flight at once.
const ROOM_CONCURRENCY: usize = 16;
/// Timeline slices: at least this long, and at most about this many per run.
const MIN_SLICE: Duration = Duration::from_millis(200);
const SLICES: u32 = 100;
/// How long an interrupted run still waits for deliveries in flight (instead of `--drain`).
const INTERRUPTED_DRAIN: Duration = Duration::from_millis(500);

/// Runs one bench against `target` and returns its summary, thresholds judged. Cancelling
/// `config.interrupt` ends it early with the summary of what ran, marked `interrupted`.
pub async fn run(config: &Config, target: &Target) -> anyhow::Result<Summary> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let open_file_limit = limits::raise_nofile().context("raise the open-file limit")?;
    warn_about_limits(config, open_file_limit);
    let plan = make_plan(config);
    let measured = plan.total - plan.warmup;
    let window = Duration::from_secs_f64(measured as f64 / plan.rate);
    let mut client = reqwest::Client::builder();
    if let Some(ca) = &target.ca {
        client = client.tls_backend_preconfigured(rustls::ClientConfig::clone(ca));
    }
    let client = client
        .pool_max_idle_per_host(config.max_inflight)
        .tcp_nodelay(true)
        .timeout(config.request_timeout)
        .build()
        .context("build the HTTP client")?;
    let stats_before = target.stats(&client).await;
    let memory_before = stats_before.as_ref().and_then(|stats| stats.memory_rss);
    if plan.scenario == Scenario::Chat {
        create_rooms(&plan, target, &client).await?;
    }
    let slice = MIN_SLICE.max(window / SLICES).as_nanos() as u64;
    let workers = Workers::start()?;
    let shared = Arc::new(Shared {
        target: target.clone(),
        mint: Minter::new(&SigningKey::Hs256(target.jwt_secret.clone()), None)?,
        // One shard per worker: subscriber `key` is accounted on worker `key % count`, which is shard
        // `key % count` too, so deliveries lock only their own thread's shard and its histograms stay
        // in that core's cache (the publisher locks one for an error now and then). With 64 shards each
        // delivery touched a cold 180 KiB histogram, and every timeline slice allocated 64 more
        // histograms inside the receive path (page faults that delayed the reads behind them).
        shards: Shards::new(workers.count(), slice),
        completion: Completion::new(plan.total, workers.count()),
        status: (0..plan.total).map(|_| AtomicU8::new(PENDING)).collect(),
        sends: Sends::new(plan.total),
        sent: AtomicU64::new(0),
        stop: CancellationToken::new(),
        interrupt: config.interrupt.clone(),
        source_ips: config.source_ips.clone(),
        connect_timeout: config.connect_timeout,
        resuming: (config.churn > 0.0 || config.restart.is_some()).then(|| Resuming::new(config.churn)),
        plan,
    });
    let plan = &shared.plan;
    let cpu_start = cpu::process_cpu();
    let hub_cpu_start = target.pid.and_then(cpu::pid_cpu);
    let wall_start = Instant::now();

    let connect = connect_all(config, &shared, &workers).await;
    let memory_connected = match memory_before {
        Some(_) => {
            tokio::time::sleep(MEMORY_SETTLE).await;
            target.stats(&client).await.and_then(|stats| stats.memory_rss)
        }
        None => None,
    };

    let mut lag = latency_histogram();
    let schedule_start = now_ns() + SCHEDULE_LEAD.as_nanos() as u64;
    let measure_start = schedule_start + plan.offset_ns(plan.warmup);
    shared.shards.set_start(measure_start);
    let restart = config.restart.clone().map(|restart| {
        tokio::spawn(async move {
            let kill_at = schedule_start + restart.at.as_nanos() as u64;
            tokio::time::sleep_until(clock::instant_at(kill_at).into()).await;
            let killed = now_ns();
            restart.hub.restart().await.context("restart the hub")?;
            Ok::<_, anyhow::Error>(HubRestart {
                at_s: killed.saturating_sub(schedule_start) as f64 / 1e9,
                outage_ms: (now_ns() - killed) as f64 / 1e6,
            })
        })
    });
    let hub_pid = target.pid;
    let window_start = tokio::spawn(async move {
        tokio::time::sleep_until(clock::instant_at(measure_start).into()).await;
        cpu::Sample::take(hub_pid)
    });
    if plan.scenario == Scenario::Idle {
        hold(config, window.max(config.duration)).await;
    } else if config.interrupt.is_cancelled() {
        // Interrupted while connecting: nothing is published.
    } else {
        let channel = match plan.scenario {
            Scenario::Chat => Channel::Chat(connect.chat_senders),
            _ => Channel::Http(client.clone()),
        };
        let (publishing, inflight, runtime) = (shared.clone(), config.max_inflight, tokio::runtime::Handle::current());
        let publisher =
            tokio::task::spawn_blocking(move || publisher::run(publishing, channel, schedule_start, inflight, runtime));
        watch_publisher(config, &shared, &publisher).await;
        lag = publisher.await.context("the publisher task failed")?;
    }
    if let Some(resuming) = &shared.resuming {
        resuming.calm.cancel();
    }
    let restart = match restart {
        // A restart scheduled after the last message still happens: its reconnects belong to the run.
        Some(task) => Some(task.await.context("the restart task failed")??),
        None => None,
    };
    let window_end = cpu::Sample::take(hub_pid);
    // A run that ended before its measured window began (every publish failed at once) has no window.
    let window_start = if window_start.is_finished() {
        window_start.await.context("the CPU sampling task failed")?
    } else {
        window_start.abort();
        cpu::Sample::take(hub_pid)
    };
    if plan.scenario != Scenario::Idle {
        drain(config, &shared, &connect.alive_per_group).await;
    }
    let interrupted = config.interrupt.is_cancelled();
    let memory_after = match memory_before {
        Some(_) => target.stats(&client).await.and_then(|stats| stats.memory_rss),
        None => None,
    };

    shared.stop.cancel();
    let mut outcomes = Vec::with_capacity(connect.handles.len());
    for handle in connect.handles {
        outcomes.push(handle.await.context("a subscriber task failed")?);
    }
    let wall_s = wall_start.elapsed().as_secs_f64();
    let cpu_s = (cpu::process_cpu() - cpu_start).as_secs_f64();
    let hub_cpu_s = hub_cpu_start.zip(target.pid.and_then(cpu::pid_cpu)).map(|(a, b)| (b - a).as_secs_f64());

    let recorder = shared.shards.merged();
    let established = outcomes.iter().filter(|o| o.established).count() as u64;
    let per_connection = memory_before
        .zip(memory_connected)
        .filter(|_| established > 0)
        .map(|(before, after)| (after as f64 - before as f64) / established as f64);
    let machine_limit = recorder.errors.keys().find_map(|kind| limits::machine_limit(kind)).map(str::to_owned);
    let deliveries = account(&shared, &outcomes, measure_start);
    let cpu_window = window_end.since(&window_start);
    let cost = DeliveryCost::new(&cpu_window, deliveries.per_s);
    let mut summary = Summary {
        schema: SCHEMA,
        scenario: plan.scenario.name().into(),
        url: target.http.clone(),
        started_at,
        settings: Settings {
            subscribers: config.subscribers,
            room_size: plan.room_size,
            rate: plan.rate,
            duration_s: if plan.scenario == Scenario::Idle { config.duration } else { window }.as_secs_f64(),
            warmup_s: plan.offset_ns(plan.warmup) as f64 / 1e9,
            payload_bytes: config.payload_bytes as u64,
            connect_rate: config.connect_rate,
            source_ips: config.source_ips.len() as u64,
        },
        connections: Connections {
            attempted: config.subscribers,
            established,
            failed: config.subscribers - established,
            closed_early: outcomes.iter().filter(|o| o.closed_early).count() as u64,
            connect_s: connect.seconds,
            connect_per_s: if connect.seconds > 0.0 { established as f64 / connect.seconds } else { 0.0 },
            handshake_ms: Percentiles::from_histogram(&connect.handshakes, 1.0),
        },
        messages: message_counts(&shared, interrupted),
        deliveries,
        latency_ms: Percentiles::from_histogram(&recorder.latency, 1.0),
        completion_ms: Percentiles::from_histogram(&broadcast(&shared, schedule_start, Completion::last_delivery), 1.0),
        first_delivery_ms: Percentiles::from_histogram(
            &broadcast(&shared, schedule_start, Completion::first_delivery),
            1.0,
        ),
        publisher_lag_ms: Percentiles::from_histogram(&lag, 1.0),
        errors: recorder.errors.clone(),
        machine_limit,
        bench: BenchUsage {
            cpu_s,
            wall_s,
            cpu_cores: cpu_s / wall_s,
            includes_hub: target.in_process,
            open_file_limit,
        },
        hub: HubUsage {
            memory_rss_before_bytes: memory_before,
            memory_rss_connected_bytes: memory_connected,
            memory_rss_after_bytes: memory_after,
            memory_per_connection_bytes: per_connection,
            cpu_s: hub_cpu_s,
            cpu_cores: hub_cpu_s.map(|s| s / wall_s),
            layer: stats_before.as_ref().and_then(|stats| stats.layer.clone()),
            store: stats_before.and_then(|stats| stats.store),
        },
        cost,
        cpu: cpu_window,
        timeline: timeline(&recorder, shared.shards.bucket_ns()),
        distribution: distribution(&recorder.latency),
        thresholds: Vec::new(),
        passed: true,
        find_max: None,
        resume: shared.resuming.as_ref().map(|resuming| ResumeStats { restart, ..resuming.stats() }),
        interrupted,
        command: String::new(),
        version: String::new(),
    };
    judge(&mut summary, config);
    Ok(summary)
}

/// Runs at `config.rate`, then at rates `factor` times higher, until a threshold fails or `max_steps` ran;
/// returns the summary of the highest rate that held (or of the first step when none did).
pub async fn find_max(config: &Config, target: &Target, factor: f64, max_steps: u32) -> anyhow::Result<Summary> {
    let mut steps = Vec::new();
    let mut best: Option<Summary> = None;
    let mut first: Option<Summary> = None;
    let mut rate = config.rate;
    for step in 1..=max_steps {
        if config.progress.is_some() {
            eprintln!("find-max step {step}/{max_steps}: {rate:.0} msg/s");
        }
        let mut summary = run(&Config { rate, ..config.clone() }, target).await?;
        if summary.interrupted {
            // The steps so far, and the one cut short, as they stand.
            summary.find_max = Some(FindMax { max_rate: best.as_ref().map(|s| s.settings.rate), steps });
            return Ok(summary);
        }
        steps.push(FindMaxStep {
            rate,
            passed: summary.passed,
            deliveries_per_s: summary.deliveries.per_s,
            p99_ms: summary.latency_ms.p99,
            failed: summary.thresholds.iter().filter(|t| !t.passed).map(|t| t.expr.clone()).collect(),
        });
        let passed = summary.passed;
        first.get_or_insert_with(|| summary.clone());
        if !passed {
            break;
        }
        best = Some(summary);
        rate *= factor;
    }
    let max_rate = best.as_ref().map(|s| s.settings.rate);
    let mut summary = best.or(first).context("find-max ran no step")?;
    summary.passed = max_rate.is_some();
    summary.find_max = Some(FindMax { max_rate, steps });
    Ok(summary)
}

fn make_plan(config: &Config) -> Plan {
    let rate = config.rate.max(f64::MIN_POSITIVE);
    let (measured, warmup) = match config.scenario {
        Scenario::Idle => (0, 0),
        _ => (
            config.messages.unwrap_or((config.duration.as_secs_f64() * rate).round() as u64).max(1),
            (config.warmup.as_secs_f64() * rate).round() as u64,
        ),
    };
    Plan {
        scenario: config.scenario,
        subscribers: config.subscribers,
        room_size: if config.scenario == Scenario::Chat { config.room_size.max(1) } else { 1 },
        total: measured + warmup,
        warmup,
        rate,
        run_id: format!("{:08x}", rand::random::<u32>()),
        padding: scenario::padding(config.payload_bytes),
    }
}

/// Says up front when this machine cannot hold the requested connections.
fn warn_about_limits(config: &Config, open_file_limit: u64) {
    // Sockets for the publisher's pool, stdio and the runtime come on top of the subscribers.
    let needed = config.subscribers + config.max_inflight as u64 + 32;
    if needed > open_file_limit {
        eprintln!("warning: {needed} sockets needed but the open-file limit is {open_file_limit}: raise `ulimit -Hn`");
    }
    if let Some(ports) = limits::ephemeral_ports() {
        let sources = config.source_ips.len().max(1) as u64;
        if config.subscribers > ports * sources {
            eprintln!(
                "warning: {} connections exceed {ports} ephemeral ports per source address: use --source-ips",
                config.subscribers
            );
        }
    }
}

async fn create_rooms(plan: &Plan, target: &Target, client: &reqwest::Client) -> anyhow::Result<()> {
    let rooms = (0..plan.groups()).map(|room| {
        let members: Vec<String> = (room * plan.room_size..((room + 1) * plan.room_size).min(plan.subscribers))
            .map(|k| plan.user_id(k))
            .collect();
        async move { target.create_room(client, &plan.room_id(room), &members).await }
    });
    let results: Vec<anyhow::Result<()>> = stream::iter(rooms).buffer_unordered(ROOM_CONCURRENCY).collect().await;
    results.into_iter().collect()
}

/// Subscribers as they stand after the connect phase.
struct Connect {
    handles: Vec<tokio::task::JoinHandle<Outcome>>,
    chat_senders: Vec<Option<mpsc::Sender<String>>>,
    alive_per_group: Vec<u64>,
    handshakes: Histogram<u64>,
    seconds: f64,
}

/// Opens every subscriber at the configured pace and waits until each one connected or failed.
async fn connect_all(config: &Config, shared: &Arc<Shared>, workers: &Workers) -> Connect {
    let plan = &shared.plan;
    let bar = progress(config, plan.subscribers, "connecting");
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let (report, mut reports) = mpsc::unbounded_channel();
    let mut handles = Vec::with_capacity(plan.subscribers as usize);
    let mut chat_senders = Vec::new();
    let mut alive_per_group = vec![0; plan.groups() as usize];
    let mut handshakes = latency_histogram();
    let mut on_report = |(key, handshake): subscriber::Connected, bar: &ProgressBar| {
        if let Some(ns) = handshake {
            handshakes.saturating_record(ns);
            alive_per_group[plan.group_of_subscriber(key) as usize] += 1;
        }
        bar.inc(1);
    };
    let start = Instant::now();
    for key in 0..plan.subscribers {
        let due = tokio::time::sleep_until((start + Duration::from_secs_f64(key as f64 / config.connect_rate)).into());
        let permit = tokio::select! {
            permit = async {
                due.await;
                permits.clone().acquire_owned().await.expect("the semaphore is never closed")
            } => permit,
            () = config.interrupt.cancelled() => break,
        };
        let outbound = (plan.scenario == Scenario::Chat).then(|| {
            let (tx, rx) = mpsc::channel(CHAT_QUEUE);
            chat_senders.push(Some(tx));
            rx
        });
        handles.push(workers.spawn(key, subscriber::run(shared.clone(), key, outbound, report.clone(), permit)));
        while let Ok(result) = reports.try_recv() {
            on_report(result, &bar);
        }
    }
    drop(report);
    // The subscribers started so far (all of them, unless the run was interrupted) report once each.
    for _ in bar.position()..handles.len() as u64 {
        match reports.recv().await {
            Some(result) => on_report(result, &bar),
            None => break,
        }
    }
    bar.finish_and_clear();
    Connect { handles, chat_senders, alive_per_group, handshakes, seconds: start.elapsed().as_secs_f64() }
}

/// Shows progress while the publisher runs.
async fn watch_publisher(config: &Config, shared: &Shared, publisher: &tokio::task::JoinHandle<Histogram<u64>>) {
    let bar = progress(config, shared.plan.total, "publishing");
    while !publisher.is_finished() {
        bar.set_position(shared.sent.load(Ordering::Relaxed));
        bar.set_message(format!("{} deliveries", shared.completion.count()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
}

/// Keeps idle connections open for `length`.
async fn hold(config: &Config, length: Duration) {
    let bar = progress(config, length.as_secs().max(1), "holding");
    let start = Instant::now();
    while start.elapsed() < length && !config.interrupt.is_cancelled() {
        bar.set_position(start.elapsed().as_secs());
        tokio::time::sleep(Duration::from_millis(200).min(length)).await;
    }
    bar.finish_and_clear();
}

/// Waits until every expected delivery arrived, or `config.drain` passed.
async fn drain(config: &Config, shared: &Shared, alive_per_group: &[u64]) {
    let plan = &shared.plan;
    let expected: u64 = (plan.warmup..plan.total)
        .filter(|&seq| shared.status[seq as usize].load(Ordering::Relaxed) == ACCEPTED)
        .map(|seq| alive_per_group[plan.place(seq).0 as usize])
        .sum();
    let limit = if config.interrupt.is_cancelled() { config.drain.min(INTERRUPTED_DRAIN) } else { config.drain };
    let deadline = Instant::now() + limit;
    while shared.completion.count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn progress(config: &Config, length: u64, what: &'static str) -> ProgressBar {
    let Some(console) = &config.progress else {
        return ProgressBar::hidden();
    };
    let bar = console.add(ProgressBar::new(length));
    let style = ProgressStyle::with_template("{prefix:>11} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        .expect("the template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what);
    bar
}

/// The measured messages: those scheduled, or of an interrupted run, those sent before it stopped.
fn message_counts(shared: &Shared, interrupted: bool) -> Messages {
    let plan = &shared.plan;
    let sent = shared.sent.load(Ordering::Relaxed).min(plan.total);
    let (scheduled, warmup) = match interrupted {
        true => (sent.saturating_sub(plan.warmup), sent.min(plan.warmup)),
        false => (plan.total - plan.warmup, plan.warmup),
    };
    let state = |seq: u64| shared.status[seq as usize].load(Ordering::Relaxed);
    let accepted = (plan.warmup..plan.total).filter(|&s| state(s) == ACCEPTED).count() as u64;
    let failed = (plan.warmup..plan.total).filter(|&s| state(s) == FAILED).count() as u64;
    Messages { scheduled, warmup, accepted, failed }
}

/// Loss, duplicates and order over every connected subscriber, counted against accepted measured messages.
fn account(shared: &Shared, outcomes: &[Outcome], measure_start: u64) -> Deliveries {
    let plan = &shared.plan;
    let groups = plan.groups();
    let accepted = |seq: u64| seq >= plan.warmup && shared.status[seq as usize].load(Ordering::Relaxed) == ACCEPTED;
    let (mut expected, mut received, mut duplicates, mut out_of_order) = (0, 0, 0, 0);
    for outcome in outcomes.iter().filter(|o| o.established) {
        let group = plan.group_of_subscriber(outcome.key);
        for index in 0..plan.group_len(group) {
            if accepted(index * groups + group) {
                expected += 1;
                received += u64::from(outcome.tracker.seen(index));
            }
        }
        duplicates += outcome.duplicates;
        out_of_order += outcome.out_of_order;
    }
    let last = (plan.warmup..plan.total).filter_map(|seq| shared.completion.last_delivery(seq)).max();
    let window_s = last.map_or(0.0, |last| last.saturating_sub(measure_start) as f64 / 1e9);
    let lost = expected - received;
    Deliveries {
        expected,
        received,
        lost,
        duplicates,
        out_of_order,
        loss_pct: if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
        per_s: if window_s > 0.0 { received as f64 / window_s } else { 0.0 },
        window_s,
    }
}

/// Per measured message that reached anyone: the latency of the delivery `pick` chooses (the slowest
/// subscriber's for the completion, the fastest one's for the first delivery).
fn broadcast(shared: &Shared, schedule_start: u64, pick: fn(&Completion, u64) -> Option<u64>) -> Histogram<u64> {
    let plan = &shared.plan;
    let mut hist = latency_histogram();
    for seq in plan.warmup..plan.total {
        if let Some(arrival) = pick(&shared.completion, seq) {
            hist.saturating_record(arrival.saturating_sub(schedule_start + plan.offset_ns(seq)));
        }
    }
    hist
}

fn timeline(recorder: &Recorder, slice_ns: u64) -> Vec<TimelinePoint> {
    let slice_s = slice_ns as f64 / 1e9;
    let ms = |us: u64| us as f64 / 1e3;
    recorder
        .timeline
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let (p50, p99, max) = bucket.latency_us.as_ref().map_or((0.0, 0.0, 0.0), |h| {
                (ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()))
            });
            TimelinePoint {
                t_s: i as f64 * slice_s,
                deliveries: bucket.deliveries,
                per_s: bucket.deliveries as f64 / slice_s,
                p50_ms: p50,
                p99_ms: p99,
                max_ms: max,
            }
        })
        .collect()
}

/// The percentiles plotted in the report: even steps to 90, then ever closer to 100.
fn distribution(hist: &Histogram<u64>) -> Vec<DistributionPoint> {
    if hist.is_empty() {
        return Vec::new();
    }
    let tail = [91.0, 92.0, 93.0, 94.0, 95.0, 96.0, 97.0, 98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0];
    (0..=18)
        .map(|i| i as f64 * 5.0)
        .chain(tail)
        .map(|p| DistributionPoint { percentile: p, latency_ms: hist.value_at_quantile(p / 100.0) as f64 / 1e6 })
        .collect()
}

/// Checks every threshold and records the verdicts in the summary.
pub fn judge(summary: &mut Summary, config: &Config) {
    summary.thresholds = config
        .thresholds
        .iter()
        .map(|t| {
            let (value, passed) = t.check(summary);
            ThresholdResult { expr: t.expr.clone(), value, passed }
        })
        .collect();
    summary.passed = summary.thresholds.iter().all(|t| t.passed);
}
