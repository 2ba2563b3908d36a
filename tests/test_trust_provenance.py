"""Provenance (issue 15): stored work knows what made it and is reused only when everything that changes the
numbers is equal — model fingerprints, data fingerprints, the activation store, benchmark and probing results."""

from __future__ import annotations

import functools
import json

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
