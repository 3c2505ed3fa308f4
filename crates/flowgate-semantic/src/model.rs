//! A BERT encoder (the all-MiniLM-L6-v2 class: absolute positions, post-layer-norm, erf GELU)
//! read from `model.safetensors` and `config.json`, run on the CPU with `ndarray` (its matrix
//! products are `matrixmultiply`'s SIMD kernels, pure Rust). One text at a time, no padding, on the
//! calling thread.

use std::collections::HashMap;

use ndarray::{Array1, Array2, ArrayView2, Axis, Slice};
use serde::Deserialize;

use crate::Error;

/// The fields of `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    max_position_embeddings: usize,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_eps() -> f32 {
    1e-12
}

struct Linear {
    /// `[out, in]`, as stored.
    weight: Array2<f32>,
    bias: Array1<f32>,
}

impl Linear {
    fn forward(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        x.dot(&self.weight.t()) + &self.bias
    }
}

struct LayerNorm {
    weight: Array1<f32>,
    bias: Array1<f32>,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &mut Array2<f32>) {
        #[expect(clippy::cast_precision_loss, reason = "a hidden size is far below 2^24")]
        let width = x.ncols() as f32;
        for mut row in x.rows_mut() {
            let mean = row.sum() / width;
            let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width;
            let scale = 1.0 / (variance + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * scale * w + b;
            }
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The encoder's weights.
pub(crate) struct Bert {
    config: Config,
    words: Array2<f32>,
    positions: Array2<f32>,
    token_type: Array1<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The tensors of a safetensors file, by name, as `(shape, f32 values)`.
struct Tensors<'a> {
    header: HashMap<String, serde_json::Value>,
    data: &'a [u8],
}

impl<'a> Tensors<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let bad = |why: &str| Error::Model(format!("model.safetensors: {why}"));
        let length: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("too short"))?;
        let length = usize::try_from(u64::from_le_bytes(length)).map_err(|_| bad("header too long"))?;
        let header = bytes.get(8..8usize.saturating_add(length)).ok_or_else(|| bad("header past the end"))?;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
        let data = bytes.get(8 + length..).ok_or_else(|| bad("no data"))?;
        Ok(Self { header, data })
    }

    fn get(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
        let bad = |why: &str| Error::Model(format!("model.safetensors: {name}: {why}"));
        let entry = self.header.get(name).ok_or_else(|| bad("missing"))?;
        if entry.get("dtype").and_then(serde_json::Value::as_str) != Some("F32") {
            return Err(bad("not F32"));
        }
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| bad("bad shape")))
            .collect::<Result<_, _>>()?;
        let offsets =
            entry.get("data_offsets").and_then(serde_json::Value::as_array).ok_or_else(|| bad("no offsets"))?;
        let offset = |i: usize| {
            offsets
                .get(i)
                .and_then(serde_json::Value::as_u64)
                .and_then(|o| usize::try_from(o).ok())
                .ok_or_else(|| bad("bad offsets"))
        };
        let bytes = self.data.get(offset(0)?..offset(1)?).ok_or_else(|| bad("data past the end"))?;
        if bytes.len() != shape.iter().product::<usize>() * 4 {
            return Err(bad("data and shape disagree"));
        }
        let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))).collect();
        Ok((shape, values))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>, Error> {
        let (shape, values) = self.get(name)?;
        if shape != [rows, cols] {
            return Err(Error::Model(format!("model.safetensors: {name}: shape {shape:?}, expected [{rows}, {cols}]")));
        }
        Array2::from_shape_vec((rows, cols), values).map_err(|e| Error::Model(format!("{name}: {e}")))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>, Error> {
        let (shape, values) = self.get(name)?;
        if shape != [len] {
            return Err(Error::Model(format!("model.safetensors: {name}: shape {shape:?}, expected [{len}]")));
        }
        Ok(Array1::from_vec(values))
    }

    fn linear(&self, prefix: &str, out: usize, input: usize) -> Result<Linear, Error> {
        Ok(Linear {
            weight: self.matrix(&format!("{prefix}.weight"), out, input)?,
            bias: self.vector(&format!("{prefix}.bias"), out)?,
        })
    }

    fn norm(&self, prefix: &str, len: usize, eps: f32) -> Result<LayerNorm, Error> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{prefix}.weight"), len)?,
            bias: self.vector(&format!("{prefix}.bias"), len)?,
            eps,
        })
    }
}

impl Bert {
    /// Reads the weights (`safetensors`, F32) of the encoder `config_json` describes. Tensor names
    /// may carry a `bert.` prefix (a checkpoint saved from a task model).
    pub(crate) fn load(config_json: &[u8], safetensors: &[u8]) -> Result<Self, Error> {
        let config: Config =
            serde_json::from_slice(config_json).map_err(|e| Error::Model(format!("config.json: {e}")))?;
        if config.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            return Err(Error::Model("config.json: hidden_act must be gelu".to_owned()));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(Error::Model("config.json: hidden_size must be a multiple of num_attention_heads".to_owned()));
        }
        let tensors = Tensors::parse(safetensors)?;
        let prefix = if tensors.header.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        let h = config.hidden_size;
        let (word_shape, _) = tensors.get(&format!("{prefix}embeddings.word_embeddings.weight"))?;
        let vocab = word_shape.first().copied().unwrap_or(0);
        let types = tensors.matrix(&format!("{prefix}embeddings.token_type_embeddings.weight"), 2, h)?;
        let intermediate = tensors.get(&format!("{prefix}encoder.layer.0.intermediate.dense.bias"))?.0;
        let inner = intermediate.first().copied().unwrap_or(0);
        let eps = config.layer_norm_eps;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("{prefix}encoder.layer.{i}");
                Ok(Layer {
                    query: tensors.linear(&format!("{p}.attention.self.query"), h, h)?,
                    key: tensors.linear(&format!("{p}.attention.self.key"), h, h)?,
                    value: tensors.linear(&format!("{p}.attention.self.value"), h, h)?,
                    attention_out: tensors.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attention_norm: tensors.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    intermediate: tensors.linear(&format!("{p}.intermediate.dense"), inner, h)?,
                    output: tensors.linear(&format!("{p}.output.dense"), h, inner)?,
                    output_norm: tensors.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            words: tensors.matrix(&format!("{prefix}embeddings.word_embeddings.weight"), vocab, h)?,
            positions: tensors.matrix(
                &format!("{prefix}embeddings.position_embeddings.weight"),
                config.max_position_embeddings,
                h,
            )?,
            token_type: types.row(0).to_owned(),
            embedding_norm: tensors.norm(&format!("{prefix}embeddings.LayerNorm"), h, eps)?,
            layers,
            config,
        })
    }

    /// The longest input, in tokens.
    pub(crate) fn max_tokens(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The vector width.
    pub(crate) fn dimensions(&self) -> usize {
        self.config.hidden_size
    }

    /// The mean of the last hidden states of `ids` (sentence-transformers' mean pooling over a
    /// text without padding), L2-normalised.
    pub(crate) fn embed(&self, ids: &[u32]) -> Vec<f32> {
        let n = ids.len().min(self.max_tokens());
        let h = self.config.hidden_size;
        let mut x = Array2::<f32>::zeros((n, h));
        for (i, (mut row, id)) in x.rows_mut().into_iter().zip(ids).enumerate() {
            let id = usize::try_from(*id).unwrap_or(usize::MAX);
            let id = if id < self.words.nrows() { id } else { 0 };
            row.assign(&self.words.row(id));
            row += &self.positions.row(i);
            row += &self.token_type;
        }
        self.embedding_norm.forward(&mut x);
        let heads = self.config.num_attention_heads;
        let head = h / heads;
        #[expect(clippy::cast_precision_loss, reason = "a head width is far below 2^24")]
        let scale = 1.0 / (head as f32).sqrt();
        for layer in &self.layers {
            let q = layer.query.forward(x.view());
            let k = layer.key.forward(x.view());
            let v = layer.value.forward(x.view());
            let mut context = Array2::<f32>::zeros((n, h));
            for hd in 0..heads {
                let cols = Slice::from(hd * head..(hd + 1) * head);
                let mut scores = q.slice_axis(Axis(1), cols).dot(&k.slice_axis(Axis(1), cols).t());
                for mut row in scores.rows_mut() {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v * scale));
                    let mut sum = 0.0;
                    for v in &mut row {
                        *v = (*v * scale - max).exp();
                        sum += *v;
                    }
                    row /= sum;
                }
                context.slice_axis_mut(Axis(1), cols).assign(&scores.dot(&v.slice_axis(Axis(1), cols)));
            }
            let mut attended = layer.attention_out.forward(context.view()) + &x;
            layer.attention_norm.forward(&mut attended);
            let mut inner = layer.intermediate.forward(attended.view());
            inner.mapv_inplace(gelu);
            let mut out = layer.output.forward(inner.view()) + &attended;
            layer.output_norm.forward(&mut out);
            x = out;
        }
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(h));
        normalise(mean.to_vec())
    }
}

/// `v` scaled to length 1 (unchanged when it is zero).
pub(crate) fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// GELU with the error function (BERT's `gelu`).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

/// The error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7).
fn erf(x: f32) -> f32 {
    let sign = x.signum();
    let x = f64::from(x.abs());
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    #[expect(clippy::cast_possible_truncation, reason = "the result is within [-1, 1]")]
    let y = (1.0 - poly * (-x * x).exp()) as f32;
    sign * y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in
            [(0.0f32, 0.0f32), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3), (3.0, 0.999_977_9)]
        {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {} not {want}", erf(x));
        }
    }

    #[test]
    fn broken_weights_are_errors_not_panics() {
        let config =
            br#"{"hidden_size": 4, "num_attention_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 8}"#;
        for bytes in [&b""[..], b"\x10\0\0\0\0\0\0\0{}", b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\x02\0\0\0\0\0\0\0{}"] {
            assert!(Bert::load(config, bytes).is_err());
        }
        assert!(Bert::load(b"{}", b"").is_err());
    }
}
