//! The local embedder: a model directory holding `model.safetensors`, `tokenizer.json` and
//! `config.json` (a sentence-transformers export of a BERT encoder with mean pooling, such as
//! all-MiniLM-L6-v2), turned into 384-number unit vectors. Synchronous and CPU-bound: callers run
//! it on a bounded blocking pool.

use std::path::Path;

use crate::Error;
use crate::model::Bert;
use crate::tokenizer::Tokenizer;

/// The longest input embedded, in tokens (sentence-transformers' `max_seq_length` for
/// all-MiniLM-L6-v2); the rest of a longer text is cut.
pub const MAX_TOKENS: usize = 256;

/// A loaded sentence embedder.
#[derive(Debug)]
pub struct Embedder {
    tokenizer: Tokenizer,
    model: Bert,
}

impl Embedder {
    /// Loads the model in `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })
        };
        let tokenizer = Tokenizer::from_json(&read("tokenizer.json")?)?;
        let model = Bert::load(&read("config.json")?, &read("model.safetensors")?)?;
        Ok(Self { tokenizer, model })
    }

    /// The vector width (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.model.dimensions()
    }

    /// The token ids `text` is embedded as.
    pub fn tokens(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, MAX_TOKENS.min(self.model.max_tokens()))
    }

    /// The unit vector of `text`.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        self.model.embed(&self.tokens(text))
    }

    /// The unit vectors of `texts`, in order.
    pub fn embed_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        texts.iter().map(|t| self.embed(t)).collect()
    }
}

/// The cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
