"""Our GPT-NeoX / Pythia against Hugging Face's (transformers' GPTNeoXModel, GPTNeoXForCausalLM and
GPTNeoXForSequenceClassification) on tiny random checkpoints with every parameter perturbed (LayerNorm weights
and biases included), in unusual shapes: rotary on a quarter, a half and all of each head, parallel and
serial blocks, 1, 2, 4 and 8 heads, with and without attention biases, tied and untied unembeddings, a base
other than 10000 and linear rope scaling on a partial rotation.

Checked (float32, max abs diff <= 1e-4 against Hugging Face; <= 1e-5 for the same model batched vs alone or
cached vs full): logits, every hidden state, every attention pattern, with no, left and right padding;
padded batches equal to each sentence alone; the key/value cache; greedy generation with the cache equal to
Hugging Face's ``generate``; sequence classification at the last real token; the per-head fused
``query_key_value`` split on load and fused on save (a Hugging Face checkpoint loaded and saved again is the
same file); folders we save load in ``transformers`` with the same outputs; Pythia's older config.json and
buffers; hooks and their shapes.

As in tests/test_llama.py, Hugging Face is passed the position ids counted over the real tokens (as its
``generate`` makes them, and ours are by default), and padded positions are not compared.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import transformers
from decoder_parity import (
    PAD_ID,
    assert_classifier_matches,
    assert_close,
    assert_greedy_generation_matches,
    assert_lm_loss_matches,
    assert_reloads_cleanly,
    assert_round_trip,
    assert_rows_match_alone,
    hf_inputs,
    load_in_transformers,
    make_batch,
    real_query_rows,
)
from safetensors.torch import load_file, save_file
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.components.fused import PerHeadFusedSplit
from workbench.models.gpt_neox import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    GPTNeoXModel,
)
from workbench.registry import REGISTRY
from workbench.tokenizers.stand_in import write_stand_in

BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers

MODEL_TYPE = GPTNeoXConfig.model_type
LINEAR_ROPE = {"rope_type": "linear", "factor": 2.5, "rope_theta": 10000.0, "partial_rotary_factor": 0.25}

# Tiny checkpoints (tiny_hf's sizes: vocab 99, d_model 32, 2 layers, 4 heads, d_mlp 37, 64 positions) in
# shapes where a mix-up shows, each with its own unusual setting. rotary_pct is Pythia's config key
# (Hugging Face folds it into rope_parameters, as ours does).
VARIANTS = {
    "parallel-4-heads-rotary-0.25": dict(rotary_pct=0.25),  # d_head 8: one rotating pair
    "serial-2-heads-rotary-1.0": dict(use_parallel_residual=False, n_heads=2, rotary_pct=1.0),
    "parallel-8-heads-rotary-0.5-no-bias-tied": dict(
        n_heads=8, rotary_pct=0.5, attention_bias=False, tie_word_embeddings=True
    ),
    "serial-1-head-3-layers-linear-rope": dict(
        use_parallel_residual=False, n_heads=1, n_layers=3, rope_parameters=LINEAR_ROPE
    ),
    "parallel-rotary-1.0-base-100": dict(rotary_pct=1.0, rotary_emb_base=100.0),
    # d_head 4: int(4 * 0.25) = 1 dimension, which Hugging Face rounds up to one rotating pair
    "serial-8-heads-rotary-0.25-of-4": dict(use_parallel_residual=False, n_heads=8, rotary_pct=0.25),
}
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}
OURS = {"base": GPTNeoXModel, "lm": GPTNeoXForCausalLM, "cls": GPTNeoXForSequenceClassification}
HF = {"base": "GPTNeoXModel", "lm": "GPTNeoXForCausalLM", "cls": "GPTNeoXForSequenceClassification"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(variant, head, **fields) -> (Hugging Face model, the folder it is saved in); made once."""
    made = {}

    def get(variant, head="lm", **fields):
        key = (variant, head, json.dumps(fields, sort_keys=True))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"gpt-neox-{variant}-{head}")
            fields = {**VARIANTS[variant], "pad_token_id": PAD_ID, **fields}
            made[key] = (save_tiny_hf(folder, MODEL_TYPE, TASKS[head], **fields), folder)
        return made[key]

    return get


# 1. Logits, hidden states, attention patterns -------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_hidden_states_and_attentions_match(checkpoint, variant, padding):
    hf_model, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(ours, GPTNeoXForCausalLM)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    heads = hf_model.config.num_attention_heads
    rotary_dim = int(32 // heads * hf_model.config.rope_parameters["partial_rotary_factor"])
    assert ours.rotary.rotary_dim == max(rotary_dim, 2)  # Hugging Face turns one pair for a rotary_dim of 1
    input_ids, mask, real = make_batch(padding)
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), output_hidden_states=True, output_attentions=True)
        got = ours(input_ids, mask, output_hidden_states=True, output_attentions=True)
        fast = ours(input_ids, mask).logits  # the SDPA path, nobody reading the pattern
    assert_close(got.logits[real], expected.logits[real], "logits")
    assert_close(fast[real], expected.logits[real], "logits (SDPA)")
    n_layers = hf_model.config.num_hidden_layers
    assert len(got.hidden_states) == len(expected.hidden_states) == n_layers + 1
    for layer, (mine, theirs) in enumerate(zip(got.hidden_states, expected.hidden_states)):
        assert_close(mine[real], theirs[real], f"hidden_states[{layer}]")
    assert len(got.attentions) == len(expected.attentions) == n_layers
    for layer, (mine, theirs) in enumerate(zip(got.attentions, expected.attentions)):
        assert mine.shape[1] == heads
        assert_close(real_query_rows(mine, real), real_query_rows(theirs, real), f"attentions[{layer}]")


def test_bare_checkpoints_match(checkpoint):
    hf_model, folder = checkpoint("serial-2-heads-rotary-1.0", "base")
    ours = wb.AutoModel.from_pretrained(folder)
    assert type(ours) is GPTNeoXModel
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state
        got = ours(input_ids, mask).last_hidden_state
    assert_close(got[real], expected[real], "last_hidden_state")


def test_pythias_older_config_and_buffers_load(checkpoint, tmp_path):
    """Pythia's config.json (transformers 4.x) gives ``rotary_pct`` and ``rotary_emb_base``, no
    ``rope_parameters``; its safetensors keep each layer's causal-mask buffers and rotary frequencies. Both
    libraries read the same rotation, and the buffers are known, not loaded and not reported."""
    hf_model, folder = checkpoint("parallel-4-heads-rotary-0.25", "lm")
    values = json.loads((folder / "config.json").read_text())
    del values["rope_parameters"]
    values.update(rotary_pct=0.5, rotary_emb_base=500, torch_dtype="float32", use_cache=True)
    (tmp_path / "config.json").write_text(json.dumps(values))
    state = load_file(folder / "model.safetensors")
    for layer in range(2):
        prefix = f"gpt_neox.layers.{layer}.attention."
        state[prefix + "bias"] = torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()
        state[prefix + "masked_bias"] = torch.tensor(-1e9)
        state[prefix + "rotary_emb.inv_freq"] = torch.ones(2)
    save_file(state, tmp_path / "model.safetensors")

    theirs = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ours.loading_info.unexpected_keys == [] and ours.loading_info.missing_keys == []
    assert (ours.rotary.rotary_dim, ours.rotary.base) == (4, 500.0)
    rope = {"rope_type": "default", "rope_theta": 500, "partial_rotary_factor": 0.5}
    assert ours.config.rope_parameters == rope
    saved = ours.config.to_dict()
    assert "rotary_pct" not in saved and "rotary_emb_base" not in saved  # written as transformers 5 writes
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        assert_close(ours(input_ids).logits, theirs(input_ids).logits, "logits (Pythia's config)")
        assert (ours(input_ids).logits - hf_model(input_ids).logits).abs().max() > 1e-3  # the settings matter


# 2. Batching and the key/value cache ---------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_gives_every_sentence_its_logits_alone(checkpoint, padding):
    _, folder = checkpoint("parallel-4-heads-rotary-0.25", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert_rows_match_alone(ours, padding, BATCH_TOL)


@pytest.mark.parametrize("variant", ["parallel-4-heads-rotary-0.25", "serial-2-heads-rotary-1.0"])
def test_kv_cache_gives_the_full_forwards_logits(checkpoint, variant):
    """A left-padded prefix with use_cache=True, then one token at a time with the mask of all positions so
    far."""
    hf_model, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    heads = hf_model.config.num_attention_heads
    input_ids, mask, real = make_batch("left")  # the last row's prefix is padding only
    prefix = 4
    with torch.no_grad():
        full = ours(input_ids, mask).logits
        out = ours(input_ids[:, :prefix], mask[:, :prefix], use_cache=True)
        # [batch, pos, head, d_head]
        assert out.past_key_values.keys[0].shape == (3, prefix, heads, 32 // heads)
        steps = [out.logits]
        for t in range(prefix, input_ids.shape[1]):
            cache = out.past_key_values
            out = ours(input_ids[:, t : t + 1], mask[:, : t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1)[real], full[real], "cached logits", BATCH_TOL)


def test_greedy_generation_with_the_cache_is_hugging_faces(tmp_path):
    """A tiny Hugging Face GPT-NeoX with a byte-level BPE stand-in tokenizer (no end token: both generate the
    full length), left-padded prompts."""
    vocabulary = write_stand_in("byte_level_bpe", tmp_path, 300, 64)
    hf_model = save_tiny_hf(
        tmp_path, MODEL_TYPE, "causal_lm", vocab_size=vocabulary.size, rotary_pct=0.5, bos_token_id=None,
        eos_token_id=None, pad_token_id=vocabulary.ids["eos_token"],
    )
    ours = wb.load(tmp_path, device="cpu")
    assert isinstance(ours, GPTNeoXForCausalLM) and ours.tokenizer is not None
    assert_greedy_generation_matches(ours, hf_model)


# 3. Sequence classification and the LM loss ---------------------------------------------------------------


@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_classification_logits_and_loss_match(checkpoint, padding):
    hf_model, folder = checkpoint("serial-1-head-3-layers-linear-rope", "cls", num_labels=3)
    # Without a mask the last real token comes from pad_token_id, as in Hugging Face.
    assert_classifier_matches(hf_model, folder, GPTNeoXForSequenceClassification, padding, check_unmasked=True)


def test_lm_loss_matches(checkpoint):
    hf_model, folder = checkpoint("parallel-8-heads-rotary-0.5-no-bias-tied", "lm")
    assert_lm_loss_matches(hf_model, folder)


# 4. The fused query_key_value; saving ----------------------------------------------------------------------


def test_per_head_fused_split_takes_each_heads_q_k_v_rows_and_fuses_them_back():
    """Hugging Face's query_key_value rows, per head h: q rows, k rows, v rows (its ``view(..., head,
    3 * d_head)`` then ``chunk(3)``)."""
    rule = PerHeadFusedSplit("attention.query_key_value")
    config = SimpleNamespace(n_heads=2)
    weight, bias = torch.randn(2 * 3 * 4, 8), torch.randn(2 * 3 * 4)
    state = {"l.0.attention.query_key_value.weight": weight, "l.0.attention.query_key_value.bias": bias,
             "l.0.attention.dense.weight": torch.ones(8, 8)}
    split = rule.split(state, config)
    parts = {f"l.0.attention.query_key_value.{n}.{p}" for n in "qkv" for p in ("weight", "bias")}
    assert set(split) == parts | {"l.0.attention.dense.weight"}
    x = torch.randn(5, 8)
    fused_out = torch.nn.functional.linear(x, weight, bias).view(5, 2, 3 * 4)  # [pos, head, 3 * d_head]
    for index, name in enumerate("qkv"):
        part = torch.nn.functional.linear(
            x, split[f"l.0.attention.query_key_value.{name}.weight"],
            split[f"l.0.attention.query_key_value.{name}.bias"],
        )
        assert_close(part.view(5, 2, 4), fused_out[..., 4 * index : 4 * (index + 1)], name, 1e-6)
    joined = rule.join(split, config)
    assert joined.keys() == state.keys() and all(torch.equal(joined[k], state[k]) for k in state)


def test_per_head_fused_split_names_the_tensor_that_does_not_split():
    rule = PerHeadFusedSplit("attention.query_key_value")
    expected = r"l\.3\.attention\.query_key_value\.weight has shape \(18, 8\)"
    with pytest.raises(wb.CheckpointError, match=expected):
        rule.split({"l.3.attention.query_key_value.weight": torch.zeros(18, 8)}, SimpleNamespace(n_heads=4))
    parts = rule.split({"l.0.attention.query_key_value.bias": torch.zeros(12)}, SimpleNamespace(n_heads=2))
    del parts["l.0.attention.query_key_value.k.bias"]
    with pytest.raises(wb.CheckpointError, match=r"l\.0\.attention\.query_key_value\.k\.bias missing"):
        rule.join(parts, SimpleNamespace(n_heads=2))
    with pytest.raises(TypeError, match="needs the config"):
        rule.split({"l.0.attention.query_key_value.bias": torch.zeros(12)})


@pytest.mark.parametrize(
    "variant", ["parallel-4-heads-rotary-0.25", "parallel-8-heads-rotary-0.5-no-bias-tied"]
)
def test_a_hugging_face_checkpoint_loaded_and_saved_is_the_same_file(checkpoint, tmp_path, variant):
    """query_key_value fused back per head, bitwise; embed_out written only when untied, as Hugging Face."""
    _, folder = checkpoint(variant, "lm")
    wb.AutoModelForCausalLM.from_pretrained(folder).save_pretrained(tmp_path)
    original, saved = load_file(folder / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert ("embed_out.weight" in saved) == ("tied" not in variant)
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[key], original[key]) for key in original)


def our_config(**fields) -> GPTNeoXConfig:
    base = dict(vocab_size=99, d_model=32, n_layers=2, n_heads=4, d_mlp=37, max_positions=64,
                pad_token_id=PAD_ID, rope_parameters={"rope_theta": 300.0, "partial_rotary_factor": 0.5})
    return wb.AutoConfig.for_model(MODEL_TYPE, **{**base, **fields})


def perturb(model, seed=0):
    """Every parameter off its initial value (LayerNorms at 1 and 0, biases at 0 no more)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize(
    "head, fields",
    [
        ("base", dict(use_parallel_residual=False)),
        ("lm", dict(tie_word_embeddings=False, n_heads=8)),
        ("lm", dict(tie_word_embeddings=True, attention_bias=False, use_parallel_residual=False)),
        ("cls", dict(num_labels=3, n_heads=2)),
    ],
)
def test_saved_folder_loads_in_hugging_face(tmp_path, head, fields):
    ours = perturb(OURS[head].from_config(our_config(**fields), seed=0))
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == MODEL_TYPE and saved["architectures"] == [HF[head]]
    rope = {"rope_theta": 300.0, "partial_rotary_factor": 0.5, "rope_type": "default"}
    assert saved["rope_parameters"] == rope

    hf_model = load_in_transformers(tmp_path, HF[head])
    assert_round_trip(ours, hf_model, head, tied=fields.get("tie_word_embeddings") if head == "lm" else None)
    assert_reloads_cleanly(ours, tmp_path)


# 5. Hooks --------------------------------------------------------------------------------------------------

ATTENTION_HOOKS = [
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_scores",
    "attn.hook_pattern", "attn.hook_z",
]
MLP_HOOKS = ["mlp.hook_pre", "mlp.hook_post", "hook_mlp_out"]
PARALLEL_HOOKS = [
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", *ATTENTION_HOOKS, "hook_attn_out",
    "ln2.hook_scale", "ln2.hook_normalized", *MLP_HOOKS, "hook_resid_post",
]
SERIAL_HOOKS = [
    "hook_resid_pre", "ln1.hook_scale", "ln1.hook_normalized", *ATTENTION_HOOKS, "hook_attn_out",
    "hook_resid_mid", "ln2.hook_scale", "ln2.hook_normalized", *MLP_HOOKS, "hook_resid_post",
]


@pytest.mark.parametrize("parallel, block_hooks", [(True, PARALLEL_HOOKS), (False, SERIAL_HOOKS)])
def test_hook_names_are_pinned(parallel, block_hooks):
    model = GPTNeoXForCausalLM.from_config(our_config(use_parallel_residual=parallel))
    expected = (
        ["hook_embed"]
        + [f"blocks.{i}.{name}" for i in range(2) for name in block_hooks]
        + ["ln_final.hook_scale", "ln_final.hook_normalized", "hook_logits"]
    )
    assert model.hook_names == expected


def test_hooks_fire_with_their_documented_shapes(checkpoint):
    """Rotary on a quarter of each head (d_head 8: dimensions 0 and 1 turn, 2..7 do not); in a parallel block
    the stream out is the stream in plus what attention and the MLP write, and hidden states are Hugging
    Face's."""
    hf_model, folder = checkpoint("parallel-4-heads-rotary-0.25", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")
    batch, length = input_ids.shape
    with torch.no_grad():
        out, cache = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask})
        expected = hf_model(**hf_inputs(input_ids, mask), output_attentions=True, output_hidden_states=True)
    shapes = {
        "attn.hook_q": (batch, length, 4, 8),
        "attn.hook_rot_k": (batch, length, 4, 8),
        "attn.hook_v": (batch, length, 4, 8),
        "attn.hook_pattern": (batch, 4, length, length),
        "attn.hook_z": (batch, length, 4, 8),
        "ln2.hook_scale": (batch, length, 1),
        "mlp.hook_pre": (batch, length, 37),
        "mlp.hook_post": (batch, length, 37),
        "hook_attn_out": (batch, length, 32),
    }
    for name, shape in shapes.items():
        assert cache[f"blocks.1.{name}"].shape == shape, name
    for name in ("q", "k"):
        hooked, rotated = cache[f"blocks.0.attn.hook_{name}"], cache[f"blocks.0.attn.hook_rot_{name}"]
        assert torch.equal(rotated[..., 2:], hooked[..., 2:])  # past rotary_dim: no position
        assert not torch.allclose(rotated[..., :2], hooked[..., :2])
        lengths = rotated[..., :2].norm(dim=-1), hooked[..., :2].norm(dim=-1)
        assert_close(*lengths, f"rotated {name}", BATCH_TOL)
    for layer in range(2):
        assert_close(real_query_rows(cache[f"blocks.{layer}.attn.hook_pattern"], real),
                     real_query_rows(expected.attentions[layer], real), f"hook_pattern {layer}")
        assert_close(cache[f"blocks.{layer}.hook_resid_pre"][real], expected.hidden_states[layer][real],
                     f"hook_resid_pre {layer}")
        parts = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")
        resid_post = sum(cache[f"blocks.{layer}.{part}"] for part in parts)
        assert_close(resid_post, cache[f"blocks.{layer}.hook_resid_post"], f"parallel sum {layer}", BATCH_TOL)
    post = torch.nn.functional.gelu(cache["blocks.0.mlp.hook_pre"])
    assert_close(post, cache["blocks.0.mlp.hook_post"], "mlp.hook_post", BATCH_TOL)
    assert_close(cache["ln_final.hook_normalized"][real], expected.hidden_states[-1][real], "ln_final")
    assert_close(out.logits[real], cache["hook_logits"][real], "hook_logits", 0.0)


# 6. Config and registry -----------------------------------------------------------------------------------


def test_config_canonical_names_and_defaults():
    config = wb.AutoConfig.for_model(MODEL_TYPE, d_model=64, n_layers=3, n_heads=8, d_mlp=96)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 3, 8)
    assert (config.d_head, config.n_kv_heads, config.intermediate_size) == (8, 8, 96)
    assert config.use_parallel_residual and config.attention_bias and not config.tie_word_embeddings
    rope = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}
    assert config.rope_parameters == rope
    assert config.rotary_embedding().rotary_dim == 2


@pytest.mark.parametrize("fields", [dict(), dict(tie_word_embeddings=True, attention_bias=False)])
def test_the_memory_check_counts_every_parameter(fields):
    config = our_config(**fields)
    model = GPTNeoXForCausalLM.from_config(config)
    assert config.estimated_parameters() == sum(p.numel() for p in model.parameters())


SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)


@pytest.mark.parametrize("name", GPTNeoXConfig.SIZE_FIELDS)
def test_every_size_is_checked(name):
    with pytest.raises(wb.ConfigError, match=f"{name}=0 must be at least 1") as error:
        wb.AutoConfig.for_model(MODEL_TYPE, **{**SMALL, name: 0})
    assert error.value.field == name


def test_config_errors_name_the_field():
    expected = "hidden_size=30 is not a multiple of num_attention_heads=4"
    with pytest.raises(wb.ConfigError, match=expected) as error:
        wb.AutoConfig.for_model(MODEL_TYPE, **{**SMALL, "hidden_size": 30})
    assert error.value.field == "num_attention_heads"
    for fraction in (0.1, 1.5):  # int(8 * 0.1) = 0 dimensions; more than the head
        expected = f"partial_rotary_factor \\(rotary_pct\\)={fraction}"
        with pytest.raises(wb.ConfigError, match=expected) as error:
            wb.AutoConfig.for_model(MODEL_TYPE, **SMALL, rotary_pct=fraction)
        assert error.value.field == "rope_parameters"
    with pytest.raises(wb.ConfigError, match="hidden_dropout=1.5 is a probability"):
        wb.AutoConfig.for_model(MODEL_TYPE, **SMALL, hidden_dropout=1.5)


@pytest.mark.parametrize("name", ["pythia-70m", "pythia-1.4b-deduped", "gpt-neox-20b"])
def test_hub_names_stand_for_gpt_neox_alone(name):
    assert [architecture.config_class for architecture in REGISTRY.matching(name)] == [GPTNeoXConfig]
