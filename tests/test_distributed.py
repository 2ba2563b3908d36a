"""workbench.distributed: the same calls alone (rank 0 of 1, collectives are identities) and under torchrun
with 2 CPU processes over gloo (shares, all_reduce, gather to rank 0, broadcast, global progress, rank prefix)."""

from __future__ import annotations

import json

import pytest
import torch
from launch import torchrun

from workbench import distributed as D

WORKER = """
import json, sys, torch
from workbench import distributed as D
ctx = D.init()
out = {"ctx": [ctx.rank, ctx.world_size, ctx.local_rank], "share": D.share(list(range(7)))}
out["sum"] = D.all_reduce(torch.tensor([ctx.rank + 1.0])).tolist()
out["max"] = D.all_reduce_scalar(ctx.rank, "max")
out["gathered"] = D.gather_objects({"rank": ctx.rank})
out["bcast"] = D.broadcast_object("from 0" if ctx.is_main else "other")
with D.GlobalProgress(total=10, enabled=False) as bar:
    out["progress"] = [bar.update(ctx.rank + 1), bar.update(1)]
out["prefix"] = D.rank_prefix()
D.barrier()
open(f"{sys.argv[1]}/rank{ctx.rank}.json", "w").write(json.dumps(out))
D.shutdown()
"""


def test_alone_every_helper_is_an_identity(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = D.init()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert D.share(list("abc")) == list("abc") and D.is_main() and D.rank_prefix() == ""
    tensor = torch.tensor([2.0])
    assert D.all_reduce(tensor) is tensor and tensor.item() == 2.0
    assert D.gather_objects({"x": 1}) == [{"x": 1}] and D.broadcast_object(5) == 5
    D.barrier()
    with pytest.raises(ValueError, match="op must be one of"):
        D.all_reduce(tensor, op="mean")


def test_shares_are_disjoint_deterministic_and_complete():
    for world in (1, 2, 3, 8):
        shares = [D.share_indices(10, rank, world) for rank in range(world)]
        assert sorted(i for s in shares for i in s) == list(range(10))
        assert shares == [D.share_indices(10, rank, world) for rank in range(world)]
    assert D.share(list("abcde"), rank=1, world_size=2) == ["b", "d"]  # strided: sorted costs spread evenly
    with pytest.raises(ValueError, match="rank must be in"):
        D.share_indices(4, rank=2, world_size=2)


def test_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert D.context() == D.Context(1, 4, 1) and not D.is_main()
    assert D.rank_prefix() == "[rank 1/4] "
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        D.init()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        D.context()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x'"):
        D.context()


def test_two_processes_under_torchrun(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    done = torchrun([str(script), str(tmp_path)], 2)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["ctx"] for r in results] == [[0, 2, 0], [1, 2, 1]]
    assert [r["share"] for r in results] == [[0, 2, 4, 6], [1, 3, 5]]
    assert all(r["sum"] == [3.0] and r["max"] == 1.0 and r["bcast"] == "from 0" for r in results)
    assert results[0]["gathered"] == [{"rank": 0}, {"rank": 1}] and results[1]["gathered"] is None
    assert all(r["progress"] == [3, 5] for r in results)  # the global count on every rank
    assert [r["prefix"] for r in results] == ["[rank 0/2] ", "[rank 1/2] "]
