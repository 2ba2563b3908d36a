"""The test suite's own layout and helpers: test modules share code through helper modules (tiny_hf.py,
tiny_gpt2.py, attention_reference.py), never by importing one another (an imported test module's tests and
fixtures leak into the importer, and editing one test file breaks another); tiny_hf builds what it says."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from tiny_hf import ARCHITECTURES, CHECKPOINT_SIZES, hf_fields, save_tiny_hf, task_of, tiny_model

TESTS = Path(__file__).parent
TEST_MODULES = {path.stem for path in TESTS.glob("test_*.py")}


def imported_modules(source: str) -> set[str]:
    """The top-level names of the modules ``source`` imports (``from test_x import y`` -> ``test_x``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.module is None:  # from . import test_x
                names |= {alias.name for alias in node.names}
            else:  # from .test_x import y
                names.add(node.module.split(".")[0])
    return names


def test_imported_modules_finds_every_form_of_import():
    source = "import test_a\nimport test_b.c as d\nfrom test_e import f\nfrom . import test_g\nfrom .test_h import i\n"
    source += "def inner():\n    from test_j import k\nimport workbench as wb\n"
    assert imported_modules(source) == {"test_a", "test_b", "test_e", "test_g", "test_h", "test_j", "workbench"}


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda path: path.name)
def test_no_module_imports_a_test_module(path):
    imported = imported_modules(path.read_text()) & TEST_MODULES
    assert not imported, (
        f"{path.name} imports the test module(s) {sorted(imported)}: move what they share into a helper module "
        "(tiny_hf.py for tiny models and configs)"
    )


# tiny_hf -----------------------------------------------------------------------------------------------------


def test_canonical_names_become_each_architectures_fields():
    assert hf_fields("distilbert", dict(d_model=8, n_layers=1, d_mlp=9, activation="relu")) == dict(
        dim=8, n_layers=1, hidden_dim=9, activation="relu"
    )
    assert hf_fields("gpt2", dict(d_model=8, n_heads=2, max_positions=16)) == dict(n_embd=8, n_head=2, n_positions=16)
    with pytest.raises(ValueError, match="gpt2 has no field for d_mlp"):
        hf_fields("gpt2", dict(d_mlp=8))
    with pytest.raises(ValueError, match="a second time"):
        hf_fields("bert", dict(d_model=8, hidden_size=8))


def test_task_of_reads_the_registry():
    assert task_of("xlm", "XLMForQuestionAnsweringSimple") == "question_answering"
    assert task_of("roberta", "RobertaModel") == "base"
    with pytest.raises(ValueError, match="no class 'BertModel'"):
        task_of("gpt2", "BertModel")


def test_save_tiny_hf_perturbs_every_parameter_and_saves_the_sizes(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = save_tiny_hf(tmp_path, "bert", "masked_lm", n_layers=1)
    assert type(model) is transformers.BertForMaskedLM and not model.training
    fresh = transformers.BertForMaskedLM(model.config).state_dict()
    for name, param in model.named_parameters():
        assert not torch.equal(param, fresh[name]), f"{name} kept its initial value"
    norm = model.bert.embeddings.LayerNorm
    assert not torch.all(norm.weight == 1) and not torch.all(norm.bias == 0)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["hidden_size"], saved["intermediate_size"], saved["num_hidden_layers"]) == (
        CHECKPOINT_SIZES["d_model"], CHECKPOINT_SIZES["d_mlp"], 1
    )
    assert saved["architectures"] == ["BertForMaskedLM"]


def test_save_tiny_hf_names_what_it_cannot_build(tmp_path):
    with pytest.raises(ValueError, match="gpt2 has no masked_lm class"):
        save_tiny_hf(tmp_path, "gpt2", "masked_lm")


def test_tiny_model_builds_every_architecture_and_leaves_the_random_state_alone():
    state = torch.random.get_rng_state()
    for model_type in ARCHITECTURES:
        first, again = tiny_model(model_type, perturb=0.1), tiny_model(model_type, perturb=0.1)
        assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert torch.equal(torch.random.get_rng_state(), state)
