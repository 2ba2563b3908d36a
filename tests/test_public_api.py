"""The public face of ``import workbench as wb``: what it lists, and every ``wb.<name>`` the docs use.

The README, docs/ and the notebooks are read for ``wb.<name>``, so a name they use that stops resolving
fails here, not in a reader's session.
"""

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import workbench as wb
from workbench.architecture import TASKS
from workbench.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
WB_NAME = re.compile(r"\bwb\.([A-Za-z_][A-Za-z0-9_]*)")


def _notebook_sources(path: Path) -> str:
    """The code cells of a notebook, as one text."""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def _names_used() -> dict[str, str]:
    """``name -> first file`` for every ``wb.<name>`` in README.md, docs/*.md and notebooks/*.ipynb."""
    sources = [(ROOT / "README.md", (ROOT / "README.md").read_text())]
    sources += [(path, path.read_text()) for path in sorted((ROOT / "docs").glob("*.md"))]
    sources += [(path, _notebook_sources(path)) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    used: dict[str, str] = {}
    for path, text in sources:
        for name in WB_NAME.findall(text):
            used.setdefault(name, str(path.relative_to(ROOT)))
    return used


FACE = {
    "load": "function",
    "default_device": "function",
    "AutoConfig": "class",
    "AutoTokenizer": "class",
    "AutoModel": "class",
    "AutoModelForCausalLM": "class",
    "AutoModelForMaskedLM": "class",
    "AutoModelForSequenceClassification": "class",
    "AutoModelForTokenClassification": "class",
    "AutoModelForQuestionAnswering": "class",
    "AutoModelForMultipleChoice": "class",
    "HookedTransformer": "class",
    "ActivationCache": "class",
    "HookPoint": "class",
    "attribution": "module",
    "interventions": "module",
    "viz": "module",
    "bench": "module",
    "zoo": "module",
}


@pytest.mark.parametrize("name, kind", sorted(FACE.items()))
def test_public_names_exist(name, kind):
    assert name in wb.__all__
    value = getattr(wb, name)
    if kind == "module":
        assert isinstance(value, types.ModuleType) and value.__name__ == f"workbench.{name}"
    elif kind == "class":
        assert isinstance(value, type)
    else:
        assert callable(value) and not isinstance(value, type)


def test_all_is_short_and_resolves():
    assert len(wb.__all__) == len(set(wb.__all__)) <= 30
    for name in wb.__all__:
        assert getattr(wb, name) is not None, name
    # the model classes are the registry's, not a second list kept here
    assert not [name for name in wb.__all__ if name.endswith(("Model", "Config")) and name[:4] != "Auto"]


def test_dir_is_the_public_face():
    assert dir(wb) == sorted(wb.__all__)


def test_star_import_gives_the_public_face():
    namespace: dict = {}
    exec("from workbench import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(wb.__all__)


def test_every_name_the_docs_use_resolves():
    used = _names_used()
    # the scan reads what it should: a few names every reader meets
    assert {"load", "AutoModel", "attribute", "zoo", "bench"} <= set(used)
    missing = {name: path for name, path in used.items() if not hasattr(wb, name)}
    assert not missing, f"wb.<name> used in the docs but not resolvable: {missing}"


@pytest.mark.parametrize("model_type", REGISTRY.model_types())
def test_every_registered_class_is_reachable_by_name(model_type):
    architecture = REGISTRY[model_type]
    classes = [architecture.config_class, *(architecture.model_class(task) for task in architecture.tasks)]
    assert len(classes) >= 2
    for cls in classes:
        assert getattr(wb, cls.__name__) is cls
        namespace: dict = {}
        exec(f"from workbench import {cls.__name__}", namespace)
        assert namespace[cls.__name__] is cls


def test_names_moved_out_of_the_face_still_resolve():
    from workbench import ablation, config, generation, lens, tokenizers

    assert wb.head_ablation_hooks is ablation.head_ablation_hooks
    assert wb.GenerationResult is generation.GenerationResult
    assert wb.LogitLens is lens.LogitLens
    assert wb.ModelConfig is config.ModelConfig
    assert wb.Attribution is wb.attribution.Attribution
    for cls in (tokenizers.Tokenizer, tokenizers.Encoding, *tokenizers.FOLDER_CLASSES):
        assert getattr(wb, cls.__name__) is cls
    assert wb.hub.__name__ == "workbench.hub"
    assert isinstance(wb.__version__, str)


@pytest.mark.parametrize("name", ["NoSuchModel", "bertmodel", "transformers", "TASKS", "_registered"])
def test_unknown_names_raise_attribute_error(name):
    with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
        getattr(wb, name)
    assert not hasattr(wb, name)
    with pytest.raises(ImportError):
        exec(f"from workbench import {name}", {})


def test_analysis_methods_are_attached_on_import():
    """The top level imports generation, lens and mask_filling, which give the models their methods."""
    code = (
        "import workbench as wb\n"
        "assert callable(wb.HookedTransformer.logit_lens)\n"
        "assert callable(wb.GPT2LMHeadModel.generate)\n"
        "assert callable(wb.BertForMaskedLM.fill_mask)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tasks_constant_matches_the_auto_classes():
    """Each task of the registry has its Auto class in the face (``AutoModelFor<Task>`` or ``AutoModel``)."""
    auto_names = {name for name in wb.__all__ if name.startswith("AutoModel")}
    assert len(auto_names) == len(TASKS)
