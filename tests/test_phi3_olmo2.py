"""Our Phi-3 and OLMo 2 against Hugging Face's (transformers' Phi3* and Olmo2* classes) on tiny random
checkpoints with every parameter perturbed (RMSNorm and q/k-norm weights included), in unusual shapes:
grouped-query attention 4/2 and multi-query 4/1, head_dim 12 apart from hidden_size / heads, Phi-3's fused
qkv_proj under both (parts of unequal widths), partial rotary, longrope past the original context, a sliding
window of 3 on inputs of 9, OLMo 2's attention biases and tied unembedding; and :class:`FusedHeadsSplit`, the
rule that cuts Phi-3's qkv_proj.

Checked (float32, max abs diff <= 1e-4 against Hugging Face; <= 1e-5 for the same model batched vs alone or
cached vs full): logits, every hidden state, every attention pattern, with no, left and right padding;
padded batches equal to each sentence alone; the key/value cache; greedy generation with the cache equal to
Hugging Face's ``generate``; sequence classification at the last real token; the tensors we save equal the
checkpoint's (fused back as they were), and ``transformers`` loads our folders with the same outputs; hooks.

As in tests/test_llama.py, Hugging Face is given the position ids our models count over the real tokens, and
padded parity compares real positions only.
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
    assert_round_trip,
    assert_rows_match_alone,
    hf_inputs,
    load_in_transformers,
    make_batch,
    real_query_rows,
)
from safetensors.torch import load_file
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.components.fused import FusedHeadsSplit, join_fused, split_fused
from workbench.loading import CheckpointError
from workbench.models.olmo2 import Olmo2Config, Olmo2ForCausalLM, Olmo2ForSequenceClassification, Olmo2Model
from workbench.models.phi3 import Phi3Config, Phi3ForCausalLM, Phi3ForSequenceClassification, Phi3Model
from workbench.registry import REGISTRY
from workbench.tokenizers.stand_in import write_stand_in

BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers


PARTIAL_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
# head_dim 8 at 0.75: 6 rotated dimensions, 3 frequencies; the original context of 8 is shorter than the
# 9 positions of the batch, so the long factors are the ones in use.
LONGROPE = {
    "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
    "short_factor": [1.0, 1.1, 1.3], "long_factor": [2.0, 2.5, 4.0],
}

# Tiny checkpoints (tiny_hf's sizes: vocab 99, d_model 32, 2 layers, 4 heads, d_mlp 37, 64 positions), each
# perturbed and with its own unusual setting.
VARIANTS = {
    "phi3-gqa-4-2-partial-rotary": ("phi3", dict(n_kv_heads=2, rope_parameters=PARTIAL_ROPE)),
    "phi3-mqa-head-dim-12-window-3": ("phi3", dict(n_kv_heads=1, d_head=12, sliding_window=3)),
    "phi3-longrope-tied": (
        "phi3", dict(n_kv_heads=2, tie_word_embeddings=True, rope_parameters=LONGROPE,
                     original_max_position_embeddings=8),
    ),
    "olmo2-gqa-4-2-bias-3-layers": ("olmo2", dict(n_kv_heads=2, attention_bias=True, n_layers=3)),
    "olmo2-mqa-head-dim-12-tied": ("olmo2", dict(n_kv_heads=1, d_head=12, tie_word_embeddings=True)),
}
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}
OURS = {
    "phi3": {"base": Phi3Model, "lm": Phi3ForCausalLM, "cls": Phi3ForSequenceClassification},
    "olmo2": {"base": Olmo2Model, "lm": Olmo2ForCausalLM, "cls": Olmo2ForSequenceClassification},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(variant, head, **fields) -> (Hugging Face model, the folder it is saved in); made once."""
    made = {}

    def get(variant, head="lm", **fields):
        key = (variant, head, json.dumps(fields, sort_keys=True))
        if key not in made:
            model_type, variant_fields = VARIANTS[variant]
            folder = tmp_path_factory.mktemp(f"{variant}-{head}")
            special = {"pad_token_id": PAD_ID, "bos_token_id": 1, "eos_token_id": 2}
            fields = {**variant_fields, **special, **fields}
            made[key] = (save_tiny_hf(folder, model_type, TASKS[head], **fields), folder)
        return made[key]

    return get


# 1. Logits, hidden states, attention patterns -------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_hidden_states_and_attentions_match(checkpoint, variant, padding):
    hf_model, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours) is OURS[VARIANTS[variant][0]]["lm"]
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


def test_the_window_and_longrope_change_the_outputs(checkpoint):
    """The sliding window masks keys 3 or more positions back, and longrope's long factors are in use: the
    parity above is not a coincidence of settings that do nothing."""
    _, folder = checkpoint("phi3-mqa-head-dim-12-window-3", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        pattern = ours(input_ids, output_attentions=True).attentions[0]
    assert pattern[:, :, 8, :6].abs().max() == 0 and (pattern[:, :, 8, 6:] > 0).all()
    _, folder = checkpoint("phi3-longrope-tied", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert (ours.rotary.rope_type, ours.rotary.rotary_dim) == ("longrope", 6)
    with torch.no_grad():
        long = ours(input_ids).logits[:, :8]  # 9 positions: past the original context of 8
        short = ours(input_ids[:, :8]).logits
    assert (long - short).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["phi3-mqa-head-dim-12-window-3", "olmo2-gqa-4-2-bias-3-layers"])
def test_bare_checkpoints_match(checkpoint, variant):
    hf_model, folder = checkpoint(variant, "base")
    ours = wb.AutoModel.from_pretrained(folder)
    assert type(ours) is OURS[VARIANTS[variant][0]]["base"]
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch("left")
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state
        got = ours(input_ids, mask).last_hidden_state
    assert_close(got[real], expected[real], "last_hidden_state")


# 2. Batching and the key/value cache ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["phi3-mqa-head-dim-12-window-3", "olmo2-mqa-head-dim-12-tied"])
@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_gives_every_sentence_its_logits_alone(checkpoint, variant, padding):
    _, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert_rows_match_alone(ours, padding, BATCH_TOL)


@pytest.mark.parametrize("variant", ["phi3-mqa-head-dim-12-window-3", "olmo2-gqa-4-2-bias-3-layers"])
def test_kv_cache_gives_the_full_forwards_logits(checkpoint, variant):
    """A left-padded prefix with use_cache=True, then one token at a time (past the window of 3)."""
    _, folder = checkpoint(variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")
    prefix = 4
    with torch.no_grad():
        full = ours(input_ids, mask).logits
        out = ours(input_ids[:, :prefix], mask[:, :prefix], use_cache=True)
        steps = [out.logits]
        for t in range(prefix, input_ids.shape[1]):
            cache = out.past_key_values
            out = ours(input_ids[:, t : t + 1], mask[:, : t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1)[real], full[real], "cached logits", BATCH_TOL)


@pytest.mark.parametrize(
    "model_type, fields",
    [
        ("phi3", dict(n_kv_heads=2, sliding_window=3, rope_parameters=PARTIAL_ROPE)),
        ("olmo2", dict(n_kv_heads=2, attention_bias=True)),
    ],
)
def test_greedy_generation_with_the_cache_is_hugging_faces(tmp_path, model_type, fields):
    vocabulary = write_stand_in("byte_level_bpe", tmp_path, 300, 64)
    hf_model = save_tiny_hf(
        tmp_path, model_type, "causal_lm", vocab_size=vocabulary.size, bos_token_id=None, eos_token_id=None,
        pad_token_id=vocabulary.ids["eos_token"], **fields,
    )
    ours = wb.load(tmp_path, device="cpu")
    assert type(ours) is OURS[model_type]["lm"] and ours.tokenizer is not None
    assert_greedy_generation_matches(ours, hf_model)


# 3. Sequence classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["phi3-gqa-4-2-partial-rotary", "olmo2-gqa-4-2-bias-3-layers"])
@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_classification_logits_and_loss_match(checkpoint, variant, padding):
    hf_model, folder = checkpoint(variant, "cls", num_labels=3)
    assert_classifier_matches(hf_model, folder, OURS[VARIANTS[variant][0]]["cls"], padding)


# 4. Saving: the checkpoint's tensors back, and transformers loads our folders ------------------------------


@pytest.mark.parametrize(
    "variant", ["phi3-mqa-head-dim-12-window-3", "phi3-longrope-tied", "olmo2-gqa-4-2-bias-3-layers"]
)
def test_saving_writes_the_checkpoints_tensors_fused_as_they_were(checkpoint, variant, tmp_path):
    """Loaded and saved again, every tensor of the checkpoint comes back under its name, bit for bit: the
    fused qkv_proj (4 query heads, then 1 or 2 key/value heads for k and v) and gate_up_proj included."""
    _, folder = checkpoint(variant, "lm")
    wb.AutoModelForCausalLM.from_pretrained(folder).save_pretrained(tmp_path)
    theirs, ours = load_file(folder / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert sorted(ours) == sorted(theirs)
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name


@pytest.mark.parametrize(
    "model_type, head, fields",
    [
        ("phi3", "lm", dict(n_kv_heads=1, d_head=12, sliding_window=3, rope_parameters=PARTIAL_ROPE)),
        ("phi3", "cls", dict(n_kv_heads=2, num_labels=3)),
        ("olmo2", "base", dict(n_kv_heads=2, d_head=12, attention_bias=True)),
        ("olmo2", "lm", dict(n_kv_heads=1, tie_word_embeddings=True)),
    ],
)
def test_saved_folder_loads_in_hugging_face(tmp_path, model_type, head, fields):
    config = wb.AutoConfig.for_model(
        model_type, vocab_size=99, d_model=32, n_layers=2, n_heads=4, d_mlp=37, max_positions=64,
        pad_token_id=PAD_ID, eos_token_id=2, **fields,
    )
    ours = OURS[model_type][head].from_config(config, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # every parameter off its initial value (norm weights at 1, biases at 0)
        for param in ours.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    hf_name = type(ours).__name__
    assert saved["model_type"] == model_type and saved["architectures"] == [hf_name]
    assert_round_trip(ours, load_in_transformers(tmp_path, hf_name), head)


# 5. Config ------------------------------------------------------------------------------------------------


def test_an_older_phi3_config_reads_as_hugging_face_reads_it(checkpoint, tmp_path):
    """Phi-3's first configs keep rope_theta, partial_rotary_factor and rope_scaling (type "su") apart; both
    libraries read them as longrope, with the original context from the field beside them."""
    _, folder = checkpoint("phi3-longrope-tied", "lm")
    values = json.loads((folder / "config.json").read_text())
    rope = values.pop("rope_parameters")
    values.update(
        rope_theta=500.0, partial_rotary_factor=0.75,
        rope_scaling={"type": "su", "short_factor": rope["short_factor"], "long_factor": rope["long_factor"]},
    )
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps(values))
    theirs = transformers.Phi3ForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = wb.AutoModelForCausalLM.from_pretrained(tmp_path)
    rotary = ours.rotary
    assert (rotary.rope_type, rotary.base, rotary.rotary_dim) == ("longrope", 500.0, 6)
    assert rotary.params["original_max_position_embeddings"] == 8
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        assert_close(ours(input_ids).logits, theirs(input_ids).logits, "logits (older config)")


def test_config_defaults_and_refusals():
    phi3, olmo2 = Phi3Config(), Olmo2Config()  # Phi-3-mini's and OLMo-2-7B's (not built: no memory check)
    assert (phi3.d_model, phi3.n_kv_heads, phi3.vocab_size, phi3.sliding_window) == (3072, 32, 32064, None)
    assert phi3.rope_parameters["partial_rotary_factor"] == 1.0
    assert (olmo2.vocab_size, olmo2.pad_token_id, olmo2.bos_token_id) == (50304, 1, None)
    small = dict(vocab_size=99, d_model=32, n_layers=1, n_heads=4, d_mlp=37)
    with pytest.raises(wb.ConfigError, match="Phi-3 has no biases") as error:
        wb.AutoConfig.for_model("phi3", **small, attention_bias=True)
    assert error.value.field == "attention_bias"
    with pytest.raises(wb.ConfigError, match="rope_type 'linear': Phi-3 reads default or longrope"):
        wb.AutoConfig.for_model("phi3", **small, rope_parameters={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(wb.ConfigError, match="sliding_window=0 must be at least 1"):
        wb.AutoConfig.for_model("phi3", **small, sliding_window=0)
    with pytest.raises(wb.ConfigError, match="OLMo 2's MLP has no biases") as error:
        wb.AutoConfig.for_model("olmo2", **small, mlp_bias=True)
    assert error.value.field == "mlp_bias"


@pytest.mark.parametrize("model_type", ["phi3", "olmo2"])
def test_the_memory_check_counts_the_parameters(model_type):
    config = wb.AutoConfig.for_model(
        model_type, vocab_size=99, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_head=12, d_mlp=37
    )
    model = OURS[model_type]["lm"].from_config(config)
    assert config.estimated_parameters() == sum(p.numel() for p in model.parameters())  # OLMo 2's q/k norms too


def test_hub_names_stand_for_one_architecture_each():
    for name, model_type in [
        ("phi-3-mini-4k-instruct", "phi3"), ("phi-3.5-mini-instruct", "phi3"), ("olmo-2-1124-7b", "olmo2"),
        ("olmo-2-0425-1b-instruct", "olmo2"),
    ]:
        matched = [architecture.config_class.model_type for architecture in REGISTRY.matching(name)]
        assert matched == [model_type], name


# 6. Hooks --------------------------------------------------------------------------------------------------


def test_olmo2_hooks_norms_after_the_sublayers_and_over_the_whole_projection(checkpoint):
    """head_dim 12, 4 query heads and 1 key/value head: q_norm and k_norm are 48 and 12 wide; the block has no
    ln1/ln2, and hook_attn_out is ln1_post's output; each hook is what Hugging Face computes there."""
    hf_model, folder = checkpoint("olmo2-mqa-head-dim-12-tied", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    block_hooks = [name[len("blocks.0."):] for name in ours.hook_names if name.startswith("blocks.0.")]
    assert block_hooks == [
        "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.q_norm.hook_scale",
        "attn.q_norm.hook_normalized", "attn.k_norm.hook_scale", "attn.k_norm.hook_normalized",
        "attn.hook_rot_q", "attn.hook_rot_k", "attn.hook_scores", "attn.hook_pattern", "attn.hook_z",
        "ln1_post.hook_scale", "ln1_post.hook_normalized", "hook_attn_out", "hook_resid_mid", "mlp.hook_pre",
        "mlp.hook_pre_linear", "mlp.hook_post", "ln2_post.hook_scale", "ln2_post.hook_normalized",
        "hook_mlp_out", "hook_resid_post",
    ]
    input_ids, _, _ = make_batch("none")
    layer = hf_model.model.layers[1]
    with torch.no_grad():
        _, cache = ours.run_with_cache(input_ids)
        resid = cache["blocks.1.hook_resid_pre"]
        q_normed = layer.self_attn.q_norm(layer.self_attn.q_proj(resid))
        k_normed = layer.self_attn.k_norm(layer.self_attn.k_proj(resid))
        mlp_in = cache["blocks.1.hook_resid_mid"]
        mlp_out = layer.post_feedforward_layernorm(layer.mlp(mlp_in))
    assert cache["blocks.1.attn.q_norm.hook_normalized"].shape == (3, 9, 48)
    assert cache["blocks.1.attn.k_norm.hook_normalized"].shape == (3, 9, 12)
    assert cache["blocks.1.attn.hook_k"].shape == (3, 9, 1, 12)
    assert_close(cache["blocks.1.attn.q_norm.hook_normalized"], q_normed, "q_norm")
    assert_close(cache["blocks.1.attn.k_norm.hook_normalized"], k_normed, "k_norm")
    assert_close(cache["blocks.1.hook_mlp_out"], mlp_out, "hook_mlp_out (ln2_post's output)")
    attn_out, ln1_post = cache["blocks.1.hook_attn_out"], cache["blocks.1.ln1_post.hook_normalized"]
    assert_close(attn_out, ln1_post, "hook_attn_out", 0)


def test_phi3_hooks_are_llamas_and_partial_rotary_leaves_the_rest_of_each_head(checkpoint):
    hf_model, folder = checkpoint("phi3-gqa-4-2-partial-rotary", "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    llama = wb.AutoConfig.for_model("llama", vocab_size=99, d_model=32, n_layers=2, n_heads=4, d_mlp=37)
    llama_names = wb.AutoModelForCausalLM.from_config(llama).hook_names
    assert ours.hook_names == llama_names
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        _, cache = ours.run_with_cache(input_ids)
        qkv = hf_model.model.layers[0].self_attn.qkv_proj(cache["blocks.0.ln1.hook_normalized"])
    q, k, v = cache["blocks.0.attn.hook_q"], cache["blocks.0.attn.hook_k"], cache["blocks.0.attn.hook_v"]
    assert (q.shape, k.shape, v.shape) == ((3, 9, 4, 8), (3, 9, 2, 8), (3, 9, 2, 8))
    assert_close(torch.cat([q.flatten(-2), k.flatten(-2), v.flatten(-2)], dim=-1), qkv, "q, k, v = qkv_proj")
    rot_q = cache["blocks.0.attn.hook_rot_q"]
    assert torch.equal(rot_q[..., 4:], q[..., 4:])  # half of each head is rotated (partial_rotary_factor 0.5)
    assert not torch.allclose(rot_q[:, 1:, :, :4], q[:, 1:, :, :4])


# 7. The rule that cuts Phi-3's qkv_proj -------------------------------------------------------------------


def test_fused_heads_split_cuts_parts_of_unequal_head_counts_and_joins_them_back():
    """4 query heads and 1 key/value head of width 3: q is 12 rows, k and v 3 each (thirds would be 6)."""
    rule = FusedHeadsSplit("self_attn.qkv_proj", dim=0, params=("weight",))
    config = wb.AutoConfig.for_model("phi3", d_model=8, n_heads=4, n_kv_heads=1, d_head=3)
    fused = torch.arange(18 * 8.0).view(18, 8)
    state = {"layers.0.self_attn.qkv_proj.weight": fused, "layers.0.mlp.down_proj.weight": torch.ones(2)}
    split = split_fused([rule], state, config)
    assert sorted(split) == [
        "layers.0.mlp.down_proj.weight", "layers.0.self_attn.qkv_proj.k.weight",
        "layers.0.self_attn.qkv_proj.q.weight", "layers.0.self_attn.qkv_proj.v.weight",
    ]
    assert torch.equal(split["layers.0.self_attn.qkv_proj.q.weight"], fused[:12])
    assert torch.equal(split["layers.0.self_attn.qkv_proj.k.weight"], fused[12:15])
    assert torch.equal(split["layers.0.self_attn.qkv_proj.v.weight"], fused[15:])
    joined = join_fused([rule], split, config)
    assert sorted(joined) == sorted(state)
    assert torch.equal(joined["layers.0.self_attn.qkv_proj.weight"], fused)
    unequal = r"qkv_proj.weight has shape \(17, 8\).*q \(12\), k \(3\), v \(3\)"
    with pytest.raises(CheckpointError, match=unequal):
        split_fused([rule], {"layers.0.self_attn.qkv_proj.weight": fused[:17]}, config)
    with pytest.raises(TypeError, match="needs the config"):
        split_fused([rule], state)
