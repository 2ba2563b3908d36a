"""RoBERTa against Hugging Face's on the same checkpoints and vocabulary files.

Models: tiny random RoBERTa checkpoints saved by Hugging Face (every parameter perturbed), padded with the
pad id 1 and given no position_ids, so that our positions (after the padding index, skipping padding) must
be Hugging Face's: every hidden state, attention, logits and loss (max abs diff <= 1e-4 in float32); saving
round trips; the pinned hook names (BERT's); padding invariance.

Tokenizer: a byte-level BPE vocabulary trained here with the ``tokenizers`` library (no real RoBERTa
vocabulary on the test machines), laid out as RoBERTa's (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask> last), read
by ours and by Hugging Face's RobertaTokenizer from the same folders.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from tiny_hf import save_tiny_hf, task_of

from workbench.models.bert import BertConfig, BertForMaskedLM, BertModel
from workbench.models.roberta import (
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
    positions_after_padding,
)
from workbench.tokenizers import BYTE_LEVEL_BPE, ROBERTA_BPE, Tokenizer, byte_level_bpe_from_files

transformers = pytest.importorskip("transformers")

TOL = 1e-4
PAD = 1
VOCAB = 99

# The workbench's classes by Hugging Face's name (until the Auto registries know "roberta").
OURS = {
    cls.__name__: cls
    for cls in (
        RobertaModel,
        RobertaForMaskedLM,
        RobertaForSequenceClassification,
        RobertaForTokenClassification,
        RobertaForQuestionAnswering,
        RobertaForMultipleChoice,
    )
}

TINY_CONFIGS = {
    "2x4heads": dict(d_model=32, n_layers=2, n_heads=4, d_mlp=37),
    "3x6heads-gelu_new": dict(d_model=48, n_layers=3, n_heads=6, d_mlp=64, hidden_act="gelu_new"),
    # as the released checkpoints: one token type, eps 1e-5, 2 + max length positions
    "1x1head-released-like": dict(
        d_model=16, n_layers=1, n_heads=1, d_mlp=24, type_vocab_size=1, layer_norm_eps=1e-5, max_positions=13,
        hidden_act="relu",
    ),
}


def make_inputs(padding: str, batch: int = 3, length: int = 11, seed: int = 0, vocab: int = VOCAB):
    """<s> random tokens </s>, padded with the pad id 1 (attention mask 0) on the given side, or not at all."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    lengths = [length, 7, 3, 5, 9, 2][:batch] if padding != "unpadded" else [length] * batch
    for row, real in enumerate(lengths):
        ids = input_ids[row, :real].clone()
        ids[0], ids[-1] = 0, 2
        padded = torch.full((length,), PAD)
        mask = torch.zeros(length, dtype=torch.long)
        where = slice(length - real, length) if padding == "left" else slice(0, real)
        padded[where], mask[where] = ids, 1
        input_ids[row], attention_mask[row] = padded, mask
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def max_diff(ours, theirs, what):
    ours, theirs = list(ours), list(theirs)
    assert len(ours) == len(theirs), f"{what}: {len(ours)} tensors vs Hugging Face's {len(theirs)}"
    worst = 0.0
    for layer, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"{what}[{layer}]: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        diff = (a - b).abs().max().item()
        assert diff <= TOL, f"{what}[{layer}] differs from Hugging Face by {diff:.2e}"
        worst = max(worst, diff)
    return worst


PADDINGS = ["unpadded", "right", "left"]


# Model parity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("padding", PADDINGS)
def test_hidden_states_and_attentions_match(tmp_path, name, padding):
    fields = TINY_CONFIGS[name]
    hf_model = save_tiny_hf(tmp_path, "roberta", **fields)
    ours = RobertaModel.from_pretrained(tmp_path)
    assert isinstance(ours.config, RobertaConfig) and ours.config.model_type == "roberta"
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs(padding)
    with torch.no_grad():  # no position_ids: both derive them from input_ids
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    max_diff(got.hidden_states, expected.hidden_states, "hidden_states")
    max_diff(got.attentions, expected.attentions, "attentions")
    max_diff([got.last_hidden_state], [expected.last_hidden_state], "last_hidden_state")
    max_diff([got.pooler_output], [expected.pooler_output], "pooler_output")


def test_token_types_and_inputs_embeds_match(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", type_vocab_size=2)
    ours = RobertaModel.from_pretrained(tmp_path)
    inputs = make_inputs("right")
    types = torch.randint(0, 2, inputs["input_ids"].shape, generator=torch.Generator().manual_seed(3))
    embeds = ours.embed(inputs["input_ids"]).detach()
    with torch.no_grad():
        expected = hf_model(**inputs, token_type_ids=types)
        got = ours(**inputs, token_type_ids=types)
        # inputs_embeds: positions padding_idx + 1 .. for every row (padding cannot be seen)
        expected_embeds = hf_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
        got_embeds = ours(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])
    max_diff([got.last_hidden_state], [expected.last_hidden_state], "with token types")
    max_diff([got_embeds.last_hidden_state], [expected_embeds.last_hidden_state], "from inputs_embeds")


def test_positions_are_hugging_faces(tmp_path):
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

    for padding in PADDINGS:
        ids = make_inputs(padding)["input_ids"]
        expected = RobertaEmbeddings.create_position_ids_from_input_ids(ids, PAD)
        assert torch.equal(positions_after_padding(ids, PAD), expected), padding
    ids = torch.tensor([[0, 5, 6, 2, 1, 1], [1, 1, 0, 5, 2, 1]])
    assert positions_after_padding(ids, 1).tolist() == [[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 1]]
    # what hook_pos_embed holds: the embeddings of those positions
    model = RobertaModel.from_config(RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=8,
                                                   max_position_embeddings=16), seed=0)
    _, cache = model.run_with_cache(ids, names_filter="hook_pos_embed")
    assert torch.equal(cache["hook_pos_embed"], model.pos_embed(positions_after_padding(ids, 1)))
    assert model.pos_embed.padding_idx == 1 and torch.all(model.pos_embed.weight[1] == 0)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_masked_lm_logits_and_loss_match(tmp_path, padding, tied):
    # gelu_new in the blocks: Hugging Face's RobertaLMHead uses the exact GELU whatever hidden_act says
    hf_model = save_tiny_hf(tmp_path, "roberta", "masked_lm", hidden_act="gelu_new", tie_word_embeddings=tied)
    ours = RobertaForMaskedLM.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    assert (ours.unembed.weight is ours.embed.weight) is tied
    inputs = make_inputs(padding)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True, output_attentions=True)
    max_diff([got.logits], [expected.logits], "logits")
    max_diff(got.hidden_states, expected.hidden_states, "hidden_states")
    max_diff(got.attentions, expected.attentions, "attentions")
    max_diff([got.loss], [expected.loss], "loss")


def test_masked_lm_with_both_biases_different_uses_the_decoders(tmp_path):
    """A checkpoint holding lm_head.bias and lm_head.decoder.bias with different values: Hugging Face does not tie
    them and its forward uses the decoder's; so do we."""
    from safetensors.torch import load_file, save_file

    save_tiny_hf(tmp_path, "roberta", "masked_lm")
    state = load_file(str(tmp_path / "model.safetensors"))
    state["lm_head.decoder.bias"] = state["lm_head.bias"] + torch.randn_like(state["lm_head.bias"])
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    hf_model = transformers.RobertaForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ours = RobertaForMaskedLM.from_pretrained(tmp_path)
    assert torch.equal(ours.unembed.bias, state["lm_head.decoder.bias"])
    inputs = make_inputs("right")
    with torch.no_grad():
        max_diff([ours(**inputs).logits], [hf_model(**inputs).logits], "logits")


@pytest.mark.parametrize("num_labels", [1, 3])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_sequence_classification_logits_and_loss_match(tmp_path, num_labels, padding):
    hf_model = save_tiny_hf(tmp_path, "roberta", "sequence_classification", num_labels=num_labels,
                            **TINY_CONFIGS["3x6heads-gelu_new"])
    ours = RobertaForSequenceClassification.from_pretrained(tmp_path)
    assert ours.config.num_labels == num_labels and ours.loading_info.missing_keys == []
    assert ours.pooler is None and not any(k.startswith("pooler") for k in ours.state_dict())
    inputs = make_inputs(padding)
    labels = torch.tensor([0.5, -1.0, 2.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        got = ours(**inputs, labels=labels, output_hidden_states=True)
    max_diff([got.logits], [expected.logits], "logits")
    max_diff(got.hidden_states, expected.hidden_states, "hidden_states")
    max_diff([got.loss], [expected.loss], "loss")


def test_multi_label_classification_loss_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "sequence_classification", num_labels=4,
                            problem_type="multi_label_classification")
    ours = RobertaForSequenceClassification.from_pretrained(tmp_path)
    inputs = make_inputs("right")
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        max_diff([ours(**inputs, labels=labels).loss], [hf_model(**inputs, labels=labels).loss], "loss")


def test_token_classification_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "token_classification", num_labels=5)
    ours = RobertaForTokenClassification.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs("right")
    labels = torch.randint(0, 5, inputs["input_ids"].shape).masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_hidden_states=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels, output_hidden_states=True)
    assert out.logits.shape == (3, 11, 5) and torch.equal(cache["hook_logits"], out.logits)
    max_diff([out.logits, out.loss], [expected.logits, expected.loss], "logits and loss")
    max_diff(out.hidden_states, expected.hidden_states, "hidden_states")


def test_question_answering_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "question_answering")
    ours = RobertaForQuestionAnswering.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    inputs = make_inputs("left")
    starts, ends = torch.tensor([1, 2, 30]), torch.tensor([3, 4, 40])  # the last is outside: ignored, as in HF
    with torch.no_grad():
        expected = hf_model(**inputs, start_positions=starts, end_positions=ends)
        got = ours(**inputs, start_positions=starts, end_positions=ends)
    assert got.start_logits.shape == got.end_logits.shape == (3, 11)
    max_diff([got.start_logits, got.end_logits, got.loss], [expected.start_logits, expected.end_logits, expected.loss],
             "start/end logits and loss")


def test_multiple_choice_matches(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "multiple_choice")
    ours = RobertaForMultipleChoice.from_pretrained(tmp_path)
    assert ours.loading_info.missing_keys == [] and ours.loading_info.unexpected_keys == []
    flat = make_inputs("right", batch=6)
    inputs = {name: value.view(2, 3, 11) for name, value in flat.items()}  # [batch, choices, pos]
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        expected = hf_model(**inputs, labels=labels, output_attentions=True)
        out, cache = ours.run_with_cache(inputs, names_filter="hook_logits", labels=labels, output_attentions=True)
    assert out.logits.shape == (2, 3) and torch.equal(cache["hook_logits"], out.logits)
    max_diff([out.logits, out.loss], [expected.logits, expected.loss], "logits and loss")
    max_diff(out.attentions, expected.attentions, "attentions")  # of the flattened choices


# Saving and loading -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OURS))
def test_saved_folder_loads_in_hugging_face(tmp_path, name):
    num_labels = 2 if name == "RobertaForQuestionAnswering" else 3  # start and end
    hf_model = save_tiny_hf(tmp_path / "original", "roberta", task_of("roberta", name), num_labels=num_labels)
    ours = OURS[name].from_pretrained(tmp_path / "original")
    ours.save_pretrained(tmp_path / "saved")
    saved_config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved_config["model_type"] == "roberta" and saved_config["architectures"] == [name]
    assert saved_config["pad_token_id"] == PAD
    reloaded, info = getattr(transformers, name).from_pretrained(
        tmp_path / "saved", attn_implementation="eager", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    again = OURS[name].from_pretrained(tmp_path / "saved")
    assert again.loading_info.missing_keys == [] and again.loading_info.unexpected_keys == []
    inputs = make_inputs("right", batch=6)
    if name == "RobertaForMultipleChoice":
        inputs = {key: value.view(2, 3, 11) for key, value in inputs.items()}
    with torch.no_grad():
        expected, theirs, ours_again = hf_model(**inputs), reloaded.eval()(**inputs), again(**inputs)
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            max_diff([theirs[key], ours_again[key]], [expected[key], expected[key]], f"{name}.{key} after saving")


def test_head_checkpoint_loads_into_the_body_and_a_fresh_head_is_reported(tmp_path):
    save_tiny_hf(tmp_path, "roberta", "masked_lm")
    body = RobertaModel.from_pretrained(tmp_path)
    assert sorted(body.loading_info.missing_keys) == ["pooler.bias", "pooler.weight"]  # no pooler in an MLM
    classifier = RobertaForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert sorted(classifier.loading_info.missing_keys) == [
        "classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"
    ]
    assert any(key.startswith("lm_head.") for key in classifier.loading_info.unexpected_keys)


def test_config_defaults_and_round_trip(tmp_path):
    config = RobertaConfig()
    hf = transformers.RobertaConfig()
    for key in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "max_position_embeddings",
                "type_vocab_size", "layer_norm_eps", "hidden_act", "hidden_size", "tie_word_embeddings"):
        assert getattr(config, key) == getattr(hf, key), key
    assert isinstance(config, BertConfig) and config.model_type == "roberta"
    config.save_pretrained(tmp_path)
    assert RobertaConfig.from_pretrained(tmp_path) == RobertaConfig(name_or_path=str(tmp_path))
    assert transformers.AutoConfig.from_pretrained(tmp_path).pad_token_id == 1
    with pytest.raises(ValueError, match="pad_token_id"):
        RobertaConfig(pad_token_id=None).validate()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        RobertaConfig(max_position_embeddings=2).validate()


def test_longest_input_is_max_positions_less_the_padding_offset():
    config = RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=8, max_position_embeddings=14)
    model = RobertaModel.from_config(config, seed=0)
    model(input_ids=torch.randint(3, VOCAB, (1, 12)))  # positions 2..13
    with pytest.raises(ValueError, match=r"13 tokens.*at most 12.*max_position_embeddings=14"):
        model(input_ids=torch.randint(3, VOCAB, (1, 13)))


# Hooks ------------------------------------------------------------------------------------------------------

EMBED_HOOKS = ["hook_embed", "hook_pos_embed", "hook_token_type_embed", "ln_embed.hook_scale",
               "ln_embed.hook_normalized"]
BLOCK_HOOKS = [
    "hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_scores", "attn.hook_pattern",
    "attn.hook_z", "hook_attn_out", "ln1.hook_scale", "ln1.hook_normalized", "hook_resid_mid", "mlp.hook_pre",
    "mlp.hook_post", "hook_mlp_out", "ln2.hook_scale", "ln2.hook_normalized", "hook_resid_post",
]


def tiny_config(**fields):
    base = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                max_position_embeddings=32)
    return RobertaConfig(**{**base, **fields})


def test_hook_names_are_pinned_and_are_berts():
    body = RobertaModel.from_config(tiny_config())
    expected = EMBED_HOOKS + [f"blocks.{i}.{name}" for i in range(2) for name in BLOCK_HOOKS]
    assert body.hook_names == expected
    bert_fields = {k: v for k, v in vars(tiny_config()).items() if k in vars(BertConfig())}
    bert_fields.pop("pad_token_id")
    assert body.hook_names == BertModel.from_config(BertConfig(**bert_fields)).hook_names
    mlm = RobertaForMaskedLM.from_config(tiny_config())
    assert mlm.hook_names == expected + ["mlm_head.ln.hook_scale", "mlm_head.ln.hook_normalized", "hook_logits"]
    assert mlm.hook_names == BertForMaskedLM.from_config(BertConfig(**bert_fields)).hook_names
    for head in (RobertaForSequenceClassification, RobertaForTokenClassification, RobertaForQuestionAnswering,
                 RobertaForMultipleChoice):
        assert head.from_config(tiny_config()).hook_names == expected + ["hook_logits"], head.__name__


def test_hook_points_equal_hugging_face_outputs(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "masked_lm")
    ours = RobertaForMaskedLM.from_pretrained(tmp_path)
    inputs = make_inputs("left")
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
    out, cache = ours.run_with_cache(inputs, output_hidden_states=True, output_attentions=True)
    max_diff([cache["blocks.0.hook_resid_pre"]], [expected.hidden_states[0]], "blocks.0.hook_resid_pre")
    max_diff(cache.stack("hook_resid_post"), expected.hidden_states[1:], "hook_resid_post")
    max_diff(cache.stack("attn.hook_pattern"), expected.attentions, "hook_pattern")
    assert torch.equal(cache["hook_logits"], out.logits)
    # the logit lens decodes through the same head
    assert torch.allclose(ours.decode_residual(cache["blocks.1.hook_resid_post"]), out.logits, atol=1e-6)
    top = ours.logit_lens(inputs).top_k(3, pos=-1)
    last_layer = top[top["layer"] == top["layer"].iloc[-1]]
    assert last_layer["token_id"].tolist() == out.logits[0, -1].topk(3).indices.tolist()


@pytest.mark.parametrize("padding", ["right", "left"])
def test_padding_does_not_change_any_real_tokens_activations(padding):
    """Positions skip padding, so either side of padding leaves every real token's activations as alone."""
    model = RobertaForMaskedLM.from_config(tiny_config(), seed=0)
    inputs = make_inputs(padding)
    names = lambda n: n.endswith(("hook_resid_post", "hook_pattern", "hook_z", "mlp.hook_post", "hook_pos_embed",  # noqa: E731
                                  "hook_logits"))
    _, batch_cache = model.run_with_cache(inputs, names_filter=names)
    for row in range(3):
        real = inputs["attention_mask"][row].bool()
        _, alone = model.run_with_cache(inputs["input_ids"][row][real][None], names_filter=names)
        for name, tensor in alone.items():
            batched = batch_cache[name][row : row + 1]
            if name.endswith("hook_pattern"):
                batched = batched[:, :, real][:, :, :, real]
                assert torch.all(batch_cache[name][row][:, :, ~real] == 0)  # no attention to padding
            else:
                batched = batched[:, real]
            diff = (batched - tensor).abs().max().item()
            assert diff <= 1e-5, f"{name} of row {row} changes by {diff:.2e} when {padding}-padded in a batch"


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # nn.Embedding's check of padding_idx=1, a constant
def test_traces_and_exports_with_no_hooks():
    """The positions (a cumsum over input_ids) trace and export; a traced model, given other padding, follows it."""
    model = RobertaForMaskedLM.from_config(tiny_config(), seed=0)
    inputs = make_inputs("right")
    other = make_inputs("left", seed=1)
    with torch.no_grad():
        traced = torch.jit.trace(model, (inputs["input_ids"], inputs["attention_mask"]))
        torch.testing.assert_close(traced(other["input_ids"], other["attention_mask"])[0], model(**other).logits)
        exported = torch.export.export(model, (inputs["input_ids"], inputs["attention_mask"]))
        out = exported.module()(other["input_ids"], other["attention_mask"])
    torch.testing.assert_close(out.logits, model(**other).logits)


# Tokenizer ----------------------------------------------------------------------------------------------------

CORPUS = """The quick brown fox jumps over the lazy dog. Hello world! Hello, World? hello   world.
I don't know, she said. I'll be there; we'll see. It's 3.14 and 1,234,567.89 people paid $5 (or €4.50) in 2024.
Café naïve résumé façade Ünïcödé. Привет мир. 日本語のテキスト 中文 English混合. I ❤️ 🤗 emoji 👍🏽 rocks 🚀!
\tTabs\tand
newlines and  double  spaces.  They're can't won't shouldn't. U.S.A. e.g. stop-believing: !!!...???
"The keys to the cabinet are on the table," he said -- twice. The capital of France is Paris.
"""

TRICKY_TEXTS = {
    "hello_world": "Hello world",
    "leading_space": " Hello world",
    "leading_spaces": "   Hello",
    "trailing_spaces": "Hello world  ",
    "multiple_spaces": "a  b   c    d",
    "only_spaces": "   ",
    "newlines_tabs": "line one\nline two\n\n\tindented\r\nwindows",
    "contractions": "I don't know, I'll see; they're here and it's fine. DON'T",
    "accents": "Café naïve résumé, Ünïcödé ÅÉÎ",
    "combining_accents": "nai\u0308ve cafe\u0301",
    "cjk": "日本語のテキスト 中文 BERT处理中文和English混合",
    "emoji": "I ❤️ 🤗 emoji 👍🏽 rocks 🚀!",
    "numbers": "In 2024, 1,234,567.89 people paid $5 (or €4.50); pi=3.14159",
    "empty": "",
    "control_chars": "a\x00b\x07c\u200bd",
    "mask_after_space": "The capital of France is <mask>.",
    "mask_after_spaces": "Paris is  <mask> and\t<mask>",
    "mask_glued": "x<mask>y <mask>",
    "mask_first": "<mask> starts the text",
    "special_tokens_in_text": "<s> a </s> b <pad> c <unk>",
}

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog, again and again."] * 12)

SPLIT_SENTENCES = [
    ["I", "do", "n't", "know", ",", "she", "said", "."],
    ["Café", "naïve", "résumé", "—", "(", "e.g.", "3.14", ")", "?"],
    ["日本語", "and", "🤗", "emoji"],
    ["single"],
]

MASK_LSTRIP = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False,
               "special": True}


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    """vocab.json + merges.txt of a byte-level BPE laid out as RoBERTa's: <s> <pad> </s> <unk> first, <mask> last."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, pre_tokenizers, trainers

    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator([CORPUS] * 3 + CORPUS.splitlines(), trainer)
    folder = tmp_path_factory.mktemp("roberta_vocab")
    backend.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


def make_folder(root, vocab_dir, name, tokenizer_config=None, special_tokens_map=None, config=None):
    folder = root / name
    folder.mkdir()
    for path in vocab_dir.iterdir():
        shutil.copy(path, folder / path.name)
    for file_name, content in (("tokenizer_config.json", tokenizer_config),
                               ("special_tokens_map.json", special_tokens_map), ("config.json", config)):
        if content is not None:
            (folder / file_name).write_text(json.dumps(content))
    return folder


# How RoBERTa tokenizers come: vocabulary files with a model type; vocabulary files with the settings that
# Hugging Face v4 saved (the mask's lstrip in added_tokens_decoder and special_tokens_map.json); the hub's
# roberta-base layout (tokenizer.json + config.json only); and add_prefix_space=True.
TOKENIZER_CASES = ["files_model_type", "files_saved_settings", "tokenizer_json", "prefix_space"]


@pytest.fixture(scope="module")
def tokenizer_folders(vocab_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("roberta_tokenizers")
    mask_id = str(json.loads((vocab_dir / "vocab.json").read_text(encoding="utf-8"))["<mask>"])
    folders = {
        "files_model_type": make_folder(root, vocab_dir, "files_model_type", config={"model_type": "roberta"}),
        "files_saved_settings": make_folder(
            root, vocab_dir, "files_saved_settings",
            tokenizer_config={"tokenizer_class": "RobertaTokenizer", "model_max_length": 512, "mask_token": "<mask>",
                              "added_tokens_decoder": {mask_id: MASK_LSTRIP}},
            special_tokens_map={"mask_token": MASK_LSTRIP, "pad_token": "<pad>"},
        ),
    }
    from transformers import AddedToken

    hf = transformers.RobertaTokenizer.from_pretrained(
        str(vocab_dir), mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False)
    )
    hf.save_pretrained(str(root / "hf_saved"))
    hub_like = root / "tokenizer_json"
    hub_like.mkdir()
    shutil.copy(root / "hf_saved" / "tokenizer.json", hub_like / "tokenizer.json")
    (hub_like / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    folders["tokenizer_json"] = hub_like
    folders["hf_saved"] = root / "hf_saved"
    return folders


@pytest.fixture(scope="module")
def tokenizers_by_case(tokenizer_folders):
    out = {}
    for case in TOKENIZER_CASES:
        folder = str(tokenizer_folders["files_model_type" if case == "prefix_space" else case])
        kwargs = {"add_prefix_space": True} if case == "prefix_space" else {}
        out[case] = (Tokenizer.from_pretrained(folder, **kwargs),
                     transformers.AutoTokenizer.from_pretrained(folder, **kwargs))
    return out


@pytest.fixture(params=TOKENIZER_CASES)
def case(request, tokenizers_by_case):
    return tokenizers_by_case[request.param]


def assert_same(ours, theirs, hf, rows=None):
    """Model inputs, tokens, offsets, word and sequence ids of ours equal Hugging Face's (a BatchEncoding)."""
    assert set(ours) == {"input_ids", "attention_mask"}, "RoBERTa takes no token_type_ids"
    for key in ours:
        mine, ref = ours[key], theirs[key]
        if isinstance(ref, torch.Tensor):
            mine, ref = mine.tolist(), ref.tolist()
        assert mine == ref, f"{key} differs:\nours={mine}\nhf  ={ref}"
    for i in rows if rows is not None else [0]:
        spans = theirs["offset_mapping"][i] if rows is not None else theirs["offset_mapping"]
        assert ours.tokens(i) == theirs.tokens(i)  # a <mask> that swallowed a space shows it: " <mask>"
        assert ours.word_ids(i) == theirs.word_ids(i)
        assert ours.sequence_ids(i) == theirs.sequence_ids(i)
        assert ours.offsets[i] == [tuple(span) for span in spans]


@pytest.mark.parametrize("text", list(TRICKY_TEXTS.values()), ids=list(TRICKY_TEXTS))
def test_single_text_matches_hf(case, text):
    ours, hf = case
    theirs = hf(text, return_offsets_mapping=True)
    assert_same(ours(text), theirs, hf)
    assert ours.tokenize(text) == hf.tokenize(text)
    assert ours.encode(text) == hf.encode(text)
    assert ours.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False)
    for skip in (False, True):
        assert ours.decode(theirs["input_ids"], skip_special_tokens=skip) == hf.decode(
            theirs["input_ids"], skip_special_tokens=skip
        )


@pytest.mark.parametrize("pair", [("Hello world", "Second  one here."), (" Café", "日本語 🤗"), ("", "b"),
                                  ("The capital is <mask>.", " <mask> again")])
def test_pairs_match_hf(case, pair):
    ours, hf = case
    theirs = hf(*pair, return_offsets_mapping=True)
    assert_same(ours(*pair), theirs, hf)
    assert ours.encode(*pair) == hf.encode(*pair)


def test_batches_of_pairs_padded_match_hf(case):
    ours, hf = case
    first = list(TRICKY_TEXTS.values())[:8]
    second = list(TRICKY_TEXTS.values())[8:16]
    for padding_side in ("right", "left"):
        kwargs = dict(padding=True, padding_side=padding_side)
        theirs = hf(first, second, return_offsets_mapping=True, **kwargs)
        enc = ours(first, second, **kwargs)
        assert_same(enc, theirs, hf, rows=range(len(first)))
        tensors = ours(first, second, return_tensors="pt", **kwargs)
        assert (tensors["input_ids"][tensors["attention_mask"] == 0] == 1).all(), "padding is <pad> = 1"


@pytest.mark.parametrize("truncation", [True, "only_first", "only_second"])
def test_truncation_matches_hf(case, truncation):
    ours, hf = case
    kwargs = dict(truncation=truncation, max_length=40)
    pair = (LONG_TEXT, "A short second text, or is it?") if truncation != "only_second" else ("Short.", LONG_TEXT)
    assert_same(ours(*pair, **kwargs), hf(*pair, return_offsets_mapping=True, **kwargs), hf)
    if truncation is True:
        assert_same(ours(LONG_TEXT, **kwargs), hf(LONG_TEXT, return_offsets_mapping=True, **kwargs), hf)
        assert len(ours(LONG_TEXT, **kwargs)["input_ids"]) == 40


def test_split_into_words_matches_hf(tokenizers_by_case):
    ours, hf = tokenizers_by_case["prefix_space"]
    for words in SPLIT_SENTENCES:
        assert_same(ours(words, is_split_into_words=True),
                    hf(words, is_split_into_words=True, return_offsets_mapping=True), hf)
    enc = ours(SPLIT_SENTENCES, is_split_into_words=True, padding=True)
    theirs = hf(SPLIT_SENTENCES, is_split_into_words=True, padding=True, return_offsets_mapping=True)
    assert_same(enc, theirs, hf, rows=range(len(SPLIT_SENTENCES)))
    for row, words in enumerate(SPLIT_SENTENCES):  # every word has tokens, in order
        assert sorted({w for w in enc.word_ids(row) if w is not None}) == list(range(len(words)))
    pair = ours(SPLIT_SENTENCES[0], SPLIT_SENTENCES[3], is_split_into_words=True)
    assert pair.sequence_ids() == hf(SPLIT_SENTENCES[0], SPLIT_SENTENCES[3], is_split_into_words=True).sequence_ids()


def test_split_into_words_without_prefix_space_warns_and_matches_hf(tokenizers_by_case, caplog):
    ours, hf = tokenizers_by_case["files_model_type"]
    ours._warned_split_words_without_prefix_space = False
    with caplog.at_level(logging.WARNING, logger="workbench.tokenizers"):
        enc = ours(SPLIT_SENTENCES[0], is_split_into_words=True)
    assert "add_prefix_space=True" in caplog.text
    assert enc["input_ids"] == hf(SPLIT_SENTENCES[0], is_split_into_words=True)["input_ids"]


def test_random_strings_match_hf(case):
    import random

    ours, hf = case
    rng = random.Random(0)
    alphabet = [*"abcdeHW  \t\n'.,!?-019éüÅ日本🤗👍🏽\u0301\u200b<>", "don't", " I'll", "<mask>", " <mask>", "<s>",
                "</s>", "<pad>"]
    for _ in range(150):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        enc, theirs = ours(text), hf(text, return_offsets_mapping=True)
        assert enc["input_ids"] == theirs["input_ids"], repr(text)
        assert enc.offsets[0] == [tuple(span) for span in theirs["offset_mapping"]], repr(text)
        assert enc.word_ids() == theirs.word_ids(), repr(text)
        assert ours.decode(enc["input_ids"]) == hf.decode(theirs["input_ids"]), repr(text)


def test_roberta_details(tokenizers_by_case, vocab_dir):
    ours, hf = tokenizers_by_case["tokenizer_json"]
    assert ours.family == ROBERTA_BPE and ours.add_prefix_space is False
    assert ours.special_tokens == {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                                   "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    for key in ("bos", "eos", "sep", "cls", "unk", "pad", "mask"):
        assert getattr(ours, f"{key}_token_id") == getattr(hf, f"{key}_token_id"), key
    assert (ours.cls_token_id, ours.pad_token_id, ours.sep_token_id, ours.unk_token_id) == (0, 1, 2, 3)
    assert ours.all_special_ids == sorted(hf.all_special_ids) and len(ours) == len(hf)
    assert list(ours.model_input_names) == list(hf.model_input_names) == ["input_ids", "attention_mask"]
    # <s> A </s> and <s> A </s></s> B </s> around GPT-2's byte-level BPE of the texts
    gpt2 = byte_level_bpe_from_files(vocab_dir / "vocab.json", vocab_dir / "merges.txt", special_tokens=[])
    a, b = gpt2.encode("Hello world").ids, gpt2.encode(" again").ids
    assert ours.encode("Hello world") == [0, *a, 2]
    assert ours.encode("Hello world", " again") == [0, *a, 2, 2, *b, 2]
    # the mask swallows the spaces before it (lstrip), in this layout as in the released tokenizers
    assert ours.tokenize("is <mask>.") == hf.tokenize("is <mask>.") == ["is", " <mask>", "."]
    assert ours.convert_ids_to_tokens(ours.encode("is <mask>.")) == ["<s>", "is", "<mask>", ".", "</s>"]
    # offsets leave out the leading space (trim_offsets), unlike GPT-2's
    assert ours(" Hello world").offsets[0] == [(0, 0), (1, 6), (7, 12), (0, 0)]
    assert ours.display_tokens(ours.encode(" Hello world")) == ["<s>", " Hello", " world", "</s>"]


def test_mask_lstrip_follows_the_settings_as_hugging_face(tokenizers_by_case):
    """Hugging Face v5 reads the mask's lstrip from the settings; vocabulary files with no settings give none
    (a space token before <mask>). Ours does the same; each case equals Hugging Face (above)."""
    text = "The capital of France is <mask>."
    with_settings = tokenizers_by_case["files_saved_settings"][0]
    bare = tokenizers_by_case["files_model_type"][0]
    assert with_settings.convert_ids_to_tokens(with_settings.encode(text))[-4:] == ["Ġis", "<mask>", ".", "</s>"]
    assert bare.convert_ids_to_tokens(bare.encode(text))[-5:] == ["Ġis", "Ġ", "<mask>", ".", "</s>"]


def test_family_from_tokenizer_json_alone_and_save_round_trip(tokenizer_folders, tmp_path):
    """A tokenizer.json of no known class (no config): RobertaProcessing names the family; ours and HF agree.
    Saving writes RobertaTokenizer's settings, and both read the folder back with the same ids."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tokenizer_folders["tokenizer_json"] / "tokenizer.json", alone / "tokenizer.json")
    ours = Tokenizer.from_pretrained(alone)
    hf = transformers.AutoTokenizer.from_pretrained(str(alone))
    texts = list(TRICKY_TEXTS.values())
    assert ours.family == ROBERTA_BPE and [ours.encode(t) for t in texts] == [hf.encode(t) for t in texts]
    for case in ("files_model_type", "files_saved_settings", "hf_saved"):
        ours = Tokenizer.from_pretrained(tokenizer_folders[case])
        expected = [ours.encode(t) for t in texts]
        saved = tmp_path / f"saved_{case}"
        ours.save_pretrained(saved)
        settings = json.loads((saved / "tokenizer_config.json").read_text())
        assert settings["tokenizer_class"] == "RobertaTokenizer"
        assert settings["add_prefix_space"] is False and settings["trim_offsets"] is True
        assert settings["model_input_names"] == ["input_ids", "attention_mask"]
        reloaded = Tokenizer.from_pretrained(saved)
        hf_reloaded = transformers.AutoTokenizer.from_pretrained(str(saved))
        assert type(hf_reloaded).__name__ == "RobertaTokenizer"
        assert [reloaded.encode(t) for t in texts] == expected == [hf_reloaded.encode(t) for t in texts], case
        assert reloaded.special_tokens == ours.special_tokens and reloaded.family == ROBERTA_BPE


def test_settings_trim_offsets_and_prefix_space_override_tokenizer_json(tokenizer_folders, tmp_path):
    """HF's RobertaTokenizer rebuilds the pre- and post-processor from tokenizer_config.json (defaults
    add_prefix_space False, trim_offsets True) over what tokenizer.json says; ours too."""
    pipeline = json.loads((tokenizer_folders["hf_saved"] / "tokenizer.json").read_text(encoding="utf-8"))
    pipeline["pre_tokenizer"]["add_prefix_space"] = True
    pipeline["post_processor"]["add_prefix_space"] = True
    for name, settings in [("defaults", {"tokenizer_class": "RobertaTokenizer"}),
                           ("untrimmed", {"tokenizer_class": "RobertaTokenizer", "trim_offsets": False}),
                           ("prefixed", {"tokenizer_class": "RobertaTokenizer", "add_prefix_space": True})]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "tokenizer.json").write_text(json.dumps(pipeline), encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
        ours, hf = Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(str(folder))
        assert ours.add_prefix_space is settings.get("add_prefix_space", False), name
        for pair in [(" Hello world", "again  here"), ("Hello", None)]:
            assert_same(ours(*pair), hf(*pair, return_offsets_mapping=True), hf)


def test_special_token_missing_from_the_vocabulary_gets_the_next_id(vocab_dir, tmp_path):
    folder = make_folder(tmp_path, vocab_dir, "no_mask", tokenizer_config={"tokenizer_class": "RobertaTokenizer"})
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab["<other>"] = vocab.pop("<mask>")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    ours, hf = Tokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(str(folder))
    assert ours.mask_token_id == hf.mask_token_id == len(vocab) and len(ours) == len(hf)
    assert ours.encode("a <mask> b") == hf.encode("a <mask> b")


def test_vocabulary_files_of_the_wrong_family_are_not_roberta(vocab_dir, tmp_path):
    """vocab.json + merges.txt with nothing saying RoBERTa: GPT-2's byte-level BPE (no <s> </s> added)."""
    folder = make_folder(tmp_path, vocab_dir, "bare")
    assert Tokenizer.from_pretrained(folder).family == BYTE_LEVEL_BPE
    (folder / "merges.txt").unlink()
    (folder / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(FileNotFoundError, match=r"model_type 'roberta'.*RoBERTa.*missing: merges\.txt"):
        Tokenizer.from_pretrained(folder)


# Model and tokenizer together --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mlm_with_tokenizer(tokenizer_folders, tmp_path_factory):
    """A random RoBERTa MLM over the trained vocabulary, in the hub's roberta-base layout."""
    folder = tmp_path_factory.mktemp("roberta_mlm")
    shutil.copy(tokenizer_folders["tokenizer_json"] / "tokenizer.json", folder / "tokenizer.json")
    vocab_size = len(transformers.AutoTokenizer.from_pretrained(str(tokenizer_folders["tokenizer_json"])))
    hf_model = save_tiny_hf(folder, "roberta", "masked_lm", vocab_size=vocab_size)
    return folder, hf_model


def test_text_in_the_model_matches_hugging_face(tiny_mlm_with_tokenizer):
    folder, hf_model = tiny_mlm_with_tokenizer
    mlm = RobertaForMaskedLM.from_pretrained(folder)
    assert mlm.tokenizer is not None and mlm.tokenizer.family == ROBERTA_BPE
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    texts = ["The capital of France is <mask>.", "Hi.", " Café naïve 日本語 🤗 <mask>"]
    encoding = mlm.tokenize(texts)
    theirs = hf_tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(encoding["input_ids"], theirs["input_ids"])
    out, cache = mlm.run_with_cache(texts, output_hidden_states=True)
    with torch.no_grad():
        expected = hf_model(**theirs, output_hidden_states=True)
    max_diff([out.logits], [expected.logits], "logits from text")
    max_diff(out.hidden_states, expected.hidden_states, "hidden_states from text")
    for text, tokens in zip(texts[:2], cache.tokens[:2]):  # readable: byte-level tokens decoded one by one
        end = tokens.index("</s>")
        assert tokens[0] == "<s>" and set(tokens[end + 1 :]) <= {"<pad>"}
        assert "".join(tokens[1:end]) == text.replace(" <mask>", "<mask>")  # the mask took its space
    table = mlm.fill_mask("The capital of France is <mask>.", top_k=3)
    position = int(table["mask_position"].iloc[0])
    top = torch.topk(expected.logits[0, position].softmax(-1), 3)
    assert list(table["token_id"]) == top.indices.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_parity_with_hugging_face_on_the_gpu(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "roberta", "masked_lm").cuda()
    ours = RobertaForMaskedLM.from_pretrained(tmp_path, device="cuda")
    inputs = {key: value.cuda() for key, value in make_inputs("left").items()}
    with torch.no_grad():
        expected = hf_model(**inputs, output_hidden_states=True, output_attentions=True)
        got = ours(**inputs, output_hidden_states=True, output_attentions=True)
    max_diff([got.logits, *got.hidden_states, *got.attentions],
             [expected.logits, *expected.hidden_states, *expected.attentions], "on the GPU")
