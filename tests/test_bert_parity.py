"""Our BERT against Hugging Face's on the same checkpoint: every layer's hidden states, every attention,
the pooler, the MLM and classification logits (max abs diff <= 1e-4 in float32)."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb

TOL = 1e-4

TINY_CONFIGS = {
    "2x4heads": dict(d_model=32, n_layers=2, n_heads=4, d_mlp=37),
    "3x6heads-gelu_new": dict(d_model=48, n_layers=3, n_heads=6, d_mlp=64, hidden_act="gelu_new"),
    "1x1head-3types-relu": dict(d_model=16, n_layers=1, n_heads=1, d_mlp=24, type_vocab_size=3, hidden_act="relu"),
}


def make_inputs(vocab_size: int, type_vocab_size: int, padded: bool, with_types: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    batch, length = 3, 11
    input_ids = torch.randint(1, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        for row, real in enumerate([11, 7, 3]):
            attention_mask[row, real:] = 0
            input_ids[row, real:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_types:
        inputs["token_type_ids"] = torch.randint(0, type_vocab_size, (batch, length), generator=generator)
    return inputs


def assert_close_per_layer(ours, theirs, what):
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs Hugging Face's {len(theirs)}"
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{layer}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"{what}[{layer}] differs from Hugging Face by {diff:.2e}"


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("with_types", [False, True], ids=["no-types", "token-types"])
def test_hidden_states_and_attentions_match(tmp_path, name, padded, with_types):
    fields = TINY_CONFIGS[name]
    hf_model = save_tiny_hf(tmp_path, "bert", **fields)
    ours = wb.AutoModel.from_pretrained(tmp_path)
    assert type(ours) is wb.BertModel
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []

    inputs = make_inputs(99, fields.get("type_vocab_size", 2), padded, with_types)
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert_close_per_layer([got.last_hidden_state], [expected.last_hidden_state], "last_hidden_state")
    assert_close_per_layer([got.pooler_output], [expected.pooler_output], "pooler_output")


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_masked_lm_logits_match(tmp_path, padded):
    hf_model = save_tiny_hf(tmp_path, "bert", "masked_lm", **TINY_CONFIGS["2x4heads"])
    ours = wb.AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == []
    inputs = make_inputs(99, 2, padded, with_types=True)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert abs(got.loss.item() - expected.loss.item()) <= TOL


@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification_logits_match(tmp_path, num_labels):
    hf_model = save_tiny_hf(tmp_path, "bert", "sequence_classification", num_labels=num_labels,
                            **TINY_CONFIGS["3x6heads-gelu_new"])
    ours = wb.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert ours.config.num_labels == num_labels and ours.loading_info.missing_keys == []
    inputs = make_inputs(99, 2, padded=True, with_types=True)
    labels = torch.tensor([0.5, -1.0, 2.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels)
        got = ours(**inputs, labels=labels)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert abs(got.loss.item() - expected.loss.item()) <= TOL


def test_real_minilm_matches_hugging_face(minilm_path, minilm):
    import transformers

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm_path))
    hf_model = transformers.AutoModel.from_pretrained(str(minilm_path), attn_implementation="eager").eval()
    texts = ["The keys to the cabinet are on the table.", "Short one.", "Ça coûte 3€ — 日本語 too! 😀"]
    ours_inputs = minilm.tokenizer(texts, padding=True, return_tensors="pt")
    hf_inputs = hf_tokenizer(texts, padding=True, return_tensors="pt")
    for key in hf_inputs:
        assert torch.equal(ours_inputs[key], hf_inputs[key]), key
    with torch.no_grad():
        expected = hf_model(**hf_inputs, output_hidden_states=True, output_attentions=True)
        got = minilm(**ours_inputs, output_hidden_states=True, output_attentions=True)
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert_close_per_layer([got.pooler_output], [expected.pooler_output], "pooler_output")


def test_fused_and_explicit_attention_agree(minilm):
    """SDPA (nobody looks) and the explicit softmax (pattern requested) give the same outputs."""
    inputs = minilm.tokenize(["The keys to the cabinet are on the table.", "A shorter one."])
    with torch.no_grad():
        fused = minilm(**inputs).last_hidden_state
        explicit = minilm(**inputs, output_attentions=True).last_hidden_state
    assert (fused - explicit).abs().max().item() <= TOL


def test_hook_points_equal_hugging_face_outputs(minilm):
    """blocks.0.hook_resid_pre = hidden_states[0]; blocks.i.hook_resid_post = hidden_states[i+1];
    blocks.i.attn.hook_pattern = attentions[i] (the equalities docs/hooks.md promises)."""
    text = ["The keys to the cabinet are on the table.", "Padding follows this one."]
    out, cache = minilm.run_with_cache(text, output_hidden_states=True, output_attentions=True)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], out.hidden_states[0])
    assert torch.equal(cache["ln_embed.hook_normalized"], out.hidden_states[0])
    for i in range(minilm.n_layers):
        assert torch.equal(cache[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])
        assert torch.equal(cache[f"blocks.{i}.attn.hook_pattern"], out.attentions[i])
        assert torch.equal(cache[f"blocks.{i}.hook_resid_mid"], cache[f"blocks.{i}.ln1.hook_normalized"])
    assert torch.equal(cache.stack("hook_resid_post"), torch.stack(out.hidden_states[1:]))
