//! The local embedder with the real all-MiniLM-L6-v2 files (`scripts/fetch-embedding-model.sh`):
//! its tokens and vectors against the Python reference, and the labelled pairs at the default
//! threshold. Without the files the tests skip on a laptop and fail under `CI=true`.

use std::sync::OnceLock;

use flowgate_semantic::Embedder;
use flowgate_semantic::embedder::cosine;
use flowgate_semantic::labelled;

#[expect(clippy::print_stderr, reason = "a skipped test says why")]
fn embedder() -> Option<&'static Embedder> {
    static EMBEDDER: OnceLock<Option<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let dir = labelled::test_model_dir();
            match Embedder::load(&dir) {
                Ok(e) => Some(e),
                Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("the embedding model is missing ({error}): run scripts/fetch-embedding-model.sh")
                }
                Err(error) => {
                    eprintln!("skipped: no embedding model ({error}); run scripts/fetch-embedding-model.sh");
                    None
                }
            }
        })
        .as_ref()
}

#[derive(serde::Deserialize)]
struct Reference {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

#[test]
fn tokens_and_vectors_match_the_python_reference() {
    let Some(embedder) = embedder() else { return };
    let references: Vec<Reference> =
        serde_json::from_str(include_str!("../fixtures/reference.json")).expect("reference.json");
    assert!(references.len() >= 5);
    for reference in references {
        assert_eq!(embedder.tokens(&reference.text), reference.ids, "tokens of {:?}", reference.text);
        let vector = embedder.embed(&reference.text);
        assert_eq!(vector.len(), 384);
        let similarity = cosine(&vector, &reference.vector);
        let largest = vector.iter().zip(&reference.vector).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(
            similarity > 0.9999 && largest < 1e-3,
            "{:?}: cosine {similarity}, largest difference {largest}",
            reference.text
        );
    }
}

#[test]
fn labelled_pairs_never_hit_a_near_miss_at_the_default_threshold() {
    let Some(embedder) = embedder() else { return };
    let scored = labelled::score(embedder).expect("pairs.json");
    assert!(scored.len() >= 100);
    let false_hits: Vec<_> = scored.iter().filter(|s| !s.pair.hit && s.hit_at(0.90)).collect();
    assert!(false_hits.is_empty(), "near misses that would hit: {false_hits:#?}");
    let (precision, recall, _) = labelled::precision_recall(&scored, 0.90);
    assert!((precision - 1.0).abs() < f64::EPSILON);
    assert!(recall >= 0.5, "recall {recall} at 0.90");
    // The guard is what keeps the near misses out: cosine alone lets some through.
    assert!(
        scored.iter().any(|s| !s.pair.hit && s.similarity >= 0.90),
        "the set has near misses cosine cannot separate"
    );
}
