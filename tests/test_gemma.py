"""Our Gemma and Gemma 2 against Hugging Face's (transformers' GemmaModel, GemmaForCausalLM,
GemmaForSequenceClassification and the Gemma2 classes) on tiny random checkpoints with every parameter
perturbed ((1 + w) RMSNorm weights included), in unusual shapes: grouped-query attention 4/2 and multi-query
4/1, head_dim apart from hidden_size / heads, attention biases, untied unembeddings, the releases' legacy
``hidden_act="gelu"``; for Gemma 2 sliding windows of 2 and 3 tokens (shorter than the inputs), local and
global layers in both orders, attention and final-logit soft-caps small enough to bend the outputs,
``query_pre_attn_scalar`` apart from head_dim, and both soft-caps off.

Checked (float32, max abs diff <= 1e-4 against Hugging Face; <= 1e-5 for the same model batched vs alone or
cached vs full): logits, every hidden state, every attention pattern, with no, left and right padding;
padded batches equal to each sentence alone; the key/value cache across the window; greedy generation with
the cache equal to Hugging Face's ``generate``; sequence classification at the last real token; the LM loss on
soft-capped logits; folders we save load in ``transformers`` with the same outputs; hooks (the sandwich order,
the scaled embedding, the uncapped logits); configs and hub names.

As for Llama (tests/test_llama.py), padded parity passes Hugging Face the position ids of the real tokens and
compares real positions only.
"""

from __future__ import annotations

import dataclasses
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
from tiny_hf import perturb_parameters, save_tiny_hf

import workbench as wb
from workbench.models.gemma import GemmaConfig, GemmaForCausalLM, GemmaForSequenceClassification, GemmaModel
from workbench.models.gemma2 import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma2ForSequenceClassification,
    Gemma2Model,
)
from workbench.registry import REGISTRY
from workbench.tokenizers.stand_in import write_stand_in

BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers
SLIDING, FULL = "sliding_attention", "full_attention"

# Tiny checkpoints (tiny_hf's sizes: vocab 99, d_model 32, 2 layers, 4 heads, d_mlp 37, 64 positions), each
# with its own unusual setting; inputs are 9 tokens long, longer than every window.
VARIANTS = {
    "gemma": {
        "gqa-4-2": dict(n_kv_heads=2, d_head=8),
        "mqa-4-1-head-dim-12": dict(n_kv_heads=1, d_head=12),  # head_dim != 32 / 4
        "bias-untied-3-layers-gelu": dict(
            n_kv_heads=4, d_head=16, n_layers=3, attention_bias=True, tie_word_embeddings=False, hidden_act="gelu"
        ),
    },
    "gemma2": {
        "gqa-window-3-small-caps": dict(
            n_kv_heads=2, d_head=8, sliding_window=3, attn_logit_softcapping=0.5, final_logit_softcapping=2.0,
            query_pre_attn_scalar=7,
        ),
        "mqa-head-dim-12-global-first-window-2": dict(
            n_kv_heads=1, d_head=12, n_layers=3, layer_types=[FULL, SLIDING, SLIDING], sliding_window=2,
            attn_logit_softcapping=1.0, final_logit_softcapping=1.5, query_pre_attn_scalar=20,
        ),
        "bias-untied-no-caps": dict(
            n_kv_heads=4, d_head=8, attention_bias=True, tie_word_embeddings=False, sliding_window=5,
            attn_logit_softcapping=None,
            final_logit_softcapping=None,
        ),
    },
}
CASES = [(family, variant) for family, variants in VARIANTS.items() for variant in variants]
CASE_IDS = [f"{family}-{variant}" for family, variant in CASES]
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}
OURS = {
    "gemma": {"base": GemmaModel, "lm": GemmaForCausalLM, "cls": GemmaForSequenceClassification},
    "gemma2": {"base": Gemma2Model, "lm": Gemma2ForCausalLM, "cls": Gemma2ForSequenceClassification},
}
WINDOWED = ("gemma2", "gqa-window-3-small-caps")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """checkpoint(family, variant, head, **fields) -> (Hugging Face model, the folder it is saved in); made
    once."""
    made = {}

    def get(family, variant, head="lm", **fields):
        key = (family, variant, head, json.dumps(fields, sort_keys=True))
        if key not in made:
            folder = tmp_path_factory.mktemp(f"{family}-{variant}-{head}")
            fields = {**VARIANTS[family][variant], "pad_token_id": PAD_ID, **fields}
            made[key] = (save_tiny_hf(folder, family, TASKS[head], **fields), folder)
        return made[key]

    return get


# 1. Logits, hidden states, attention patterns -------------------------------------------------------------


@pytest.mark.parametrize("family, variant", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_hidden_states_and_attentions_match(checkpoint, family, variant, padding):
    hf_model, folder = checkpoint(family, variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours) is OURS[family]["lm"]
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch(padding)
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), output_hidden_states=True, output_attentions=True)
        got = ours(input_ids, mask, output_hidden_states=True, output_attentions=True)
        fast = ours(input_ids, mask).logits  # SDPA where it applies (Gemma; soft-capped attention never)
    assert_close(got.logits[real], expected.logits[real], "logits")
    assert_close(fast[real], expected.logits[real], "logits (no pattern asked for)")
    n_layers = hf_model.config.num_hidden_layers
    assert len(got.hidden_states) == len(expected.hidden_states) == n_layers + 1
    for layer, (mine, theirs) in enumerate(zip(got.hidden_states, expected.hidden_states)):
        assert_close(mine[real], theirs[real], f"hidden_states[{layer}]")
    assert len(got.attentions) == len(expected.attentions) == n_layers
    for layer, (mine, theirs) in enumerate(zip(got.attentions, expected.attentions)):
        assert mine.shape[1] == 4  # one pattern per query head, also with fewer key/value heads
        assert_close(real_query_rows(mine, real), real_query_rows(theirs, real), f"attentions[{layer}]")


@pytest.mark.parametrize("family, variant", [("gemma", "mqa-4-1-head-dim-12"), WINDOWED])
def test_bare_checkpoints_and_inputs_embeds_match(checkpoint, family, variant):
    """The bare model; and ``inputs_embeds``, which both take as given (unscaled by sqrt(d_model))."""
    hf_model, folder = checkpoint(family, variant, "base")
    ours = wb.AutoModel.from_pretrained(folder)
    assert type(ours) is OURS[family]["base"]
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch("left")
    embeds = torch.randn(*input_ids.shape, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state
        got = ours(input_ids, mask).last_hidden_state
        from_embeds = ours(inputs_embeds=embeds).last_hidden_state
        expected_from_embeds = hf_model(inputs_embeds=embeds).last_hidden_state
    assert_close(got[real], expected[real], "last_hidden_state")
    assert_close(from_embeds, expected_from_embeds, "last_hidden_state from inputs_embeds")


@pytest.mark.parametrize("family", ["gemma", "gemma2"])
def test_the_embedding_scale_is_rounded_to_the_dtype_as_hugging_faces(checkpoint, family):
    """In bfloat16 sqrt(32) = 5.657 becomes 5.656: both multiply by the rounded factor."""
    hf_model, folder = checkpoint(family, next(iter(VARIANTS[family])), "base")
    ours = wb.AutoModel.from_pretrained(folder).to(torch.bfloat16)
    theirs = hf_model.model if hasattr(hf_model, "model") else hf_model
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        _, cache = ours.run_with_cache(input_ids, names_filter="hook_embed")
        expected = theirs.embed_tokens.to(torch.bfloat16)(input_ids)
        theirs.embed_tokens.to(torch.float32)
    assert cache["hook_embed"].dtype == torch.bfloat16
    assert torch.equal(cache["hook_embed"], expected)


def test_soft_caps_and_the_window_bend_the_outputs(checkpoint):
    """The shapes above make Gemma 2's features matter: without the window, or either soft-cap, the logits
    differ from Hugging Face's by far more than the tolerance."""
    hf_model, folder = checkpoint(*WINDOWED, "lm")
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        expected = hf_model(input_ids).logits
        for change in ("window", "attention cap", "final cap"):
            ours = wb.AutoModelForCausalLM.from_pretrained(folder)
            for block in ours.blocks:
                if change == "window":
                    block.attn.sliding_window = None
                elif change == "attention cap":
                    block.attn.softcap = None
            if change == "final cap":
                ours.config.final_logit_softcapping = None
            assert (ours(input_ids).logits - expected).abs().max() > 1e-2, change


# 2. Batching and the key/value cache ---------------------------------------------------------------------


@pytest.mark.parametrize("family, variant", [("gemma", "mqa-4-1-head-dim-12"), WINDOWED], ids=["gemma", "gemma2"])
@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_gives_every_sentence_its_logits_alone(checkpoint, family, variant, padding):
    _, folder = checkpoint(family, variant, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert_rows_match_alone(ours, padding, BATCH_TOL)


def test_kv_cache_across_the_window_gives_the_full_forwards_logits(checkpoint):
    """A left-padded prefix of 4 with use_cache=True, then one token at a time: the window of 3 slides over
    cached keys."""
    _, folder = checkpoint(*WINDOWED, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")
    prefix = 4
    with torch.no_grad():
        full = ours(input_ids, mask).logits
        out = ours(input_ids[:, :prefix], mask[:, :prefix], use_cache=True)
        assert out.past_key_values.keys[0].shape == (3, prefix, 2, 8)  # [batch, pos, kv_head, d_head]
        steps = [out.logits]
        for t in range(prefix, input_ids.shape[1]):
            cache = out.past_key_values
            out = ours(input_ids[:, t : t + 1], mask[:, : t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert_close(torch.cat(steps, dim=1)[real], full[real], "cached logits", BATCH_TOL)


@pytest.fixture(scope="module", params=["gemma", "gemma2"])
def generation_checkpoint(request, tmp_path_factory):
    """A tiny Hugging Face Gemma / Gemma 2 (window 3, small soft-caps) and the same folder with a byte-level
    BPE stand-in tokenizer (no end token in the config: both generate the full length)."""
    family = request.param
    folder = tmp_path_factory.mktemp(f"{family}-generation")
    vocabulary = write_stand_in("byte_level_bpe", folder, 300, 64)
    fields = VARIANTS[family]["gqa-window-3-small-caps" if family == "gemma2" else "gqa-4-2"]
    hf_model = save_tiny_hf(
        folder, family, "causal_lm", vocab_size=vocabulary.size, bos_token_id=None, eos_token_id=None,
        pad_token_id=vocabulary.ids["eos_token"], **fields,
    )
    return hf_model, folder


def test_greedy_generation_with_the_cache_is_hugging_faces(generation_checkpoint):
    hf_model, folder = generation_checkpoint
    ours = wb.load(folder, device="cpu")
    assert isinstance(ours, GemmaForCausalLM) and ours.tokenizer is not None
    assert_greedy_generation_matches(ours, hf_model)


# 3. Sequence classification and the LM loss ----------------------------------------------------------------


@pytest.mark.parametrize(
    "family, variant", [("gemma", "bias-untied-3-layers-gelu"), WINDOWED], ids=["gemma", "gemma2"]
)
@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_classification_logits_and_loss_match(checkpoint, family, variant, padding):
    hf_model, folder = checkpoint(family, variant, "cls", num_labels=3)
    assert_classifier_matches(hf_model, folder, OURS[family]["cls"], padding)


def test_lm_loss_on_soft_capped_logits_matches(checkpoint):
    hf_model, folder = checkpoint(*WINDOWED, "lm")
    assert_lm_loss_matches(hf_model, folder)


# 4. Saving: transformers loads our folders --------------------------------------------------------------

HF_NAMES = {"gemma": "Gemma", "gemma2": "Gemma2"}
HF_SUFFIX = {"base": "Model", "lm": "ForCausalLM", "cls": "ForSequenceClassification"}


def our_config(family, **fields):
    base = dict(vocab_size=99, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_head=12, d_mlp=37,
                max_positions=64, pad_token_id=PAD_ID)
    if family == "gemma2":
        base.update(sliding_window=3, attn_logit_softcapping=0.5, final_logit_softcapping=2.0,
                    query_pre_attn_scalar=10)
    return wb.AutoConfig.for_model(family, **{**base, **fields})


@pytest.mark.parametrize(
    "family, head, fields",
    [
        ("gemma", "base", dict(attention_bias=True)),
        ("gemma", "lm", dict(tie_word_embeddings=False, n_kv_heads=1)),
        ("gemma2", "lm", dict(tie_word_embeddings=True, layer_types=[FULL, SLIDING])),
        ("gemma2", "cls", dict(num_labels=3, attention_bias=True)),
    ],
)
def test_saved_folder_loads_in_hugging_face(tmp_path, family, head, fields):
    torch.manual_seed(1)
    ours = perturb_parameters(OURS[family][head].from_config(our_config(family, **fields), seed=0), 0.1)
    ours.save_pretrained(tmp_path)
    hf_name = HF_NAMES[family] + HF_SUFFIX[head]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == family and saved["architectures"] == [hf_name]
    assert saved["head_dim"] == 12 and saved["num_key_value_heads"] == ours.config.n_kv_heads

    hf_model = load_in_transformers(tmp_path, hf_name)
    if family == "gemma2":
        hf_config = hf_model.config
        assert hf_config.layer_types == [ours.config.layer_type(layer) for layer in range(2)]
        assert hf_config.sliding_window == 3
        assert (hf_config.attn_logit_softcapping, hf_config.final_logit_softcapping) == (0.5, 2.0)
        assert hf_config.query_pre_attn_scalar == 10
    assert_round_trip(ours, hf_model, head, tied=fields.get("tie_word_embeddings") if head == "lm" else None)
    assert_reloads_cleanly(ours, tmp_path)


# 5. Hooks --------------------------------------------------------------------------------------------------

GEMMA2_BLOCK_HOOKS = [
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
    "ln1_post.hook_scale",
    "ln1_post.hook_normalized",
    "hook_attn_out",
    "hook_resid_mid",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_pre_linear",
    "mlp.hook_post",
    "ln2_post.hook_scale",
    "ln2_post.hook_normalized",
    "hook_mlp_out",
    "hook_resid_post",
]


def test_gemma2_hook_names_are_pinned_in_forward_order():
    model = Gemma2ForCausalLM.from_config(our_config("gemma2"))
    expected = (
        ["hook_embed"]
        + [f"blocks.{i}.{name}" for i in range(2) for name in GEMMA2_BLOCK_HOOKS]
        + ["ln_final.hook_scale", "ln_final.hook_normalized", "hook_logits_uncapped", "hook_logits"]
    )
    assert model.hook_names == expected
    uncapped = Gemma2ForCausalLM.from_config(our_config("gemma2", final_logit_softcapping=None))
    assert "hook_logits_uncapped" not in uncapped.hook_names and uncapped.hook_names[-1] == "hook_logits"
    assert GemmaForCausalLM.from_config(our_config("gemma")).hook_names[-1] == "hook_logits"


def test_gemma2_hooks_hold_what_the_docs_say(checkpoint):
    """hook_embed is the scaled embedding; hook_attn_out is ln1_post's output; the local layer's pattern is
    zero outside the window; hook_logits is the soft-capped hook_logits_uncapped; the gate is gelu-tanh."""
    hf_model, folder = checkpoint(*WINDOWED, "lm")
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        out, cache = ours.run_with_cache(input_ids)
    scaled = ours.embed(input_ids) * 32**0.5
    assert_close(cache["hook_embed"], scaled, "hook_embed", BATCH_TOL)
    assert torch.equal(cache["blocks.0.hook_attn_out"], cache["blocks.0.ln1_post.hook_normalized"])
    assert torch.equal(cache["blocks.0.hook_mlp_out"], cache["blocks.0.ln2_post.hook_normalized"])
    resid_mid = cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"]
    assert torch.equal(cache["blocks.0.hook_resid_mid"], resid_mid)
    query, key = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    outside = (query - key >= 3) | (key > query)  # window 3 in layer 0 (local); causal in layer 1 (global)
    assert cache["blocks.0.attn.hook_pattern"][:, :, outside].abs().max() == 0
    assert cache["blocks.1.attn.hook_pattern"][:, :, outside].abs().max() > 0
    assert cache["blocks.0.attn.hook_scores"].max() <= 0.5  # soft-capped at 0.5
    capped = torch.tanh(cache["hook_logits_uncapped"] / 2.0) * 2.0
    assert_close(cache["hook_logits"], capped, "hook_logits", BATCH_TOL)
    assert (cache["hook_logits_uncapped"] - cache["hook_logits"]).abs().max() > 1e-2  # the cap bends them
    assert_close(out.logits, cache["hook_logits"], "hook_logits", 0.0)
    gate = torch.nn.functional.gelu(cache["blocks.1.mlp.hook_pre"], approximate="tanh")
    assert_close(gate * cache["blocks.1.mlp.hook_pre_linear"], cache["blocks.1.mlp.hook_post"], "mlp", BATCH_TOL)
    # The logit lens ends in the same soft-cap: the last block's output decodes to the logits.
    assert_close(ours.decode_residual(cache["blocks.1.hook_resid_post"]), out.logits, "decode_residual", BATCH_TOL)


# 6. Configs and hub names -----------------------------------------------------------------------------------


def test_configs_have_hugging_faces_defaults():
    """The fields' defaults (the released sizes: too large to build a config of here) are Hugging Face's; Gemma's
    key/value heads default to the query heads' count, which is Hugging Face's 16 for its 16 heads."""
    hf_gemma, hf_gemma2 = transformers.GemmaConfig(), transformers.Gemma2Config()
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "head_dim", "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
             "max_position_embeddings")
    gemma2_names = ("num_key_value_heads", "hidden_activation", "query_pre_attn_scalar", "sliding_window",
                    "final_logit_softcapping", "attn_logit_softcapping")
    for ours, theirs, own in ((GemmaConfig, hf_gemma, ("hidden_act",)), (Gemma2Config, hf_gemma2, gemma2_names)):
        defaults = {field.name: field.default for field in dataclasses.fields(ours)}
        for name in names + own:
            assert defaults[name] == getattr(theirs, name), name
    assert hf_gemma.num_key_value_heads == hf_gemma.num_attention_heads
    config = our_config("gemma2", n_layers=5)
    assert [config.window(layer) for layer in range(5)] == [3, None, 3, None, 3]  # even layers local
    config.n_layers = 6  # no layer_types: the default follows the layer count
    config.validate()
    assert config.to_dict()["layer_types"] is None and config.window(5) is None
    # The first releases' "gelu" is the tanh approximation, as Hugging Face reads it.
    assert our_config("gemma", hidden_act="gelu").hidden_act == "gelu_pytorch_tanh"


@pytest.mark.parametrize("family", ["gemma", "gemma2"])
@pytest.mark.parametrize("tied", [True, False])
def test_the_memory_check_counts_the_parameters(family, tied):
    config = our_config(family, tie_word_embeddings=tied)
    model = OURS[family]["lm"].from_config(config)
    assert config.estimated_parameters() == sum(p.numel() for p in model.parameters())


def test_config_errors_name_the_field():
    with pytest.raises(wb.ConfigError, match="layer_types") as error:
        our_config("gemma2", layer_types=[SLIDING])
    assert error.value.field == "layer_types"
    with pytest.raises(wb.ConfigError, match="layer_types"):
        our_config("gemma2", layer_types=[SLIDING, "local"])
    with pytest.raises(wb.ConfigError, match="sliding_window=0") as error:
        our_config("gemma2", sliding_window=0)
    assert error.value.field == "sliding_window"
    with pytest.raises(wb.ConfigError, match="attn_logit_softcapping=0") as error:
        our_config("gemma2", attn_logit_softcapping=0.0)
    assert error.value.field == "attn_logit_softcapping"
    with pytest.raises(wb.ConfigError, match="no biases") as error:
        our_config("gemma", mlp_bias=True)
    assert error.value.field == "mlp_bias"
    with pytest.raises(ValueError, match="unsupported hidden_act 'swiglu'"):
        our_config("gemma2", hidden_activation="swiglu")


@pytest.mark.parametrize(
    "name, family",
    [
        ("gemma-2b", "gemma"), ("gemma-7b-it", "gemma"), ("gemma-1.1-2b-it", "gemma"), ("codegemma-7b", "gemma"),
        ("gemma-2-2b", "gemma2"), ("gemma-2-9b-it", "gemma2"), ("gemma-2-27b", "gemma2"),
        ("gemma-3-1b-it", None), ("gemma-3n-e2b", None), ("recurrentgemma-2b", None),
    ],
)
def test_each_hub_name_stands_for_one_family(name, family):
    matching = [architecture.model_type for architecture in REGISTRY.matching(name)]
    assert matching == ([family] if family else [])
