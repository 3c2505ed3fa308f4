#!/usr/bin/env python3
"""Writes crates/flowgate-semantic/fixtures/reference.json: token ids (Hugging Face `tokenizers`)
and sentence vectors (a NumPy BERT forward pass, mean pooling, L2 normalisation, as
sentence-transformers computes them) for a few texts, from the model files in MODEL_DIR. The Rust
embedder's tests compare against it. Needs `pip install tokenizers numpy safetensors`; run once
when the reference texts change:

    python scripts/embedding-reference.py ~/.cache/flowgate/models/all-minilm-l6-v2
"""
import json
import math
import pathlib
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

TEXTS = [
    "What is your refund policy for orders?",
    "Where is my order 5521?",
    "Translate from English to German: good morning",
    "Café crème, naïve résumé — déjà vu!",
    "Is the rate limit applied per key?",
    "",
    "東京 is the capital of Japan.",
]


def erf(x):
    return np.vectorize(math.erf)(x)


def forward(w, config, ids):
    h = config["hidden_size"]
    heads = config["num_attention_heads"]
    eps = config.get("layer_norm_eps", 1e-12)
    d = h // heads

    def ln(x, p):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
        ctx = np.zeros_like(x)
        for hd in range(heads):
            sl = slice(hd * d, (hd + 1) * d)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx[:, sl] = s @ v[:, sl]
        a = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        inner = lin(a, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = ln(lin(inner, f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
    v = x.mean(0)
    return v / np.linalg.norm(v)


def main():
    model = pathlib.Path(sys.argv[1])
    config = json.loads((model / "config.json").read_text())
    weights = {k: v.astype(np.float64) for k, v in load_file(str(model / "model.safetensors")).items()}
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    out = []
    for text in TEXTS:
        ids = tokenizer.encode(text).ids
        out.append({"text": text, "ids": ids, "vector": [round(float(x), 6) for x in forward(weights, config, ids)]})
    target = pathlib.Path(__file__).resolve().parent.parent / "crates/flowgate-semantic/fixtures/reference.json"
    target.write_text(json.dumps(out, ensure_ascii=False) + "\n")
    print(target)


if __name__ == "__main__":
    main()
