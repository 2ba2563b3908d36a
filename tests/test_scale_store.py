"""The zarr activation store at scale (issue 19): `probes extract` under torchrun (2 CPU processes, gloo)
equals a one-process run byte for byte; a rank killed mid-extraction leaves a store that one process
resumes to the same bytes; memory:// and file:// URLs work like a folder; memmap stores of the previous
format are read and converted; damaged chunks are errors naming the chunk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from corruption import draw_corruption
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from launch import torchrun

import workbench as wb
from probes.data import load_treebank
from probes.store import ActivationStore, StoreError, convert, extract
from workbench.zoo import TinySize

SMALL = TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=400)
N_SENTENCES, CHUNK_ROWS = 24, 32  # the sample's first 24 train sentences: 12 chunks of 32 words
OPTIONS = dict(layers="all", batch_size=4, chunk_rows=CHUNK_ROWS, progress=False)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_bert")
    wb.zoo.tiny("bert", task="base", device="cpu", size=SMALL, seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_folder):
    return wb.AutoModel.from_pretrained(model_folder, device="cpu")


@pytest.fixture(scope="module")
def words() -> list[list[str]]:
    return [s.words for s in load_treebank("sample", "train", max_sentences=N_SENTENCES)]


@pytest.fixture(scope="module")
def reference(model, words, tmp_path_factory) -> Path:
    """The store a single process writes."""
    folder = tmp_path_factory.mktemp("reference")
    store = extract(model, words, folder, **OPTIONS)
    assert store.complete and store.manifest["n_chunks"] > 4
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_args(model_folder: Path, store: Path) -> list[str]:
    return [
        "--model", str(model_folder), "--data", "sample", "--max-sentences", str(N_SENTENCES), "--store",
        str(store), "--batch-size", "4", "--chunk-rows", str(CHUNK_ROWS), "--no-progress",
    ]  # fmt: skip


def test_two_ranks_under_torchrun_equal_one_process(model_folder, reference, tmp_path):
    done = torchrun(["-m", "probes", "extract", *cli_args(model_folder, tmp_path / "two")], 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(complete)" in done.stdout and done.stdout.count("words x 32") == 1  # rank 0 reports
    assert files_of(tmp_path / "two") == files_of(reference)  # every chunk, the manifest, the done records


KILLER = """
import os, sys
import probes.store as store
from probes.cli import main

written = []
original = store._write_chunk

def write_then_die(*args, **kwargs):
    if os.environ["RANK"] == "1" and len(written) == int(os.environ["DIE_AFTER"]):
        os._exit(3)  # killed: no cleanup, no finalization
    original(*args, **kwargs)
    written.append(args[2])

store._write_chunk = write_then_die
sys.exit(main(["extract", *sys.argv[1:]]))
"""


def test_killed_rank_then_resume_with_one_process(model_folder, model, words, reference, tmp_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    store = tmp_path / "store"
    done = torchrun([str(script), *cli_args(model_folder, store)], 2, DIE_AFTER="2")
    assert done.returncode != 0
    partial = ActivationStore(store)
    done_chunks = int(np.asarray(json.loads((store / "chunks_done" / "zarr.json").read_text())["shape"])[0])
    recorded = sum((store / "chunks_done" / "c" / str(i)).is_file() for i in range(done_chunks))
    assert not partial.complete and 2 <= recorded < done_chunks  # rank 1 wrote 2 chunks, then died
    resumed = extract(model, words, store, **OPTIONS)  # one process finishes what is left
    assert resumed.complete
    assert files_of(store) == files_of(reference)


def test_resume_recomputes_only_the_chunks_not_done(model, words, reference, tmp_path, monkeypatch):
    import probes.store as store_module

    part = extract(model, words, tmp_path, max_chunks=5, **OPTIONS)
    assert not part.complete and 0 < part.manifest["progress"] < N_SENTENCES
    computed = []
    original = store_module._compute_chunk
    monkeypatch.setattr(
        store_module,
        "_compute_chunk",
        lambda job, chunk, rows: computed.append(chunk) or original(job, chunk, rows),
    )
    assert extract(model, words, tmp_path, **OPTIONS).complete
    assert sorted(computed) == list(range(5, part.manifest["n_chunks"]))
    assert files_of(tmp_path) == files_of(reference)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_url_works_like_a_folder(scheme, model, words, reference, tmp_path):
    url = f"memory://stores/{tmp_path.name}" if scheme == "memory" else tmp_path.as_uri()
    extract(model, words, url, max_chunks=3, **OPTIONS)  # a partial store at the URL, then resumed
    store = extract(model, words, url, **OPTIONS)
    expected = ActivationStore(reference)
    assert store.complete and ActivationStore(url).manifest == expected.manifest
    np.testing.assert_array_equal(store.stack().numpy(), expected.stack().numpy())
    np.testing.assert_array_equal(store.n_subwords[:], expected.n_subwords[:])
    np.testing.assert_array_equal(store.sentence(3, 1), expected.sentence(3, 1))
    with pytest.raises(StoreError, match="pooling: stored 'mean', requested 'first'"):
        extract(model, words, url, **{**OPTIONS, "pooling": "first"})


def test_memmap_store_is_read_and_converted(model, words, tmp_path):
    old = extract(model, words, tmp_path / "old", layers="all", batch_size=4, progress=False, format="memmap")
    assert old.format == "memmap" and ActivationStore(tmp_path / "old").complete
    with pytest.raises(StoreError, match=r"previous format .*probes\.store\.convert"):
        extract(model, words, tmp_path / "old", **OPTIONS)
    new = convert(tmp_path / "old", tmp_path / "new", chunk_rows=CHUNK_ROWS, progress=False)
    assert new.format == "zarr" and new.complete
    provenance = (
        "model_fingerprint",
        "data_fingerprint",
        "tokenizer_fingerprint",
        "pooling",
        "layers",
        "batch_size",
    )
    assert all(new.manifest[key] == old.manifest[key] for key in provenance)
    assert new.manifest["converted_from"]["format_version"] == 2
    np.testing.assert_array_equal(new.stack().numpy(), old.stack().numpy())
    np.testing.assert_array_equal(new.n_subwords[:], old.n_subwords[:])
    with pytest.raises(StoreError, match="already holds a zarr store"):
        convert(tmp_path / "old", tmp_path / "new", progress=False)


def test_damaged_chunks_are_errors_naming_the_chunk(reference, model, words, tmp_path):
    import shutil

    folder = tmp_path / "store"
    shutil.copytree(reference, folder)
    chunk = folder / "layer_1" / "c" / "2" / "0"
    good = chunk.read_bytes()
    chunk.write_bytes(good[:-10])
    with pytest.raises(StoreError, match=r"layer_1/c/2/0 is damaged: .*\(truncated\)"):
        ActivationStore(folder)
    with pytest.raises(StoreError, match=r"layer_1/c/2/0 is damaged"):
        extract(model, words, folder, **OPTIONS)  # not resumed over, not zero-filled
    chunk.unlink()
    with pytest.raises(StoreError, match=r"chunk\(s\) 2 of layer_1 are missing"):
        ActivationStore(folder)
    flipped = bytearray(good)
    flipped[5] ^= 0xFF
    chunk.write_bytes(bytes(flipped))
    store = ActivationStore(folder)  # the size is right: the checksum catches it when read
    with pytest.raises(StoreError, match=r"layer_1/c/2/0 is damaged: .*checksum"):
        store.stack(layers=[1])
    chunk.write_bytes(good)
    zarr_json = folder / "zarr.json"
    zarr_json.write_text(zarr_json.read_text().replace('"pooling": "mean"', '"pooling": "last"'))
    with pytest.raises(StoreError, match="checksum does not match"):
        ActivationStore(folder)
    assert extract(model, words, folder, overwrite=True, **OPTIONS).complete  # the fix the message names
    assert files_of(folder) == files_of(reference)


def test_zarr_2_or_none_is_a_clear_error(monkeypatch):
    import sys

    import zarr

    from probes import chunked

    monkeypatch.setattr(zarr, "__version__", "2.18.3")
    with pytest.raises(ModuleNotFoundError, match=r"zarr >= 3, found zarr 2\.18\.3"):
        chunked.open_location("memory://x", read_only=True)
    monkeypatch.setitem(sys.modules, "zarr", None)  # not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'zarr>=3' fsspec"):
        chunked.require_zarr()


@pytest.fixture(scope="module")
def zarr_store_bytes(model, words, tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("small_store")
    extract(model, words[:4], folder, layers=[0, 1], chunk_rows=16, progress=False)
    return files_of(folder)


def _read_everything(folder: Path):
    store = ActivationStore(folder)
    return store.manifest, store.offsets, store.stack().numpy(), np.asarray(store.n_subwords[:])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_corrupted_object_is_a_store_error_or_reads_the_same(zarr_store_bytes, data):
    """Truncate, extend or flip a byte of any object of a zarr store: opening and reading everything either
    fails with a StoreError naming that object (or its array), or gives exactly the original values."""
    import tempfile

    name = data.draw(st.sampled_from(sorted(zarr_store_bytes)), label="object")
    original = zarr_store_bytes[name]
    how, corrupted = draw_corruption(data, original)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key, content in zarr_store_bytes.items():
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(corrupted if key == name else content)
        try:
            got = _read_everything(folder)
        except StoreError as err:
            node = name.split("/")[0] if "/" in name else name
            assert node in str(err), (name, str(err))
            return
    with tempfile.TemporaryDirectory() as tmp:
        for key, content in zarr_store_bytes.items():
            (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / key).write_bytes(content)
        expected = _read_everything(Path(tmp))
    assert got[0] == expected[0]
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_array_equal(a, b)


# Reading: the zarr reader (probes.chunked) against zarr's own decoding -----------------------------------


def zarr_decoded(folder: Path, name: str) -> np.ndarray:
    """The array as zarr itself decodes it: the oracle of the store's own chunk reader."""
    import zarr

    return zarr.open_group(str(folder), mode="r", zarr_format=3)[name][:]


def row_requests(n: int) -> list:
    rng = np.random.default_rng(0)
    mask = rng.random(n) < 0.3
    return [
        None, slice(None), slice(5, 5), slice(30, 97), slice(n - 3, None), slice(1, n, 7), slice(None, None, -5),
        np.sort(rng.choice(n, 40, replace=False)), rng.integers(0, n, 60), np.array([-1, 0, -n, 33, 33]), mask,
        np.arange(64, 96), np.array([], dtype=np.int64), [3, 2, 1],
    ]  # fmt: skip


@pytest.fixture(params=["mapped", "read"])
def chunk_files(request, monkeypatch) -> str:
    """Local chunk files mapped into memory (as chunks of 1 MiB and more are) or read into buffers."""
    from probes import chunked

    monkeypatch.setattr(chunked, "MAP_BYTES", 0 if request.param == "mapped" else 2**62)
    return request.param


@pytest.mark.parametrize("cache_bytes, threads", [(0, 1), (0, 4), (3000, 2), (2**20, 4)])
def test_reads_equal_zarrs_own_decoding(reference, cache_bytes, threads, chunk_files):
    """Every way of asking for rows (slices, steps, sorted/unsorted/repeated/negative indices, masks, empty),
    with no cache, a cache of a few chunks or of all of them, one thread or several, chunk files mapped or
    read."""
    store = ActivationStore(reference, cache_bytes=cache_bytes, read_threads=threads)
    truth = {layer: zarr_decoded(reference, f"layer_{layer}") for layer in store.layers}
    for rows in row_requests(store.n_words):
        index = slice(None) if rows is None else rows
        got = store.stack(layers=[2, 0], rows=rows).numpy()
        np.testing.assert_array_equal(got[0], truth[2][index].astype(np.float32), err_msg=str(rows))
        np.testing.assert_array_equal(got[1], truth[0][index].astype(np.float32), err_msg=str(rows))
        np.testing.assert_array_equal(store.layer(1)[index], truth[1][index], err_msg=str(rows))
        assert store._cache.nbytes <= cache_bytes
    np.testing.assert_array_equal(store.layer(1)[-1, 3:5], truth[1][-1, 3:5])
    np.testing.assert_array_equal(store.layer(1)[10:20, 2], truth[1][10:20, 2])
    np.testing.assert_array_equal(store.layer(1).astype(np.float32), truth[1].astype(np.float32))
    np.testing.assert_array_equal(store.n_subwords[:], zarr_decoded(reference, "n_subwords"))
    pieces = [store.stack(rows=np.arange(s, min(s + 50, store.n_words))) for s in range(0, store.n_words, 50)]
    np.testing.assert_array_equal(torch_cat(pieces), np.stack([truth[layer] for layer in store.layers]))
    counts = zarr_decoded(reference, "n_subwords")
    batches = list(store.batches(1, batch_size=37))
    np.testing.assert_array_equal(torch_cat(batches, dim=0), truth[1][counts > 0].astype(np.float32))
    with pytest.raises(IndexError, match="out of range"):
        store.stack(rows=[store.n_words])
    with pytest.raises(IndexError, match="boolean mask"):
        store.stack(rows=np.ones(3, dtype=bool))


def torch_cat(tensors, dim: int = 1) -> np.ndarray:
    import torch

    return torch.cat(tensors, dim=dim).numpy()


def test_a_damaged_chunk_in_a_concurrent_read_is_named(reference, tmp_path, chunk_files):
    """A flipped byte in one chunk of a many-chunk read (reader threads) fails the read, naming the chunk,
    on a folder and on a memory:// URL; reads that do not touch the chunk give the right values."""
    import fsspec

    folder = tmp_path / "store"
    files = files_of(reference)
    damaged = bytearray(files["layer_2/c/7/0"])
    damaged[40] ^= 0x10
    files["layer_2/c/7/0"] = bytes(damaged)
    memory = fsspec.filesystem("memory")
    url = f"memory://damaged/{tmp_path.name}"
    for key, content in files.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(content)
        memory.pipe_file(f"/damaged/{tmp_path.name}/{key}", content)
    for location, shown in (
        (folder, str(folder / "layer_2" / "c" / "7" / "0")),
        (url, f"{url}/layer_2/c/7/0"),
    ):
        store = ActivationStore(location, cache_bytes=0, read_threads=4)
        with pytest.raises(StoreError, match=rf"{shown} is damaged: its CRC32C checksum"):
            store.stack()
        with pytest.raises(StoreError, match=r"layer_2/c/7/0 is damaged"):
            store.layer(2)[np.array([3, 7 * CHUNK_ROWS + 1])]
        clean = store.stack(rows=slice(0, 7 * CHUNK_ROWS)).numpy()
        np.testing.assert_array_equal(
            clean, ActivationStore(reference).stack(rows=slice(0, 7 * CHUNK_ROWS)).numpy()
        )
    store = ActivationStore(folder, cache_bytes=0)
    (folder / "layer_2" / "c" / "7" / "0").unlink()  # removed after the store was opened (and checked)
    with pytest.raises(StoreError, match=r"layer_2/c/7/0 is damaged: the chunk is missing"):
        store.stack(layers=[2])


def test_rows_not_extracted_yet_are_an_error_not_zeros(model, words, reference, tmp_path):
    partial = extract(model, words, tmp_path, max_chunks=3, **OPTIONS)
    assert not partial.complete
    expected = ActivationStore(reference).stack(rows=slice(0, 3 * CHUNK_ROWS)).numpy()
    np.testing.assert_array_equal(partial.stack(rows=slice(0, 3 * CHUNK_ROWS)).numpy(), expected)
    with pytest.raises(StoreError, match=r"rows 96\.\.127 of layer_0 \(chunk 3\) are not extracted yet"):
        partial.stack(rows=slice(90, 100))


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ('"endian": "little"', '"endian": "big"', "big-endian"),
        ('"separator": "/"', '"separator": "."', "chunk keys"),
    ],
)
def test_a_chunk_layout_the_reader_does_not_decode_is_refused(reference, tmp_path, old, new, problem):
    import shutil

    folder = tmp_path / "store"
    shutil.copytree(reference, folder)
    metadata = folder / "layer_1" / "zarr.json"
    assert old in metadata.read_text()
    metadata.write_text(metadata.read_text().replace(old, new))
    with pytest.raises(StoreError, match=rf"layer_1/zarr.json is damaged: .*{problem}"):
        ActivationStore(folder).stack(layers=[1])


def test_reads_in_dataloader_workers_after_the_parent_read(reference):
    """A DataLoader worker is a forked child holding the parent's store: its reader threads are made anew
    there (the parent's are not running in the child)."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Pieces(Dataset):
        def __init__(self, store):
            self.store = store

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return self.store.stack(rows=slice(60 * i, 60 * i + 90))

    store = ActivationStore(reference, cache_bytes=0, read_threads=2)
    expected = [store.stack(rows=slice(60 * i, 60 * i + 90)) for i in range(4)]  # the parent's threads exist
    loader = DataLoader(Pieces(store), batch_size=None, num_workers=1, multiprocessing_context="fork")
    for got, want in zip(loader, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# Object storage robustness: what ranks list, torn or interrupted manifest writes ----------------------------


def test_opening_without_the_chunk_listing_lists_only_the_done_records(reference, tmp_path, monkeypatch):
    """Each rank of a job opens the store rank 0 has just checked with check_chunks=False: one listing (the
    done records) instead of one per array; a chunk damaged after all is still named when read."""
    import shutil

    from probes import chunked

    listed = []
    original = chunked.stored_chunks
    monkeypatch.setattr(
        chunked, "stored_chunks", lambda location, name: listed.append(name) or original(location, name)
    )
    ActivationStore(reference)
    assert sorted(listed) == ["chunks_done", "layer_0", "layer_1", "layer_2", "n_subwords"]
    listed.clear()
    folder = tmp_path / "store"
    shutil.copytree(reference, folder)
    chunk = folder / "layer_1" / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-10])
    store = ActivationStore(folder, check_chunks=False)
    assert listed == ["chunks_done"]
    with pytest.raises(StoreError, match=r"layer_1/c/2/0 is damaged: .*\(truncated\)"):
        store.stack(layers=[1])


@pytest.mark.parametrize("kept", [0.25, 0.5, 0.9, -2])
def test_a_torn_manifest_is_rejected(reference, model, words, tmp_path, kept):
    """zarr.json cut short (a write torn by a crash on a store without atomic writes): never read as a store,
    never resumed over."""
    import shutil

    folder = tmp_path / "store"
    shutil.copytree(reference, folder)
    zarr_json = folder / "zarr.json"
    content = zarr_json.read_bytes()
    zarr_json.write_bytes(content[: int(len(content) * kept)] if kept > 0 else content[:kept])
    with pytest.raises(StoreError, match=r"zarr\.json is damaged"):
        ActivationStore(folder)
    with pytest.raises(StoreError, match=r"zarr\.json is damaged"):
        extract(model, words, folder, **OPTIONS)


def test_an_interrupted_finalize_leaves_the_previous_manifest(model, words, reference, tmp_path, monkeypatch):
    """The manifest that says "complete" is written last and whole (zarr writes a temporary file and renames
    it): a finalize that dies while writing it leaves the previous manifest (incomplete) and no stray file,
    and the next run completes the store."""
    partial = extract(model, words, tmp_path, max_chunks=3, **OPTIONS)
    assert not partial.complete
    real_replace = Path.replace

    def crash_on_manifest(self, target):
        if Path(target) == tmp_path / "zarr.json":
            raise OSError("killed while writing zarr.json")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="killed while writing"):
        extract(model, words, tmp_path, **OPTIONS)
    monkeypatch.setattr(Path, "replace", real_replace)
    after = ActivationStore(tmp_path)
    assert not after.complete and after.manifest["progress"] == partial.manifest["progress"]
    assert bool(after._done.all())  # every chunk is written, but the manifest does not say so
    assert not list(tmp_path.glob("*.partial"))
    assert extract(model, words, tmp_path, **OPTIONS).complete
    assert files_of(tmp_path) == files_of(reference)


def test_a_temporary_file_of_an_interrupted_chunk_write_is_not_a_chunk(model, words, reference, tmp_path):
    extract(model, words, tmp_path, max_chunks=3, **OPTIONS)
    leftover = tmp_path / "layer_1" / "c" / "5" / "0.0123abcd.partial"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a chunk")  # a rank killed while zarr wrote chunk 5
    assert extract(model, words, tmp_path, **OPTIONS).complete
    leftover.unlink()
    assert files_of(tmp_path) == files_of(reference)
