//! The semantic cache's figures (docs/benchmarks.md): phase-3 lookup time and recall@1 against
//! brute force at 100,000 entries, insert time, bytes per entry, and the local embedder's time
//! for a 200-token prompt on one thread.
//!
//! `scripts/bench-semantic.sh` (or `cargo run --release -p flowgate-semantic --example bench [MODEL_DIR] [ENTRIES]`)

use std::time::{Duration, Instant};

use flowgate_semantic::index::{Index, overhead};
use flowgate_semantic::{Embedder, labelled};

const DIMS: usize = 384;

/// A deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        #[expect(clippy::cast_precision_loss, reason = "test data")]
        let x = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
        x * 2.0 - 1.0
    }

    fn unit_near(&mut self, centre: &[f32], spread: f32) -> Vec<f32> {
        let v: Vec<f32> = centre.iter().map(|c| c + spread * self.next()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index"
    )]
    let at = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples.get(at).copied().unwrap_or_default()
}

/// This thread's CPU time (Linux `/proc/thread-self/schedstat`): on a loaded machine the wall
/// clock also counts the time other processes ran.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(text.split_whitespace().next()?.parse().ok()?))
}

/// `f`'s CPU time on this thread, or its wall time where that cannot be read.
fn measure(mut f: impl FnMut()) -> (Duration, Duration) {
    let (cpu, wall) = (cpu_time(), Instant::now());
    f();
    let wall = wall.elapsed();
    (cpu_time().zip(cpu).map_or(wall, |(after, before)| after.saturating_sub(before)), wall)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[expect(clippy::print_stdout, reason = "the report is the output")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map_or_else(labelled::test_model_dir, Into::into);
    let entries: usize = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);

    // Vectors like a cache's: questions around topics (2,000 clusters), unit length.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let centres: Vec<Vec<f32>> = (0..2000).map(|_| (0..DIMS).map(|_| rng.next()).collect()).collect();
    let vectors: Vec<Vec<f32>> = (0..entries).map(|i| rng.unit_near(&centres[i % centres.len()], 0.6)).collect();
    let payload = 1024;
    let mut index = Index::new(usize::MAX);
    let (build, _) = measure(|| {
        for (i, v) in vectors.iter().enumerate() {
            index.insert(1, v, i, payload, u64::MAX);
        }
    });

    // Queries: paraphrase-like neighbours of stored vectors.
    let queries: Vec<(usize, Vec<f32>)> = (0..1000)
        .map(|i| {
            let target = (i * 7919) % entries;
            (target, rng.unit_near(&vectors[target], 0.02))
        })
        .collect();
    let mut times = Vec::with_capacity(queries.len());
    let mut agree = 0;
    let (lookups_cpu, _) = measure(|| {
        for (_, query) in &queries {
            let _ = index.search(1, query, 1, 0);
        }
    });
    for (_, query) in &queries {
        let started = Instant::now();
        let hits = index.search(1, query, 1, 0);
        times.push(started.elapsed());
        let truth =
            vectors.iter().enumerate().max_by(|a, b| dot(a.1, query).total_cmp(&dot(b.1, query))).map(|(i, _)| i);
        if hits.first().map(|h| *h.payload) == truth {
            agree += 1;
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let recall = f64::from(agree) / queries.len() as f64;
    let (p50, p99) = (percentile(&mut times, 0.50), percentile(&mut times, 0.99));
    #[expect(clippy::cast_precision_loss, reason = "a mean")]
    let insert_us = build.as_secs_f64() * 1e6 / entries as f64;

    println!("phase-3 index, {entries} entries of {DIMS} dimensions (i8), one partition");
    println!("  build: {:.1} s CPU time ({insert_us:.0} µs per insert)", build.as_secs_f64());
    println!(
        "  lookup wall clock p50 {:.3} ms, p99 {:.3} ms; CPU time {:.3} ms per lookup (1,000 queries, k = 1)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lookups_cpu.as_secs_f64() * 1e3 / 1000.0
    );
    println!("  recall@1 against brute force: {recall:.3}");
    println!(
        "  bytes per entry: {} of index beyond the answer (vector, links, bookkeeping); {} with a {payload}-byte answer",
        overhead(DIMS),
        index.bytes() / entries
    );
    let total_mb = index.bytes() / (1 << 20);
    println!("  {entries} entries with {payload}-byte answers: {total_mb} MiB accounted");

    match Embedder::load(&dir) {
        Ok(embedder) => {
            // A 200-token prompt: a support question padded with a realistic paragraph.
            let sentence =
                "Our customer ordered a laptop last week, the delivery was late and the box arrived damaged. ";
            let mut text = String::new();
            while embedder.tokens(&text).len() < 200 {
                text.push_str(sentence);
            }
            let tokens = embedder.tokens(&text).len();
            let _ = embedder.embed(&text);
            let (mut times, mut walls): (Vec<Duration>, Vec<Duration>) =
                (0..30).map(|_| measure(|| drop(embedder.embed(&text)))).unzip();
            let short = "How do I reset my password?";
            let mut short_times: Vec<Duration> = (0..30).map(|_| measure(|| drop(embedder.embed(short))).0).collect();
            println!("local embedder (all-MiniLM-L6-v2, one thread)");
            println!(
                "  {tokens}-token prompt: CPU time p50 {:.1} ms, p99 {:.1} ms; wall clock p50 {:.1} ms",
                percentile(&mut times, 0.5).as_secs_f64() * 1e3,
                percentile(&mut times, 0.99).as_secs_f64() * 1e3,
                percentile(&mut walls, 0.5).as_secs_f64() * 1e3
            );
            println!(
                "  short question (9 tokens): CPU time p50 {:.1} ms",
                percentile(&mut short_times, 0.5).as_secs_f64() * 1e3
            );
        }
        Err(error) => println!("local embedder: not measured ({error}); run scripts/fetch-embedding-model.sh"),
    }
    Ok(())
}
