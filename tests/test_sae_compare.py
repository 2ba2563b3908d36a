"""Dictionaries of different models compared on the same words (workbench.sae.compare): the correlations
against numpy on a hand pooling, a dictionary against a permuted copy of itself, words aligned across
WordPiece and byte-level BPE, training at comparable depth, and the comparison view."""

from __future__ import annotations

import numpy as np
import pytest
import sae_fixtures
import torch

import workbench as wb
from workbench import sae, viz
from workbench.sae.compare import word_features

TEXTS = [
    "Unbelievably, tokenizers disagree about words.",
    "The cat sat on the mat.",
    "A dog ran in the park today, barking loudly.",
    "She sells sea shells by the seashore.",
    "Tiny models still have hidden states.",
]
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def models():
    # WordPiece and byte-level BPE: the two tokenizers split the same words differently.
    return {
        "bert": wb.zoo.tiny("bert", task="base", device="cpu"),
        "gpt2": wb.zoo.tiny("gpt2", task="base", device="cpu"),
    }


@pytest.fixture(scope="module")
def dictionaries(models):
    return {name: random_dictionary(m.config.d_model, seed=i) for i, (name, m) in enumerate(models.items())}


@pytest.fixture(scope="module")
def comparison(models, dictionaries):
    # batch_size=2: three batches of texts, so the correlations come from sums over several updates
    return sae.compare(dictionaries, models, TEXTS, batch_size=2, data="test sentences", progress=False)


def random_dictionary(d_in: int, d_sae: int = 16, seed: int = 0, hook: str = HOOK) -> sae.SparseAutoencoder:
    return sae_fixtures.random_dictionary(d_in, d_sae, hook, seed=seed)


def word_of_each_token(offsets, text):
    """The textbook alignment: scan the words for the one holding the token's last character."""
    spans = [(start, start + len(word)) for start, word in _words_with_starts(text)]
    return [
        next((i for i, (s, e) in enumerate(spans) if s <= end - 1 < e), None) if end > start else None
        for start, end in offsets
    ]


def _words_with_starts(text):
    position = 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        yield start, word


def hand_word_features(dictionary, model, text) -> np.ndarray:
    """[n_words, d_sae]: each word's mean feature activation over its tokens, one text at a time (no padding)."""
    encoding = model.tokenize(text)
    _, cache = model.run_with_cache(encoding, names_filter=[dictionary.cfg.hook_name])
    with torch.no_grad():
        features = dictionary.encode(cache[dictionary.cfg.hook_name][0]).double().numpy()
    owners = word_of_each_token(encoding.offsets[0], text)
    words = text.split()
    return np.stack(
        [features[[t for t, w in enumerate(owners) if w == i]].mean(0) for i in range(len(words))]
    )


def test_correlations_equal_numpy_on_hand_pooled_words(models, dictionaries, comparison):
    a = np.concatenate([hand_word_features(dictionaries["bert"], models["bert"], t) for t in TEXTS])
    b = np.concatenate([hand_word_features(dictionaries["gpt2"], models["gpt2"], t) for t in TEXTS])
    assert comparison.n_words == len(a) == sum(len(t.split()) for t in TEXTS)
    alive_a, alive_b = a.std(0) > 0, b.std(0) > 0
    assert alive_a.sum() >= 4 and alive_b.sum() >= 4  # the check below compares something
    expected = np.corrcoef(a[:, alive_a].T, b[:, alive_b].T)[: alive_a.sum(), alive_a.sum() :]
    got = comparison.correlation("bert", "gpt2")
    np.testing.assert_allclose(got[np.ix_(alive_a, alive_b)], expected, atol=1e-6)
    assert np.isnan(got[~alive_a]).all() and np.isnan(got[:, ~alive_b]).all()  # dead: left out
    np.testing.assert_array_equal(comparison.correlation("gpt2", "bert"), got.T)
    np.testing.assert_array_equal(comparison.alive["bert"], alive_a)
    np.testing.assert_allclose(comparison.frequencies["gpt2"], (b > 0).mean(0))
    matches = comparison.matches("bert", "gpt2")
    assert sorted(matches["feature"]) == np.flatnonzero(alive_a).tolist()
    for row in matches.itertuples():  # the best match is the row's maximum over b's alive features
        assert row.correlation == pytest.approx(np.nanmax(got[row.feature]))
        assert row.shared == (row.correlation >= comparison.threshold)


def test_words_align_across_two_tokenizers(models):
    text = TEXTS[0]
    encodings = {name: m.tokenize(text) for name, m in models.items()}
    assert encodings["bert"].tokens(0)[1:-1] != encodings["gpt2"].tokens(0)  # they do split differently
    for name, model in models.items():
        dictionary = random_dictionary(model.config.d_model)
        pooled, has_tokens = word_features(dictionary, model, [text, TEXTS[1]])
        assert pooled.shape == (len(text.split()) + len(TEXTS[1].split()), 16) and has_tokens.all()
        np.testing.assert_allclose(
            pooled[: len(text.split())].double().numpy(),
            hand_word_features(dictionary, model, text),
            atol=1e-5,
        )
        # every word's tokens spell the word (offsets into the text), whatever the tokenizer
        owners = word_of_each_token(encodings[name].offsets[0], text)
        for index, word in enumerate(text.split()):
            pieces = [text[s:e] for (s, e), w in zip(encodings[name].offsets[0], owners) if w == index]
            assert "".join(pieces).strip() == word, (name, pieces)


def test_max_pooling_and_words_without_tokens(models):
    model = models["bert"]
    dictionary = random_dictionary(model.config.d_model)
    long_text = " ".join(["word"] * 600)  # longer than the tiny model's context: the tail is truncated
    pooled, has_tokens = word_features(dictionary, model, [TEXTS[1], long_text], pooling="max")
    assert has_tokens[: len(TEXTS[1].split())].all() and not has_tokens.all()
    assert (pooled[~has_tokens] == 0).all()
    with pytest.raises(ValueError, match="pooling"):
        word_features(dictionary, model, TEXTS[:1], pooling="median")


def test_a_dictionary_against_a_permuted_copy_of_itself(models):
    model = models["bert"]
    dictionary = random_dictionary(model.config.d_model, d_sae=12)
    with torch.no_grad():
        dictionary.b_enc[:2] = -100.0  # features 0 and 1 never fire: dead
    order = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    permuted = random_dictionary(model.config.d_model, d_sae=12)
    with torch.no_grad():  # permuted feature j is the original's feature order[j]
        permuted.W_enc.copy_(dictionary.W_enc[:, order])
        permuted.b_enc.copy_(dictionary.b_enc[order])
        permuted.W_dec.copy_(dictionary.W_dec[order])
        permuted.b_dec.copy_(dictionary.b_dec)
    comparison = sae.compare(
        {"a": dictionary, "b": permuted}, {"a": model, "b": model}, TEXTS, progress=False
    )
    matches = comparison.matches("a", "b")
    alive = int(comparison.alive["a"].sum())
    assert len(matches) == alive >= 6
    assert matches["correlation"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    inverse = torch.argsort(order).numpy()  # original feature i sits at permuted position inverse[i]
    assert matches["match"].tolist() == inverse[matches["feature"].to_numpy()].tolist()
    assert set(matches["feature"]).isdisjoint({0, 1})
    a_in_b, b_in_a = (row for _, row in comparison.summary.iterrows())
    assert a_in_b["model"] == "a (random stand-in)" and a_in_b["other"] == "b (random stand-in)"
    assert a_in_b["dead"] == 12 - alive >= 2 and a_in_b["shared_fraction"] == 1.0
    assert b_in_a["median_best_correlation"] == pytest.approx(1.0)
    assert a_in_b["n_words"] == comparison.n_words
    top = comparison.top_words["a"]
    feature = int(matches["feature"].iloc[0])
    assert (
        top[top["feature"] == feature]["word"].tolist()
        == comparison.top_words["b"].query(f"feature == {int(inverse[feature])}")["word"].tolist()
    )


def test_compare_refuses_bad_inputs(models):
    dictionary = random_dictionary(models["bert"].config.d_model)
    with pytest.raises(ValueError, match="at least two"):
        sae.compare({"bert": dictionary}, models, TEXTS)
    with pytest.raises(KeyError, match="models lacks"):
        sae.compare({"bert": dictionary, "other": dictionary}, models, TEXTS)
    with pytest.raises(ValueError, match="threshold"):
        sae.compare({"bert": dictionary, "gpt2": dictionary}, models, TEXTS, threshold=2.0)


def test_layer_at_depth_and_training_per_model(models):
    assert [sae.layer_at_depth(6, d) for d in (0.0, 0.5, 1.0)] == [0, 3, 5]
    assert [sae.layer_at_depth(12, d) for d in (0.5, 0.75)] == [6, 8]
    with pytest.raises(ValueError, match="depth"):
        sae.layer_at_depth(6, 1.5)
    dictionaries = sae.train_per_model(
        models,
        TEXTS,
        depth=1.0,
        expansion=2,
        kind="topk",
        k=4,
        steps=2,
        batch_size=8,
        buffer_size=16,
        text_batch_size=2,
        progress=False,
    )
    for name, model in models.items():
        cfg = dictionaries[name].cfg
        assert cfg.hook_name == f"blocks.{model.n_layers - 1}.hook_resid_post"
        assert cfg.d_sae == 2 * model.config.d_model and cfg.kind == "topk"


def test_the_comparison_view_picks_a_pair_and_states_its_data(comparison):
    view = viz.feature_comparison(comparison, rows=3)
    assert view.kind == "feature_comparison"
    assert [value for _, value in view.controls["pair"].options] == [("bert", "gpt2"), ("gpt2", "bert")]
    histogram, scatter = view.figures()
    n_words = sum(len(t.split()) for t in TEXTS)
    assert f"n={len(TEXTS)} texts, {n_words} words" in histogram.layout.title.text
    assert "bert (random stand-in)" in histogram.layout.title.text
    counts = sum(bar for bar in histogram.data[0].y)
    assert counts == comparison.alive["bert"].sum()  # one count per alive feature
    assert sum(len(trace.x) for trace in scatter.data) == comparison.alive["bert"].sum()
    html = view.to_html()
    assert "test sentences" in html and "least-matched" in html
    view.controls["pair"].value = ("gpt2", "bert")
    assert view.figures()[0].layout.title.text.startswith("best-match correlation of gpt2 (random stand-in)")
    with pytest.raises(ValueError, match="pair"):
        viz.feature_comparison(comparison, pair=("bert", "bert"))


def test_the_real_minilm_against_a_byte_level_bpe_model_on_treebank_words(minilm, models):
    from probes.data import load_treebank

    sentences = [" ".join(s.words) for s in load_treebank("sample", "test", max_sentences=6)]
    both = {"minilm": minilm, "gpt2": models["gpt2"]}
    depth_hooks = {
        name: f"blocks.{sae.layer_at_depth(m.n_layers, 0.5)}.hook_resid_post" for name, m in both.items()
    }
    assert depth_hooks == {"minilm": "blocks.3.hook_resid_post", "gpt2": "blocks.2.hook_resid_post"}
    dictionaries = {
        name: random_dictionary(m.config.d_model, d_sae=32, seed=i, hook=depth_hooks[name])
        for i, (name, m) in enumerate(both.items())
    }
    comparison = sae.compare(dictionaries, both, sentences, batch_size=3, progress=False)
    assert comparison.n_words == sum(len(s.split()) for s in sentences)  # every word kept in both
    assert comparison.words_without_tokens == {"minilm": 0, "gpt2": 0}
    assert comparison.labels == {"minilm": "minilm", "gpt2": "gpt2 (random stand-in)"}
    summary = comparison.summary
    assert list(summary["n_features"]) == [32, 32] and (summary["alive"] + summary["dead"] == 32).all()
    assert summary["median_best_correlation"].between(-1, 1).all()
