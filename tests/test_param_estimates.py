"""The modern decoders' configs against what they build and what Hugging Face reads: ``estimated_parameters()``
(what ``wb.memory_estimate`` and the memory check count) equals the parameters of the built causal LM, tied
embeddings counted once, with every bias, norm and unusual shape each family has; a ``config.json`` that omits
``num_key_value_heads`` gives the key/value heads Hugging Face's config class gives (Qwen2's and Qwen3's
default is 32 whatever the query heads, Gemma's 16, Mistral's 8, Llama's as many as query heads).
"""

from __future__ import annotations

import json

import pytest
import transformers
from tiny_hf import tiny_model

import workbench as wb
from workbench.models.llama import LlamaConfig
from workbench.registry import REGISTRY

MODERN = sorted(
    t for t in REGISTRY.model_types() if issubclass(REGISTRY[t].config_class, LlamaConfig) or t == "gpt_neox"
)

# Per family, settings that change the count: biases, grouped-query heads, a head width of its own, ties.
VARIANTS = {
    "llama": [dict(n_kv_heads=2), dict(attention_bias=True, mlp_bias=True, d_head=6, tie_word_embeddings=True)],
    "mistral": [dict(n_kv_heads=1, d_head=8)],
    "qwen2": [dict(n_kv_heads=2), dict(attention_bias=False, tie_word_embeddings=True)],
    "qwen3": [dict(n_kv_heads=2, d_head=8), dict(attention_bias=True, d_head=6)],
    "gemma": [dict(n_kv_heads=1, d_head=8), dict(attention_bias=True, tie_word_embeddings=False)],
    "gemma2": [dict(n_kv_heads=2, d_head=8), dict(attention_bias=True)],
    "gpt_neox": [dict(), dict(attention_bias=False, tie_word_embeddings=True)],
    "phi3": [dict(n_kv_heads=2)],
    "olmo2": [dict(n_kv_heads=2), dict(attention_bias=True, n_kv_heads=1, d_head=6)],
}
CASES = [(family, fields) for family in MODERN for fields in [{}, *VARIANTS.get(family, [])]]


def test_every_modern_family_has_variants():
    assert set(VARIANTS) == set(MODERN)


@pytest.mark.parametrize("family, fields", CASES, ids=[f"{f}-{i}" for f, i in
                                                       ((f, json.dumps(v)) for f, v in CASES)])
def test_estimated_parameters_are_exact(family, fields):
    model = tiny_model(family, "causal_lm", **fields)
    built = sum(param.numel() for param in model.parameters())  # a tied weight once
    assert model.config.estimated_parameters() == built


@pytest.mark.parametrize("family", [f for f in MODERN if f != "gpt_neox"])
def test_config_json_without_key_value_heads_reads_as_hugging_face(family, tmp_path):
    """The same config.json, without ``num_key_value_heads``: ours equals Hugging Face's, and an explicit null
    means as many key/value heads as query heads in both (64 query heads: a multiple of every default)."""
    hf_class = getattr(transformers, REGISTRY[family].model_class("causal_lm").__name__).config_class
    # Gemma's, Gemma 2's and Mistral's classes refuse a null (their field is an int).
    values = ["omitted", None] if "None" in str(hf_class.__annotations__["num_key_value_heads"]) else ["omitted"]
    for value in values:
        fields = {"model_type": family, "num_attention_heads": 64, "hidden_size": 128, "num_hidden_layers": 2}
        if value != "omitted":
            fields["num_key_value_heads"] = value
        (tmp_path / "config.json").write_text(json.dumps(fields))
        ours = wb.AutoConfig.from_pretrained(tmp_path)
        theirs = hf_class.from_pretrained(tmp_path)
        assert ours.num_key_value_heads == theirs.num_key_value_heads, value
        if value is None:
            assert ours.num_key_value_heads == 64
