"""workbench.zoo: models by name, with a tiny random stand-in (and one visible notice) when offline."""

from __future__ import annotations

import logging

import pytest
import torch

import workbench as wb
from workbench import zoo
from workbench.hub import CheckpointNotFoundError
from workbench.tokenizers import stand_in

ARCHITECTURES = zoo.stand_in_architectures()
SMALL = zoo.TinySize(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_positions=64, bpe_vocab_size=600)
TEXT = "The keys to the cabinet are on the table."


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: hub names resolve from the (empty for these names) local cache only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_missing_checkpoint_falls_back_with_one_visible_line(caplog):
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        model = zoo.load("gpt2", device="cpu", size=SMALL)
    notices = [r.getMessage() for r in caplog.records if r.name == "workbench.zoo"]
    assert len(notices) == 1
    assert notices[0].startswith(
        "gpt2 is not available offline: using a random-initialized tiny GPT-2 (2 layers"
    )
    assert "not meaningful" in notices[0] and "\n" not in notices[0]
    assert zoo.is_stand_in(model) and model.stand_in_notice == notices[0]
    assert isinstance(model, wb.GPT2LMHeadModel)  # gpt2's released head


def test_without_fallback_the_error_is_raised():
    with pytest.raises(CheckpointNotFoundError, match="could not find 'gpt2'"):
        zoo.load("gpt2", fallback=None)


def test_unknown_architecture_says_how_to_choose_one():
    with pytest.raises(CheckpointNotFoundError, match="architecture="):
        zoo.load("someone/mystery-model-7b", size=SMALL)
    model = zoo.load("someone/mystery-model-7b", architecture="roberta", device="cpu", size=SMALL)
    assert isinstance(model, wb.RobertaForMaskedLM)


def test_a_local_folder_is_loaded_instead(tmp_path, caplog):
    from tiny_gpt2 import save_tiny_gpt2

    folder = tmp_path / "gpt2"  # named like the hub model: the folder wins over any stand-in
    folder.mkdir()
    hf_model = save_tiny_gpt2(folder)
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        model = zoo.load(folder, device="cpu")
    assert not caplog.records and not zoo.is_stand_in(model)
    ids = model.tokenize(TEXT)["input_ids"]
    with torch.no_grad():
        assert (model(ids).logits - hf_model(ids).logits).abs().max().item() <= 1e-4


def test_the_embedded_model_is_not_replaced():
    model = zoo.load("minilm", device="cpu")
    assert not zoo.is_stand_in(model) and model.n_layers == 6


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bert-base-uncased", "bert"),
        ("google-bert/bert-base-cased", "bert"),
        ("distilbert-base-uncased", "distilbert"),
        ("roberta-base", "roberta"),
        ("distilroberta-base", "roberta"),
        ("gpt2-medium", "gpt2"),
        ("distilgpt2", "gpt2"),
        ("openai-community/openai-gpt", "openai-gpt"),
        ("xlm-mlm-en-2048", "xlm"),
        ("xlm-roberta-base", None),
        ("xlnet-base-cased", "xlnet"),
        ("transfo-xl-wt103", "transfo-xl"),
        ("models/GPT2", "gpt2"),
        ("t5-small", None),
    ],
)
def test_architecture_is_read_from_the_name(name, expected):
    assert zoo.architecture_of(name) == expected


def test_an_architecture_without_a_stand_in_is_refused():
    with pytest.raises(ValueError, match="no tiny stand-in for architecture 't5'"):
        zoo.tiny("t5")
    with pytest.raises(ValueError, match="gpt2 has no masked_lm head"):
        zoo.tiny("gpt2", task="masked_lm", size=SMALL)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_runs_through_the_api(architecture):
    model = zoo.tiny(architecture, device="cpu", size=SMALL)
    assert model.n_layers == 2 and model.config.d_model == 32 and model.config.n_heads == 4
    assert model.config.d_mlp == (128 if architecture in ("openai-gpt", "xlm") else 64)
    assert zoo.is_stand_in(model) and zoo.DEFAULT_TASKS[architecture] in ("masked_lm", "causal_lm")
    out, cache = model.run_with_cache(TEXT)
    n_tokens = len(cache.tokens)
    assert out.logits.shape == (1, n_tokens, model.config.vocab_size)
    assert model.tokenizer.vocab_size <= model.config.vocab_size  # every token id has an embedding
    assert cache.stack("hook_resid_post").shape == (2, 1, n_tokens, 32)
    pattern = cache["blocks.1.attn.hook_pattern"]  # Transformer-XL's keys also cover its memory
    assert pattern.shape[:3] == (1, 4, n_tokens) and pattern.shape[3] >= n_tokens
    assert "the" in "".join(cache.tokens).lower()
    if zoo.DEFAULT_TASKS[architecture] == "causal_lm":
        assert len(model.generate(TEXT, max_new_tokens=3).steps) == 3
    else:
        mask = model.tokenizer.mask_token
        assert len(wb.fill_mask(model, f"The keys are on the {mask}.", top_k=2)) == 2


@pytest.mark.parametrize("architecture", [a for a in ARCHITECTURES if a != "openai-gpt"])  # GPT cannot pad
def test_padding_does_not_change_the_shorter_text(architecture):
    """The stand-in's config agrees with its tokenizer (pad id, RoBERTa's positions after the pad id)."""
    model = zoo.tiny(architecture, task="base", device="cpu", size=SMALL)
    short = "Hi there."
    with torch.no_grad():
        alone = model(**model.tokenize(short)).last_hidden_state[0]
        batch = model.tokenize([short, TEXT])
        padded = model(**batch).last_hidden_state[0]
    keep = batch["attention_mask"][0].bool()
    if model.tokenizer.padding_side == "left":
        padded = padded[keep]
    else:
        padded = padded[: alone.shape[0]]
    assert (alone - padded).abs().max().item() <= 1e-5


def test_stand_ins_are_reproducible_and_seeded():
    first = zoo.tiny("bert", device="cpu", size=SMALL, seed=3)
    again = zoo.tiny("bert", device="cpu", size=SMALL, seed=3)
    other = zoo.tiny("bert", device="cpu", size=SMALL, seed=4)
    name = "blocks.0.attn.W_Q" if hasattr(first.blocks[0].attn, "W_Q") else next(iter(first.state_dict()))
    state = first.state_dict()
    assert all(torch.equal(state[k], v) for k, v in again.state_dict().items())
    assert not torch.equal(state[name], other.state_dict()[name])


def test_wordpiece_is_trained_when_minilm_is_missing(monkeypatch, caplog):
    def no_minilm(name, revision=None):
        raise CheckpointNotFoundError(f"no {name}")

    monkeypatch.setattr(stand_in, "resolve_checkpoint", no_minilm)
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        model = zoo.tiny("bert", device="cpu", size=SMALL)
    assert any("MiniLM (a real BERT vocabulary) is not installed" in r.getMessage() for r in caplog.records)
    assert model.config.vocab_size <= SMALL.bpe_vocab_size
    tokens = model.to_str_tokens(TEXT)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "the" in tokens


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_checkpoint_folder_saves_a_stand_in_that_loads_by_path(architecture, tmp_path, caplog):
    # Real hub ids where we know one; an architecture added later is found by an explicit architecture=.
    known = {
        "bert": "bert-base-uncased",
        "distilbert": "distilbert-base-uncased",
        "roberta": "roberta-base",
        "gpt2": "gpt2",
        "openai-gpt": "openai-gpt",
        "xlm": "xlm-mlm-en-2048",
        "xlnet": "xlnet-base-cased",
        "transfo-xl": "transfo-xl-wt103",
        "llama": "meta-llama/Llama-3.2-1B",
        "mistral": "mistralai/Mistral-7B-v0.1",
        "qwen2": "Qwen/Qwen2.5-0.5B",
        "qwen3": "Qwen/Qwen3-0.6B",
    }
    name = known.get(architecture, f"example-org/{architecture}-model")
    chosen = None if architecture in known else architecture
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        folder = zoo.checkpoint_folder(name, cache_dir=tmp_path, size=SMALL, architecture=chosen)
    assert folder.parent == tmp_path and [r.getMessage().split(" ")[0] for r in caplog.records] == [name]
    direct = zoo.tiny(architecture, task="base", device="cpu", size=SMALL)
    loaded = wb.load(folder, device="cpu")
    assert type(loaded) is type(direct)
    ids = direct.tokenize(TEXT)
    assert loaded.tokenize(TEXT)["input_ids"].tolist() == ids["input_ids"].tolist()
    with torch.no_grad():
        assert torch.equal(loaded(**ids).last_hidden_state, direct(**ids).last_hidden_state)


def test_checkpoint_folder_of_a_present_checkpoint_is_its_own_folder(minilm_path):
    assert zoo.checkpoint_folder("minilm") == minilm_path
