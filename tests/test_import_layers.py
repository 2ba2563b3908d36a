"""The import layers of pyproject.toml (checked by lint-imports, also in .ci/run), and what keeps the README's
calls working across them: the analysis layer gives the models ``generate``, ``fill_mask`` and ``logit_lens``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tiny_gpt2 import save_tiny_gpt2

import workbench as wb
from workbench.model import FillMaskMixin, GenerationMixin, HookedTransformer
from workbench.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def test_lint_imports_keeps_every_contract():
    pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Contracts: 4 kept, 0 broken." in run.stdout, run.stdout[-4000:]


def model_classes() -> set[type]:
    found, todo = set(), [HookedTransformer]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("workbench.models.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_the_models_that_had_the_methods_have_them_still_and_no_others():
    classes = model_classes()
    generates = {c.__name__ for c in classes if hasattr(c, "generate")}
    fills = {c.__name__ for c in classes if hasattr(c, "fill_mask")}
    # The seed's models keep their methods; a model added since may have them only on a language-model head.
    assert generates >= {"GPT2LMHeadModel", "OpenAIGPTLMHeadModel", "TransfoXLLMHeadModel", "XLNetLMHeadModel"}
    assert generates <= {c.__name__ for c in REGISTRY.classes("causal_lm").values()}
    assert fills >= {"BertForMaskedLM", "DistilBertForMaskedLM", "RobertaForMaskedLM"}
    assert fills <= {c.__name__ for c in REGISTRY.classes("masked_lm").values()}
    assert all(hasattr(c, "logit_lens") for c in classes)
    # Each comes from the analysis module of the same name, which is also the free function's home.
    assert GenerationMixin.generate.__module__ == "workbench.generation"
    assert FillMaskMixin.fill_mask.__module__ == "workbench.mask_filling"
    assert HookedTransformer.logit_lens.__module__ == "workbench.lens"
    assert "workbench.generation.generate" in wb.GPT2LMHeadModel.generate.__doc__


def test_methods_are_the_free_functions(tmp_path):
    save_tiny_gpt2(tmp_path)
    lm = wb.load(tmp_path, device="cpu")
    options = dict(max_new_tokens=3, stop_at_eos=False, seed=0, top_k=5)
    assert lm.generate("The cat", **options).steps.equals(wb.generate(lm, "The cat", **options).steps)
    assert lm.logit_lens("The cat sat").top_k(2).equals(wb.logit_lens(lm, "The cat sat").top_k(2))


def test_probes_builds_on_workbench_and_shares_its_probing_library():
    import probes.models
    import probes.store
    import workbench.probing

    assert probes.models.LinearProbe is workbench.probing.LinearProbe
    assert probes.store.hook_name is workbench.probing.hook_name
    assert probes.store.resolve_layers is workbench.probing.resolve_layers
    assert wb.__version__ == workbench.version.__version__
