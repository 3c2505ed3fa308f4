//! What the model sees of a normalised text: hashed word unigrams, word bigrams and character
//! trigrams (FNV-1a into 2^18 dimensions), as a sparse vector, and the sentence-like segments
//! long texts are scored by.

/// Hashed feature space: 2^18 weights (1 MiB).
const DIM_BITS: u32 = 18;
/// Number of feature dimensions (the model's weight count).
pub(super) const DIM: usize = 1 << DIM_BITS;
const MASK: u64 = (1 << DIM_BITS) - 1;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = seed;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn index(hash: u64) -> usize {
    // Fold the high bits in: FNV's low bits alone are weak.
    usize::try_from((hash ^ (hash >> 29) ^ (hash >> 47)) & MASK).unwrap_or(0)
}

/// Longest token that gets character trigrams.
const MAX_TOKEN: usize = 40;

/// Calls `emit(feature index)` for every feature of `text`: word unigrams, word bigrams, and
/// character trigrams of each word with boundary markers. Every index is below [`DIM`].
pub(super) fn features(text: &str, mut emit: impl FnMut(usize)) {
    let mut previous: Option<u64> = None;
    for token in text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
        let bytes = token.as_bytes();
        let unigram = fnv(FNV_OFFSET ^ 0x57, bytes);
        emit(index(unigram));
        if let Some(previous) = previous {
            emit(index(fnv(previous ^ 0x42, bytes)));
        }
        previous = Some(unigram);
        if bytes.len() >= 3 && bytes.len() <= MAX_TOKEN {
            // Trigrams of `<token>`, slid over without a buffer.
            let marked = std::iter::once(b'<').chain(bytes.iter().copied()).chain(std::iter::once(b'>'));
            let mut gram = [0u8; 3];
            for (n, byte) in marked.enumerate() {
                let [_, second, third] = gram;
                gram = [second, third, byte];
                if n >= 2 {
                    emit(index(fnv(FNV_OFFSET ^ 0x33, &gram)));
                }
            }
        }
    }
}

/// Sparse feature vector of one normalised text: (index, value) sorted by index, with
/// `value = count / sqrt(total count)`.
pub(super) fn vectorize(text: &str) -> Vec<(usize, f32)> {
    let mut raw = Vec::with_capacity(text.len() * 2);
    features(text, |i| raw.push(i));
    raw.sort_unstable();
    #[expect(clippy::cast_precision_loss, reason = "feature counts are small")]
    let norm = (raw.len().max(1) as f32).sqrt();
    let mut out: Vec<(usize, f32)> = Vec::with_capacity(raw.len());
    for i in raw {
        match out.last_mut() {
            Some((last, value)) if *last == i => *value += 1.0,
            _ => out.push((i, 1.0)),
        }
    }
    for (_, value) in &mut out {
        *value /= norm;
    }
    out
}

/// Sentence-like segments of `text` (byte ranges): split after `.`, `!`, `?` followed by
/// whitespace and at newlines; long segments are cut at whitespace every ~300 bytes. Every
/// range starts and ends on a character boundary (each cut follows an ASCII byte).
pub(super) fn segments(text: &str) -> Vec<(usize, usize)> {
    const MAX_SEGMENT: usize = 300;
    let bytes = text.as_bytes();
    let kept = |start: usize, end: usize| text.get(start..end).is_some_and(|part| part.trim().len() > 1);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let end_of_sentence =
            matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
        let too_long = i - start >= MAX_SEGMENT && b.is_ascii_whitespace();
        if b == b'\n' || end_of_sentence || too_long {
            if kept(start, i + 1) {
                out.push((start, i + 1));
            }
            start = i + 1;
        }
    }
    if start < bytes.len() && kept(start, bytes.len()) {
        out.push((start, bytes.len()));
    }
    out
}
