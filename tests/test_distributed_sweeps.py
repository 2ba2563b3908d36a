"""Sweeps under torchrun (issue 19): `workbench bench` and `probes.run` with 2 CPU processes (gloo) share their
(model, task) results and their probes (layers split among the ranks) and give the frame a single process
gives; map_units keeps order, runs each unit alone and reports a failing rank's error on every rank; a linear
probe trains a layer alike alone or batched (what splitting layers relies on)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from launch import torchrun

import probes
import workbench as wb
from probes import experiment
from probes.models import LinearProbe, MLPProbe
from workbench import distributed as D
from workbench.zoo import TinySize

SMALL = TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=400)
TIMING = ["seconds", "examples_per_second"]  # wall time: the only columns that differ from run to run
BENCH = dict(tasks=["sst2", "copa"], mode="probe", device="cpu", folds=2, max_examples=8)
PROBES = dict(tasks=["upos", "depth"], max_sentences=16, rank=4, progress=False)


@pytest.fixture
def one_thread():
    """The one-process reference runs on one thread, as each rank does (torchrun sets OMP_NUM_THREADS=1): on
    a shared machine, tiny models are many times slower on several threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[str]:
    """Two tiny checkpoints of two architectures (an encoder and a decoder)."""
    folders = []
    for architecture in ("bert", "gpt2"):
        folder = tmp_path_factory.mktemp(f"tiny_{architecture}")
        wb.zoo.tiny(architecture, task="base", device="cpu", size=SMALL, seed=0).save_pretrained(folder)
        folders.append(str(folder))
    return folders


# One launch for both sweeps (a torchrun start costs seconds): probes.run and map_units on every rank, then
# the `workbench bench` command, whose rank 0 writes the report and prints.
WORKER = """
import pickle, sys
import probes
from workbench import distributed as D
from workbench.cli import main

ctx = D.init()
folder, out, probes_options, bench_args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
results = probes.run(folder, **pickle.loads(bytes.fromhex(probes_options)))  # store_dir=None: rank 0's
found = {"frame": results.frame, "provenance": results.provenance}
data_parallel = dict(pickle.loads(bytes.fromhex(probes_options)), tasks=["upos", "depth"], control=False)
found["data_parallel"] = probes.run(folder, **data_parallel, stream_rows=20, parallel="data").frame

def fails_on_rank_1(unit):
    if D.context().distributed:
        raise AssertionError("a unit runs alone")
    if unit == 3:
        raise KeyError("unit 3 is broken")
    return unit * 10

try:
    D.map_units(fails_on_rank_1, list(range(6)), progress=False)
except Exception as err:
    found["failure"] = f"{type(err).__name__}: {err}"
found["squares"] = D.map_units(lambda unit: unit * unit, list(range(5)), order=lambda unit: -unit, progress=False)
pickle.dump(found, open(f"{out}/rank{ctx.rank}.pkl", "wb"))
sys.exit(main(["bench", *bench_args]))
"""


@pytest.fixture(scope="module")
def two_ranks(folders, tmp_path_factory):
    """The folder the two ranks wrote to (rank{r}.pkl: probes and map_units; bench/: the bench report), and
    the launch's stdout."""
    folder = tmp_path_factory.mktemp("two_ranks")
    script = folder / "worker.py"
    script.write_text(WORKER)
    bench = ["--models", ",".join(folders), "--tasks", ",".join(BENCH["tasks"]), "--mode", "probe", "--device",
             "cpu", "--folds", "2", "--max-examples", "8", "--no-progress", "--out", str(folder / "bench")]  # fmt: skip
    done = torchrun([str(script), folders[0], str(folder), pickle.dumps(PROBES).hex(), *bench], 2)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done.stdout


def test_bench_sweep_on_two_ranks_equals_one_process(folders, two_ranks, one_thread):
    folder, stdout = two_ranks
    assert stdout.count("wrote ") == 1  # rank 0 prints the table and writes the report
    one = wb.bench.run(folders, **BENCH, progress=False)  # one process (its report: as rank 0's, not timed)
    two = pd.read_csv(folder / "bench" / "results.csv", dtype={"data_note": str}).fillna({"data_note": ""})
    expected = one.frame.drop(columns=TIMING)
    assert len(expected) == 2 * 2 * 3  # 2 models x 2 tasks x 3 layers
    pd.testing.assert_frame_equal(two.drop(columns=TIMING), expected, check_dtype=False, atol=1e-5)
    assert json.loads((folder / "bench" / "provenance.json").read_text()) == one.provenance
    assert len(list((folder / "bench" / "results").glob("*.csv"))) == 4  # each result written by its rank
    assert (folder / "bench" / "report.html").is_file()


def test_probes_run_on_two_ranks_equals_one_process(folders, two_ranks, tmp_path, one_thread):
    ranks = [pickle.loads((two_ranks[0] / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    one = probes.run(folders[0], **PROBES, store_dir=tmp_path)
    # upos and its control task: each split in 2 groups of layers, one per rank; depth (Adam): one unit
    assert set(one.frame["task"]) == {"upos", "depth"} and one.frame["control"].notna().any()
    for result in ranks:  # every rank returns the whole frame, rows in a single process's order
        pd.testing.assert_frame_equal(result["frame"], one.frame, atol=1e-5)
        assert result["provenance"] == one.provenance


def test_data_parallel_probes_on_two_ranks_equal_one_process(folders, two_ranks, tmp_path, one_thread):
    """parallel="data": both ranks train every probe, each reading its share of the store's chunks (20 words
    per read), the sums reduced over the ranks: the same frame as one process streaming alone."""
    ranks = [pickle.loads((two_ranks[0] / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    options = dict(PROBES, tasks=["upos", "depth"], control=False, store_dir=tmp_path, stream_rows=20)
    one = probes.run(folders[0], **options)
    assert set(one.frame["task"]) == {"upos", "depth"}
    for result in ranks:
        pd.testing.assert_frame_equal(result["data_parallel"], one.frame, atol=1e-5)
    with pytest.raises(ValueError, match="give stream_rows too"):
        probes.run(folders[0], **dict(options, stream_rows=None), parallel="data")
    with pytest.raises(ValueError, match="parallel must be one of"):
        probes.run(folders[0], **options, parallel="layers")


def test_map_units_on_two_ranks_keeps_order_and_reports_a_failure_everywhere(two_ranks):
    ranks = [pickle.loads((two_ranks[0] / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    assert [result["squares"] for result in ranks] == [[0, 1, 4, 9, 16]] * 2
    assert ranks[1]["failure"] == "KeyError: 'unit 3 is broken'"  # unit 3 is rank 1's: its own error
    assert ranks[0]["failure"].startswith("UnitFailed: rank 1 failed on unit 3: KeyError")


def test_units_split_only_layer_independent_probes():
    plan = experiment._ModelPlan("m", False, "id", {}, [0, 1, 2], None, [])
    setup = experiment._ProbeSetup(
        [probes.get_task("upos"), probes.get_task("depth")], {}, "linear", True, 0, 4, {}, False
    )
    units = experiment._units([plan], setup, world_size=2)
    assert [(u.task, u.control, u.layers) for u in units] == [
        (0, False, (0, 2)),
        (0, False, (1,)),
        (0, True, (0, 2)),
        (0, True, (1,)),
        (1, False, (0, 1, 2)),  # the structural probe trains its layers together
    ]
    assert len(experiment._units([plan], setup, world_size=1)) == 3  # alone: one unit per run, all layers
    mlp = experiment._ProbeSetup(setup.tasks, {}, "mlp", False, 0, 4, {}, False)
    assert [u.layers for u in experiment._units([plan], mlp, world_size=4)] == [(0, 1, 2)] * 2


def test_a_linear_probe_trains_a_layer_alike_alone_or_batched():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 120, 8, generator=generator)
    y = (x[1, :, 0] + 0.5 * torch.randn(120, generator=generator) > 0).long()
    x_dev, y_dev = x[:, :40], y[:40]
    batched = LinearProbe(2).fit(x, y, x_dev, y_dev)
    alone = LinearProbe(2).fit(x[1:2], y, x_dev[1:2], y_dev)
    torch.testing.assert_close(alone.params_[0][0], batched.params_[0][1], atol=1e-6, rtol=1e-5)
    assert alone.best_epoch_[0] == batched.best_epoch_[1]
    # Adam draws one random start for all layers: a layer alone starts elsewhere (why MLP runs are not split)
    mlp_batched = MLPProbe(2, max_epochs=2).fit(x, y)
    mlp_alone = MLPProbe(2, max_epochs=2).fit(x[1:2], y)
    assert not torch.allclose(mlp_alone.params_[0][0], mlp_batched.params_[0][1])


def test_map_units_alone_is_a_loop_in_the_units_order():
    seen = []
    assert D.map_units(lambda u: seen.append(u) or u + 1, [3, 1, 2], order=lambda u: u, progress=False) == [
        4,
        2,
        3,
    ]
    assert seen == [1, 2, 3]  # run in the order asked, returned in the units' order
    with D.alone():
        assert (
            D.share(
                list("abc"),
            )
            == list("abc")
            and D.context().world_size == 1
        )


def test_store_dir_none_alone_is_a_temporary_folder():
    root = experiment._store_root(None)
    assert isinstance(root, Path) and root.is_dir() and root.name.startswith("probes-")
    root.rmdir()
    assert experiment._store_root("memory://acts") == "memory://acts"
    assert experiment._join("memory://acts/", "m", "s") == "memory://acts/m/s"


def test_probes_run_streams_from_the_store(folders, tmp_path, one_thread):
    options = dict(PROBES, tasks=["upos"], control=False, store_dir=tmp_path)
    loaded = probes.run(folders[0], **options)
    streamed = probes.run(folders[0], **options, stream_rows=20)  # 20 words per read: many reads per split
    columns = ["layer", "split", "metric", "value"]
    pd.testing.assert_frame_equal(streamed.frame[columns], loaded.frame[columns], atol=1e-6)
    (record,) = streamed.provenance.values()
    assert record["stream_rows"] == 20  # in the provenance (streamed MLP/structural probes train otherwise)
    with pytest.raises(ValueError, match="stream_rows must be a positive integer"):
        probes.run(folders[0], **options, stream_rows=0)
