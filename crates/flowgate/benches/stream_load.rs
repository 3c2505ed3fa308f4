//! Streaming load generator for `scripts/bench.sh`: opens N concurrent SSE chat streams
//! (`POST {url}` with `"stream": true`) and reports time to first byte, completion and errors as
//! one JSON object on stdout.
//!
//! ```text
//! stream_load URL KEY CONCURRENCY MODEL [--ramp-ms N] [--warmup-rounds N] [--rss-pid PID] [--timeout-s N]
//! ```
//!
//! - `KEY` is sent as `Authorization: Bearer KEY` (`-` sends none).
//! - Starts are spread evenly over `--ramp-ms` (default 500) so that the time to first byte measures
//!   latency rather than how fast one client can push N requests at once; with streams that last
//!   longer than the ramp (e.g. 20 chunks × 50 ms) all N are open at the same time, and
//!   `peak_in_flight` in the output says how many were.
//! - `--warmup-rounds` (default 1) first runs the same load unmeasured, so that client→server and
//!   gateway→upstream connections are already pooled when measuring (steady state, not connect cost).
//! - `--rss-pid` samples `VmRSS`/`VmHWM` of that process every 10 ms during the measured round.
//!
//! Time to first byte = from just before the request is sent to the first body bytes (the first
//! SSE event), per stream. A stream counts as completed when it ended with `data: [DONE]` after at
//! least one content event.
//!
//! Run through cargo (`cargo bench -p flowgate --bench stream_load -- URL KEY 1000 MODEL`) or the
//! built executable. Cargo appends `--bench`, which is ignored.
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a command-line load generator reports on the terminal")]
#![expect(clippy::disallowed_methods, reason = "one task per simulated client, all joined")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Args {
    url: String,
    key: Option<String>,
    concurrency: usize,
    model: String,
    ramp: Duration,
    warmup_rounds: u32,
    rss_pid: Option<u32>,
    timeout: Duration,
}

const USAGE: &str =
    "usage: stream_load URL KEY CONCURRENCY MODEL [--ramp-ms N] [--warmup-rounds N] [--rss-pid PID] [--timeout-s N]";

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut ramp_ms = 500u64;
    let mut warmup_rounds = 1u32;
    let mut rss_pid = None;
    let mut timeout_s = 60u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--ramp-ms" => ramp_ms = value("--ramp-ms")?.parse().map_err(|e| format!("--ramp-ms: {e}"))?,
            "--warmup-rounds" => {
                warmup_rounds = value("--warmup-rounds")?.parse().map_err(|e| format!("--warmup-rounds: {e}"))?;
            }
            "--rss-pid" => rss_pid = Some(value("--rss-pid")?.parse().map_err(|e| format!("--rss-pid: {e}"))?),
            "--timeout-s" => timeout_s = value("--timeout-s")?.parse().map_err(|e| format!("--timeout-s: {e}"))?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let [url, key, concurrency, model] = <[String; 4]>::try_from(positional).map_err(|_| USAGE.to_owned())?;
    Ok(Args {
        url,
        key: (key != "-").then_some(key),
        concurrency: concurrency.parse().map_err(|e| format!("CONCURRENCY: {e}"))?,
        model,
        ramp: Duration::from_millis(ramp_ms),
        warmup_rounds,
        rss_pid,
        timeout: Duration::from_secs(timeout_s),
    })
}

/// One stream's outcome.
#[derive(Debug)]
struct StreamResult {
    ttfb: Duration,
    total: Duration,
    events: usize,
}

async fn one_stream(client: &reqwest::Client, args: &Args, body: &Value) -> Result<StreamResult, String> {
    let started = Instant::now();
    let mut request = client.post(&args.url).json(body).header("accept", "text/event-stream");
    if let Some(key) = &args.key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("status {}: {}", status.as_u16(), text.chars().take(200).collect::<String>()));
    }
    let mut stream = response.bytes_stream();
    let mut ttfb = None;
    let mut buffer = Vec::with_capacity(4096);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        if chunk.is_empty() {
            continue;
        }
        ttfb.get_or_insert_with(|| started.elapsed());
        buffer.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    let text = String::from_utf8_lossy(&buffer);
    let data: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("data:")).map(str::trim).collect();
    if data.last() != Some(&"[DONE]") {
        return Err("stream ended without data: [DONE]".to_owned());
    }
    let ttfb = ttfb.ok_or_else(|| "empty body".to_owned())?;
    let events = data.len().saturating_sub(1);
    if events == 0 {
        return Err("no events before [DONE]".to_owned());
    }
    Ok(StreamResult { ttfb, total, events })
}

/// Runs one round of `args.concurrency` streams; returns the results and the peak number open.
async fn round(
    client: &reqwest::Client,
    args: &Arc<Args>,
    body: &Arc<Value>,
) -> (Vec<Result<StreamResult, String>>, usize) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let n = args.concurrency.max(1);
    let step = args.ramp.checked_div(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or_default();
    let origin = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..n {
        let client = client.clone();
        let args = Arc::clone(args);
        let body = Arc::clone(body);
        let in_flight = Arc::clone(&in_flight);
        let peak = Arc::clone(&peak);
        let start_at = origin + step * u32::try_from(index).unwrap_or(u32::MAX);
        tasks.spawn(async move {
            tokio::time::sleep_until(start_at).await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let result = match tokio::time::timeout(args.timeout, one_stream(&client, &args, &body)).await {
                Ok(result) => result,
                Err(_) => Err(format!("timed out after {:?}", args.timeout)),
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        });
    }
    let mut results = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    (results, peak.load(Ordering::SeqCst))
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile_us(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    let value = sorted[rank.min(sorted.len()) - 1];
    Some(value.as_secs_f64() * 1e6)
}

fn summary_us(mut values: Vec<Duration>) -> Value {
    values.sort_unstable();
    let mean = if values.is_empty() {
        None
    } else {
        #[expect(clippy::cast_precision_loss)]
        Some(values.iter().map(Duration::as_secs_f64).sum::<f64>() / values.len() as f64 * 1e6)
    };
    json!({
        "p50": percentile_us(&values, 50.0),
        "p90": percentile_us(&values, 90.0),
        "p99": percentile_us(&values, 99.0),
        "max": values.last().map(|v| v.as_secs_f64() * 1e6),
        "mean": mean,
    })
}

async fn run(args: Args) -> Result<Value, String> {
    let args = Arc::new(args);
    let client = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let body = Arc::new(json!({
        "model": args.model,
        "stream": true,
        "messages": [{"role": "user", "content": "Stream a short answer for the benchmark."}],
    }));
    for _ in 0..args.warmup_rounds {
        let (results, _) = round(&client, &args, &body).await;
        if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
            eprintln!("stream_load: warmup error (continuing): {error}");
        }
    }

    // RSS sampler for the measured round.
    let stop = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = args.rss_pid.map(|pid| {
        let stop = Arc::clone(&stop);
        let peak_rss = Arc::clone(&peak_rss);
        tokio::spawn(async move {
            while stop.load(Ordering::SeqCst) == 0 {
                if let Some(kb) = status_kb(pid, "VmRSS:") {
                    peak_rss.fetch_max(kb, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    });
    let rss_before = args.rss_pid.and_then(|pid| status_kb(pid, "VmRSS:"));

    let wall = Instant::now();
    let (results, peak_in_flight) = round(&client, &args, &body).await;
    let wall = wall.elapsed();

    stop.store(1, Ordering::SeqCst);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    let rss_after = args.rss_pid.and_then(|pid| status_kb(pid, "VmRSS:"));
    let hwm = args.rss_pid.and_then(|pid| status_kb(pid, "VmHWM:"));

    let mut ttfb = Vec::new();
    let mut total = Vec::new();
    let mut events = 0usize;
    let mut errors = 0usize;
    let mut samples: Vec<String> = Vec::new();
    for result in results {
        match result {
            Ok(stream) => {
                ttfb.push(stream.ttfb);
                total.push(stream.total);
                events += stream.events;
            }
            Err(error) => {
                errors += 1;
                if samples.len() < 5 && !samples.contains(&error) {
                    samples.push(error);
                }
            }
        }
    }
    let completed = ttfb.len();
    #[expect(clippy::cast_precision_loss)]
    let events_mean = if completed == 0 { 0.0 } else { events as f64 / completed as f64 };
    Ok(json!({
        "url": args.url,
        "model": args.model,
        "concurrency": args.concurrency,
        "ramp_ms": args.ramp.as_millis(),
        "warmup_rounds": args.warmup_rounds,
        "completed": completed,
        "errors": errors,
        "error_samples": samples,
        "peak_in_flight": peak_in_flight,
        "events_per_stream": events_mean,
        "wall_ms": wall.as_secs_f64() * 1e3,
        "ttfb_us": summary_us(ttfb),
        "total_us": summary_us(total),
        "rss_pid": args.rss_pid,
        "rss_kb": {"before": rss_before, "peak_sampled": peak_rss.load(Ordering::SeqCst), "after": rss_after, "vm_hwm": hwm},
    }))
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stream_load: cannot start runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("stream_load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
