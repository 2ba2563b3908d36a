"""probes.store: pooled word activations on disk (values, offsets, layers, resume, mismatches, memory)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb
from probes.store import ActivationStore, extract, hook_name
from workbench.tokenizers import Tokenizer

# Words that split into several subwords, punctuation alone and glued to a word, an apostrophe, a number.
SENTENCES = [
    ["The", "keys", "to", "the", "cabinet", "are", "on", "the", "table", "."],
    ["Unbelievably", ",", "Paris.", "isn't", "France's", "capital", "!"],
    ["Hello"],
    ["The", "cat", "sat", "on", "the", "mat", "in", "1999", ":", "antidisestablishmentarianism", "?"],
    ["Keys", "are", "on", "the", "table"],
]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from tiny_gpt2 import save_tiny_gpt2

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    save_tiny_gpt2(folder)
    model = wb.AutoModel.from_pretrained(folder)
    assert model.tokenizer.add_prefix_space is False  # the case extract must fix
    return model


def reference(model, tokenizer, words, layer, pooling):
    """One sentence alone through run_with_cache, pooled by hand with word_ids."""
    encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    name = hook_name(layer)
    _, cache = model.run_with_cache(dict(encoding), names_filter=[name])
    acts = cache[name][0]
    vectors = []
    for word in range(len(words)):
        positions = [p for p, w in enumerate(encoding.word_ids(0)) if w == word]
        assert positions, f"word {words[word]!r} got no token"
        chosen = {"first": positions[:1], "last": positions[-1:], "mean": positions}[pooling]
        vectors.append(acts[chosen].mean(0))
    return torch.stack(vectors)


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
@pytest.mark.parametrize("which", ["minilm", "gpt2"])
def test_values_equal_pooled_run_with_cache(which, pooling, minilm, tiny_gpt2, tmp_path):
    model = minilm if which == "minilm" else tiny_gpt2
    tokenizer = model.tokenizer
    if which == "gpt2":
        tokenizer = Tokenizer.from_pretrained(model.tokenizer.name_or_path, add_prefix_space=True)
    layers = [0, 1, model.n_layers]
    store = extract(
        model, SENTENCES, tmp_path / "store", pooling=pooling, layers=layers, batch_size=2, progress=False
    )
    assert store.complete and store.layers == layers
    assert store.manifest["add_prefix_space"] == (True if which == "gpt2" else None)
    multi = 0
    for index, words in enumerate(SENTENCES):
        encoding = tokenizer(words, is_split_into_words=True)
        counts = np.bincount([w for w in encoding.word_ids(0) if w is not None], minlength=len(words))
        np.testing.assert_array_equal(
            store.n_subwords[store.offsets[index] : store.offsets[index + 1]], counts
        )
        multi += int((counts > 1).sum())
        for layer in layers:
            expected = reference(model, tokenizer, words, layer, pooling)
            got = torch.from_numpy(np.asarray(store.sentence(index, layer), dtype=np.float32))
            torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)
    assert multi >= 3  # the test does cover words of several subwords
    if which == "gpt2":  # with the prefix space, " table" is one token as in running text
        assert tokenizer(["table"], is_split_into_words=True).tokens(0) == tokenizer.tokenize(" table")


def test_offsets_and_word_counts(minilm, tmp_path):
    store = extract(minilm, SENTENCES, tmp_path, layers=[2], progress=False)
    lengths = [len(s) for s in SENTENCES]
    assert store.offsets.dtype == np.int64
    np.testing.assert_array_equal(store.offsets, np.concatenate([[0], np.cumsum(lengths)]))
    assert store.n_words == sum(lengths) and store.n_sentences == len(SENTENCES)
    assert store.layer(2).shape == (sum(lengths), 384) and store.layer(2).dtype == np.float16
    assert [store.sentence(i, 2).shape[0] for i in range(len(SENTENCES))] == lengths
    assert (store.n_subwords[:] >= 1).all() and store.manifest["words_without_tokens"] == 0
    manifest = json.loads((tmp_path / "zarr.json").read_text())["attributes"]["manifest"]  # the zarr group's
    for key in (
        "model",
        "model_class",
        "config_hash",
        "data_checksum",
        "pooling",
        "hook",
        "layers",
        "shape",
        "dtype",
        "progress",
    ):
        assert key in manifest
    assert manifest["progress"] == len(SENTENCES) and manifest["shape"] == [sum(lengths), 384]
    assert manifest["model_class"] == "BertModel" and manifest["dtype"] == "float16"
    with pytest.raises(KeyError, match="stored layers"):
        store.layer(3)


def test_stack(minilm, tmp_path):
    store = extract(minilm, SENTENCES, tmp_path, layers=[1, 3, 5], progress=False)
    full = store.stack()
    assert full.dtype == torch.float32 and full.shape == (3, store.n_words, 384)
    torch.testing.assert_close(full[1], torch.from_numpy(store.layer(3).astype(np.float32)), rtol=0, atol=0)
    rows = np.array([0, 7, 12])
    part = store.stack(layers=[5, 1], rows=rows)
    assert part.shape == (2, 3, 384)
    torch.testing.assert_close(part[0], full[2, rows], rtol=0, atol=0)
    mask = np.zeros(store.n_words, dtype=bool)
    mask[rows] = True
    torch.testing.assert_close(store.stack(layers=[5], rows=mask)[0], full[2, rows], rtol=0, atol=0)


def test_layers_all_and_embedding_layer(tiny_gpt2, minilm, tmp_path):
    for model in (tiny_gpt2, minilm):
        folder = tmp_path / type(model).__name__
        store = extract(model, SENTENCES[:2], folder, layers="all", progress=False)
        assert store.layers == list(range(model.n_layers + 1))
        assert store.manifest["layer_hooks"]["0"] == "blocks.0.hook_resid_pre"
        assert (
            store.manifest["layer_hooks"][str(model.n_layers)]
            == f"blocks.{model.n_layers - 1}.hook_resid_post"
        )
        assert sorted(p.name for p in folder.glob("layer_*")) == sorted(
            f"layer_{i}" for i in range(model.n_layers + 1)
        )  # one zarr array per layer
    # Layer 0 of BERT is the LayerNorm-ed embeddings: equals ln_embed.hook_normalized.
    encoding = minilm.tokenizer(SENTENCES[0], is_split_into_words=True, return_tensors="pt")
    _, cache = minilm.run_with_cache(dict(encoding), names_filter=["ln_embed.hook_normalized"])
    word_ids = encoding.word_ids(0)
    means = torch.stack(
        [
            cache["ln_embed.hook_normalized"][0][[p for p, w in enumerate(word_ids) if w == i]].mean(0)
            for i in range(len(SENTENCES[0]))
        ]
    )
    got = torch.from_numpy(store.sentence(0, 0).astype(np.float32))
    torch.testing.assert_close(got, means, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("layers", [[7], [-1], [0, 99], [], [1.5], "some"])
def test_bad_layers_raise(minilm, tmp_path, layers):
    with pytest.raises(ValueError, match="layer"):
        extract(minilm, SENTENCES, tmp_path, layers=layers, progress=False)
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_arguments_raise(minilm, tmp_path):
    with pytest.raises(ValueError, match="pooling"):
        extract(minilm, SENTENCES, tmp_path, pooling="max", progress=False)
    with pytest.raises(ValueError, match="hook_nope"):
        extract(minilm, SENTENCES, tmp_path, hook="hook_nope", progress=False)
    with pytest.raises(TypeError, match="list of words"):
        extract(minilm, ["a plain string"], tmp_path, progress=False)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("which", ["minilm", "gpt2"])
def test_resume_after_interruption_is_byte_identical(which, minilm, tiny_gpt2, tmp_path, monkeypatch):
    model = minilm if which == "minilm" else tiny_gpt2
    sentences = SENTENCES * 3
    # The memmap format counts batches; the zarr store's chunks: tests/test_scale_store.py.
    kwargs = dict(layers=[0, 2], pooling="mean", batch_size=4, progress=False, format="memmap")
    extract(model, sentences, tmp_path / "whole", **kwargs)

    calls = {"n": 0}
    original = type(model).run_with_cache

    def crash_on_third(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args, **kw)

    monkeypatch.setattr(type(model), "run_with_cache", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract(model, sentences, tmp_path / "resumed", **kwargs)
    monkeypatch.undo()
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert manifest["progress"] == 8  # two batches of 4 flushed and counted
    assert not ActivationStore(tmp_path / "resumed").complete

    seen = []
    monkeypatch.setattr(
        type(model),
        "run_with_cache",
        lambda self, inputs, **kw: seen.append(inputs["input_ids"].shape[0]) or original(self, inputs, **kw),
    )
    store = extract(model, sentences, tmp_path / "resumed", **kwargs)
    assert sum(seen) == len(sentences) - 8  # only the rest was computed
    assert store.complete
    assert files_of(tmp_path / "resumed") == files_of(tmp_path / "whole")

    seen.clear()  # a finished store is just opened
    store = extract(model, sentences, tmp_path / "resumed", **kwargs)
    assert seen == [] and store.complete


def test_max_batches_then_resume(tiny_gpt2, tmp_path):
    kwargs = dict(layers="all", pooling="last", batch_size=2, progress=False, format="memmap")
    whole = extract(tiny_gpt2, SENTENCES, tmp_path / "whole", **kwargs)
    part = extract(tiny_gpt2, SENTENCES, tmp_path / "part", max_batches=1, **kwargs)
    assert part.manifest["progress"] == 2 and not part.complete
    part = extract(tiny_gpt2, SENTENCES, tmp_path / "part", max_batches=1, **kwargs)
    assert part.manifest["progress"] == 4
    part = extract(tiny_gpt2, SENTENCES, tmp_path / "part", **kwargs)
    assert part.complete and whole.complete
    assert files_of(tmp_path / "part") == files_of(tmp_path / "whole")


def test_mismatched_manifest_raises_naming_the_difference(minilm, tiny_gpt2, tmp_path):
    extract(minilm, SENTENCES, tmp_path, pooling="mean", layers=[1], progress=False)
    before = files_of(tmp_path)
    with pytest.raises(ValueError, match=r"pooling: stored 'mean', requested 'first'"):
        extract(minilm, SENTENCES, tmp_path, pooling="first", layers=[1], progress=False)
    other = [s + ["again"] for s in SENTENCES]
    with pytest.raises(ValueError, match="data checksum"):
        extract(minilm, other, tmp_path, pooling="mean", layers=[1], progress=False)
    changed = [list(s) for s in SENTENCES]
    changed[0][0] = "A"  # same shape, other words
    with pytest.raises(ValueError, match="data checksum") as err:
        extract(minilm, changed, tmp_path, pooling="mean", layers=[1], progress=False)
    assert "number of words" not in str(err.value)
    with pytest.raises(ValueError, match="layers: stored"):
        extract(minilm, SENTENCES, tmp_path, pooling="mean", layers=[1, 2], progress=False)
    with pytest.raises(ValueError, match="model class") as err:
        extract(tiny_gpt2, SENTENCES, tmp_path, pooling="mean", layers=[1], progress=False)
    assert "config" in str(err.value) and "model:" in str(err.value)
    with pytest.raises(ValueError, match="data checksum"):
        extract(
            minilm, SENTENCES, tmp_path, pooling="mean", layers=[1], data_id="ud-en-ewt-train", progress=False
        )
    assert files_of(tmp_path) == before  # nothing was touched


def test_data_id_replaces_checksum(tiny_gpt2, tmp_path):
    store = extract(tiny_gpt2, SENTENCES, tmp_path, layers=[1], data_id="my-data-v1", progress=False)
    assert store.manifest["data_checksum"] == "my-data-v1"


def test_truncated_words_get_zero_vectors(tiny_gpt2, tmp_path):
    long = [["the"] * 100]  # the tiny GPT-2 has 64 positions; " the" is one token
    store = extract(tiny_gpt2, long + SENTENCES[:1], tmp_path, layers=[2], progress=False)
    counts = store.n_subwords[:100]
    assert (counts[:64] == 1).all() and (counts[64:] == 0).all()
    assert store.manifest["words_without_tokens"] == 36
    assert not store.sentence(0, 2)[64:].any() and store.sentence(0, 2)[:64].all(axis=1).any()


@pytest.mark.parametrize("options", [dict(format="memmap"), dict(chunk_rows=256)], ids=["memmap", "zarr"])
def test_memory_stays_flat(tiny_gpt2, tmp_path, monkeypatch, options):
    """extract never holds more than one batch of activations (and the zarr store one chunk of rows), and its
    peak Python/numpy memory does not grow with the number of sentences beyond a few integers per sentence
    (offsets, lengths, order)."""
    import weakref

    import probes.store as store_module

    base = [["The", "cat", "sat", "on", "the", "mat", "."], ["Keys", "are", "on", "the", "table", "!"]]
    alive, most_alive = [], [0]
    original_pool, original_run = store_module._pool, type(tiny_gpt2).run_with_cache

    def pool(*args):
        out = original_pool(*args)
        alive.append(weakref.ref(out))
        return out

    def run_with_cache(self, *args, **kwargs):
        most_alive[0] = max(most_alive[0], sum(ref() is not None for ref in alive))
        out, cache = original_run(self, *args, **kwargs)
        alive.extend(weakref.ref(t) for t in cache.values())
        return out, cache

    monkeypatch.setattr(store_module, "_pool", pool)
    monkeypatch.setattr(type(tiny_gpt2), "run_with_cache", run_with_cache)
    peaks, sizes = [], []
    for n in (300, 1200):  # both above _token_lengths' chunk of 256 sentences
        sentences = (base * n)[:n]
        folder = tmp_path / str(n)
        tracemalloc.start()
        extract(tiny_gpt2, sentences, folder, layers="all", batch_size=8, progress=False, **options)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        layer_files = [
            p
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).parts[0].startswith("layer_")
        ]
        sizes.append(sum(p.stat().st_size for p in layer_files))
    n_layers = tiny_gpt2.n_layers + 1
    assert len(alive) > 100 * n_layers  # the hooks saw every batch
    assert most_alive[0] <= 2 * n_layers  # at most one batch's cache and pooled tensors alive at a time
    # Holding the activations as numpy arrays would add at least the extra store size.
    assert peaks[1] - peaks[0] < 0.25 * (sizes[1] - sizes[0]), (peaks, sizes)
