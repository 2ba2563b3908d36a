"""Provenance (issue 15): stored work knows what made it and is reused only when everything that changes the
numbers is equal — model fingerprints, data fingerprints, the activation store, benchmark and probing results."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench import provenance as P


@pytest.fixture
def tiny_bert():
    return wb.zoo.tiny("bert", task="base", device="cpu", seed=0)


# model_fingerprint -------------------------------------------------------------------------------------
def test_fingerprint_is_stable_and_cached(tiny_bert):
    first = P.model_fingerprint(tiny_bert)
    assert first == P.model_fingerprint(tiny_bert)
    assert first["class"] == "BertModel" and first["dtype"] == "float32" and first["hooks"] == []
    assert first["n_values"] == sum(p.numel() for p in tiny_bert.parameters()) + sum(
        b.numel() for b in tiny_bert.buffers()
    )
    # The cached per-tensor hashes are used: hashing is not called again for unchanged tensors.
    calls = []
    original = P._tensor_digest
    try:
        P._tensor_digest = lambda t: calls.append(1) or original(t)
        P.model_fingerprint(tiny_bert)
        assert calls == []
        with torch.no_grad():
            tiny_bert.embed.weight[0, 0] += 1  # in place: bumps _version
        P.model_fingerprint(tiny_bert)
        assert len(calls) == 1  # only the edited tensor is hashed again
    finally:
        P._tensor_digest = original


def test_same_config_other_weights_differ():
    a = wb.zoo.tiny("bert", task="base", device="cpu", seed=0)
    b = wb.zoo.tiny("bert", task="base", device="cpu", seed=1)
    fa, fb = P.model_fingerprint(a), P.model_fingerprint(b)
    assert fa["config"] == fb["config"] and fa["weights"] != fb["weights"]
    assert P.model_fingerprint(wb.zoo.tiny("bert", task="base", device="cpu", seed=0)) == fa


def test_in_place_retrain_changes_the_fingerprint(tiny_bert):
    before = P.model_fingerprint(tiny_bert)
    optimizer = torch.optim.SGD(tiny_bert.parameters(), lr=0.1)
    ids = torch.tensor([[101, 2000, 102]])
    tiny_bert.train()
    tiny_bert(input_ids=ids).last_hidden_state.sum().backward()
    optimizer.step()
    tiny_bert.eval()
    after = P.model_fingerprint(tiny_bert)
    assert after["weights"] != before["weights"]
    assert "weights" in P.describe_differences(before, after)


def test_buffers_dtype_training_and_data_writes(tiny_bert):
    transfo_xl = wb.zoo.tiny("transfo-xl", task="base", device="cpu")
    before_buffer = P.model_fingerprint(transfo_xl)
    with torch.no_grad():
        transfo_xl.rel_pos_embed.inv_freq.mul_(2)  # a buffer, not a parameter
    assert P.model_fingerprint(transfo_xl)["weights"] != before_buffer["weights"]
    before = P.model_fingerprint(tiny_bert)
    half = P.model_fingerprint(tiny_bert.to(torch.float16))
    assert half["dtype"] == "float16" and half["weights"] != before["weights"]
    tiny_bert.float().train()
    assert P.model_fingerprint(tiny_bert)["training"] is True
    tiny_bert.eval()
    # A write through .data is invisible to the version counter: refresh=True sees it.
    stale = P.model_fingerprint(tiny_bert)
    next(tiny_bert.parameters()).data.mul_(2)
    assert P.model_fingerprint(tiny_bert, refresh=True)["weights"] != stale["weights"]


def _double(x, hook):
    return x * 2


def test_editing_hooks_are_listed_read_only_hooks_are_not(tiny_bert):
    assert P.model_fingerprint(tiny_bert)["hooks"] == []
    with tiny_bert.hooks([("blocks.0.hook_resid_post", _double)]):
        hooks = P.model_fingerprint(tiny_bert)["hooks"]
    assert hooks == [f"blocks.0.hook_resid_post: {__name__}._double"]
    with tiny_bert.hooks([("blocks.1.hook_resid_post", functools.partial(_double))], read_only=True):
        assert P.model_fingerprint(tiny_bert)["hooks"] == []
    handle = tiny_bert.blocks[0].register_forward_hook(lambda module, args, out: out)
    try:
        (hook,) = P.model_fingerprint(tiny_bert)["hooks"]
        assert hook.startswith("blocks.0 (forward hook): ") and "<lambda>" in hook
    finally:
        handle.remove()
    assert P.model_fingerprint(tiny_bert)["hooks"] == []


# data_fingerprint and differences -----------------------------------------------------------------------
def test_data_fingerprint_of_files_and_values(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("a\tb\n")
    first = P.data_fingerprint(path)
    assert first["kind"] == "file" and first["size"] == 4 and first["path"] == str(path.resolve())
    path.write_text("a\tc\n")  # same size, other content
    assert P.data_fingerprint(path)["blake2b"] != first["blake2b"]
    folder = P.data_fingerprint(tmp_path)
    assert folder["kind"] == "folder" and folder["files"] == 1
    words = [["The", "cat"], ["sat"]]
    assert P.data_fingerprint(words) == P.data_fingerprint([("The", "cat"), ("sat",)])
    assert P.data_fingerprint(words) != P.data_fingerprint([["The", "cat"], ["sat", "."]])
    assert P.data_fingerprint(words)["n"] == 2


def test_data_fingerprint_of_dataclass_examples():
    from workbench.bench.data import TextExample

    a = [TextExample(text="good", text_pair=None, label=1)]
    b = [TextExample(text="good", text_pair=None, label=0)]
    assert P.data_fingerprint(a) != P.data_fingerprint(b)
    with pytest.raises(TypeError, match="cannot fingerprint"):
        P.data_fingerprint([object()])


def test_differences_name_nested_keys_and_treat_tuples_as_lists():
    stored = {"model": {"weights": "aa", "hooks": []}, "layers": [0, 1], "seed": 0}
    wanted = {"model": {"weights": "bb", "hooks": []}, "layers": (0, 1), "seed": 0, "folds": 5}
    lines = P.differences(stored, wanted)
    assert lines == [
        "folds: stored (not recorded), requested 5",
        "model.weights: stored 'aa', requested 'bb'",
    ]
    assert P.differences(stored, wanted, keys=["layers", "seed"]) == []
    assert P.record_id(stored) == P.record_id(json.loads(json.dumps(stored)))
    assert P.record_id(stored) != P.record_id(wanted)


# The activation store ------------------------------------------------------------------------------------
from corruption import draw_corruption  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from probes.store import ActivationStore, StoreError, extract, hook_name, word_tokenizer  # noqa: E402
from workbench.zoo import TinySize  # noqa: E402

SMALL = TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=400)
WORDS = [
    ["The", "keys", "to", "the", "cabinet", "are", "on", "the", "table", "."],
    ["Unbelievably", ",", "Paris", "isn't", "France's", "capital", "!"],
    ["Hello"],
    ["The", "cat", "sat", "on", "the", "mat", "."],
]
ARCHITECTURES = ["bert", "distilbert", "roberta", "xlm", "openai-gpt", "gpt2", "transfo-xl", "xlnet"]


def small(arch="bert", seed=0):
    return wb.zoo.tiny(arch, task="base", device="cpu", size=SMALL, seed=seed)


def test_store_refuses_a_model_of_the_same_config_with_other_weights(tmp_path):
    extract(small(seed=0), WORDS, tmp_path / "done", layers=[1], progress=False)
    with pytest.raises(StoreError, match=r"model fingerprint .*weights: stored") as err:
        extract(small(seed=1), WORDS, tmp_path / "done", layers=[1], progress=False)
    assert "config hash" not in str(err.value) and "overwrite=True" in str(err.value)
    # A partial store is not resumed with the other weights either (it would mix activations).
    options = dict(layers=[1], batch_size=2, chunk_rows=8, progress=False)
    assert not extract(small(seed=0), WORDS, tmp_path / "part", max_chunks=1, **options).complete
    with pytest.raises(StoreError, match="weights"):
        extract(small(seed=1), WORDS, tmp_path / "part", **options)
    # overwrite=True starts over with the new model.
    store = extract(small(seed=1), WORDS, tmp_path / "done", layers=[1], overwrite=True, progress=False)
    assert store.complete and store.manifest["model_fingerprint"] == P.model_fingerprint(small(seed=1))


def test_store_refuses_other_dtype_hooks_retraining_and_batch_size(tmp_path):
    model = small()
    extract(model, WORDS, tmp_path, layers=[1], progress=False)
    with model.hooks([("blocks.0.hook_resid_post", _double)]):
        with pytest.raises(StoreError, match="_double"):
            extract(model, WORDS, tmp_path, layers=[1], progress=False)
    with pytest.raises(StoreError, match="dtype"):
        extract(small().to(torch.bfloat16), WORDS, tmp_path, layers=[1], progress=False)
    with torch.no_grad():
        next(model.blocks[0].parameters()).mul_(1.5)  # retrained in place
    with pytest.raises(StoreError, match="weights"):
        extract(model, WORDS, tmp_path, layers=[1], progress=False)
    with pytest.raises(StoreError, match="batch_size: stored 32, requested 2"):
        extract(small(), WORDS, tmp_path, layers=[1], batch_size=2, progress=False)
    assert extract(small(), WORDS, tmp_path, layers=[1], progress=False).complete  # the same: reused


def test_truncated_layer_file_is_an_error_never_zero_filled(tmp_path):
    """The memmap format (still read and written); the zarr store's chunks: tests/test_scale_store.py."""
    model = small()
    extract(
        model, WORDS, tmp_path, layers=[0, 2], batch_size=2, max_batches=1, progress=False, format="memmap"
    )
    layer = tmp_path / "layer_2.f16"
    size = layer.stat().st_size
    with layer.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(StoreError, match=r"layer_2\.f16 is damaged: .*truncated") as err:
        extract(model, WORDS, tmp_path, layers=[0, 2], batch_size=2, progress=False, format="memmap")
    assert "overwrite=True" in str(err.value)
    assert layer.stat().st_size == size // 2  # not extended
    with pytest.raises(StoreError, match="layer_2"):
        ActivationStore(tmp_path)
    # A complete store truncated afterwards is refused when opened or reused.
    done = extract(model, WORDS, tmp_path / "done", layers=[1], progress=False, format="memmap")
    assert done.complete
    subwords = tmp_path / "done" / "n_subwords.u16"
    subwords.write_bytes(subwords.read_bytes()[:-2])
    for call in (
        lambda: ActivationStore(tmp_path / "done"),
        lambda: extract(model, WORDS, tmp_path / "done", layers=[1], progress=False, format="memmap"),
    ):
        with pytest.raises(StoreError, match=r"n_subwords\.u16 is damaged"):
            call()
    extended = tmp_path / "done" / "layer_1.f16"
    extended.write_bytes(extended.read_bytes() + b"\0\0")
    with pytest.raises(StoreError, match=r"layer_1\.f16 is damaged: .*too long"):
        ActivationStore(tmp_path / "done")
    extended.write_bytes(extended.read_bytes()[:-2])
    subwords.unlink()
    with pytest.raises(StoreError, match=r"n_subwords\.u16 is damaged: the file is missing"):
        ActivationStore(tmp_path / "done")


def test_damaged_manifest_and_offsets_are_errors_naming_the_file(tmp_path):
    extract(small(), WORDS, tmp_path, layers=[1], progress=False, format="memmap")
    manifest = tmp_path / "manifest.json"
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(StoreError, match=r"manifest\.json is damaged: not valid JSON") as err:
        ActivationStore(tmp_path)
    assert "overwrite=True" in str(err.value)
    manifest.write_text(good.replace('"progress": 4', '"progress": 2'))
    with pytest.raises(StoreError, match="checksum does not match"):
        ActivationStore(tmp_path)
    manifest.write_text(good)
    offsets = tmp_path / "sentence_offsets.npy"
    array = np.load(offsets)
    array[2] += 1
    np.save(offsets, array)
    with pytest.raises(StoreError, match=r"sentence_offsets\.npy is damaged: its content"):
        ActivationStore(tmp_path)
    offsets.write_bytes(b"not a numpy file")
    with pytest.raises(StoreError, match=r"sentence_offsets\.npy is damaged: not a readable"):
        ActivationStore(tmp_path)
    # The fix the message names works.
    assert extract(
        small(), WORDS, tmp_path, layers=[1], overwrite=True, progress=False, format="memmap"
    ).complete


def test_old_format_store_is_refused_with_the_fix(tmp_path):
    extract(small(), WORDS, tmp_path, layers=[1], progress=False, format="memmap")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for key in ("checksum", "model_fingerprint", "offsets_sha256"):
        manifest.pop(key)
    manifest["format_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="format version 1.*overwrite=True"):
        extract(small(), WORDS, tmp_path, layers=[1], progress=False, format="memmap")


def _reference(model, tokenizer, words, layer):
    """One sentence alone (no padding), mean-pooled by hand with word_ids."""
    encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    _, cache = model.run_with_cache(dict(encoding), names_filter=[hook_name(layer)])
    acts = cache[hook_name(layer)][0]
    ids = encoding.word_ids(0)
    return torch.stack([acts[[p for p, w in enumerate(ids) if w == i]].mean(0) for i in range(len(words))])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_store_works_on_the_stand_in_of_every_architecture(arch, tmp_path):
    model = small(arch)
    before = model.tokenizer.backend.to_str()
    store = extract(model, WORDS, tmp_path, layers="all", batch_size=4, progress=False)  # padded batches
    assert store.complete and store.manifest["stand_in"] is True
    assert model.tokenizer.backend.to_str() == before  # the model's own tokenizer is untouched
    tokenizer = word_tokenizer(model)
    for layer in (0, model.n_layers):
        for index, words in enumerate(WORDS):
            expected = _reference(model, tokenizer, words, layer)
            got = torch.from_numpy(np.asarray(store.sentence(index, layer), dtype=np.float32))
            torch.testing.assert_close(got, expected, atol=3e-3, rtol=3e-3)


@pytest.mark.parametrize("arch", ["gpt2", "roberta"])
def test_word_tokenizer_equals_a_reload_with_add_prefix_space(arch, tmp_path):
    from workbench.tokenizers import Tokenizer

    model = small(arch)
    model.tokenizer.save_pretrained(tmp_path)
    reloaded = Tokenizer.from_pretrained(tmp_path, add_prefix_space=True)
    assert Tokenizer.from_pretrained(tmp_path).add_prefix_space is False
    copied = word_tokenizer(model)
    assert copied is not model.tokenizer and copied.add_prefix_space is True
    assert model.tokenizer.add_prefix_space is False
    a = copied(WORDS, is_split_into_words=True, padding=True)
    b = reloaded(WORDS, is_split_into_words=True, padding=True)
    assert a["input_ids"] == b["input_ids"]
    assert [a.word_ids(i) for i in range(len(WORDS))] == [b.word_ids(i) for i in range(len(WORDS))]


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    extract(small(), WORDS, folder, layers=[0, 1], progress=False, format="memmap")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_store_reader_property_corruptions_give_store_errors(store_bytes, data):
    import tempfile

    from probes.store import MANIFEST, OFFSETS

    name = data.draw(st.sampled_from(sorted(store_bytes)), label="file")
    original = store_bytes[name]
    how, corrupted = draw_corruption(data, original)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for other, content in store_bytes.items():
            (folder / other).write_bytes(corrupted if other == name else content)
        try:
            store = ActivationStore(folder)
        except StoreError as err:
            assert name in str(err)
            return
        # Loaded: only after a change that means the same (whitespace in or after the JSON, in the .npy
        # header) or a flip inside the float data, which has no checksum; manifest and offsets are the originals.
        assert how == "flip" or name == MANIFEST
        assert store.manifest == json.loads(store_bytes[MANIFEST])
        np.testing.assert_array_equal(store.offsets, np.load(io.BytesIO(store_bytes[OFFSETS])))


# Benchmark results ---------------------------------------------------------------------------------------
import logging  # noqa: E402
import shutil  # noqa: E402

from workbench.bench import runner  # noqa: E402
from workbench.bench.data import SAMPLE_DATA, DataFormatError  # noqa: E402


@pytest.fixture
def bench_model(tmp_path):
    """A saved tiny random BERT (a stand-in: labelled so in its config) in its own folder."""
    folder = tmp_path / "model"
    small("bert", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, root)
    return root


def _probe(model, out, data, **kwargs):
    options = dict(tasks=["sst2"], mode="probe", data=data, folds=2, out=out, progress=False)
    options.update(kwargs)
    return wb.bench.run(models=[str(model)], **options)


def _counting(monkeypatch):
    calls = []
    original = runner.evaluate_one

    def counting(model_name, model, spec, *args):
        calls.append(spec.name)
        return original(model_name, model, spec, *args)

    monkeypatch.setattr(runner, "evaluate_one", counting)
    return calls


def test_bench_rerun_with_other_arguments_computes_anew(bench_model, data_root, tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    first = _probe(bench_model, tmp_path / "out", data_root)
    assert calls == ["sst2"]
    again = _probe(bench_model, tmp_path / "out", data_root)
    assert calls == ["sst2"]  # the same provenance: read back
    pd.testing.assert_frame_equal(again.frame, first.frame, check_dtype=False)
    for change in (
        dict(max_examples=6),
        dict(folds=3),
        dict(pooling="first"),
        dict(seed=1),
        dict(batch_size=4),
    ):
        before = len(calls)
        result = _probe(bench_model, tmp_path / "out", data_root, **change)
        assert len(calls) == before + 1, change  # not the old numbers
        (key,) = set(result.frame["provenance_id"])
        assert key not in set(first.frame["provenance_id"])
        assert {k: result.provenance[key][k] for k in change} == change
    # Every result is a new entry beside the old ones, each with its record.
    stored = sorted((tmp_path / "out" / "results").glob("*.csv"))
    assert len(stored) == 6 and all(path.with_suffix(".json").is_file() for path in stored)
    assert json.loads((tmp_path / "out" / "provenance.json").read_text()).keys() == result.provenance.keys()


def test_bench_rerun_with_other_data_or_weights_computes_anew(
    bench_model, data_root, tmp_path, monkeypatch, caplog
):
    calls = _counting(monkeypatch)
    first = _probe(bench_model, tmp_path / "out", data_root)
    dev = data_root / "glue" / "SST-2" / "dev.tsv"
    lines = dev.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("\t1", "\t0")  # same size, other label
    dev.write_text("".join(lines))
    with caplog.at_level(logging.INFO, logger="workbench.bench.runner"):
        _probe(bench_model, tmp_path / "out", data_root)
    assert calls == ["sst2", "sst2"]
    assert "data.dev.blake2b: stored" in caplog.text  # why the stored result was not reused
    # The same name, other weights (retrained in place and saved over the folder).
    small("bert", seed=5).save_pretrained(bench_model)
    third = _probe(bench_model, tmp_path / "out", data_root)
    assert calls == ["sst2"] * 3
    fingerprints = {
        r["model_fingerprint"]["weights"] for r in (*first.provenance.values(), *third.provenance.values())
    }
    assert len(fingerprints) == 2
    # Moved data with the same content is the same data.
    shutil.copytree(data_root, tmp_path / "moved")
    _probe(bench_model, tmp_path / "out", tmp_path / "moved")
    assert calls == ["sst2"] * 3


def test_bench_results_carry_stand_in_data_note_and_head_initialized(bench_model, tmp_path, minilm_path):
    frame = _probe(bench_model, None, "sample", tasks=["sst2", "copa"]).frame
    assert list(frame.columns) == runner.COLUMNS
    assert frame["stand_in"].all() and not frame["head_initialized"].any()
    assert frame["data_note"].str.contains("sample").all()  # the committed samples are no official split
    with pytest.warns(UserWarning, match="no trained LM head"):
        zeroshot = wb.bench.run(
            models=[str(minilm_path)], tasks=["copa"], mode="zeroshot", max_examples=2, progress=False
        ).frame
    assert zeroshot["head_initialized"].all() and not zeroshot["stand_in"].any()
    figure = runner.BenchResults(frame).figures()[0]
    assert all("(random stand-in)" in trace.name for trace in figure.data)
    assert "Random stand-ins" in runner.BenchResults(frame).to_html()


def test_finetune_malformed_train_file_is_an_error_missing_one_a_warning(bench_model, data_root, caplog):
    config = wb.bench.FinetuneConfig(epochs=1, batch_size=4, learning_rate=1e-3)
    options = dict(tasks=["rte"], mode="finetune", data=data_root, finetune_config=config, progress=False)
    with caplog.at_level(logging.WARNING, logger="workbench.bench.runner"):
        frame = wb.bench.run(models=[str(bench_model)], **options).frame
    assert "rte: no train file: fine-tuned on 6 dev examples (80%" in caplog.text
    assert frame["data_note"].str.contains("no train file: fine-tuned on 6 dev examples").all()
    assert list(frame["n"]) == [2]
    train = data_root / "glue" / "RTE" / "train.tsv"
    train.write_text("index\tsentence1\tsentence2\tlabel\n0\tonly\ttwo fields\n")
    with pytest.raises(DataFormatError, match=str(train)):
        wb.bench.run(models=[str(bench_model)], **options)


def test_damaged_result_file_is_an_error_naming_it(bench_model, tmp_path):
    _probe(bench_model, tmp_path, "sample")
    (csv,) = (tmp_path / "results").glob("*.csv")
    good = csv.read_text()
    csv.write_text(good[: len(good) // 3])
    with pytest.raises(runner.ResultFileError, match=csv.name) as err:
        _probe(bench_model, tmp_path, "sample")
    assert "Delete" in str(err.value)
    csv.write_text(good)
    record = csv.with_suffix(".json")
    record.write_text(record.read_text().replace('"folds": 2', '"folds": 7'))
    with pytest.raises(runner.ResultFileError, match="folds: stored 7, requested 2"):
        _probe(bench_model, tmp_path, "sample")
    record.unlink()
    with pytest.raises(runner.ResultFileError, match="is missing"):
        _probe(bench_model, tmp_path, "sample")


# Probing results -----------------------------------------------------------------------------------------
import probes  # noqa: E402


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_probing_works_on_the_stand_in_of_every_architecture(arch, tmp_path):
    model = small(arch)
    results = probes.run(
        model, ["upos"], data="sample", max_sentences=12, store_dir=tmp_path, progress=False, control=False
    )
    frame = results.frame
    assert frame["stand_in"].all() and len(frame) > 0
    assert sorted(frame["layer"].unique()) == list(range(model.n_layers + 1))
    (key,) = set(frame["provenance_id"])
    record = results.provenance[key]
    assert record["model_fingerprint"] == P.model_fingerprint(model) and record["stand_in"] is True
    assert set(record["data_fingerprint"]) == {"train", "dev", "test"}
    assert "(random stand-in)" in results.figure().data[0].name


def test_probing_records_provenance_and_keeps_other_weights_apart(tmp_path):
    options = dict(data="sample", max_sentences=12, store_dir=tmp_path, progress=False, control=False)
    first = probes.run(small("bert", seed=0), ["upos"], **options)
    second = probes.run(small("bert", seed=1), ["upos"], **options)  # the same name and config
    assert set(first.frame["provenance_id"]).isdisjoint(second.frame["provenance_id"])
    assert not np.allclose(first.frame["value"], second.frame["value"])
    stores = list(tmp_path.rglob("chunks_done"))  # an array of every zarr store
    assert len(stores) == 6  # a store per model and split, none reused wrongly
    again = probes.run(small("bert", seed=0), ["upos"], pooling="first", **options)
    (key,) = set(again.frame["provenance_id"])
    assert again.provenance[key]["pooling"] == "first" and key not in first.provenance
    first.save(tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "provenance.json").read_text())
    assert saved == json.loads(json.dumps(first.provenance))
    assert {"stand_in", "provenance_id"} <= set(pd.read_csv(tmp_path / "report" / "results.csv").columns)
