"""XLM against Hugging Face's on the same checkpoints: every hidden state, every attention, logits and losses
(max abs diff <= 1e-4 in float32) for learned and sinusoidal positions, with and without language embeddings,
causal and bidirectional, with and without padding; checkpoints both ways; the pinned hook names; padding
invariance; and the tokenizer (Moses + BPE) against Hugging Face's XLMTokenizer on a locally built vocabulary."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from tiny_hf import save_tiny_hf, task_of

from workbench.models.xlm import (
    XLMConfig,
    XLMForMultipleChoice,
    XLMForQuestionAnsweringSimple,
    XLMForSequenceClassification,
    XLMForTokenClassification,
    XLMModel,
    XLMWithLMHeadModel,
    sinusoidal_positions,
)

TOL = 1e-4
VOCAB = 99
PAD = 2  # XLM's default pad_token_id
LANG2ID = {"en": 0, "fr": 1, "de": 2}


def make_inputs(padding: str, n_langs: int = 1, seed: int = 0, token_types: bool = False):
    """padding: "none"; "right" (attention_mask, pad ids); "ids" (pad ids, no attention_mask: Hugging Face
    counts the non-pad tokens); "left" (attention_mask, pad ids on the left)."""
    generator = torch.Generator().manual_seed(seed)
    batch, length = 3, 11
    input_ids = torch.randint(4, VOCAB, (batch, length), generator=generator)
    inputs = {"input_ids": input_ids}
    if padding != "none":
        attention_mask = torch.ones(batch, length, dtype=torch.long)
        for row, real in enumerate([11, 7, 3]):
            if padding == "left":
                attention_mask[row, : length - real] = 0
            else:
                attention_mask[row, real:] = 0
        input_ids.masked_fill_(attention_mask == 0, PAD)
        if padding != "ids":
            inputs["attention_mask"] = attention_mask
    if n_langs > 1:
        inputs["langs"] = torch.randint(0, n_langs, (batch, length), generator=generator)
    if token_types:
        inputs["token_type_ids"] = torch.randint(0, 2, (batch, length), generator=generator)
    return inputs


def assert_close_per_layer(ours, theirs, what):
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs Hugging Face's {len(theirs)}"
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{layer}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"{what}[{layer}] differs from Hugging Face by {diff:.2e}"


TINY_CONFIGS = {
    "learned-3langs": dict(n_langs=3, lang2id=LANG2ID, id2lang={v: k for k, v in LANG2ID.items()}),
    "sinusoidal-1lang": dict(sinusoidal_embeddings=True),
    "3langs-no-lang-emb": dict(n_langs=3, use_lang_emb=False),
    "1x1head-relu-sinusoidal-2langs": dict(
        d_model=16, n_layers=1, n_heads=1, gelu_activation=False, sinusoidal_embeddings=True, n_langs=2
    ),
}


# Parity ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
@pytest.mark.parametrize("padding", ["none", "right", "ids", "left"])
def test_hidden_states_and_attentions_match(tmp_path, name, causal, padding):
    fields = {**TINY_CONFIGS[name], "causal": causal}
    hf_model = save_tiny_hf(tmp_path, "xlm", **fields)
    ours = XLMModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padding, n_langs=fields.get("n_langs", 1), token_types=name == "learned-3langs")
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
        fused = ours(**inputs).last_hidden_state  # scaled_dot_product_attention: no pattern asked for
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert_close_per_layer([got.last_hidden_state, fused], [expected.last_hidden_state] * 2, "last_hidden_state")


def test_lengths_input_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlm")
    ours = XLMModel.from_pretrained(tmp_path)
    inputs = make_inputs("none")
    lengths = torch.tensor([11, 6, 2])
    with torch.no_grad():
        expected = hf_model(**inputs, lengths=lengths, output_hidden_states=True)
        got = ours(**inputs, lengths=lengths, output_hidden_states=True)
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")


@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
@pytest.mark.parametrize("padding", ["none", "right"])
def test_lm_head_logits_and_loss_match(tmp_path, causal, padding):
    hf_model = save_tiny_hf(tmp_path, "xlm", "masked_lm", causal=causal, **TINY_CONFIGS["learned-3langs"])
    ours = XLMWithLMHeadModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    assert ours.unembed.weight is ours.embed.weight  # tied, as in Hugging Face
    inputs = make_inputs(padding, n_langs=3)
    labels = inputs["input_ids"].masked_fill(inputs["input_ids"] == PAD, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        # The logit lens decodes the last block's output into the model's own logits.
        lens_last = ours.decode_residual(got.hidden_states[-1])
    assert_close_per_layer([got.logits, lens_last], [expected.logits] * 2, "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert abs(got.loss.item() - expected.loss.item()) <= TOL


SUMMARIES = {
    "first": dict(),
    "last-tanh": dict(summary_type="last", summary_activation="tanh"),
    "mean-relu": dict(summary_type="mean", summary_activation="relu"),
}


@pytest.mark.parametrize("summary", sorted(SUMMARIES))
@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification_matches(tmp_path, summary, num_labels):
    hf_model = save_tiny_hf(
        tmp_path, "xlm", "sequence_classification", num_labels=num_labels, sinusoidal_embeddings=True,
        **SUMMARIES[summary],
    )
    ours = XLMForSequenceClassification.from_pretrained(tmp_path)
    assert ours.config.num_labels == num_labels
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs("right")
    labels = torch.tensor([0.5, -1.0, 2.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert abs(got.loss.item() - expected.loss.item()) <= TOL


def test_summary_without_projection_to_labels_matches(tmp_path):
    hf_model = save_tiny_hf(
        tmp_path, "xlm", "sequence_classification", summary_type="cls_index", summary_proj_to_labels=False,
        summary_activation="tanh",
    )
    ours = XLMForSequenceClassification.from_pretrained(tmp_path)
    inputs = make_inputs("right")
    with torch.no_grad():
        expected, got = hf_model(**inputs).logits, ours(**inputs).logits
    assert got.shape == (3, 32)
    assert_close_per_layer([got], [expected], "logits")


HEAD_CONFIGS = {
    "learned-3langs": TINY_CONFIGS["learned-3langs"],
    "sinusoidal-relu-1lang": dict(sinusoidal_embeddings=True, gelu_activation=False),
}


@pytest.mark.parametrize("name", sorted(HEAD_CONFIGS))
@pytest.mark.parametrize("padding", ["none", "right", "ids", "left"])
def test_token_classification_matches(tmp_path, name, padding):
    fields = HEAD_CONFIGS[name]
    hf_model = save_tiny_hf(tmp_path, "xlm", "token_classification", num_labels=5, **fields)
    ours = XLMForTokenClassification.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padding, n_langs=fields.get("n_langs", 1), token_types=name == "learned-3langs")
    labels = torch.randint(0, 5, inputs["input_ids"].shape, generator=torch.Generator().manual_seed(1))
    labels = labels.masked_fill(inputs["input_ids"] == PAD, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels, output_hidden_states=True)
    assert out.logits.shape == cache["hook_logits"].shape == (3, 11, 5)
    assert torch.equal(cache["hook_logits"], out.logits)
    assert_close_per_layer([out.logits, out.loss], [expected.logits, expected.loss], "logits, loss")
    assert_close_per_layer(out.hidden_states, expected.hidden_states, "hidden_states")


@pytest.mark.parametrize("name", sorted(HEAD_CONFIGS))
@pytest.mark.parametrize("padding", ["none", "right", "ids", "left"])
def test_question_answering_matches(tmp_path, name, padding):
    fields = HEAD_CONFIGS[name]
    hf_model = save_tiny_hf(tmp_path, "xlm", "question_answering", **fields)
    ours = XLMForQuestionAnsweringSimple.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padding, n_langs=fields.get("n_langs", 1), token_types=name == "learned-3langs")
    starts, ends = torch.tensor([1, 2, 30]), torch.tensor([3, 4, 40])  # the last is outside: ignored, as in HF
    with torch.no_grad():
        expected = hf_model(**inputs, start_positions=starts, end_positions=ends)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", start_positions=starts,
                                         end_positions=ends)
    assert out.start_logits.shape == out.end_logits.shape == (3, 11)
    assert cache["hook_logits"].shape == (3, 11, 2)
    assert torch.equal(cache["hook_logits"][..., 0], out.start_logits)
    assert_close_per_layer(
        [out.start_logits, out.end_logits, out.loss],
        [expected.start_logits, expected.end_logits, expected.loss], "start_logits, end_logits, loss",
    )
    with pytest.raises(ValueError, match="num_labels=2"):
        XLMForQuestionAnsweringSimple.from_config(XLMConfig.from_dict(dict(emb_dim=16, n_heads=4), num_labels=3))


def choice_inputs(padding: str, n_langs: int = 1):
    """[2, 3, 11] inputs: make_inputs' rows for two seeds, regrouped as 2 questions x 3 choices."""
    parts = [make_inputs(padding, n_langs=n_langs, seed=seed, token_types=True) for seed in (0, 1)]
    return {name: torch.cat([part[name] for part in parts]).view(2, 3, 11) for name in parts[0]}


@pytest.mark.parametrize("summary", sorted(SUMMARIES))
@pytest.mark.parametrize("padding", ["none", "right", "ids"])
def test_multiple_choice_matches(tmp_path, summary, padding):
    fields = {**TINY_CONFIGS["learned-3langs"], **SUMMARIES[summary]}
    hf_model = save_tiny_hf(tmp_path, "xlm", "multiple_choice", num_labels=4, **fields)
    ours = XLMForMultipleChoice.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = choice_inputs(padding, n_langs=3)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels,
                                         output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == cache["hook_logits"].shape == (2, 3)
    assert torch.equal(cache["hook_logits"], out.logits)
    assert_close_per_layer([out.logits, out.loss], [expected.logits, expected.loss], "logits, loss")
    assert_close_per_layer(out.hidden_states, expected.hidden_states, "hidden_states")  # flattened: [6, 11, 32]
    assert out.attentions[0].shape == (6, 4, 11, 11)


def test_multiple_choice_langs_and_lengths(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "xlm", "multiple_choice", **TINY_CONFIGS["learned-3langs"])
    ours = XLMForMultipleChoice.from_pretrained(tmp_path)
    inputs = choice_inputs("right", n_langs=3)
    lengths = torch.full((6,), 2)
    with torch.no_grad():
        expected = hf_model(**inputs, lengths=lengths).logits  # Hugging Face ignores lengths (and warns)
        with pytest.warns(UserWarning, match="lengths"):
            got = ours(**inputs, lengths=lengths).logits
        assert_close_per_layer([got], [expected], "logits with lengths")
        # One language for every token: a name, an id or the full tensor give the same scores.
        del inputs["langs"]
        by_tensor = ours(**inputs, langs=torch.ones(2, 3, 11, dtype=torch.long)).logits
        assert torch.equal(ours(**inputs, langs="fr").logits, by_tensor)
        assert torch.equal(ours(**inputs, langs=1).logits, by_tensor)
        assert_close_per_layer([by_tensor], [hf_model(**inputs, langs=torch.ones(2, 3, 11, dtype=torch.long)).logits],
                               "logits with one language")
    with pytest.raises(ValueError, match="num_choices"):
        ours(input_ids=inputs["input_ids"][0])


def test_sinusoidal_initialization_matches_hugging_face():
    import transformers

    config = transformers.XLMConfig(vocab_size=VOCAB, emb_dim=32, n_layers=1, n_heads=4, max_position_embeddings=64,
                                    sinusoidal_embeddings=True)
    hf_table = transformers.XLMModel(config).position_embeddings.weight
    ours = XLMModel.from_config(XLMConfig(vocab_size=VOCAB, emb_dim=32, n_layers=1, n_heads=4,
                                          max_position_embeddings=64, sinusoidal_embeddings=True), seed=0)
    assert torch.allclose(ours.pos_embed.weight, hf_table, atol=1e-6)
    assert torch.equal(sinusoidal_positions(64, 32), ours.pos_embed.weight)


# Checkpoints and config ------------------------------------------------------------------------------


@pytest.mark.parametrize("cls_name", ["XLMWithLMHeadModel", "XLMForSequenceClassification", "XLMModel"])
def test_save_pretrained_round_trip_loads_in_hugging_face(tmp_path, cls_name):
    import transformers
    from safetensors.torch import load_file

    classes = {c.__name__: c for c in (XLMModel, XLMWithLMHeadModel, XLMForSequenceClassification)}
    hf_model = save_tiny_hf(
        tmp_path / "hf", "xlm", task_of("xlm", cls_name), num_labels=3, **TINY_CONFIGS["learned-3langs"]
    )
    ours = classes[cls_name].from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    assert set(load_file(tmp_path / "ours" / "model.safetensors")) == set(load_file(tmp_path / "hf" / "model.safetensors"))
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["architectures"] == [cls_name] and saved["lang2id"] == LANG2ID
    reloaded = getattr(transformers, cls_name).from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    assert reloaded.config.n_langs == 3 and reloaded.config.lang2id == LANG2ID
    inputs = make_inputs("right", n_langs=3)
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True)
        got = reloaded(**inputs, output_hidden_states=True)
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    if cls_name != "XLMModel":
        assert torch.equal(got.logits, expected.logits)


HEADS = {cls.__name__: cls for cls in (XLMForTokenClassification, XLMForQuestionAnsweringSimple, XLMForMultipleChoice)}


@pytest.mark.parametrize("cls_name", sorted(HEADS))
def test_task_heads_round_trip_through_hugging_face(tmp_path, cls_name):
    import transformers
    from safetensors.torch import load_file

    import workbench as wb

    num_labels = 2 if "QuestionAnswering" in cls_name else 3
    hf_model = save_tiny_hf(
        tmp_path / "hf", "xlm", task_of("xlm", cls_name), num_labels=num_labels, **TINY_CONFIGS["learned-3langs"]
    )
    assert type(wb.load(tmp_path / "hf", device="cpu")) is HEADS[cls_name]  # the head the checkpoint was saved with
    ours = HEADS[cls_name].from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    assert set(load_file(tmp_path / "ours" / "model.safetensors")) == set(load_file(tmp_path / "hf" / "model.safetensors"))
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == [cls_name]
    assert type(wb.load(tmp_path / "ours", device="cpu")) is HEADS[cls_name]
    reloaded, info = getattr(transformers, cls_name).from_pretrained(
        tmp_path / "ours", attn_implementation="eager", output_loading_info=True
    )
    assert all(not keys for keys in info.values() if isinstance(keys, (list, set))), info
    inputs = choice_inputs("right", n_langs=3) if "MultipleChoice" in cls_name else make_inputs("right", n_langs=3)
    with torch.no_grad():
        expected, got = hf_model(**inputs), reloaded.eval()(**inputs)
    for key in expected.keys():
        assert torch.equal(got[key], expected[key]), key


def test_config_reads_older_names_and_writes_hugging_face_ones():
    import transformers

    config = XLMConfig.from_dict(
        {"model_type": "xlm", "n_words": 120, "pad_index": 7, "bos_index": 0, "eos_index": 1, "emb_dim": 64,
         "n_layers": 3, "n_heads": 8, "id2lang": {"0": "en", "1": "fr"}, "lang2id": {"en": 0, "fr": 1},
         "n_langs": 2, "asm_cutoffs": [10, 20]}
    )
    assert (config.vocab_size, config.pad_token_id, config.n_words, config.pad_index) == (120, 7, 120, 7)
    assert (config.d_model, config.n_layers, config.n_heads, config.d_head, config.d_mlp) == (64, 3, 8, 8, 256)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 3, 8)
    assert config.id2lang == {0: "en", 1: "fr"} and config.extra == {"asm_cutoffs": [10, 20]}
    written = config.to_dict()
    assert "n_words" not in written and written["id2lang"] == {"0": "en", "1": "fr"}
    hf = transformers.XLMConfig(**{k: v for k, v in written.items() if k != "model_type"})
    assert (hf.vocab_size, hf.pad_token_id, hf.emb_dim, hf.n_langs) == (120, 7, 64, 2)
    # Without languages, config.json has no lang2id/id2lang, as Hugging Face writes it.
    assert "lang2id" not in XLMConfig().to_dict() and "id2lang" not in XLMConfig().to_dict()


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(asm=True), "adaptive-softmax"),
        (dict(is_encoder=False), "encoder only"),
        (dict(emb_dim=30, n_heads=4), "multiple of n_heads"),
        (dict(summary_type="attn"), "summary_type"),
        (dict(summary_activation="nope"), "nope"),
    ],
)
def test_config_refuses_what_it_cannot_run(fields, message):
    with pytest.raises(ValueError, match=message):
        XLMConfig.from_dict(fields)


# Hooks -----------------------------------------------------------------------------------------------

BLOCK_HOOKS = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "hook_resid_post",
]


def tiny_config(**fields):
    base = dict(vocab_size=50, emb_dim=16, n_layers=2, n_heads=4, max_position_embeddings=32)
    return XLMConfig(**{**base, **fields})


def test_hook_names_are_pinned():
    blocks = [f"blocks.{i}.{name}" for i in range(2) for name in BLOCK_HOOKS]
    ln_embed = ["ln_embed.hook_scale", "ln_embed.hook_normalized"]
    one_lang = XLMModel.from_config(tiny_config())
    assert one_lang.hook_names == ["hook_embed", "hook_pos_embed", "hook_token_type_embed", *ln_embed, *blocks]
    multilingual = ["hook_embed", "hook_pos_embed", "hook_lang_embed", "hook_token_type_embed", *ln_embed, *blocks]
    assert XLMModel.from_config(tiny_config(n_langs=3)).hook_names == multilingual
    assert XLMModel.from_config(tiny_config(n_langs=3, use_lang_emb=False)).hook_names == one_lang.hook_names
    assert XLMWithLMHeadModel.from_config(tiny_config(n_langs=3)).hook_names == multilingual + ["hook_logits"]
    assert XLMForSequenceClassification.from_config(tiny_config()).hook_names == one_lang.hook_names + ["hook_logits"]
    for head in (XLMForTokenClassification, XLMForQuestionAnsweringSimple, XLMForMultipleChoice):
        assert head.from_config(tiny_config()).hook_names == one_lang.hook_names + ["hook_logits"]


@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
def test_hook_points_equal_hidden_states(causal):
    model = XLMWithLMHeadModel.from_config(tiny_config(n_langs=3, causal=causal, lang2id=LANG2ID), seed=0)
    inputs = make_inputs("right", n_langs=3, token_types=True)
    inputs["input_ids"] = inputs["input_ids"] % 50
    out, cache = model.run_with_cache(inputs, output_hidden_states=True, output_attentions=True)
    keep = inputs["attention_mask"][:, :, None].float()
    assert cache["hook_lang_embed"].shape == cache["hook_token_type_embed"].shape == (3, 11, 16)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], out.hidden_states[0])
    assert torch.equal(cache["ln_embed.hook_normalized"] * keep, out.hidden_states[0])
    for i in range(2):
        assert torch.equal(cache[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])
        assert torch.equal(cache[f"blocks.{i}.ln2.hook_normalized"] * keep, out.hidden_states[i + 1])
        assert torch.equal(cache[f"blocks.{i}.attn.hook_pattern"], out.attentions[i])
        assert torch.equal(cache[f"blocks.{i}.hook_resid_mid"], cache[f"blocks.{i}.ln1.hook_normalized"])
        assert (out.hidden_states[i + 1][keep[..., 0] == 0] == 0).all()  # padded positions are zeroed
    assert torch.equal(cache["hook_logits"], out.logits)
    lens = model.logit_lens(inputs)
    assert torch.allclose(lens.logits(0)[-1], out.logits[0], atol=1e-5)


def test_langs_may_be_one_id_or_a_name():
    model = XLMModel.from_config(tiny_config(n_langs=3, lang2id=LANG2ID), seed=0)
    ids = torch.randint(4, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        by_tensor = model(ids, langs=torch.full_like(ids, 1)).last_hidden_state
        assert torch.equal(model(ids, langs=1).last_hidden_state, by_tensor)
        assert torch.equal(model(ids, langs="fr").last_hidden_state, by_tensor)
        assert not torch.equal(model(ids).last_hidden_state, by_tensor)
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        model(ids, langs="xx")


@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
def test_padding_invariance(causal):
    """Right padding (XLM's positions count from the left edge, so left padding shifts them): each row's real
    tokens get the activations they get alone, in every layer."""
    model = XLMModel.from_config(tiny_config(n_langs=3, causal=causal), seed=1)
    inputs = make_inputs("right", n_langs=3)
    inputs["input_ids"] = inputs["input_ids"] % 50 + (inputs["input_ids"] % 50 < 4) * 4  # no pad ids inside
    inputs["input_ids"].masked_fill_(inputs["attention_mask"] == 0, PAD)
    with torch.no_grad():
        batch = model(**inputs, output_hidden_states=True).hidden_states
        for row, real in enumerate([11, 7, 3]):
            alone = model(inputs["input_ids"][row : row + 1, :real], langs=inputs["langs"][row : row + 1, :real],
                          output_hidden_states=True).hidden_states
            for layer, (a, b) in enumerate(zip(batch, alone)):
                diff = (a[row, :real] - b[0]).abs().max().item()
                assert diff <= 1e-5, f"row {row}, hidden_states[{layer}]: {diff:.2e}"


# nn.Embedding's check of a nonzero padding_idx against the table size warns under tracing; it is a constant.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
def test_traces_and_exports_with_no_hooks(causal):
    model = XLMWithLMHeadModel.from_config(tiny_config(n_langs=2, causal=causal), seed=0)
    inputs = make_inputs("right")
    ids, mask = inputs["input_ids"] % 50, inputs["attention_mask"]
    with torch.no_grad():
        expected = model(ids, mask).logits
        traced = torch.jit.trace(model, (ids, mask), check_trace=False)
        torch.testing.assert_close(traced(ids, mask)[0], expected)
        torch.testing.assert_close(torch.export.export(model, (ids, mask)).module()(ids, mask)["logits"], expected)
        # Without attention_mask the padding comes from the pad ids, with no data-dependent check.
        torch.testing.assert_close(torch.export.export(model, (ids,)).module()(ids)["logits"], model(ids).logits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("causal", [False, True], ids=["mlm", "clm"])
def test_parity_with_hugging_face_on_the_gpu(tmp_path, causal):
    hf_model = save_tiny_hf(tmp_path, "xlm", "masked_lm", causal=causal, n_langs=3).cuda()
    ours = XLMWithLMHeadModel.from_pretrained(tmp_path, device="cuda")
    inputs = {k: v.cuda() for k, v in make_inputs("right", n_langs=3).items()}
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
        half = XLMWithLMHeadModel.from_pretrained(tmp_path, device="cuda", dtype=torch.float16)(**inputs).logits
    assert got.logits.device.type == "cuda"
    for a, b in zip((got.logits, *got.hidden_states, *got.attentions),
                    (expected.logits, *expected.hidden_states, *expected.attentions)):
        assert (a - b).abs().max().item() <= 1e-3  # TF32 and kernel choices
    assert torch.isfinite(half).all() and (half.float() - got.logits).abs().max().item() < 0.1


# Tokenizer -------------------------------------------------------------------------------------------

needs_sacremoses = pytest.mark.skipif(
    importlib.util.find_spec("sacremoses") is None,
    reason="XLM's tokenizer (and Hugging Face's, the oracle) needs sacremoses: pip install sacremoses",
)

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]
CORPUS = [
    "the quick brown fox jumps over the lazy dog .",
    "hello , world ! it 's a test of the tokenizer .",
    "cafe resume naive facade elan deja vu , l 'homme et la femme .",
    "les etudiants sont alles a l 'ecole hier soir .",
    "der schnelle braune fuchs springt uber den faulen hund .",
    "numbers 3.5 $ 100 % and 1,000 people ... \" quoted \" text",
    "tokenization tokenizer tokenized tokens token the then there these those",
]
TRICKY = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, World! It's a TEST.",
    "Café résumé naïve façade élan déjà-vu",
    "L’homme et « la femme » … ”quoted“ — dash",
    "日本語のテキスト 中文，标点。",
    "emoji 😀 👍🏽 ok",
    "",
    "   ",
    "tabs\tand\nnewlines\r\n",
    "numbers 3.5$ 100% and 1,000 people...",
    "hello<special3>world <s> x </s><pad>",
    "zero\u200bwidth\u00adsoft",
    "ǅemal İstanbul ß ﬁ",
    "q z qz zq the then there",  # merges whose result is missing from vocab.json
    "Ｆｕｌｌ　ｗｉｄｔｈ（test）！",
    "a&b <tag> \"quote\" 'single' `back`",
    "don't can't won't e-mail @user #hash",
]


def build_vocab(folder, drop=("th", "the</w>", "<special9>")):
    """A small XLM-style vocab.json + merges.txt trained on CORPUS, with special tokens first; the tokens in
    ``drop`` are removed from vocab.json (merges still make them) and a merge over letters the vocabulary
    lacks is added, as real fastBPE files can have."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    backend = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=260, special_tokens=SPECIALS, end_of_word_suffix="</w>",
                                  show_progress=False)
    backend.train_from_iterator(CORPUS * 3, trainer)
    model = json.loads(backend.to_str())["model"]
    vocab = [token for token in sorted(model["vocab"], key=model["vocab"].get) if token not in drop]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]] + ["q z</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def vocab_folder(tmp_path_factory):
    return build_vocab(tmp_path_factory.mktemp("xlm-vocab"))


@pytest.fixture(scope="module")
def tokenizers(vocab_folder):
    import transformers

    from workbench.tokenizers import XLMTokenizer

    hf = transformers.XLMTokenizer(str(vocab_folder / "vocab.json"), str(vocab_folder / "merges.txt"))
    return XLMTokenizer.from_pretrained(vocab_folder), hf


def test_tokenizer_needs_sacremoses_only_to_tokenize(vocab_folder, monkeypatch):
    from workbench.tokenizers import XLMTokenizer

    monkeypatch.setitem(sys.modules, "sacremoses", None)  # import sacremoses raises ImportError
    tokenizer = XLMTokenizer.from_pretrained(vocab_folder)  # building it needs no sacremoses
    assert tokenizer.pad_token_id == 2 and tokenizer.decode([0, 1]) == "<s></s>"
    with pytest.raises(ImportError, match="pip install sacremoses"):
        tokenizer("Hello")


@needs_sacremoses
def test_tokenizer_ids_match_hugging_face(tokenizers):
    ours, hf = tokenizers
    for text in TRICKY:
        assert ours(text)["input_ids"] == hf(text)["input_ids"], (text, hf.tokenize(text), ours.tokenize(text))
    assert set(ours("x")) == set(hf("x")) == {"input_ids", "attention_mask"}
    for first, second in [("Hello there", "General Kenobi!"), ("", "x"), ("Café", ""), (TRICKY[3], TRICKY[13])]:
        assert ours(first, second)["input_ids"] == hf(first, second)["input_ids"]
    for side in ("right", "left"):
        got = ours(TRICKY, padding=True, padding_side=side, return_tensors="pt")
        expected = hf(TRICKY, padding=True, padding_side=side, return_tensors="pt")
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert torch.equal(got["attention_mask"], expected["attention_mask"])
    assert ours.vocab_size == len(hf) and ours.all_special_ids == sorted(set(hf.all_special_ids))


@needs_sacremoses
def test_tokenizer_truncation_matches_hugging_face(tokenizers):
    ours, hf = tokenizers
    first, second = TRICKY[0], TRICKY[1]  # 12 and 9 tokens with <s> </s>
    for max_length in range(3, 24):
        assert ours(first, truncation=True, max_length=max_length)["input_ids"] == \
            hf(first, truncation=True, max_length=max_length)["input_ids"]
        strategies = ["longest_first"] + ["only_first"] * (max_length >= 13) + ["only_second"] * (max_length >= 14)
        for strategy in strategies:  # only_*: where the truncated text can give up enough tokens
            got = ours(first, second, truncation=strategy, max_length=max_length)["input_ids"]
            assert got == hf(first, second, truncation=strategy, max_length=max_length)["input_ids"], strategy


@needs_sacremoses
def test_tokenizer_words_languages_and_options_match(tokenizers, vocab_folder):
    import transformers

    from workbench.tokenizers import XLMTokenizer

    ours, hf = tokenizers
    words = ["Hello,", "wörld!", "it's", "😀", ""]
    encoding = ours(words, is_split_into_words=True)
    assert encoding["input_ids"] == hf(words, is_split_into_words=True)["input_ids"]
    assert encoding.word_ids() == [None, 0, 0, 1, 1, 2, 2, 3, None]
    assert encoding.tokens()[1:3] == ["hello</w>", ",</w>"]
    # Hugging Face's __call__ always uses "en"; its _tokenize takes the language.
    texts = ["L'homme «est» allé à l’école — n'est-ce pas?", "Ş ş Ţ ţ Ă ă Â â Î î Română", "Straße, „Zitat“ 1.000,5 €"]
    for lang in ("fr", "de", "ro"):
        for text in texts:
            expected = hf.convert_tokens_to_ids(hf._tokenize(text, lang=lang))
            assert ours(text, lang=lang, add_special_tokens=False)["input_ids"] == expected, (lang, text)
    with pytest.raises(NotImplementedError, match="rjieba"):
        ours("中文", lang="zh")
    cased_hf = transformers.XLMTokenizer(str(vocab_folder / "vocab.json"), str(vocab_folder / "merges.txt"),
                                         do_lowercase_and_remove_accent=False)
    cased = XLMTokenizer.from_pretrained(vocab_folder, do_lowercase_and_remove_accent=False)
    for text in TRICKY:
        assert cased(text)["input_ids"] == cased_hf(text)["input_ids"], text


@needs_sacremoses
def test_tokenizer_save_round_trip(tokenizers, tmp_path):
    import transformers

    from workbench.tokenizers import XLMTokenizer

    ours, hf = tokenizers
    ours.save_pretrained(tmp_path / "ours")
    assert not (tmp_path / "ours" / "tokenizer.json").exists()
    assert XLMTokenizer.handles(tmp_path / "ours")
    hf_reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "ours")
    assert type(hf_reloaded).__name__ == "XLMTokenizer"
    hf.save_pretrained(tmp_path / "hf")
    ours_from_hf = XLMTokenizer.from_pretrained(tmp_path / "hf")
    for text in TRICKY:
        assert hf_reloaded(text)["input_ids"] == hf(text)["input_ids"] == ours_from_hf(text)["input_ids"]


@needs_sacremoses
def test_tokenizer_and_model_together_match_hugging_face(tokenizers, tmp_path):
    ours_tok, hf_tok = tokenizers
    hf_model = save_tiny_hf(tmp_path, "xlm", "masked_lm", vocab_size=len(hf_tok), n_langs=3, pad_token_id=2,
                            lang2id=LANG2ID)
    model = XLMWithLMHeadModel.from_pretrained(tmp_path)
    model.tokenizer = ours_tok
    texts = ["Bonjour, le monde!", "The quick brown fox.", "Café"]
    encoding = ours_tok(texts, padding=True, return_tensors="pt")
    langs = ours_tok.lang_ids(encoding, 1)
    ours_tok.lang2id = LANG2ID
    assert torch.equal(ours_tok.lang_ids(encoding, "fr"), langs)
    with torch.no_grad():
        expected = hf_model(**hf_tok(texts, padding=True, return_tensors="pt"), langs=langs).logits
        got = model(**encoding, langs=langs).logits
    assert_close_per_layer([got], [expected], "logits")
    _, cache = model.run_with_cache(texts, langs="fr")
    assert cache.tokens[0][0] == "<s>" and cache["hook_lang_embed"].shape == (3, encoding["input_ids"].shape[1], 32)
