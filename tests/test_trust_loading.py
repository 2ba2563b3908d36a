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
from conftest import save_tiny_hf_bert

import workbench as wb


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    """A tiny Hugging Face BERT with 4 layers, saved as model.safetensors."""
    folder = tmp_path_factory.mktemp("four_layers")
    save_tiny_hf_bert(folder, num_hidden_layers=4)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_tiny_hf_bert(folder)
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
    save_tiny_hf_bert(tmp_path, "BertForMaskedLM")
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
