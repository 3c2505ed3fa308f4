//! The semantic cache's building blocks, free of I/O beyond reading model files:
//!
//! - [`Embedder`]: a sentence-transformers model (all-MiniLM-L6-v2 class) run in process: BERT
//!   WordPiece tokenizer, BERT encoder, mean pooling, L2 normalisation;
//! - [`guard`]: the near-miss guard, which refuses a hit when the two texts disagree on numbers,
//!   identifiers, named entities, negation, antonyms or direction;
//! - [`index`]: the in-process vector index (HNSW graph over normalised vectors, partitioned,
//!   with TTL and a memory cap evicting the least recently hit entries).

pub mod embedder;
pub mod guard;
pub mod index;
pub mod labelled;
mod model;
mod tokenizer;

pub use embedder::Embedder;
pub use tokenizer::Tokenizer;

/// What can go wrong loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A model file is not what the embedder understands.
    #[error("{0}")]
    Model(String),
}
