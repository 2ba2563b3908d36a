"""Loading hardening (issue 15): nothing about a checkpoint or a config is dropped, cast or trusted silently.

Unused checkpoint tensors are a WARNING; config values are validated before anything is built; integer
weights for float parameters are an error and NaN/inf weights a warning; shard indexes cannot name files
outside the checkpoint folder; and property tests (hypothesis) feed corrupted safetensors files, shard
indexes and config.json files to the readers, which must answer with their own error class.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    """A tiny Hugging Face BERT with 4 layers, saved as model.safetensors."""
    folder = tmp_path_factory.mktemp("four_layers")
    save_tiny_hf(folder, "bert", num_hidden_layers=4)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_tiny_hf(folder, "bert")
    return folder


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def edit_config(folder, **changes):
    path = folder / "config.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


# 1. Unused checkpoint tensors ---------------------------------------------------------------------------


def test_config_with_fewer_layers_than_the_checkpoint_warns(four_layers, tmp_path, caplog):
    folder = copy_checkpoint(four_layers, tmp_path / "ckpt")
    edit_config(folder, num_hidden_layers=2)
    with caplog.at_level(logging.WARNING):
        model = wb.AutoModel.from_pretrained(folder)
    dropped = [key for key in model.loading_info.unexpected_keys if key.startswith("encoder.layer.")]
    assert len(dropped) == 32  # 16 tensors a layer
    assert all(key.split(".")[2] in ("2", "3") for key in dropped)
    assert sorted(model.loading_info.unused_layer_keys) == sorted(dropped)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "not used" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "32 tensor(s)" in message and str(folder) in message and "BertModel" in message
    assert repr(dropped[0]) in message and "and 27 more" in message
    assert "layer count" in message


def test_head_tensors_under_a_bare_model_are_a_warning_too(tmp_path, caplog):
    save_tiny_hf(tmp_path, "bert", "masked_lm")
    with caplog.at_level(logging.WARNING):
        model = wb.AutoModel.from_pretrained(tmp_path)
    assert model.loading_info.unexpected_keys and not model.loading_info.unused_layer_keys
    assert any(
        r.levelno == logging.WARNING
        and f"{len(model.loading_info.unexpected_keys)} tensor(s)" in r.getMessage()
        and "cls.predictions" in r.getMessage()
        for r in caplog.records
    )


def test_a_checkpoint_that_fits_logs_no_unused_warning(tiny, caplog):
    with caplog.at_level(logging.WARNING):
        model = wb.AutoModel.from_pretrained(tiny)
    assert model.loading_info.unexpected_keys == []
    assert "not used" not in caplog.text


# 2. Config values are validated before anything is built ----------------------------------------------

BAD_VALUES = {
    "bool for a size": ({"num_hidden_layers": True}, "num_hidden_layers", "must be an integer"),
    "float for a size": ({"hidden_size": 32.0}, "hidden_size", "must be an integer"),
    "string for a size": ({"vocab_size": "99"}, "vocab_size", "must be an integer"),
    "null for a size": ({"intermediate_size": None}, "intermediate_size", "must be an integer"),
    "zero heads": ({"num_attention_heads": 0}, "num_attention_heads", "at least 1"),
    "negative size": ({"intermediate_size": -37}, "intermediate_size", "at least 1"),
    "dropout above 1": ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob", r"\[0, 1\]"),
    "negative dropout": ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob", r"\[0, 1\]"),
    "string for a float": ({"layer_norm_eps": "1e-12"}, "layer_norm_eps", "must be a"),
    "NaN": ({"initializer_range": float("nan")}, "initializer_range", "finite"),
    "negative eps": ({"layer_norm_eps": -1e-12}, "layer_norm_eps", "must not be negative"),
    "string for a bool": ({"tie_word_embeddings": "false"}, "tie_word_embeddings", "true or false"),
    "id2label not 0..n-1": ({"id2label": {"0": "a", "5": "b"}}, "id2label", "0..n-1"),
    "id2label not an object": ({"id2label": ["a", "b"]}, "id2label", "JSON object"),
    "unknown problem_type": ({"problem_type": "ranking"}, "problem_type", "regression"),
    "absurd layer count": ({"num_hidden_layers": 10**9}, "num_hidden_layers", "GiB"),
    "heads not dividing d_model": ({"num_attention_heads": 5}, None, "multiple of num_attention_heads"),
}


@pytest.mark.parametrize("changes, field, expected", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_config_value_is_a_config_error_naming_file_and_field(tiny, tmp_path, changes, field, expected):
    folder = copy_checkpoint(tiny, tmp_path / "ckpt")
    edit_config(folder, **changes)
    loads = (
        wb.AutoModel.from_pretrained,
        wb.AutoConfig.from_pretrained,
        wb.load,
        wb.BertModel.from_pretrained,
    )
    for load in loads:
        with pytest.raises(wb.ConfigError, match=expected) as info:
            load(folder)
        assert str(folder / "config.json") in str(info.value)
        if field:
            assert info.value.field == field and f"{field}=" in str(info.value)


def test_absurd_sizes_fail_fast_with_the_estimate(tiny, tmp_path):
    import time

    folder = copy_checkpoint(tiny, tmp_path / "ckpt")
    edit_config(folder, num_hidden_layers=10**9)
    start = time.perf_counter()
    with pytest.raises(wb.ConfigError, match=r"num_hidden_layers=1000000000: .*parameters.*GiB.*available"):
        wb.AutoModel.from_pretrained(folder)
    assert time.perf_counter() - start < 5


def test_memory_check_names_the_field_furthest_above_its_default():
    config = wb.BertConfig(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37)
    config.check_memory(available=10**9)  # fits
    with pytest.raises(
        wb.ConfigError, match=r"^intermediate_size=10000000: .* GiB of memory available"
    ) as info:
        wb.BertConfig(intermediate_size=10**7, hidden_size=32, num_attention_heads=4).check_memory(
            available=1024
        )
    assert info.value.field == "intermediate_size"


def test_bad_override_is_named_as_the_argument(tiny):
    with pytest.raises(wb.ConfigError, match="argument num_labels=") as info:
        wb.AutoModelForSequenceClassification.from_pretrained(tiny, num_labels=2.5)
    assert info.value.field == "num_labels"
    with pytest.raises(wb.ConfigError, match="argument hidden_dropout_prob="):
        wb.AutoModel.from_pretrained(tiny, hidden_dropout_prob=2)


MODEL_TYPES = ["bert", "gpt2", "openai-gpt", "distilbert", "roberta", "xlm", "xlnet", "transfo-xl"]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_architecture_checks_types_ranges_and_memory(model_type):
    config_class = type(wb.AutoConfig.for_model(model_type))
    assert config_class.SIZE_FIELDS and config_class.PROBABILITY_FIELDS
    for name in config_class.SIZE_FIELDS:
        with pytest.raises(wb.ConfigError, match=name):
            wb.AutoConfig.for_model(model_type, **{name: 0})
        with pytest.raises(wb.ConfigError, match=f"{name}=True"):
            wb.AutoConfig.for_model(model_type, **{name: True})
    for name in config_class.PROBABILITY_FIELDS:
        with pytest.raises(wb.ConfigError, match=name):
            wb.AutoConfig.for_model(model_type, **{name: 1.01})
    layers = next(
        name for name in ("num_hidden_layers", "n_layer", "n_layers") if name in config_class.SIZE_FIELDS
    )
    with pytest.raises(wb.ConfigError, match=f"{layers}=1000000000"):
        wb.AutoConfig.for_model(model_type, **{layers: 10**9})


def test_a_model_too_large_for_the_gpu_fails_before_it_is_built(tiny, monkeypatch):
    """A simulated CUDA device with 1 KiB free: wb.load and AutoModel refuse before building anything."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 2**34))
    built = []
    monkeypatch.setattr(wb.BertModel, "init_weights", lambda self: built.append(self))
    for load in (
        lambda: wb.load(tiny, device="cuda"),
        lambda: wb.AutoModel.from_pretrained(tiny, device="cuda"),
    ):
        with pytest.raises(wb.ConfigError, match=r"GiB in float32, more than the .* of free memory on cuda"):
            load()
    assert built == []


def test_available_memory_is_read():
    from workbench.config import available_memory

    available = available_memory()
    assert available is not None and 2**20 < available


def test_a_config_changed_after_reading_is_checked_again_when_a_model_is_built():
    config = wb.BertConfig(vocab_size=99, hidden_size=32, num_attention_heads=4, intermediate_size=37)
    config.num_hidden_layers = "2"
    with pytest.raises(wb.ConfigError, match="num_hidden_layers='2'"):
        wb.BertModel(config)


# 3. Weights of the wrong kind ---------------------------------------------------------------------------


def _rewrite_weights(folder, change):
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(str(path))
    change(state)
    save_file(state, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool, torch.complex64]
)
def test_integer_or_bool_weights_for_float_parameters_are_an_error(tiny, tmp_path, dtype):
    folder = copy_checkpoint(tiny, tmp_path / "ckpt")
    name = "encoder.layer.1.attention.self.query.weight"

    def to_int(state):
        state[name] = (state[name] * 10).to(dtype)

    _rewrite_weights(folder, to_int)
    with pytest.raises(wb.CheckpointError) as info:
        wb.AutoModel.from_pretrained(folder)
    message = str(info.value)
    assert name in message and str(dtype) in message and "torch.float32" in message and str(folder) in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_weights_load_with_a_warning_naming_the_tensors(tiny, tmp_path, caplog, bad):
    folder = copy_checkpoint(tiny, tmp_path / "ckpt")
    names = ["encoder.layer.0.output.dense.bias", "embeddings.word_embeddings.weight"]

    def poison(state):
        for name in names:
            state[name][0] = bad

    _rewrite_weights(folder, poison)
    with caplog.at_level(logging.WARNING):
        model = wb.AutoModel.from_pretrained(folder)
    assert sorted(model.loading_info.nonfinite_keys) == sorted(names)
    record = next(r for r in caplog.records if "NaN or infinite" in r.getMessage())
    assert record.levelno == logging.WARNING
    assert "2 tensor(s)" in record.getMessage() and all(name in record.getMessage() for name in names)


def test_half_precision_weights_still_load_into_float32(tiny, tmp_path):
    folder = copy_checkpoint(tiny, tmp_path / "ckpt")

    def to_half(state):
        for name in state:
            state[name] = state[name].half()

    _rewrite_weights(folder, to_half)
    model = wb.AutoModel.from_pretrained(folder)
    assert model.embed.weight.dtype == torch.float32 and not model.loading_info.nonfinite_keys


# 4. Shard indexes: every shard inside the checkpoint folder -----------------------------------------------


def write_sharded(
    src, folder, names=("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
):
    """src's model.safetensors split in two shards (files ``names``, relative to folder) with an index."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True)
    shutil.copy(src / "config.json", folder)
    state = load_file(str(src / "model.safetensors"))
    keys = sorted(state)
    weight_map = {}
    for name, shard_keys in zip(names, (keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: state[k] for k in shard_keys}, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard_keys})
    write_index(folder, weight_map)
    return folder, weight_map


def write_index(folder, weight_map):
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_shards_in_a_subfolder_load(tiny, tmp_path):
    folder, _ = write_sharded(tiny, tmp_path / "ckpt", ("a/one.safetensors", "b/two.safetensors"))
    model = wb.AutoModel.from_pretrained(folder)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []


@pytest.mark.parametrize("where", ["absolute", "dotdot", "dotdot_inside", "backslash_dotdot"])
def test_shard_paths_outside_the_folder_are_refused(tiny, tmp_path, where):
    outside, _ = write_sharded(tiny, tmp_path / "outside")  # a good shard, outside the checkpoint folder
    folder, weight_map = write_sharded(tiny, tmp_path / "ckpt")
    bad = {
        "absolute": str(outside / "model-00002-of-00002.safetensors"),
        "dotdot": "../outside/model-00002-of-00002.safetensors",
        "dotdot_inside": "sub/../../outside/model-00002-of-00002.safetensors",
        "backslash_dotdot": "..\\outside\\model-00002-of-00002.safetensors",
    }[where]
    weight_map = {k: (bad if v.startswith("model-00002") else v) for k, v in weight_map.items()}
    victim = next(k for k, v in weight_map.items() if v == bad)
    write_index(folder, weight_map)
    with pytest.raises(wb.CheckpointError, match="outside the checkpoint folder") as info:
        wb.AutoModel.from_pretrained(folder)
    assert str(folder / "model.safetensors.index.json") in str(info.value)
    assert f"{victim!r}: {bad!r}" in str(info.value)


def test_shard_link_escaping_the_folder_is_refused(tiny, tmp_path):
    outside, _ = write_sharded(tiny, tmp_path / "outside")
    folder, weight_map = write_sharded(tiny, tmp_path / "ckpt")
    (folder / "model-00002-of-00002.safetensors").unlink()
    (folder / "model-00002-of-00002.safetensors").symlink_to(outside / "model-00002-of-00002.safetensors")
    with pytest.raises(wb.CheckpointError, match="is a link to .*outside the checkpoint folder"):
        wb.AutoModel.from_pretrained(folder)
    # a linked subfolder leading outside is refused the same way
    (folder / "model-00002-of-00002.safetensors").unlink()
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    write_index(folder, {k: "linked/" + v if "00002" in v else v for k, v in weight_map.items()})
    with pytest.raises(wb.CheckpointError, match="outside the checkpoint folder"):
        wb.AutoModel.from_pretrained(folder)


def test_hugging_face_cache_links_into_blobs_are_followed(tiny, tmp_path):
    """The hub cache: snapshots/<revision>/<file> are links to ../../blobs/<hash>."""
    built, weight_map = write_sharded(tiny, tmp_path / "built")
    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for number, file in enumerate(sorted(p.name for p in built.iterdir())):
        shutil.copy(built / file, repo / "blobs" / f"hash{number}")
        (snapshot / file).symlink_to(f"../../blobs/hash{number}")
    model = wb.AutoModel.from_pretrained(snapshot)
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []


BAD_INDEXES = {
    "not JSON": ("{weight_map", "not a valid JSON"),
    "a list": ("[1, 2]", "weight_map"),
    "weight_map a list": ('{"weight_map": ["model-00001-of-00002.safetensors"]}', "non-empty JSON object"),
    "weight_map empty": ('{"weight_map": {}}', "non-empty JSON object"),
    "shard an integer": (
        '{"weight_map": {"embeddings.word_embeddings.weight": 3}}',
        "must name a shard file",
    ),
    "shard null": ('{"weight_map": {"embeddings.word_embeddings.weight": null}}', "must name a shard file"),
    "not a safetensors shard": ('{"weight_map": {"x": "pytorch_model.bin"}}', "are .safetensors files"),
    "NUL in the name": ('{"weight_map": {"x": "a\\u0000.safetensors"}}', "outside the checkpoint folder"),
    "bad UTF-8": (b'{"weight_map": {"x": "\xff.safetensors"}}', "not a valid JSON"),
}


@pytest.mark.parametrize("content, expected", list(BAD_INDEXES.values()), ids=list(BAD_INDEXES))
def test_malformed_shard_index_names_the_file(tiny, tmp_path, content, expected):
    folder, _ = write_sharded(tiny, tmp_path / "ckpt")
    index = folder / "model.safetensors.index.json"
    index.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(wb.CheckpointError, match=expected) as info:
        wb.AutoModel.from_pretrained(folder)
    assert str(index) in str(info.value)


def test_a_tensor_in_two_shards_is_an_error(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    folder, weight_map = write_sharded(tiny, tmp_path / "ckpt")
    first, second = (folder / name for name in sorted(set(weight_map.values())))
    state = load_file(str(second))
    state["embeddings.word_embeddings.weight"] = (
        load_file(str(tiny / "model.safetensors"))["embeddings.word_embeddings.weight"] * 2
    )
    save_file(state, str(second))
    with pytest.raises(wb.CheckpointError, match="embeddings.word_embeddings.weight' is in two shards"):
        wb.AutoModel.from_pretrained(folder)


# 5. Every torch.load refuses code ---------------------------------------------------------------------------


def _torch_load_calls_without_weights_only(source: str) -> list[int]:
    """Line numbers of torch.load(...) / torch.serialization.load(...) calls lacking weights_only=True."""
    import ast

    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        if ast.unparse(node.func) in ("torch.load", "torch.serialization.load"):
            keywords = {k.arg: k.value for k in node.keywords}
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                lines.append(node.lineno)
    return lines


def test_every_torch_load_in_the_repository_uses_weights_only():
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.ipynb"], cwd=root, capture_output=True, text=True
    ).stdout
    offenders = []
    for relative in files.split():
        path = root / relative
        if not path.is_file():
            continue
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            sources = ["".join(c.get("source", [])) for c in cells if c.get("cell_type") == "code"]
            sources = [
                "\n".join(ln for ln in s.splitlines() if not ln.lstrip().startswith(("%", "!")))
                for s in sources
            ]
        else:
            sources = [path.read_text(encoding="utf-8")]
        for number, source in enumerate(sources):
            try:
                bad = _torch_load_calls_without_weights_only(source)
            except SyntaxError:
                bad = [0] if "torch.load(" in source and "weights_only=True" not in source else []
            offenders += [f"{relative} (cell {number}) line {line}" for line in bad]
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_the_scan_finds_an_unsafe_torch_load():
    assert _torch_load_calls_without_weights_only("import torch\ntorch.load('x.bin')\n") == [2]
    assert _torch_load_calls_without_weights_only("import torch\ntorch.load('x', weights_only=False)\n") == [
        2
    ]
    assert _torch_load_calls_without_weights_only("import torch\ntorch.load('x', weights_only=True)\n") == []


# 6. Property tests: corrupted files give our own error class, never a crash, a hang or a wrong load -------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    max_examples=60,
    deadline=5000,  # a tiny model loads in well under a second; a hang shows as a deadline error
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def reference(tiny):
    """The tiny checkpoint's files and its model's weights as loaded from the intact files."""
    model = wb.AutoModel.from_pretrained(tiny)
    return _Reference(
        config=(tiny / "config.json").read_bytes(),
        weights=(tiny / "model.safetensors").read_bytes(),
        state={k: v.clone() for k, v in model.state_dict().items()},
    )


class _Reference(dict):
    """The intact files and weights (a short repr: hypothesis prints its arguments on a failure)."""

    def __init__(self, **values):
        super().__init__(values)

    def __repr__(self) -> str:
        return "<the tiny checkpoint's files and weights>"


def _corrupt(data: bytes, draw, region: int) -> bytes:
    """A truncation, or 1-4 bytes changed within data[:region], or bytes inserted there."""
    kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, region - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _load_outcome(folder, reference):
    """'error' (our own error class), 'same' (every weight as in the intact checkpoint, nothing missing or
    unused) or 'reported' (loaded, with missing or unused tensors listed and warned about); anything else
    (a wrong load, or another exception, which propagates) fails the test."""
    try:
        model = wb.AutoModel.from_pretrained(folder)
    except (wb.CheckpointError, wb.ConfigError):
        return "error"
    info = model.loading_info
    if info.missing_keys or info.unexpected_keys or info.mismatched_keys or info.nonfinite_keys:
        return "reported"
    state = model.state_dict()
    assert state.keys() == reference["state"].keys()
    for key, tensor in state.items():
        assert torch.equal(tensor, reference["state"][key]), f"{key} loaded with other values, silently"
    return "same"


def _write_checkpoint(folder, config: bytes, weights: bytes):
    folder.mkdir()
    (folder / "config.json").write_bytes(config)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@PROPERTY
@given(data=st.data())
def test_property_corrupted_safetensors_header(reference, tmp_path_factory, data):
    """safetensors files carry no checksum of the tensor data, so the corruptions hit the 8-byte length and
    the JSON header (names, dtypes, shapes, offsets): each must be an error or a visible report, or change
    nothing (the header's padding or metadata)."""
    weights = reference["weights"]
    header_end = 8 + int.from_bytes(weights[:8], "little")
    corrupted = _corrupt(weights, data.draw, header_end)
    folder = _write_checkpoint(tmp_path_factory.mktemp("st") / "ckpt", reference["config"], corrupted)
    outcome = _load_outcome(folder, reference)
    if len(corrupted) < len(weights) and outcome != "error":  # a truncated file never loads
        pytest.fail(
            f"a truncated safetensors file ({len(corrupted)} of {len(weights)} bytes) loaded: {outcome}"
        )


def _json_values():
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    )


SHARD_NAMES = [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "../x.safetensors",
    "/etc/passwd",
    "a" * 300 + ".safetensors",
    "sub/../model-00001-of-00002.safetensors",
    ".",
]


@PROPERTY
@given(data=st.data())
def test_property_random_or_corrupted_shard_index(tiny, reference, tmp_path_factory, data):
    folder, weight_map = write_sharded(tiny, tmp_path_factory.mktemp("shards") / "ckpt")
    index = folder / "model.safetensors.index.json"
    kind = data.draw(st.sampled_from(["random JSON", "random weight_map", "corrupted"]))
    if kind == "random JSON":
        index.write_text(json.dumps(data.draw(_json_values())))
    elif kind == "random weight_map":
        names = st.sampled_from(sorted(weight_map)) | st.text(max_size=30)
        shards = st.sampled_from(SHARD_NAMES) | _json_values()
        index.write_text(json.dumps({"weight_map": data.draw(st.dictionaries(names, shards, max_size=6))}))
    else:
        text = index.read_bytes()
        index.write_bytes(_corrupt(text, data.draw, len(text)))
    assert _load_outcome(folder, reference) in ("error", "same")


BERT_FIELDS = sorted(f.name for f in __import__("dataclasses").fields(wb.BertConfig)) + [
    "num_labels",
    "model_type",
]


@PROPERTY
@given(data=st.data())
def test_property_random_config_json(tiny, reference, tmp_path_factory, data):
    """Random values for the config's own fields: a ConfigError, or a config holding exactly the values
    given (nothing coerced); corrupted config.json bytes: an error, or a load as the file says."""
    folder = _write_checkpoint(
        tmp_path_factory.mktemp("cfg") / "ckpt", reference["config"], reference["weights"]
    )
    kind = data.draw(st.sampled_from(["random values", "random JSON", "corrupted"]))
    values = json.loads(reference["config"])
    if kind == "random values":
        small = st.integers(-3, 70) | st.sampled_from(
            [True, False, None, 2.0, "4", 10**12, float("nan"), [], {}]
        )
        changes = data.draw(st.dictionaries(st.sampled_from(BERT_FIELDS), small | _json_values(), max_size=4))
        values.update(changes)
        (folder / "config.json").write_text(json.dumps(values))
    elif kind == "random JSON":
        (folder / "config.json").write_text(json.dumps(data.draw(_json_values())))
    else:
        (folder / "config.json").write_bytes(
            _corrupt(reference["config"], data.draw, len(reference["config"]))
        )
    try:
        config = wb.AutoConfig.from_pretrained(folder)
    except wb.ConfigError:
        return
    written = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key, value in written.items():
        if key in BERT_FIELDS and key not in (
            "id2label",
            "model_type",
            "num_labels",
            "name_or_path",
            "extra",
        ):
            assert getattr(config, key) == value and type(getattr(config, key)) is type(value), key
    if config.estimated_parameters() < 10**6:  # small enough to build: the weights load, or fail loudly
        _load_outcome(folder, reference)
