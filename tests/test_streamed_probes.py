"""Probes larger than memory (issue 19): a probe trained on a StreamedRows / StreamedSentences source (read in
chunks, full-batch L-BFGS) reaches the in-memory optimum; under torchrun (2 CPU processes, gloo) each rank
reads its share of the chunks and the fit equals the one-process fit, every rank holding the same result; a
probe trained in a process whose heap is capped below the size of its features (RLIMIT_DATA) reaches the
optimum an unlimited process finds in memory; probes.run's probe step streams from an activation store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from launch import clean_env, torchrun
from streamed_fixtures import classification_data, sentence_data

from workbench.probing import (
    ArcProbe,
    DepthProbe,
    DistanceProbe,
    LinearProbe,
    MLPProbe,
    StreamedRows,
    StreamedSentences,
    tree_distances,
)

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as each torchrun rank has (OMP_NUM_THREADS=1): small problems are many times slower on
    several threads of a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixed_heads(depths):
    """A chain: each word's head is the word before it (the first word is the root)."""
    return [torch.tensor([-1] + list(range(len(d) - 1))) for d in depths]


def assert_scores_close(a: dict, b: dict, atol: float = 1e-5):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, equal_nan=True, msg=key)


# streamed == in memory ---------------------------------------------------------------------------------------


def test_streamed_linear_probe_reaches_the_in_memory_optimum():
    x, y = classification_data()
    x_dev, y_dev = classification_data(n=500, seed=1)
    source = StreamedRows.from_tensor(x, chunk_rows=700)  # 5 chunks, the last one short
    assert source.n_chunks == 5 and (source.n_layers, source.dim, source.n) == (3, 16, 3000)
    memory = LinearProbe(5).fit(x, y, x_dev, y_dev)
    streamed = LinearProbe(5).fit(source, y, StreamedRows.from_tensor(x_dev, chunk_rows=300), y_dev)
    torch.testing.assert_close(streamed.mean_, memory.mean_, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(streamed.std_, memory.std_, atol=1e-5, rtol=1e-5)
    assert torch.equal(streamed.best_epoch_, memory.best_epoch_)
    for a, b in zip(streamed.params_, memory.params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert_scores_close(streamed.score(source, y), memory.score(x, y))
    assert torch.equal(streamed.predict(source), memory.predict(x))
    torch.testing.assert_close(
        streamed.predict_logits(source), memory.predict_logits(x), atol=1e-3, rtol=1e-4
    )
    # a dev set in memory with a streamed training set is the same fit
    mixed = LinearProbe(5).fit(source, y, x_dev, y_dev)
    for a, b in zip(mixed.params_, streamed.params_):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_streamed_rows_read_only_the_layers_still_training_and_in_order():
    x, y = classification_data(n=1000)
    reads = []

    def read(index, layers):
        reads.append((index, list(layers)))
        return x[layers][:, index]

    rows = np.arange(0, 1000, 2)  # every other row: index arrays, ascending
    source = StreamedRows(read, rows, chunk_rows=128, layers=[0, 1, 2])
    reads.clear()
    probe = LinearProbe(5, weight_decay=1e-2).fit(source, y[rows])  # well conditioned: a sharp optimum
    assert all(isinstance(index, np.ndarray) and np.all(np.diff(index) > 0) for index, _ in reads)
    assert {len(layers) for _, layers in reads} > {3}, "converged layers should stop being read"
    memory = LinearProbe(5, weight_decay=1e-2).fit(x[:, rows], y[rows])
    for a, b in zip(probe.params_, memory.params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    contiguous = []
    StreamedRows(
        lambda index: contiguous.append(index) or x[:, index], 1000, chunk_rows=400
    ).chunks().__next__()
    assert contiguous[-1] == slice(0, 400)  # consecutive rows are read as one slice
    # by default a chunk is about 64 MiB of float32 for all layers, whatever the width
    assert StreamedRows.from_tensor(torch.zeros(7, 10, 384)).chunk_rows == 6241
    assert StreamedRows.from_tensor(torch.zeros(33, 10, 4096)).chunk_rows == 124


def test_streamed_mlp_lbfgs_follows_the_in_memory_trajectory():
    x, y = classification_data()
    options = dict(hidden=8, optimizer="lbfgs", max_epochs=8)
    memory = MLPProbe(5, **options).fit(x, y)
    streamed = MLPProbe(5, **options).fit(StreamedRows.from_tensor(x, chunk_rows=1000), y)
    torch.testing.assert_close(
        streamed.history_["train_loss"], memory.history_["train_loss"], atol=1e-5, rtol=1e-5
    )
    for a, b in zip(streamed.params_, memory.params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_streamed_structural_lbfgs_equals_in_memory_lbfgs():
    features, depths, offsets = sentence_data()
    flat = torch.cat(features, 1)
    source = StreamedSentences(lambda index: flat[:, index], offsets, chunk_rows=50, distributed=False)
    assert source.n == 60 and source.n_chunks > 5
    dev = features[:12], depths[:12]
    memory = DepthProbe(4, optimizer="lbfgs", max_epochs=25).fit(features, depths, *dev)
    streamed = DepthProbe(4, optimizer="lbfgs", max_epochs=25).fit(source, depths, *dev)
    # a non-convex, piecewise-linear loss: float rounding of other sums moves the path a little
    assert torch.equal(streamed.best_epoch_, memory.best_epoch_)
    torch.testing.assert_close(streamed.projection_, memory.projection_, atol=1e-3, rtol=1e-3)
    assert_scores_close(streamed.score(source, depths), memory.score(features, depths), atol=1e-3)
    # scoring and predicting: the same probe, streamed or in memory
    assert_scores_close(memory.score(source, depths), memory.score(features, depths))
    for a, b in zip(memory.predict(source), memory.predict(features)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    heads = fixed_heads(depths)
    arc_memory = ArcProbe(3, optimizer="lbfgs", max_epochs=10).fit(features, heads)
    arc_streamed = ArcProbe(3, optimizer="lbfgs", max_epochs=10).fit(source, heads)
    torch.testing.assert_close(arc_streamed.projection_, arc_memory.projection_, atol=1e-4, rtol=1e-4)
    assert_scores_close(arc_streamed.score(source, heads), arc_memory.score(features, heads))
    distances = [tree_distances(h.tolist()) for h in heads]
    distance = DistanceProbe(3, optimizer="lbfgs", max_epochs=3).fit(features, distances)
    assert_scores_close(distance.score(source, distances), distance.score(features, distances))


def test_streaming_needs_full_batch_training():
    x, y = classification_data(n=200)
    source = StreamedRows.from_tensor(x)
    with pytest.raises(ValueError, match='optimizer="lbfgs"'):
        MLPProbe(5).fit(source, y)
    with pytest.raises(ValueError, match="dropout"):
        MLPProbe(5, optimizer="lbfgs", dropout=0.1).fit(source, y)
    with pytest.raises(TypeError, match="stream both or neither"):
        LinearProbe(5).fit(x, y, source, y)
    features, depths, offsets = sentence_data(n_sentences=5)
    sentences = StreamedSentences(lambda index: torch.cat(features, 1)[:, index], offsets)
    with pytest.raises(ValueError, match='optimizer="lbfgs"'):
        DepthProbe(2).fit(sentences, depths)
    with pytest.raises(ValueError, match="one label per sentence"):
        DepthProbe(2, optimizer="lbfgs").fit(sentences, depths[:3])
    with pytest.raises(TypeError, match=r"read must return a float tensor \[layer, k, d\]"):
        StreamedRows(lambda index: np.zeros((1, 1, 1)), 10)


# torchrun: data-parallel fits equal the one-process fit --------------------------------------------------------

WORKER = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from streamed_fixtures import classification_data, sentence_data
from workbench import distributed as D
from workbench.probing import DepthProbe, LinearProbe, MLPProbe, StreamedRows, StreamedSentences
torch.set_num_threads(1)
ctx = D.init()
x, y = classification_data()
x_dev, y_dev = classification_data(n=500, seed=1)
shared = lambda data, rows: StreamedRows(lambda index: data[:, index], data.shape[1], chunk_rows=rows)
out = {}
linear = LinearProbe(5).fit(shared(x, 700), y, shared(x_dev, 300), y_dev)
out["linear"] = linear.params_ + [linear.best_epoch_]
out["linear_score"] = linear.score(shared(x, 700), y)
out["linear_predict"] = linear.predict(shared(x, 700))
one_chunk = LinearProbe(5, max_epochs=20).fit(shared(x, 5000), y)  # rank 1 reads nothing, takes every step
out["one_chunk"] = one_chunk.params_
mlp = MLPProbe(5, hidden=8, optimizer="lbfgs", max_epochs=8).fit(shared(x, 1000), y)
out["mlp"] = mlp.params_
features, depths, offsets = sentence_data()
flat = torch.cat(features, 1)
source = StreamedSentences(lambda index: flat[:, index], offsets, chunk_rows=50)
depth = DepthProbe(4, optimizer="lbfgs", max_epochs=25).fit(source, depths, features[:12], depths[:12])
out["depth"] = [depth.projection_, depth.best_epoch_]
out["depth_score"] = depth.score(source, depths)
torch.save(out, f"{sys.argv[1]}/rank{ctx.rank}.pt")
D.shutdown()
"""


def test_two_ranks_fit_what_one_process_fits(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    done = torchrun([str(script), str(tmp_path), str(TESTS)], 2, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for key in ranks[0]:  # every rank holds the same bits
        a, b = ranks[0][key], ranks[1][key]
        pairs = a.items() if isinstance(a, dict) else enumerate(a) if isinstance(a, list) else [(0, a)]
        other = b if isinstance(b, (dict, list)) else [b]
        for name, value in pairs:
            assert torch.equal(value, other[name]), (key, name)
    got = ranks[0]

    x, y = classification_data()
    x_dev, y_dev = classification_data(n=500, seed=1)
    linear = LinearProbe(5).fit(x, y, x_dev, y_dev)
    assert torch.equal(got["linear"][-1], linear.best_epoch_)
    for a, b in zip(got["linear"][:-1], linear.params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert_scores_close(got["linear_score"], linear.score(x, y))
    assert torch.equal(got["linear_predict"], linear.predict(x))
    for a, b in zip(got["one_chunk"], LinearProbe(5, max_epochs=20).fit(x, y).params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(got["mlp"], MLPProbe(5, hidden=8, optimizer="lbfgs", max_epochs=8).fit(x, y).params_):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    features, depths, _ = sentence_data()
    depth = DepthProbe(4, optimizer="lbfgs", max_epochs=25).fit(features, depths, features[:12], depths[:12])
    # a non-convex, piecewise-linear loss: the two ranks' other summation order moves the path a little
    torch.testing.assert_close(got["depth"][0], depth.projection_, atol=1e-3, rtol=1e-3)
    assert torch.equal(got["depth"][1], depth.best_epoch_)
    assert_scores_close(got["depth_score"], depth.score(features, depths), atol=1e-3)


# a heap smaller than the features ------------------------------------------------------------------------------

LIMITED = """
import re, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from workbench.probing import LinearProbe, StreamedRows
folder, budget = sys.argv[1], int(sys.argv[2])
store = np.load(f"{folder}/features.npy", mmap_mode="r")  # [layer, n, d] float16, read-only: file pages
labels = torch.from_numpy(np.load(f"{folder}/labels.npy"))
read = lambda index: torch.from_numpy(np.asarray(store[:, index], dtype=np.float32))
LinearProbe(4).fit(StreamedRows(read, 1000, chunk_rows=500), labels[:1000])  # first-use allocations, unlimited
heap = int(re.search(r"VmData:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_DATA, (heap + budget, heap + budget))
try:
    np.asarray(store, dtype=np.float32)
    print("the features fit in the budget")
    sys.exit(3)
except MemoryError:
    pass
probe = LinearProbe(4, weight_decay=1e-3).fit(StreamedRows(read, store.shape[1], chunk_rows=1024), labels)
torch.save(probe.params_ + [probe.mean_, probe.std_], f"{folder}/streamed.pt")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA caps the heap (and mmap'd memory) on Linux")
def test_a_probe_trains_in_a_heap_several_times_smaller_than_its_features(tmp_path):
    n_layers, n, dim, budget = 2, 120_000, 32, 6 * 2**20
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((n_layers, n, dim)) * [[[1.0]], [[3.0]]] + 0.5).astype(np.float16)
    labels = features.astype(np.float32).sum(0) @ rng.standard_normal((dim, 4)) + 2 * rng.standard_normal(
        (n, 4)
    )
    labels = labels.argmax(-1)
    np.save(tmp_path / "features.npy", features)
    np.save(tmp_path / "labels.npy", labels)
    in_memory = torch.from_numpy(features.astype(np.float32))
    assert in_memory.numel() * 4 > 4.5 * budget  # the float32 features: about 5x the budget
    script = tmp_path / "limited.py"
    script.write_text(LIMITED)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(budget)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    *params, mean, std = torch.load(tmp_path / "streamed.pt", weights_only=True)
    reference = LinearProbe(4, weight_decay=1e-3).fit(in_memory, torch.from_numpy(labels))
    torch.testing.assert_close(mean, reference.mean_, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(std, reference.std_, atol=1e-4, rtol=1e-4)
    for a, b in zip(params, reference.params_):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


# probes.run's probe step, streamed from an activation store ----------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A tiny BERT's activation stores (zarr) of the first 30 sentences of each split of the committed sample."""
    import workbench as wb
    from probes.data import load_treebank
    from probes.store import extract
    from workbench.zoo import TinySize

    size = TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=400)
    model = wb.zoo.tiny("bert", task="base", device="cpu", size=size, seed=0)
    sentences, out = {}, {}
    for split in ("train", "dev", "test"):
        sentences[split] = load_treebank("sample", split, max_sentences=30)
        folder = tmp_path_factory.mktemp(split)
        out[split] = extract(
            model, [s.words for s in sentences[split]], folder, chunk_rows=64, progress=False
        )
    return sentences, out


class CountingStore:
    """A store that records how many rows each read asks for."""

    def __init__(self, store):
        self.store, self.largest = store, 0

    def stack(self, layers=None, rows=None):
        out = self.store.stack(layers, rows=rows)
        self.largest = max(self.largest, out.shape[1])
        return out

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.mark.parametrize(
    "task_name, options, atol",
    [("upos", {}, 1e-4), ("depth", {"optimizer": "lbfgs", "max_epochs": 10}, 1e-3)],
)
def test_the_probe_step_streams_from_the_store(stores, task_name, options, atol):
    from probes.experiment import _probe_task
    from probes.tasks import get_task

    sentences, split_stores = stores
    task = get_task(task_name)
    memory = _probe_task(task, sentences, split_stores, "linear", 0, 4, options)
    counting = {split: CountingStore(store) for split, store in split_stores.items()}
    streamed = _probe_task(task, sentences, counting, "linear", 0, 4, options, stream_rows=50)
    longest = max(
        len(s.words) for split in sentences.values() for s in split
    )  # a chunk holds whole sentences
    assert 0 < max(store.largest for store in counting.values()) <= max(50, longest)  # one chunk at a time
    assert streamed.keys() == memory.keys()
    for key in memory:
        torch.testing.assert_close(
            streamed[key], memory[key], atol=atol, rtol=0, equal_nan=True, msg=str(key)
        )
