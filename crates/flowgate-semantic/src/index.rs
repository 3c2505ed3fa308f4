//! The in-process vector index of phase 3: one HNSW graph (Malkov and Yashunin, 2016) per
//! partition, over unit vectors stored as `i8` (×127: 384 bytes for all-MiniLM-L6-v2, a quarter of
//! `f32`), with a time to live per entry and a memory cap that evicts the least recently hit
//! entries first.
//!
//! Partitions are exact: a lookup only ever sees entries of its own partition (the caller hashes
//! tenant, model, tools, response format, temperature bucket and the operator's fields into it),
//! so two tenants never share an entry. Removed and expired entries are tombstones the graph still
//! walks through and never returns; a partition's graph is rebuilt from its live entries once the
//! tombstones outnumber them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering as Atomic};

/// Links per node above layer 0 (layer 0 has twice as many).
const M: usize = 16;
const EF_CONSTRUCTION: usize = 100;
/// Candidates kept while searching (at least `k`).
const EF_SEARCH: usize = 32;

/// A unit vector quantised to `i8`.
fn quantise(vector: &[f32]) -> Box<[i8]> {
    #[expect(clippy::cast_possible_truncation, reason = "clamped to the i8 range first")]
    vector.iter().map(|x| (x * 127.0).round().clamp(-127.0, 127.0) as i8).collect()
}

fn dot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum()
}

fn norm(v: &[i8]) -> f32 {
    #[expect(clippy::cast_precision_loss, reason = "a squared norm of 384 i8 values is below 2^24")]
    let n = dot(v, v) as f32;
    n.sqrt()
}

/// A stored entry: its vector and what the caller keeps with it.
#[derive(Debug)]
struct Entry<T> {
    partition: u64,
    node: u32,
    payload: T,
    bytes: usize,
    expires_at_ms: u64,
    last_hit: AtomicU64,
}

#[derive(Debug)]
struct Node {
    entry: u64,
    vector: Box<[i8]>,
    norm: f32,
    links: Vec<Vec<u32>>,
    deleted: bool,
}

#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    entry_point: Option<u32>,
    deleted: usize,
}

/// A hit: the entry's id, its cosine similarity to the query and its payload.
#[derive(Debug)]
pub struct Hit<'a, T> {
    /// The entry's id.
    pub id: u64,
    /// Cosine similarity, from the quantised vectors.
    pub similarity: f32,
    /// What was stored with it.
    pub payload: &'a T,
}

/// The index: partitions of HNSW graphs and the entries they point at.
#[derive(Debug)]
pub struct Index<T> {
    graphs: HashMap<u64, Graph>,
    entries: HashMap<u64, Entry<T>>,
    next_id: u64,
    bytes: usize,
    max_bytes: usize,
    clock: AtomicU64,
    rng: u64,
}

/// Bytes an entry costs beyond its payload: the quantised vector, the links, the bookkeeping.
pub fn overhead(dimensions: usize) -> usize {
    dimensions + 2 * M * 4 + 160
}

impl<T> Index<T> {
    /// An empty index holding at most `max_bytes` (entries' payload bytes plus their overhead).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            graphs: HashMap::new(),
            entries: HashMap::new(),
            next_id: 1,
            bytes: 0,
            max_bytes,
            clock: AtomicU64::new(0),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Live entries (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the entries account for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores `payload` under the unit vector `vector` in `partition`, until `expires_at_ms`
    /// (unix milliseconds); `bytes` is what the payload costs. Least recently hit entries are
    /// evicted to stay under the cap. Returns the entry's id.
    pub fn insert(&mut self, partition: u64, vector: &[f32], payload: T, bytes: usize, expires_at_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let cost = bytes + overhead(vector.len());
        self.bytes += cost;
        let level = self.random_level();
        let graph = self.graphs.entry(partition).or_default();
        let node = graph.insert(id, quantise(vector), level);
        let tick = self.clock.fetch_add(1, Atomic::Relaxed);
        self.entries
            .insert(id, Entry { partition, node, payload, bytes: cost, expires_at_ms, last_hit: AtomicU64::new(tick) });
        if self.bytes > self.max_bytes {
            self.evict();
        }
        id
    }

    /// The entries of `partition` closest to `vector` (at most `k`, best first), live at `now_ms`.
    /// A hit's recency is refreshed by [`Index::touch`].
    pub fn search(&self, partition: u64, vector: &[f32], k: usize, now_ms: u64) -> Vec<Hit<'_, T>> {
        let Some(graph) = self.graphs.get(&partition) else { return Vec::new() };
        let query = quantise(vector);
        let query_norm = norm(&query);
        graph
            .search(&query, k.max(1), EF_SEARCH.max(k))
            .into_iter()
            .filter_map(|(score, node)| {
                let node = graph.nodes.get(node as usize)?;
                let entry = self.entries.get(&node.entry)?;
                #[expect(clippy::cast_precision_loss, reason = "a dot product of i8 vectors is far below 2^24")]
                let similarity = score as f32 / (query_norm * node.norm).max(f32::MIN_POSITIVE);
                (entry.expires_at_ms > now_ms).then_some(Hit { id: node.entry, similarity, payload: &entry.payload })
            })
            .take(k)
            .collect()
    }

    /// Marks entry `id` as just hit (LRU order).
    pub fn touch(&self, id: u64) {
        if let Some(entry) = self.entries.get(&id) {
            entry.last_hit.store(self.clock.fetch_add(1, Atomic::Relaxed), Atomic::Relaxed);
        }
    }

    /// Removes every entry `remove` picks (by partition and payload); returns how many.
    pub fn remove_where(&mut self, mut remove: impl FnMut(u64, &T) -> bool) -> usize {
        let ids: Vec<u64> =
            self.entries.iter().filter(|(_, e)| remove(e.partition, &e.payload)).map(|(id, _)| *id).collect();
        for id in &ids {
            self.remove(*id);
        }
        ids.len()
    }

    /// Removes the entries expired at `now_ms`; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let ids: Vec<u64> = self.entries.iter().filter(|(_, e)| e.expires_at_ms <= now_ms).map(|(id, _)| *id).collect();
        for id in &ids {
            self.remove(*id);
        }
        ids.len()
    }

    /// The entries, for inspection: id, partition and payload.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, &T)> {
        self.entries.iter().map(|(id, e)| (*id, e.partition, &e.payload))
    }

    /// Removes entry `id`.
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let entry = self.entries.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        if let Some(graph) = self.graphs.get_mut(&entry.partition) {
            if let Some(node) = graph.nodes.get_mut(entry.node as usize) {
                node.deleted = true;
                graph.deleted += 1;
            }
            let live = graph.nodes.len() - graph.deleted;
            if live == 0 {
                self.graphs.remove(&entry.partition);
            } else if graph.deleted > 64 && graph.deleted > live {
                self.rebuild(entry.partition);
            }
        }
        Some(entry.payload)
    }

    /// Evicts the least recently hit tenth of the entries (at least enough to fit the cap).
    fn evict(&mut self) {
        let mut order: Vec<(u64, u64, usize)> =
            self.entries.iter().map(|(id, e)| (e.last_hit.load(Atomic::Relaxed), *id, e.bytes)).collect();
        order.sort_unstable();
        let target = self.max_bytes - self.max_bytes / 10;
        let mut freed = 0;
        let over = self.bytes.saturating_sub(target);
        let ids: Vec<u64> = order
            .into_iter()
            .take_while(|(_, _, bytes)| {
                let more = freed < over;
                freed += bytes;
                more
            })
            .map(|(_, id, _)| id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// Builds `partition`'s graph again from its live nodes.
    fn rebuild(&mut self, partition: u64) {
        let Some(old) = self.graphs.remove(&partition) else { return };
        let mut graph = Graph::default();
        for node in old.nodes.into_iter().filter(|n| !n.deleted) {
            let level = node.links.len().saturating_sub(1);
            let at = graph.insert(node.entry, node.vector, level);
            if let Some(entry) = self.entries.get_mut(&node.entry) {
                entry.node = at;
            }
        }
        self.graphs.insert(partition, graph);
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: levels only need to be geometric, not unpredictable.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        #[expect(clippy::cast_precision_loss, reason = "53 random bits")]
        let uniform = (bits as f64 + 1.0) / (1u64 << 53) as f64;
        #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a small non-negative level")]
        let level = (-uniform.ln() / (M as f64).ln()).floor() as usize;
        level.min(12)
    }
}

/// `(score, node)` ordered by score, then node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Scored(i32, u32);

impl Graph {
    fn score(&self, query: &[i8], node: u32) -> i32 {
        self.nodes.get(node as usize).map_or(i32::MIN, |n| dot(query, &n.vector))
    }

    fn links(&self, node: u32, layer: usize) -> &[u32] {
        self.nodes.get(node as usize).and_then(|n| n.links.get(layer)).map_or(&[], Vec::as_slice)
    }

    fn top_layer(&self) -> usize {
        self.entry_point.map_or(0, |e| self.nodes.get(e as usize).map_or(0, |n| n.links.len().saturating_sub(1)))
    }

    /// The `ef` nodes closest to `query` on `layer`, starting from `entry`, best first.
    fn search_layer(
        &self,
        query: &[i8],
        entry: &[u32],
        ef: usize,
        layer: usize,
        visited: &mut Vec<bool>,
    ) -> Vec<Scored> {
        visited.iter_mut().for_each(|v| *v = false);
        visited.resize(self.nodes.len(), false);
        let mut candidates = BinaryHeap::new();
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        for &e in entry {
            if let Some(seen) = visited.get_mut(e as usize) {
                *seen = true;
            }
            let scored = Scored(self.score(query, e), e);
            candidates.push(scored);
            best.push(Reverse(scored));
        }
        while let Some(current) = candidates.pop() {
            let worst = best.peek().map_or(i32::MIN, |Reverse(s)| s.0);
            if current.0 < worst && best.len() >= ef {
                break;
            }
            for &next in self.links(current.1, layer) {
                let Some(seen) = visited.get_mut(next as usize) else { continue };
                if *seen {
                    continue;
                }
                *seen = true;
                let score = self.score(query, next);
                let worst = best.peek().map_or(i32::MIN, |Reverse(s)| s.0);
                if best.len() < ef || score > worst {
                    candidates.push(Scored(score, next));
                    best.push(Reverse(Scored(score, next)));
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        let mut out: Vec<Scored> = best.into_iter().map(|Reverse(s)| s).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }

    /// Up to `max` of `candidates` (best first) that are not closer to an already chosen one
    /// than to the query (the paper's heuristic), topped up with the best of the rest.
    fn select(&self, candidates: &[Scored], max: usize) -> Vec<u32> {
        let mut chosen: Vec<u32> = Vec::with_capacity(max);
        let mut skipped = Vec::new();
        for candidate in candidates {
            if chosen.len() >= max {
                break;
            }
            let vector = self.nodes.get(candidate.1 as usize).map(|n| &n.vector);
            let diverse = chosen
                .iter()
                .all(|c| vector.zip(self.nodes.get(*c as usize)).is_none_or(|(v, n)| dot(v, &n.vector) < candidate.0));
            if diverse {
                chosen.push(candidate.1);
            } else {
                skipped.push(candidate.1);
            }
        }
        for s in skipped {
            if chosen.len() >= max {
                break;
            }
            chosen.push(s);
        }
        chosen
    }

    fn insert(&mut self, entry: u64, vector: Box<[i8]>, level: usize) -> u32 {
        let id = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let node_norm = norm(&vector);
        self.nodes.push(Node { entry, vector, norm: node_norm, links: vec![Vec::new(); level + 1], deleted: false });
        let Some(mut current) = self.entry_point else {
            self.entry_point = Some(id);
            return id;
        };
        let query = self.nodes.get(id as usize).map(|n| n.vector.clone()).unwrap_or_default();
        let top = self.top_layer();
        let mut visited = Vec::new();
        for layer in (level + 1..=top).rev() {
            if let Some(best) = self.search_layer(&query, &[current], 1, layer, &mut visited).first() {
                current = best.1;
            }
        }
        let mut entry_points = vec![current];
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(&query, &entry_points, EF_CONSTRUCTION, layer, &mut visited);
            let max = if layer == 0 { 2 * M } else { M };
            let neighbours = self.select(&found, max);
            for &n in &neighbours {
                self.link(n, id, layer, max);
            }
            if let Some(links) = self.nodes.get_mut(id as usize).and_then(|n| n.links.get_mut(layer)) {
                *links = neighbours;
            }
            entry_points = found.iter().map(|s| s.1).collect();
        }
        if level > top {
            self.entry_point = Some(id);
        }
        id
    }

    /// Adds `to` to `from`'s links on `layer`, pruning them back to the `max` closest (the
    /// diversity heuristic is kept for a new node's own links: on every reverse link it would
    /// cost a quadratic number of products per insert).
    fn link(&mut self, from: u32, to: u32, layer: usize, max: usize) {
        let Some(links) = self.nodes.get(from as usize).and_then(|n| n.links.get(layer)) else { return };
        let mut links = links.clone();
        links.push(to);
        if links.len() > max {
            let base = self.nodes.get(from as usize).map(|n| n.vector.clone()).unwrap_or_default();
            let mut scored: Vec<Scored> = links.iter().map(|l| Scored(self.score(&base, *l), *l)).collect();
            scored.sort_unstable_by(|a, b| b.cmp(a));
            links = scored.into_iter().take(max).map(|s| s.1).collect();
        }
        if let Some(slot) = self.nodes.get_mut(from as usize).and_then(|n| n.links.get_mut(layer)) {
            *slot = links;
        }
    }

    /// The `k` live nodes closest to `query`, as `(score, node)`, best first.
    fn search(&self, query: &[i8], k: usize, ef: usize) -> Vec<(i32, u32)> {
        let Some(mut current) = self.entry_point else { return Vec::new() };
        let mut visited = Vec::new();
        for layer in (1..=self.top_layer()).rev() {
            if let Some(best) = self.search_layer(query, &[current], 1, layer, &mut visited).first() {
                current = best.1;
            }
        }
        // Tombstones take room among the candidates: widen the search by their share.
        let live = self.nodes.len().saturating_sub(self.deleted).max(1);
        let ef = (ef * self.nodes.len()).div_ceil(live).min(ef * 4);
        self.search_layer(query, &[current], ef, 0, &mut visited)
            .into_iter()
            .filter(|s| self.nodes.get(s.1 as usize).is_some_and(|n| !n.deleted))
            .take(k)
            .map(|s| (s.0, s.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let v: Vec<f32> = (0..dims)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                #[expect(clippy::cast_precision_loss, reason = "test data")]
                let x = (state % 2001) as f32 / 1000.0 - 1.0;
                x
            })
            .collect();
        crate::model::normalise(v)
    }

    #[test]
    fn finds_the_nearest_within_its_partition_only() {
        let mut index = Index::new(usize::MAX);
        for i in 0..2000u64 {
            index.insert(i % 2, &unit(i, 32), i, 10, u64::MAX);
        }
        let mut found = 0;
        for i in (0..2000u64).step_by(7) {
            let hits = index.search(i % 2, &unit(i, 32), 1, 0);
            let hit = hits.first().expect("a hit");
            assert_eq!(hit.payload % 2, i % 2, "never another partition's entry");
            if *hit.payload == i {
                found += 1;
                assert!(hit.similarity > 0.99);
            }
        }
        assert!(found >= 280, "recall@1 {found}/286");
        assert!(index.search(7, &unit(1, 32), 1, 0).is_empty());
    }

    #[test]
    fn expired_removed_and_evicted_entries_are_never_returned() {
        let mut index = Index::new(usize::MAX);
        let a = index.insert(1, &unit(1, 16), "a", 10, 1000);
        let b = index.insert(1, &unit(2, 16), "b", 10, u64::MAX);
        assert!(index.search(1, &unit(1, 16), 2, 999).iter().any(|h| h.id == a));
        assert!(index.search(1, &unit(1, 16), 2, 1000).iter().all(|h| h.id != a), "expired");
        assert_eq!(index.sweep(1000), 1);
        assert_eq!(index.remove_where(|_, p| *p == "b"), 1);
        assert!(index.search(1, &unit(2, 16), 1, 0).is_empty());
        assert_eq!((index.len(), index.bytes()), (0, 0));
        let _ = b;

        let cost = 100 + overhead(16);
        let mut index = Index::new(cost * 10);
        let ids: Vec<u64> = (0..10).map(|i| index.insert(1, &unit(i, 16), i, 100, u64::MAX)).collect();
        index.touch(ids[0]);
        index.insert(1, &unit(99, 16), 99, 100, u64::MAX);
        assert!(index.bytes() <= cost * 10);
        let left: Vec<u64> = index.iter().map(|(_, _, p)| *p).collect();
        assert!(left.contains(&0), "the recently hit entry stays");
        assert!(!left.contains(&1), "the least recently hit goes");
    }

    #[test]
    fn many_removals_rebuild_the_graph_and_keep_it_searchable() {
        let mut index = Index::new(usize::MAX);
        let ids: Vec<u64> = (0..500u64).map(|i| index.insert(3, &unit(i, 24), i, 1, u64::MAX)).collect();
        for id in ids.iter().take(400) {
            index.remove(*id);
        }
        for i in 400..500u64 {
            assert_eq!(index.search(3, &unit(i, 24), 1, 0).first().map(|h| *h.payload), Some(i));
        }
    }
}
