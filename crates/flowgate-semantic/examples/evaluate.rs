//! Scores the labelled pairs with the local embedder and prints precision and recall by
//! threshold, and every pair the cache would get wrong at the default (0.90).
//!
//! `scripts/semantic-eval.sh` (or `cargo run --release -p flowgate-semantic --example evaluate [MODEL_DIR]`)

use flowgate_semantic::{Embedder, labelled};

#[expect(clippy::print_stdout, reason = "the report is the output")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map_or_else(labelled::test_model_dir, Into::into);
    let embedder = Embedder::load(&dir)?;
    let scored = labelled::score(&embedder)?;
    let positives = scored.iter().filter(|s| s.pair.hit).count();
    println!("{} pairs: {positives} must hit, {} must not", scored.len(), scored.len() - positives);
    println!("threshold  precision  recall  false-hits  false-hits-without-guard");
    for threshold in [0.80f32, 0.85, 0.88, 0.90, 0.92, 0.95] {
        let (precision, recall, false_hits) = labelled::precision_recall(&scored, threshold);
        let unguarded = scored.iter().filter(|s| !s.pair.hit && s.similarity >= threshold).count();
        println!("{threshold:>9.2}  {precision:>9.3}  {recall:>6.3}  {false_hits:>10}  {unguarded:>25}");
    }
    println!("\nat 0.90:");
    for s in &scored {
        if s.hit_at(0.90) != s.pair.hit || (!s.pair.hit && s.similarity >= 0.90) {
            println!(
                "  {:.3} guard={:<16} want-hit={:<5} {:?} / {:?}",
                s.similarity,
                s.guard.unwrap_or("-"),
                s.pair.hit,
                s.pair.a,
                s.pair.b
            );
        }
    }
    Ok(())
}
