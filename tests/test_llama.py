"""Our Llama against Hugging Face's (transformers' LlamaModel, LlamaForCausalLM and
LlamaForSequenceClassification) on tiny random checkpoints with every parameter perturbed (RMSNorm weights
included), in unusual shapes: grouped-query attention 4/2 and multi-query 4/1, head_dim apart from
hidden_size / heads, attention and MLP biases, tied and untied unembeddings, llama3 and linear rope scaling
(and every other rope type on logits).

Checked (float32, max abs diff <= 1e-4 against Hugging Face; <= 1e-5 for the same model batched vs alone or
cached vs full): logits, every hidden state, every attention pattern, with no, left and right padding;
padded batches equal to each sentence alone; the key/value cache; greedy generation with the cache equal to
Hugging Face's ``generate``; sequence classification at the last real token; folders we save load in
``transformers`` with the same outputs; hooks and their shapes under grouped-query attention.

Hugging Face's Llama numbers positions 0..n-1 whatever the padding unless given ``position_ids``; ours count
the real tokens of the attention mask (as Hugging Face's ``generate`` does): padded parity passes Hugging Face
those position ids and compares real (non-padding) positions only.
"""

from __future__ import annotations

import json

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
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.models.llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel
from workbench.tokenizers.stand_in import write_stand_in

BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers

LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
}
LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5}

# Tiny checkpoints (tiny_hf's sizes: vocab 99, d_model 32, 2 layers, 4 heads, d_mlp 37, 64 positions) in
# shapes where a mix-up shows: every one perturbed, with its own unusual setting.
VARIANTS = {
    "gqa-4-2": dict(n_kv_heads=2),
    "mqa-4-1-head-dim-12": dict(n_kv_heads=1, d_head=12),  # head_dim != 32 / 4
    "bias-untied-3-layers": dict(n_layers=3, attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
    "tied-llama3-rope": dict(n_kv_heads=2, tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE),
    "linear-rope-head-dim-4": dict(n_kv_heads=4, d_head=4, rope_parameters=LINEAR_ROPE),
}
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}
OURS = {"base": LlamaModel, "lm": LlamaForCausalLM, "cls": LlamaForSequenceClassification}
HF = {"base": "LlamaModel", "lm": "LlamaForCausalLM", "cls": "LlamaForSequenceClassification"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(variant, head, **fields) -> (Hugging Face model, the folder it is saved in); made once."""
    made = {}

    def get(variant, head="lm", **fields):
        key = (variant, head, json.dumps(fields, sort_keys=True))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"llama-{variant}-{head}")
            fields = {**VARIANTS.get(variant, {}), "pad_token_id": PAD_ID, **fields}
            made[key] = (save_tiny_hf(folder, "llama", TASKS[head], **fields), folder)
        return made[key]

    return get


# 1. Logits, hidden states, attention patterns -------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_hidden_states_and_attentions_match(checkpoint, variant, padding):
    hf_model, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(ours, LlamaForCausalLM)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
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
        assert mine.shape[1] == 4  # one pattern per query head, also with fewer key/value heads
        assert_close(real_query_rows(mine, real), real_query_rows(theirs, real), f"attentions[{layer}]")


@pytest.mark.parametrize("variant", ["gqa-4-2", "mqa-4-1-head-dim-12"])
def test_bare_checkpoints_match(checkpoint, variant):
    hf_model, folder = checkpoint(variant, "base")
    ours = wb.AutoModel.from_pretrained(folder)
    assert type(ours) is LlamaModel
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state
        got = ours(input_ids, mask).last_hidden_state
    assert_close(got[real], expected[real], "last_hidden_state")


ROPE_SCALINGS = {
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8, "beta_fast": 16},
    "longrope": {
        "rope_type": "longrope",
        "short_factor": [1.0 + 0.1 * i for i in range(4)],
        "long_factor": [2.0 + 0.3 * i for i in range(4)],
        "original_max_position_embeddings": 8,
    },
    "llama3": {**LLAMA3_ROPE, "original_max_position_embeddings": 8},
    "linear": LINEAR_ROPE,
}


@pytest.mark.parametrize("rope", list(ROPE_SCALINGS))
def test_every_rope_scaling_matches_past_the_original_context(checkpoint, rope):
    """Inputs of 12 tokens, past the original context of 8 (yarn, longrope, llama3) and the 10 positions of
    the model (dynamic), so the long-context frequencies are the ones in use; head_dim 8: 4 frequencies."""
    parameters = {"rope_theta": 10000.0, **ROPE_SCALINGS[rope]}
    hf_model, folder = checkpoint(f"rope-{rope}", "lm", max_positions=10, rope_parameters=parameters)
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert ours.rotary.rope_type == rope
    input_ids, mask, real = make_batch("left", lengths=[12, 7])
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).logits
        got = ours(input_ids, mask).logits
    assert_close(got[real], expected[real], f"logits with {rope} rope")


def test_older_configs_with_rope_scaling_and_rope_theta_load(checkpoint, tmp_path):
    """Configs written before transformers 5 keep ``rope_theta`` and ``rope_scaling`` (with ``type``) apart;
    both libraries read them to the same rotation."""
    hf_model, folder = checkpoint("gqa-4-2", "lm")
    values = json.loads((folder / "config.json").read_text())
    del values["rope_parameters"]
    values.update(rope_theta=500.0, rope_scaling={"type": "linear", "factor": 2.0})
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(values))
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert (ours.rotary.rope_type, ours.rotary.base) == ("linear", 500.0)
    assert ours.config.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}
    assert "rope_scaling" not in ours.config.to_dict()  # written back as transformers 5 writes it
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        assert_close(ours(input_ids).logits, theirs(input_ids).logits, "logits (rope_scaling)")
        assert (ours(input_ids).logits - hf_model(input_ids).logits).abs().max() > 1e-3  # the scaling matters


# 2. Batching and the key/value cache ---------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_gives_every_sentence_its_logits_alone(checkpoint, padding):
    _, folder = checkpoint("mqa-4-1-head-dim-12", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert_rows_match_alone(ours, padding, BATCH_TOL)


def test_kv_cache_gives_the_full_forwards_logits(checkpoint):
    """A left-padded prefix with use_cache=True, then one token at a time with the mask of all positions so
    far."""
    _, folder = checkpoint("gqa-4-2", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")  # the last row's prefix is padding only
    prefix = 4
    with torch.no_grad():
        full = ours(input_ids, mask).logits
        out = ours(input_ids[:, :prefix], mask[:, :prefix], use_cache=True)
        assert len(out.past_key_values) == prefix
        assert out.past_key_values.keys[0].shape == (3, prefix, 2, 8)  # [batch, pos, kv_head, d_head]
        steps = [out.logits]
        for t in range(prefix, input_ids.shape[1]):
            cache = out.past_key_values
            out = ours(input_ids[:, t : t + 1], mask[:, : t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1)[real], full[real], "cached logits", BATCH_TOL)


@pytest.fixture(scope="module")
def generation_checkpoint(tmp_path_factory):
    """A tiny Hugging Face Llama and the same folder with a byte-level BPE stand-in tokenizer (no end token in
    the config: both generate the full length)."""
    folder = tmp_path_factory.mktemp("llama-generation")
    vocabulary = write_stand_in("byte_level_bpe", folder, 300, 64)
    hf_model = save_tiny_hf(
        folder, "llama", "causal_lm", vocab_size=vocabulary.size, n_kv_heads=2, bos_token_id=None,
        eos_token_id=None, pad_token_id=vocabulary.ids["eos_token"], rope_parameters=LLAMA3_ROPE,
    )
    return hf_model, folder


def test_greedy_generation_with_the_cache_is_hugging_faces(generation_checkpoint):
    hf_model, folder = generation_checkpoint
    ours = wb.load(folder, device="cpu")
    assert isinstance(ours, LlamaForCausalLM) and ours.tokenizer is not None
    assert_greedy_generation_matches(ours, hf_model)


# 3. Sequence classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_classification_logits_and_loss_match(checkpoint, padding):
    hf_model, folder = checkpoint("bias-untied-3-layers", "cls", num_labels=3)
    # Without a mask the last real token comes from pad_token_id, as in Hugging Face.
    assert_classifier_matches(hf_model, folder, LlamaForSequenceClassification, padding, check_unmasked=True)


def test_lm_loss_matches(checkpoint):
    hf_model, folder = checkpoint("tied-llama3-rope", "lm")
    assert_lm_loss_matches(hf_model, folder)


# 4. Saving: transformers loads our folders --------------------------------------------------------------


def our_config(**fields) -> LlamaConfig:
    base = dict(vocab_size=99, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_head=12, d_mlp=37,
                max_positions=64, pad_token_id=PAD_ID, rope_parameters=LLAMA3_ROPE)
    return wb.AutoConfig.for_model("llama", **{**base, **fields})


def perturb(model, seed=0):
    """Every parameter off its initial value (RMSNorm weights at 1, no biases left at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize(
    "head, fields",
    [
        ("base", dict(attention_bias=True, rope_parameters=None)),  # the default rotation, base 10000
        ("lm", dict(tie_word_embeddings=True)),
        ("lm", dict(tie_word_embeddings=False, mlp_bias=True, n_kv_heads=1)),
        ("cls", dict(num_labels=3)),
    ],
)
def test_saved_folder_loads_in_hugging_face(tmp_path, head, fields):
    ours = perturb(OURS[head].from_config(our_config(**fields), seed=0))
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "llama" and saved["architectures"] == [HF[head]]
    assert saved["num_key_value_heads"] == ours.config.n_kv_heads and saved["head_dim"] == 12
    assert "rope_theta" not in saved and saved["rope_parameters"]["rope_theta"] in (10000.0, 500000.0)

    hf_model = load_in_transformers(tmp_path, HF[head])
    assert_round_trip(ours, hf_model, head, tied=fields.get("tie_word_embeddings") if head == "lm" else None)
    assert_reloads_cleanly(ours, tmp_path)


def test_older_checkpoints_with_rotary_buffers_load_with_no_unexpected_keys(checkpoint, tmp_path):
    """Checkpoints saved by older transformers keep each layer's ``rotary_emb.inv_freq``: known, recomputed,
    not loaded and not reported."""
    from safetensors.torch import load_file, save_file

    _, folder = checkpoint("gqa-4-2", "lm")
    state = load_file(folder / "model.safetensors")
    for layer in range(2):
        state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    ours = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert ours.loading_info.unexpected_keys == [] and ours.loading_info.missing_keys == []


def test_load_and_auto_classes_read_a_hugging_face_llama_folder(checkpoint):
    _, folder = checkpoint("gqa-4-2", "lm")
    loaded = wb.load(folder, device="cpu")
    assert type(loaded) is LlamaForCausalLM  # the head the checkpoint was saved with
    assert type(wb.AutoModelForCausalLM.from_pretrained(folder)) is LlamaForCausalLM
    assert type(wb.load(folder, task="base", device="cpu")) is LlamaModel
    config = wb.AutoConfig.from_pretrained(folder)
    sizes = (config.d_model, config.n_heads, config.n_kv_heads, config.d_head, config.d_mlp)
    assert sizes == (32, 4, 2, 8, 37)


# 5. Hooks --------------------------------------------------------------------------------------------------

BLOCK_HOOKS = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_rot_q",
    "attn.hook_rot_k",
    "attn.hook_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]


def test_hook_names_are_pinned():
    model = LlamaForCausalLM.from_config(our_config())
    expected = (
        ["hook_embed"]
        + [f"blocks.{i}.{name}" for i in range(2) for name in BLOCK_HOOKS]
        + ["ln_final.hook_scale", "ln_final.hook_normalized", "hook_logits"]
    )
    assert model.hook_names == expected


def test_hooks_fire_with_their_documented_shapes(checkpoint):
    """head_dim 12 with 4 query and 1 key/value head: hook_k and hook_v have the key/value heads, the pattern
    one row per query head; the rotated q and k are Hugging Face's, and each stage feeds the next."""
    hf_model, folder = checkpoint("mqa-4-1-head-dim-12", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")
    batch, length = input_ids.shape
    with torch.no_grad():
        out, cache = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask})
        expected = hf_model(**hf_inputs(input_ids, mask), output_attentions=True, output_hidden_states=True)
    shapes = {
        "attn.hook_q": (batch, length, 4, 12),
        "attn.hook_rot_q": (batch, length, 4, 12),
        "attn.hook_k": (batch, length, 1, 12),
        "attn.hook_rot_k": (batch, length, 1, 12),
        "attn.hook_v": (batch, length, 1, 12),
        "attn.hook_scores": (batch, 4, length, length),
        "attn.hook_pattern": (batch, 4, length, length),
        "attn.hook_z": (batch, length, 4, 12),
        "ln1.hook_scale": (batch, length, 1),
        "mlp.hook_pre": (batch, length, 37),
        "mlp.hook_pre_linear": (batch, length, 37),
        "mlp.hook_post": (batch, length, 37),
        "hook_resid_mid": (batch, length, 32),
    }
    for name, shape in shapes.items():
        assert cache[f"blocks.1.{name}"].shape == shape, name
    assert cache["hook_logits"].shape == (batch, length, 99)
    for layer in range(2):
        assert_close(real_query_rows(cache[f"blocks.{layer}.attn.hook_pattern"], real),
                     real_query_rows(expected.attentions[layer], real), f"hook_pattern {layer}")
        assert_close(cache[f"blocks.{layer}.hook_resid_pre"][real], expected.hidden_states[layer][real],
                     f"hook_resid_pre {layer}")
    assert_close(cache["ln_final.hook_normalized"][real], expected.hidden_states[-1][real], "ln_final")
    # The gate's partner: hook_post = silu(hook_pre) * hook_pre_linear.
    post = torch.nn.functional.silu(cache["blocks.0.mlp.hook_pre"]) * cache["blocks.0.mlp.hook_pre_linear"]
    assert_close(post, cache["blocks.0.mlp.hook_post"], "mlp.hook_post", BATCH_TOL)
    # The rotation keeps each vector's length: rotary positions turn, they do not scale.
    assert_close(cache["blocks.0.attn.hook_rot_k"].norm(dim=-1), cache["blocks.0.attn.hook_k"].norm(dim=-1),
                 "rotated key norms", BATCH_TOL)
    assert not torch.allclose(cache["blocks.0.attn.hook_rot_k"], cache["blocks.0.attn.hook_k"])
    assert_close(out.logits[real], cache["hook_logits"][real], "hook_logits", 0.0)


def test_hooks_fire_during_cached_steps_on_the_new_positions(checkpoint):
    _, folder = checkpoint("gqa-4-2", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, _ = make_batch("left")
    batch, length = input_ids.shape
    with torch.no_grad():
        _, full = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask})
        prefix = ours(input_ids[:, :-1], mask[:, :-1], use_cache=True)
        _, step = ours.run_with_cache(
            {"input_ids": input_ids[:, -1:], "attention_mask": mask}, past_key_values=prefix.past_key_values,
            use_cache=True,
        )
    assert step["blocks.1.attn.hook_rot_k"].shape == (batch, 1, 2, 8)  # the new position's kv heads
    assert step["blocks.1.attn.hook_pattern"].shape == (batch, 4, 1, length)  # over every key, cached too
    for name, tensor in step.items():
        per_query = name.endswith(("hook_scores", "hook_pattern"))  # [batch, head, query_pos, key_pos]
        expected = full[name][:, :, -1:] if per_query else full[name][:, -1:]
        assert_close(tensor, expected, f"cached-step {name}", BATCH_TOL)


def test_ablating_a_key_value_head_through_hook_v_changes_only_its_query_heads(checkpoint):
    """Query heads 0, 1 read key/value head 0 and heads 2, 3 read head 1 (h // (4 / 2))."""
    _, folder = checkpoint("gqa-4-2", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, _, _ = make_batch("none")

    def zero_kv_head_1(v, hook):
        v = v.clone()
        v[:, :, 1] = 0
        return v

    with torch.no_grad():
        _, clean = ours.run_with_cache(input_ids, names_filter="blocks.0.attn.hook_z")
        _, ablated = ours.run_with_cache(input_ids, names_filter="blocks.0.attn.hook_z",
                                         fwd_hooks=[("blocks.0.attn.hook_v", zero_kv_head_1)])
    z_clean, z_ablated = clean["blocks.0.attn.hook_z"], ablated["blocks.0.attn.hook_z"]
    assert torch.equal(z_clean[:, :, :2], z_ablated[:, :, :2])
    assert z_ablated[:, :, 2:].abs().max() == 0


# 6. Config ------------------------------------------------------------------------------------------------


def test_config_canonical_names_and_defaults():
    config = wb.AutoConfig.for_model("llama", d_model=64, n_layers=3, n_heads=8, n_kv_heads=2, d_mlp=96)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 3, 8)
    assert (config.num_key_value_heads, config.head_dim, config.intermediate_size) == (2, 8, 96)
    assert config.tie_word_embeddings is False  # Llama's default, unlike the encoders'
    mha = wb.AutoConfig.for_model("llama", d_model=64, n_heads=8)
    assert (mha.n_kv_heads, mha.d_head) == (8, 8)


@pytest.mark.parametrize("tied", [True, False])
def test_the_memory_check_counts_the_parameters_of_grouped_query_attention_and_the_gated_mlp(tied):
    config = our_config(tie_word_embeddings=tied)
    model = LlamaForCausalLM.from_config(config)
    assert config.estimated_parameters() == sum(p.numel() for p in model.parameters())


SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)


@pytest.mark.parametrize("name", LlamaConfig.SIZE_FIELDS)
def test_every_size_is_checked(name):
    with pytest.raises(wb.ConfigError, match=f"{name}=0 must be at least 1") as error:
        wb.AutoConfig.for_model("llama", **{**SMALL, name: 0})
    assert error.value.field == name


def test_config_errors_name_the_field():
    with pytest.raises(wb.ConfigError, match="num_key_value_heads=3") as error:
        wb.AutoConfig.for_model("llama", d_model=32, n_heads=4, n_kv_heads=3)
    assert error.value.field == "num_key_value_heads"
    with pytest.raises(ValueError, match="rope_type 'llama3' needs low_freq_factor"):
        wb.AutoConfig.for_model("llama", **SMALL, rope_parameters={"rope_type": "llama3", "factor": 8.0})
    with pytest.raises(ValueError, match="unsupported hidden_act 'swiglu'"):
        wb.AutoConfig.for_model("llama", **SMALL, hidden_act="swiglu")
