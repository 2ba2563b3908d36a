"""Inputs, hooks and threads fail loudly (issue 15): bad text and bad token ids are errors naming the problem
and where it is, for every architecture; a hook's replacement must match the activation; hooks attached in
one thread never change another thread's forward."""

from __future__ import annotations

import pytest
import torch
from test_interventions import TINY_FIELDS
from tiny_gpt2 import save_tiny_gpt2

import workbench as wb

ARCHITECTURES = sorted(wb.auto.MODEL_REGISTRY)


def test_every_architecture_has_a_tiny_config():
    assert set(ARCHITECTURES) <= set(TINY_FIELDS)


def tiny_model(model_type: str, registry=wb.AutoModel, **fields):
    config = wb.AutoConfig.for_model(model_type, **{**TINY_FIELDS[model_type], **fields})
    return registry.from_config(config, seed=0)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_tiny_gpt2(folder)
    return wb.load(str(folder), device="cpu")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return wb.AutoTokenizer.from_pretrained(wb.hub.resolve_checkpoint("minilm"))


# 1. Bad text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("ab\ud800c", ValueError, r"text is not valid Unicode: a lone surrogate U\+D800 at character 2 \(after 'ab'\)"),
        (["fine", "x\udfff"], ValueError, r"text\[1\] is not valid Unicode: a lone surrogate U\+DFFF at character 1"),
        (["fine", None], TypeError, r"text\[1\] has type NoneType"),
        (["fine", 3], TypeError, r"text\[1\] has type int"),
        ([["nested", "list"]], TypeError, r"text\[0\] has type list.*is_split_into_words=True"),
        (None, TypeError, r"text must be a str or a list of str, got NoneType"),
        (b"bytes", TypeError, r"got bytes; decode bytes first"),
    ],
)
def test_tokenizer_names_bad_text_and_where_it_is(minilm_tokenizer, text, error, message):
    with pytest.raises(error, match=message):
        minilm_tokenizer(text)


def test_tokenizer_checks_pairs_and_words(minilm_tokenizer):
    with pytest.raises(ValueError, match=r"text_pair is not valid Unicode: .* at character 0"):
        minilm_tokenizer("a", "\udc80b")
    with pytest.raises(ValueError, match=r"text\[1\]\[0\] is not valid Unicode"):
        minilm_tokenizer([["a", "b"], ["\ud83d", "c"]], is_split_into_words=True)
    # Valid text of every kind still goes through: astral characters, empty strings.
    assert minilm_tokenizer(["😀 ok", ""])["input_ids"][1] == [101, 102]


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ([], ValueError, "inputs is an empty list"),
        (["ok", "bad\ud800"], ValueError, r"text\[1\] is not valid Unicode: a lone surrogate U\+D800 at character 3"),
        ([None], TypeError, r"inputs\[0\] has type NoneType"),
        ([["a"]], TypeError, r"inputs\[0\] has type list"),
    ],
)
def test_model_inputs_name_bad_text(tiny_gpt2, inputs, error, message):
    with pytest.raises(error, match=message):
        tiny_gpt2.run_with_cache(inputs)


DECODERS = [t for t in sorted(wb.auto.CAUSAL_LM_REGISTRY) if hasattr(wb.auto.CAUSAL_LM_REGISTRY[t], "generate")]


@pytest.mark.parametrize("model_type", DECODERS)
def test_empty_prompt_starts_from_bos_and_empty_batch_is_an_error(model_type, tiny_gpt2):
    model = tiny_model(model_type, wb.AutoModelForCausalLM, vocab_size=tiny_gpt2.config.vocab_size)
    model.tokenizer = tiny_gpt2.tokenizer
    bos = model.tokenizer.bos_token_id
    alone = model.generate("", max_new_tokens=3, stop_at_eos=False)
    assert alone.input_ids[0, 0].item() == bos and alone.attention_mask[0].tolist() == [1, 1, 1, 1]
    # What it generates is what the model predicts after the bos token.
    if hasattr(model, "next_token_logits"):
        first = model.next_token_logits(torch.tensor([[bos]]), torch.ones(1, 1, dtype=torch.long)).argmax(-1)
    else:
        first = model(torch.tensor([[bos]])).logits[0, -1].argmax(-1)
    assert alone.new_token_ids[0][0] == int(first)
    batch = model.generate(["The cat", ""], max_new_tokens=3, stop_at_eos=False)
    assert batch.new_token_ids[1] == alone.new_token_ids[0]  # left padding, then bos: the same continuation
    assert batch.prompts[1] == "" and batch.full_text == "The cat" + batch.text
    with pytest.raises(ValueError, match="prompt is an empty list"):
        model.generate([], max_new_tokens=2)
    with pytest.raises(ValueError, match=r"prompt\[1\] is not valid Unicode"):
        model.generate(["ok", "\ud800"], max_new_tokens=2)


def test_empty_prompt_without_bos_is_an_error(tiny_gpt2):
    model = tiny_model("gpt2", wb.AutoModelForCausalLM, vocab_size=tiny_gpt2.config.vocab_size)
    model.tokenizer = tiny_gpt2.tokenizer.__class__.from_pretrained(tiny_gpt2.tokenizer.name_or_path)
    model.tokenizer.special_tokens.pop("bos_token")
    with pytest.raises(ValueError, match=r"prompt 1 \(''\) has no tokens and the tokenizer has no bos_token"):
        model.generate(["a", ""], max_new_tokens=2)


# 2. Invalid token ids ----------------------------------------------------------------------------------


BAD_IDS = {
    "negative": (torch.tensor([[1, -1, 2]]), ValueError, r"input_ids holds the id -1 at position \[0, 1\].*0\.\.59"),
    "too large": (torch.tensor([[1, 2], [3, 60]]), ValueError, r"the id 60 at position \[1, 1\].*60 words.*0\.\.59"),
    "float": (torch.tensor([[1.0, 2.0]]), TypeError, r"input_ids must hold integer token ids.*torch\.float32"),
    "bool": (torch.tensor([[True, False]]), TypeError, r"input_ids must hold integer token ids.*torch\.bool"),
    "3-D": (torch.ones(1, 2, 3, dtype=torch.long), ValueError, r"input_ids must be \[batch, pos\], got shape \(1, 2, 3\)"),
    "no positions": (torch.zeros(2, 0, dtype=torch.long), ValueError, r"input_ids is empty \(shape \(2, 0\)\)"),
    "no sequences": (torch.zeros(0, 4, dtype=torch.long), ValueError, r"input_ids is empty \(shape \(0, 4\)\)"),
}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_bad_token_ids_are_named_for_every_architecture(model_type):
    model = tiny_model(model_type)
    for ids, error, message in BAD_IDS.values():
        with pytest.raises(error, match=message):
            model(input_ids=ids)
    # The same through run_with_cache, which also takes [pos].
    with pytest.raises(ValueError, match=r"the id 99 at position \[2\]"):
        model.run_with_cache(torch.tensor([1, 2, 99]))
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[batch, pos, d_model=16\]"):
        model(inputs_embeds=torch.zeros(1, 3, 7))
    # Valid ids at both ends of the range still run.
    model(input_ids=torch.tensor([[0, 59, 5]]))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_attention_mask_of_another_shape_is_named(model_type):
    model = tiny_model(model_type)
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 3\), but the input is 2 sequence\(s\) of 3"):
        model(input_ids=ids, attention_mask=torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 2\)"):
        model(input_ids=ids, attention_mask=torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 1, 3\)"):
        model(input_ids=ids, attention_mask=torch.ones(2, 1, 3, dtype=torch.long))
    if model_type != "transfo-xl":  # Transformer-XL's mask may also cover memory (docs/hooks.md)
        with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\).*expected \[2, 3\]"):
            model(input_ids=ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    model(input_ids=ids, attention_mask=torch.ones(2, 3, dtype=torch.long))

