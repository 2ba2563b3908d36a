"""DistilBERT against Hugging Face's on the same tiny random checkpoints (learned and sinusoidal positions,
with and without padding): every hidden state, every attention, every head's logits and loss (max abs
diff <= 1e-4 in float32); sinusoids, save_pretrained round trips, hook names, padding invariance, errors."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_hf import save_tiny_hf

from workbench.models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    sinusoidal_position_embeddings,
)

TOL = 1e-4
VOCAB = 99

TINY_CONFIGS = {
    "2x4heads": dict(d_model=32, n_layers=2, n_heads=4, d_mlp=37),
    "3x6heads-sinusoidal": dict(d_model=48, n_layers=3, n_heads=6, d_mlp=64, sinusoidal_pos_embds=True),
    "1x1head-relu-sinusoidal-odd-dim": dict(
        d_model=17, n_layers=1, n_heads=1, d_mlp=24, activation="relu", sinusoidal_pos_embds=True
    ),
}

ALL_CLASSES = [
    DistilBertModel,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertForQuestionAnswering,
    DistilBertForMultipleChoice,
]


def make_inputs(padded: bool, seed: int = 0, batch: int = 3, length: int = 11):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        for row, real in enumerate([length, 7, 3][:batch]):
            attention_mask[row, real:] = 0
            input_ids[row, real:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


MAX_DIFF: dict[str, float] = {}


def assert_close_per_layer(ours, theirs, what):
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs Hugging Face's {len(theirs)}"
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{layer}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a - b).abs().max().item()
        MAX_DIFF[what] = max(MAX_DIFF.get(what, 0.0), diff)
        assert diff <= TOL, f"{what}[{layer}] differs from Hugging Face by {diff:.2e}"


def assert_loss_close(got, expected):
    diff = abs(got.item() - expected.item())
    MAX_DIFF["loss"] = max(MAX_DIFF.get("loss", 0.0), diff)
    assert diff <= TOL, f"loss differs from Hugging Face by {diff:.2e}"


# Parity with Hugging Face ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_hidden_states_and_attentions_match(tmp_path, name, padded):
    hf_model = save_tiny_hf(tmp_path, "distilbert", **TINY_CONFIGS[name])
    ours = DistilBertModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    # The perturbed table was loaded, not regenerated (as Hugging Face does).
    assert torch.equal(ours.pos_embed.weight, hf_model.embeddings.position_embeddings.weight)

    inputs = make_inputs(padded)
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
        fused = ours(**inputs).last_hidden_state  # scaled_dot_product_attention, no pattern formed
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert_close_per_layer([got.last_hidden_state, fused], [expected.last_hidden_state] * 2, "last_hidden_state")
    assert got.pooler_output is None


def test_hook_points_equal_hugging_face_outputs(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "distilbert", **TINY_CONFIGS["3x6heads-sinusoidal"])
    ours = DistilBertModel.from_pretrained(tmp_path)
    inputs = make_inputs(padded=True)
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
    out, cache = ours.run_with_cache(inputs, output_hidden_states=True, output_attentions=True)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], out.hidden_states[0])
    assert torch.equal(cache["ln_embed.hook_normalized"], out.hidden_states[0])
    assert torch.equal(cache["hook_pos_embed"][0], ours.pos_embed.weight[:11])
    for i in range(ours.n_layers):
        assert torch.equal(cache[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])
        assert torch.equal(cache[f"blocks.{i}.attn.hook_pattern"], out.attentions[i])
        assert torch.equal(cache[f"blocks.{i}.hook_resid_mid"], cache[f"blocks.{i}.ln1.hook_normalized"])
    assert_close_per_layer(cache.stack("hook_resid_post"), expected.hidden_states[1:], "hidden_states")


@pytest.mark.parametrize("config_name", ["2x4heads", "3x6heads-sinusoidal"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_masked_lm_logits_match(tmp_path, config_name, padded, tied):
    fields = dict(TINY_CONFIGS[config_name], tie_word_embeddings=tied)
    hf_model = save_tiny_hf(tmp_path, "distilbert", "masked_lm", **fields)
    ours = DistilBertForMaskedLM.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    assert (ours.unembed.weight is ours.embed.weight) == tied
    inputs = make_inputs(padded)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        lens = ours.decode_residual(got.hidden_states[-1])
    assert_close_per_layer([got.logits, lens], [expected.logits] * 2, "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_close_per_layer(got.attentions, expected.attentions, "attentions")
    assert_loss_close(got.loss, expected.loss)


SEQUENCE_CASES = {
    "regression": (1, None, torch.tensor([0.5, -1.0, 2.0])),
    "single-label": (3, None, torch.tensor([0, 2, 1])),
    "multi-label": (3, "multi_label_classification", torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])),
}


@pytest.mark.parametrize("case", sorted(SEQUENCE_CASES))
@pytest.mark.parametrize("config_name", ["2x4heads", "3x6heads-sinusoidal"])
def test_sequence_classification_logits_match(tmp_path, case, config_name):
    num_labels, problem_type, labels = SEQUENCE_CASES[case]
    hf_model = save_tiny_hf(tmp_path, "distilbert", "sequence_classification", num_labels=num_labels,
                            problem_type=problem_type, **TINY_CONFIGS[config_name])
    ours = DistilBertForSequenceClassification.from_pretrained(tmp_path)
    assert ours.config.num_labels == num_labels and ours.loading_info.missing_keys == []
    inputs = make_inputs(padded=True)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_loss_close(got.loss, expected.loss)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_token_classification_logits_match(tmp_path, padded):
    hf_model = save_tiny_hf(tmp_path, "distilbert", "token_classification", num_labels=5,
                            **TINY_CONFIGS["3x6heads-sinusoidal"])
    ours = DistilBertForTokenClassification.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padded)
    labels = torch.randint(0, 5, inputs["input_ids"].shape, generator=torch.Generator().manual_seed(3))
    labels = labels.masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels)
        got = ours(**inputs, labels=labels)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert_loss_close(got.loss, expected.loss)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_question_answering_logits_match(tmp_path, padded):
    hf_model = save_tiny_hf(tmp_path, "distilbert", "question_answering", **TINY_CONFIGS["2x4heads"])
    ours = DistilBertForQuestionAnswering.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padded)
    start, end = torch.tensor([1, 4, 20]), torch.tensor([3, 6, 2])  # 20 is outside the input: ignored
    with torch.no_grad():
        expected = hf_model(**inputs, start_positions=start, end_positions=end)
        got = ours(**inputs, start_positions=start, end_positions=end)
    assert_close_per_layer([got.start_logits, got.end_logits], [expected.start_logits, expected.end_logits],
                           "span logits")
    assert_loss_close(got.loss, expected.loss)


def test_multiple_choice_logits_match(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "distilbert", "multiple_choice", **TINY_CONFIGS["3x6heads-sinusoidal"])
    ours = DistilBertForMultipleChoice.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    flat = make_inputs(padded=True, batch=3)
    inputs = {k: torch.stack([v, v.roll(1, dims=0)], dim=1) for k, v in flat.items()}  # [batch, 2 choices, pos]
    labels = torch.tensor([1, 0, 1])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True)
    assert got.logits.shape == (3, 2)
    assert_close_per_layer([got.logits], [expected.logits], "logits")
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")
    assert_loss_close(got.loss, expected.loss)


# Sinusoidal positions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(512, 768), (64, 48), (64, 17)])
def test_sinusoids_equal_hugging_face_bitwise(shape):
    from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings

    n_pos, dim = shape
    assert torch.equal(sinusoidal_position_embeddings(n_pos, dim),
                       create_sinusoidal_embeddings(n_pos, dim, torch.empty(n_pos, dim)))


def test_fresh_sinusoidal_model_has_hugging_faces_table():
    import transformers

    fields = dict(vocab_size=VOCAB, dim=48, n_layers=1, n_heads=6, hidden_dim=64, max_position_embeddings=40,
                  sinusoidal_pos_embds=True)
    hf_model = transformers.DistilBertModel(transformers.DistilBertConfig(**fields))
    ours = DistilBertModel.from_config(DistilBertConfig(**fields), seed=0)
    assert torch.equal(ours.pos_embed.weight, hf_model.embeddings.position_embeddings.weight)


def test_sinusoidal_checkpoint_without_a_position_table(tmp_path):
    """A checkpoint that lacks position_embeddings.weight: both Hugging Face and we report it missing and
    fill it with the sinusoids, so the outputs agree."""
    import transformers
    from safetensors.torch import load_file, save_file

    save_tiny_hf(tmp_path, "distilbert", **TINY_CONFIGS["3x6heads-sinusoidal"])
    state = load_file(tmp_path / "model.safetensors")
    del state["embeddings.position_embeddings.weight"]
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    hf_model = transformers.DistilBertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = DistilBertModel.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == ["pos_embed.weight"]
    assert torch.equal(ours.pos_embed.weight, sinusoidal_position_embeddings(64, 48))
    inputs = make_inputs(padded=True)
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True)
        got = ours(**inputs, output_hidden_states=True)
    assert_close_per_layer(got.hidden_states, expected.hidden_states, "hidden_states")


# Saving ----------------------------------------------------------------------------------------------


HF_INPUTS = {
    DistilBertModel: lambda out: [out.last_hidden_state],
    DistilBertForMaskedLM: lambda out: [out.logits],
    DistilBertForSequenceClassification: lambda out: [out.logits],
    DistilBertForTokenClassification: lambda out: [out.logits],
    DistilBertForQuestionAnswering: lambda out: [out.start_logits, out.end_logits],
    DistilBertForMultipleChoice: lambda out: [out.logits],
}


@pytest.mark.parametrize("model_class", ALL_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("sinusoidal", [False, True], ids=["learned", "sinusoidal"])
def test_save_pretrained_round_trip_loads_in_hugging_face(tmp_path, model_class, sinusoidal):
    import transformers

    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                              max_position_embeddings=64, sinusoidal_pos_embds=sinusoidal, activation="gelu_new")
    ours = model_class.from_config(config, seed=0)
    with torch.no_grad():
        for param in ours.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "distilbert" and saved["architectures"] == [model_class.__name__]
    assert (saved["dim"], saved["n_layers"], saved["n_heads"], saved["hidden_dim"]) == (32, 2, 4, 37)
    assert saved["sinusoidal_pos_embds"] is sinusoidal

    hf_model, info = getattr(transformers, model_class.__name__).from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    inputs = make_inputs(padded=True)
    if model_class is DistilBertForMultipleChoice:
        inputs = {k: torch.stack([v, v.flip(0)], dim=1) for k, v in inputs.items()}
    with torch.no_grad():
        expected = HF_INPUTS[model_class](hf_model.eval()(**inputs))
        got = HF_INPUTS[model_class](ours(**inputs))
    assert_close_per_layer(got, expected, "round-trip outputs")

    again = model_class.from_pretrained(tmp_path)
    assert again.loading_info.missing_keys == [] and again.loading_info.unexpected_keys == []
    for key, tensor in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key


def test_head_checkpoint_loads_into_the_bare_model_and_body_into_a_head(tmp_path):
    save_tiny_hf(tmp_path, "distilbert", "masked_lm")
    body = DistilBertModel.from_pretrained(tmp_path)
    assert body.loading_info.missing_keys == []
    assert sorted(body.loading_info.unexpected_keys) == sorted(
        [f"{name}.{p}" for name in ("vocab_transform", "vocab_layer_norm") for p in ("weight", "bias")]
        + ["vocab_projector.bias"]
    )
    classifier = DistilBertForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert sorted(classifier.loading_info.missing_keys) == [
        "classifier.bias", "classifier.weight", "pre_classifier.bias", "pre_classifier.weight"
    ]
    assert torch.equal(classifier.embed.weight, body.embed.weight)


# Hooks -----------------------------------------------------------------------------------------------

EMBED_HOOKS = ["hook_embed", "hook_pos_embed", "ln_embed.hook_scale", "ln_embed.hook_normalized"]
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
HEAD_HOOKS = {
    DistilBertModel: [],
    DistilBertForMaskedLM: ["mlm_head.ln.hook_scale", "mlm_head.ln.hook_normalized", "hook_logits"],
    DistilBertForSequenceClassification: ["hook_logits"],
    DistilBertForTokenClassification: ["hook_logits"],
    DistilBertForQuestionAnswering: ["hook_logits"],
    DistilBertForMultipleChoice: ["hook_logits"],
}


def tiny_config(**fields):
    base = dict(vocab_size=50, dim=16, n_layers=2, n_heads=4, hidden_dim=24, max_position_embeddings=32)
    return DistilBertConfig(**{**base, **fields})


@pytest.mark.parametrize("model_class", ALL_CLASSES, ids=lambda c: c.__name__)
def test_hook_names_are_pinned(model_class):
    model = model_class.from_config(tiny_config())
    expected = EMBED_HOOKS + [f"blocks.{i}.{name}" for i in range(2) for name in BLOCK_HOOKS]
    assert model.hook_names == expected + HEAD_HOOKS[model_class]


def test_padding_does_not_change_any_real_tokens_activations():
    model = DistilBertForMaskedLM.from_config(tiny_config(sinusoidal_pos_embds=True), seed=0)
    lengths = [9, 4, 6]
    ids = torch.randint(1, 50, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(3, 9, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    _, batch_cache = model.run_with_cache({"input_ids": ids, "attention_mask": mask})
    for row, n in enumerate(lengths):
        _, alone = model.run_with_cache(ids[row : row + 1, :n])
        for name, tensor in alone.items():
            batched = batch_cache[name][row : row + 1]
            if name.endswith(("hook_pattern", "hook_scores")):
                if name.endswith("hook_pattern"):
                    assert torch.all(batched[:, :, :n, n:] == 0), f"{name}: attention to padding"
                batched = batched[:, :, :n, :n]
            else:
                batched = batched[:, :n]
            diff = (batched - tensor).abs().max().item()
            assert diff <= 1e-5, f"{name} of row {row} changes by {diff:.2e} when padded in a batch"


def test_traces_and_exports_with_no_hooks():
    model = DistilBertForSequenceClassification.from_config(tiny_config(), seed=0)
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = model(ids, mask).logits
        traced = torch.jit.trace(model, (ids, mask))
        torch.testing.assert_close(traced(ids, mask)[0], expected)
        exported = torch.export.export(model, (ids, mask))
        torch.testing.assert_close(exported.module()(ids, mask).logits, expected)


# Errors and config -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", ALL_CLASSES, ids=lambda c: c.__name__)
def test_token_type_ids_are_refused_clearly(model_class):
    model = model_class.from_config(tiny_config(), seed=0)
    ids = torch.randint(1, 50, (2, 1, 5) if model_class is DistilBertForMultipleChoice else (2, 5))
    with pytest.raises(ValueError, match="no token_type_ids.*no token-type"):
        model(input_ids=ids, token_type_ids=torch.zeros_like(ids))


def test_too_long_input_is_refused_clearly():
    model = DistilBertModel.from_config(tiny_config(max_position_embeddings=8), seed=0)
    with pytest.raises(ValueError, match=r"9 tokens .* at most 8 \(max_position_embeddings\)"):
        model(torch.ones(1, 9, dtype=torch.long))
    model(torch.ones(1, 8, dtype=torch.long))


def test_config_names_aliases_and_validation(tmp_path):
    config = DistilBertConfig.from_dict({"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2})
    assert (config.dim, config.n_layers, config.n_heads) == (16, 3, 2)
    assert (config.d_model, config.d_head, config.d_mlp, config.max_position_embeddings) == (16, 8, 3072, 512)
    assert DistilBertConfig.from_dict({"dim": 768}, hidden_size=36).dim == 36  # an override wins
    with pytest.raises(ValueError, match="hidden_size=32 contradicts dim=16"):
        DistilBertConfig.from_dict({"dim": 16, "hidden_size": 32})
    with pytest.raises(ValueError, match="dim=30 must be a multiple of n_heads=4"):
        DistilBertConfig.from_dict({"dim": 30, "n_heads": 4})
    with pytest.raises(ValueError, match="unsupported hidden_act 'swiglu'"):
        DistilBertConfig.from_dict({"activation": "swiglu"})
    with pytest.raises(ValueError, match="num_labels=2"):
        DistilBertForQuestionAnswering(tiny_config(id2label={0: "a", 1: "b", 2: "c"}))

    config = tiny_config(sinusoidal_pos_embds=True)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "ALIASES" not in saved and "hidden_size" not in saved
    assert DistilBertConfig.from_pretrained(tmp_path) == DistilBertConfig.from_dict(saved, name_or_path=str(tmp_path))


# Tokenizer -------------------------------------------------------------------------------------------

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "keys", "to", "cabinet", "are", "on", "table", ".",
         "a", "short", "one", "##s", "key"]


def save_hf_distilbert_tokenizer(folder):
    import transformers

    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    hf_tokenizer = transformers.DistilBertTokenizer(str(folder / "vocab.txt"))
    hf_tokenizer.save_pretrained(folder)
    return hf_tokenizer


TEXTS = ["The keys to the cabinet are on the table.", "A short one."]


def test_wordpiece_ids_match_hugging_face_and_run_without_token_types(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "distilbert")
    hf_tokenizer = save_hf_distilbert_tokenizer(tmp_path)
    ours = DistilBertModel.from_pretrained(tmp_path)
    hf_inputs = hf_tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert list(hf_inputs) == ["input_ids", "attention_mask"]
    encoding = ours.tokenize(TEXTS)
    # Until workbench.tokenizers knows DistilBERT's model_input_names, it also makes token_type_ids:
    # pass the two inputs DistilBERT takes explicitly.
    inputs = {key: encoding[key] for key in ("input_ids", "attention_mask")}
    for key, value in inputs.items():
        assert torch.equal(value, hf_inputs[key]), key
    with torch.no_grad():
        expected = hf_model(**hf_inputs, output_hidden_states=True)
    out, cache = ours.run_with_cache(inputs, output_hidden_states=True)
    assert_close_per_layer(out.hidden_states, expected.hidden_states, "hidden_states")
    assert cache.tokens is None or cache.tokens[0][:3] == ["[CLS]", "the", "keys"]


def test_text_inputs_run_end_to_end(tmp_path):
    save_tiny_hf(tmp_path, "distilbert", "masked_lm")
    save_hf_distilbert_tokenizer(tmp_path)
    ours = DistilBertForMaskedLM.from_pretrained(tmp_path)
    assert "token_type_ids" not in ours.tokenize(TEXTS)
    _, cache = ours.run_with_cache(TEXTS[0])
    assert cache.tokens[:3] == ["[CLS]", "the", "keys"]
    table = ours.fill_mask("The [MASK] are on the table.", top_k=3)
    assert len(table) == 3
