"""Our Mistral, Qwen2 and Qwen3 against Hugging Face's (transformers' MistralModel, Qwen2Model, Qwen3Model and
their causal-LM and sequence-classification heads) on tiny random checkpoints with every parameter perturbed
(RMSNorm weights, q/k norms and biases included), in unusual shapes per family: sliding windows shorter than
the input (every layer in Mistral, chosen layers in Qwen2/Qwen3, by ``max_window_layers`` or an explicit
``layer_types``), grouped-query 4/2 and multi-query 4/1 attention, head_dim 4, 12 and 128 on a width of 32,
Qwen3's attention biases, tied and untied unembeddings.

Checked (float32, max abs diff <= 1e-4 against Hugging Face; <= 1e-5 for the same model batched vs alone or
cached vs full): logits, every hidden state, every attention pattern, with no, left and right padding;
padded batches equal to each sentence alone; the key/value cache past the window; greedy generation with the
cache equal to Hugging Face's ``generate``; sequence classification at the last real token; folders we save
load in ``transformers`` with the same outputs; Qwen3's q/k norm hooks; the configs' defaults; hub names.

As for Llama, padded parity passes Hugging Face the position ids counted over the real tokens (ours) and
compares real positions only.
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
from workbench import zoo
from workbench.registry import REGISTRY
from workbench.tokenizers.stand_in import write_stand_in

BATCH_TOL = 1e-5  # batched vs alone, cached vs full: the same model on the same numbers

FAMILIES = ["mistral", "qwen2", "qwen3"]
HF_PREFIX = {"mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
TASKS = {"base": "base", "lm": "causal_lm", "cls": "sequence_classification"}
HF_SUFFIX = {"base": "Model", "lm": "ForCausalLM", "cls": "ForSequenceClassification"}
LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5}
QWEN_WINDOW = dict(use_sliding_window=True, sliding_window=3, max_window_layers=1)  # layers 1.. slide

# Tiny checkpoints (tiny_hf's sizes: vocab 99, d_model 32, 2 layers, 4 heads, d_mlp 37, 64 positions), each
# with its own unusual setting. The first variant of each family has a window of 3 on 9-token inputs.
VARIANTS = {
    "mistral": {
        "gqa-4-2-window-3": dict(n_kv_heads=2, sliding_window=3),
        "mqa-head-dim-12-window-5-tied": dict(
            n_kv_heads=1, d_head=12, sliding_window=5, tie_word_embeddings=True
        ),
        "no-window-3-layers-linear-rope": dict(
            n_layers=3, n_kv_heads=4, sliding_window=None, rope_parameters=LINEAR_ROPE
        ),
    },
    "qwen2": {
        "window-from-layer-1-of-3": dict(n_layers=3, n_kv_heads=2, **QWEN_WINDOW),
        "layer-types-head-dim-12-tied": dict(
            n_kv_heads=1, d_head=12, use_sliding_window=True, sliding_window=4, tie_word_embeddings=True,
            layer_types=["sliding_attention", "full_attention"],
        ),
        "no-window-linear-rope": dict(n_kv_heads=4, rope_parameters=LINEAR_ROPE),
    },
    "qwen3": {
        "head-dim-12-window-from-layer-1": dict(n_kv_heads=2, d_head=12, **QWEN_WINDOW),
        "bias-head-dim-4-untied": dict(
            n_kv_heads=4, d_head=4, attention_bias=True, tie_word_embeddings=False
        ),
        "mqa-default-head-dim-128": dict(n_kv_heads=1),  # Hugging Face's head_dim default, 4 x 128 on 32
    },
}
WINDOWED = {family: next(iter(variants)) for family, variants in VARIANTS.items()}
CASES = [(family, variant) for family, variants in VARIANTS.items() for variant in variants]


def ours_class(family, head):
    return REGISTRY[family].model_class(TASKS[head])


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


@pytest.mark.parametrize("family, variant", CASES)
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_logits_hidden_states_and_attentions_match(checkpoint, family, variant, padding):
    hf_model, folder = checkpoint(family, variant)
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours) is ours_class(family, "lm")
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    input_ids, mask, real = make_batch(padding)
    with torch.no_grad():
        expected = hf_model(**hf_inputs(input_ids, mask), output_hidden_states=True, output_attentions=True)
        got = ours(input_ids, mask, output_hidden_states=True, output_attentions=True)
        fast = ours(input_ids, mask).logits  # the SDPA path, the window in its mask
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


def hf_layer_window(hf_model, family, layer):
    """The window of Hugging Face's layer ``layer`` (Mistral's attention reads it from the config)."""
    if family == "mistral":
        return hf_model.config.sliding_window
    return hf_model.model.layers[layer].self_attn.sliding_window


@pytest.mark.parametrize("family", FAMILIES)
def test_the_sliding_layers_are_hugging_faces_and_see_only_their_window(checkpoint, family):
    hf_model, folder = checkpoint(family, WINDOWED[family])
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    windows = [block.attn.sliding_window for block in ours.blocks]
    assert windows == [hf_layer_window(hf_model, family, layer) for layer in range(len(windows))]
    assert windows[-1] == 3 and (family == "mistral") == (windows[0] == 3)  # Qwen's layer 0 attends fully
    input_ids, _, _ = make_batch("none")
    with torch.no_grad():
        out = ours(input_ids, output_attentions=True)
        pattern = out.attentions[-1]  # [batch, head, query, key]
        query, key = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
        assert pattern[..., query - key >= 3].abs().max() == 0
        assert pattern[..., (query - key < 3) & (key <= query)].min() > 0
        for block in ours.blocks:  # the same weights without windows: the window matters
            block.attn.sliding_window = None
        assert (ours(input_ids).logits - out.logits).abs().max() > 1e-3


def test_bare_checkpoints_match(checkpoint):
    for family in FAMILIES:
        hf_model, folder = checkpoint(family, WINDOWED[family], "base")
        ours = wb.AutoModel.from_pretrained(folder)
        assert type(ours) is ours_class(family, "base")
        assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
        input_ids, mask, real = make_batch("left")
        with torch.no_grad():
            expected = hf_model(**hf_inputs(input_ids, mask)).last_hidden_state
            got = ours(input_ids, mask).last_hidden_state
        assert_close(got[real], expected[real], f"{family} last_hidden_state")


# 2. Batching and the key/value cache ---------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding", ["left", "right"])
def test_padded_batch_gives_every_sentence_its_logits_alone(checkpoint, family, padding):
    """Padding before a sentence shifts its queries and keys alike: the window keeps the same real tokens."""
    _, folder = checkpoint(family, WINDOWED[family])
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    assert_rows_match_alone(ours, padding, BATCH_TOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_kv_cache_past_the_window_gives_the_full_forwards_logits(checkpoint, family):
    """A left-padded prefix of 4 with use_cache=True, then one token at a time up to 9: the window of 3
    leaves cached keys behind."""
    _, folder = checkpoint(family, WINDOWED[family])
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


@pytest.fixture(scope="module")
def stand_in_tokenizer(tmp_path_factory):
    """(folder, vocabulary) of one byte-level BPE stand-in tokenizer, trained once for the three families."""
    folder = tmp_path_factory.mktemp("byte-level-bpe")
    return folder, write_stand_in("byte_level_bpe", folder, 300, 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_with_the_cache_is_hugging_faces(tmp_path, stand_in_tokenizer, family):
    """A windowed checkpoint with a byte-level BPE stand-in tokenizer (no end token: both generate the full
    length, past the window)."""
    tokenizer_folder, vocabulary = stand_in_tokenizer
    for file in tokenizer_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    fields = {**VARIANTS[family][WINDOWED[family]], "vocab_size": vocabulary.size}
    hf_model = save_tiny_hf(
        tmp_path, family, "causal_lm", bos_token_id=None, eos_token_id=None,
        pad_token_id=vocabulary.ids["eos_token"], **fields,
    )
    ours = wb.load(tmp_path, device="cpu")
    assert type(ours) is ours_class(family, "lm") and ours.tokenizer is not None
    assert_greedy_generation_matches(ours, hf_model)


# 3. Sequence classification --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("padding", ["left", "right"])
def test_sequence_classification_logits_and_loss_match(checkpoint, family, padding):
    hf_model, folder = checkpoint(family, WINDOWED[family], "cls", num_labels=3)
    assert_classifier_matches(hf_model, folder, ours_class(family, "cls"), padding)


# 4. Saving: transformers loads our folders --------------------------------------------------------------

WINDOW_FIELDS = {"mistral": dict(sliding_window=3), "qwen2": QWEN_WINDOW, "qwen3": QWEN_WINDOW}


def our_config(family, **fields):
    base = dict(vocab_size=99, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_head=12, d_mlp=37,
                max_positions=64, pad_token_id=PAD_ID, **WINDOW_FIELDS[family])
    return wb.AutoConfig.for_model(family, **{**base, **fields})


def perturb(model, seed=0):
    """Every parameter off its initial value (RMSNorm weights at 1, no biases left at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "head, fields", [("lm", dict(tie_word_embeddings=True)), ("cls", dict(num_labels=3))]
)
def test_saved_folder_loads_in_hugging_face(tmp_path, family, head, fields):
    ours = perturb(ours_class(family, head).from_config(our_config(family, **fields), seed=0))
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    hf_name = HF_PREFIX[family] + HF_SUFFIX[head]
    assert saved["model_type"] == family and saved["architectures"] == [hf_name]
    assert (saved["head_dim"], saved["num_key_value_heads"], saved["sliding_window"]) == (12, 2, 3)

    hf_model = load_in_transformers(tmp_path, hf_name)
    if family != "mistral":
        assert hf_model.config.layer_types == ["full_attention", "sliding_attention"]
    assert_round_trip(ours, hf_model, head)
    assert_reloads_cleanly(ours, tmp_path)


# 5. Hooks --------------------------------------------------------------------------------------------------

QK_NORM_HOOKS = [
    "attn.q_norm.hook_scale", "attn.q_norm.hook_normalized",
    "attn.k_norm.hook_scale", "attn.k_norm.hook_normalized",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_names_are_llamas_with_qwen3s_q_k_norms(family):
    names = ours_class(family, "lm").from_config(our_config(family)).hook_names
    llama_config = wb.AutoConfig.for_model(
        "llama", vocab_size=99, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2
    )
    llama = ours_class("llama", "lm").from_config(llama_config).hook_names
    block = [name.removeprefix("blocks.0.") for name in names if name.startswith("blocks.0.")]
    if family == "qwen3":  # between the projections' hooks and the rotation, as the attention applies them
        start = block.index("attn.hook_v") + 1
        assert block[start : start + 4] == QK_NORM_HOOKS
        block = [name for name in block if name not in QK_NORM_HOOKS]
    assert [name for name in names if not name.startswith("blocks.")] == [
        name for name in llama if not name.startswith("blocks.")
    ]
    assert block == [name.removeprefix("blocks.0.") for name in llama if name.startswith("blocks.0.")]


def test_qwen3_q_and_k_norm_hooks_are_hugging_faces_normalized_heads(checkpoint):
    """head_dim 12, 4 query and 2 key/value heads: each head's queries normalized over its 12 values."""
    hf_model, folder = checkpoint("qwen3", WINDOWED["qwen3"])
    ours = wb.AutoModelForCausalLM.from_pretrained(folder)
    input_ids, mask, real = make_batch("left")
    captured = {}
    attention = hf_model.model.layers[1].self_attn
    def keep(name):
        return lambda module, inputs, output: captured.setdefault(name, output)

    handles = [getattr(attention, name).register_forward_hook(keep(name)) for name in ("q_norm", "k_norm")]
    try:
        with torch.no_grad():
            hf_model(**hf_inputs(input_ids, mask))
            _, cache = ours.run_with_cache({"input_ids": input_ids, "attention_mask": mask})
    finally:
        for handle in handles:
            handle.remove()
    batch, length = input_ids.shape
    assert cache["blocks.1.attn.q_norm.hook_scale"].shape == (batch, length, 4, 1)
    assert cache["blocks.1.attn.k_norm.hook_scale"].shape == (batch, length, 2, 1)
    for name in ("q_norm", "k_norm"):
        assert_close(cache[f"blocks.1.attn.{name}.hook_normalized"][real], captured[name][real], name)
    # the rotation reads the normalized heads: it keeps their lengths
    rotated, normalized = cache["blocks.1.attn.hook_rot_q"], cache["blocks.1.attn.q_norm.hook_normalized"]
    assert_close(rotated.norm(dim=-1), normalized.norm(dim=-1), "rotated query norms", BATCH_TOL)
    assert not torch.allclose(rotated, normalized)


# 6. Config and names ------------------------------------------------------------------------------------

COMPARED_DEFAULTS = [
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "bos_token_id",
    "eos_token_id", "rope_parameters", "sliding_window", "use_sliding_window", "max_window_layers",
    "layer_types", "head_dim",
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "fields", [{}, dict(num_hidden_layers=4, use_sliding_window=True, max_window_layers=1)]
)
def test_config_defaults_are_hugging_faces(family, fields):
    if family == "mistral":
        fields = {k: v for k, v in fields.items() if k == "num_hidden_layers"}
    ours = REGISTRY[family].config_class(**fields)  # not validated: 7B parameters need not fit here
    theirs = getattr(transformers, HF_PREFIX[family] + "Config")(**fields)
    compared = [name for name in COMPARED_DEFAULTS if hasattr(theirs, name)]
    assert "sliding_window" in compared and ("layer_types" in compared) == (family != "mistral")
    assert {name: getattr(ours, name) for name in compared} == {
        name: getattr(theirs, name) for name in compared
    }
    if family == "qwen3":
        assert (ours.d_head, ours.d_model // ours.n_heads) == (128, 128)  # apart in any other width


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_qwen_key_value_heads_default_to_32_as_hugging_faces(family):
    """Hugging Face's Qwen2Config and Qwen3Config default num_key_value_heads to 32 whatever the query heads (a
    config.json without the field); an explicit None means as many as the query heads."""
    for fields, expected in [({}, 32), ({"num_key_value_heads": None}, 64)]:
        fields = {"num_attention_heads": 64, **fields}
        ours = REGISTRY[family].config_class(**fields)
        theirs = getattr(transformers, HF_PREFIX[family] + "Config")(**fields)
        assert ours.num_key_value_heads == theirs.num_key_value_heads == expected


def test_qwen_layer_types_are_checked():
    with pytest.raises(wb.ConfigError, match="layer_types=") as error:
        wb.AutoConfig.for_model("qwen2", num_hidden_layers=3, layer_types=["full_attention"] * 2)
    assert error.value.field == "layer_types"
    with pytest.raises(wb.ConfigError, match="layer_types="):
        wb.AutoConfig.for_model("qwen3", num_hidden_layers=1, layer_types=["local"])
    with pytest.raises(wb.ConfigError, match="sliding_window=0 must be at least 1"):
        wb.AutoConfig.for_model("mistral", sliding_window=0)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mistralai/Mistral-7B-v0.1", "mistral"),
        ("mistralai/Mistral-Nemo-Base-2407", "mistral"),
        ("mistralai/Mixtral-8x7B-v0.1", None),
        ("Qwen/Qwen2.5-0.5B", "qwen2"),
        ("Qwen/Qwen2-1.5B-Instruct", "qwen2"),
        ("Qwen/Qwen1.5-0.5B", "qwen2"),
        ("Qwen/Qwen3-0.6B", "qwen3"),
        ("meta-llama/Llama-3.2-1B", "llama"),
    ],
)
def test_hub_names_are_recognised(name, expected):
    assert zoo.architecture_of(name) == expected
