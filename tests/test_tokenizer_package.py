"""The ``workbench.tokenizers`` package: one dispatch through its registry, a base class that names none of
its subclasses, no import cycles among its modules, and no clash with the third-party ``tokenizers``
library whose name it shares."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import workbench.tokenizers as package
from workbench.tokenizers import (
    FOLDER_CLASSES,
    Tokenizer,
    TransfoXLTokenizer,
    XLMTokenizer,
    XLNetTokenizer,
)

PACKAGE_DIR = Path(package.__file__).parent
FAMILY_MODULES = {"xlm", "xlnet", "transfo_xl"}
# The modules every family builds on: they may import none of the family modules.
SHARED_MODULES = {"base", "files", "wordpiece_bpe"}


def sibling_imports() -> dict[str, set[str]]:
    """module -> the modules of the package it imports (anywhere in the file, functions included)."""
    names = {path.stem for path in PACKAGE_DIR.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in names - {"__init__"}:
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    imported.add(node.module.split(".")[0])
                else:
                    imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbench."):
                parts = node.module.split(".")
                if parts[:2] == ["workbench", "tokenizers"] and len(parts) > 2:
                    imported.add(parts[2])
        graph[name] = imported & names
    return graph


def test_shared_modules_import_no_family_module():
    graph = sibling_imports()
    assert set(graph) >= SHARED_MODULES | FAMILY_MODULES
    for name in SHARED_MODULES:
        assert not graph[name] & FAMILY_MODULES, f"{name}.py imports {graph[name] & FAMILY_MODULES}"


def test_no_import_cycle_among_the_modules():
    graph = sibling_imports()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            pytest.fail(f"import cycle: {' -> '.join((*path[path.index(name) :], name))}")
        if name in done:
            return
        for imported in graph.get(name, ()):
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_every_family_has_a_stand_in_that_imports_no_family_module():
    """The stand-ins write each family's files (wb.zoo's tiny models) without the families' classes."""
    from workbench.tokenizers.stand_in import STAND_INS
    from workbench.tokenizers.wordpiece_bpe import FAMILIES

    assert not sibling_imports()["stand_in"] & FAMILY_MODULES
    assert set(STAND_INS) == set(FAMILIES) | {"xlm", "xlnet", "transfo_xl"}


def test_base_class_names_no_subclass():
    text = "\n".join((PACKAGE_DIR / f"{name}.py").read_text(encoding="utf-8") for name in SHARED_MODULES)
    for cls in FOLDER_CLASSES:
        assert cls.__name__ not in text


@pytest.mark.parametrize("module", sorted(FAMILY_MODULES | SHARED_MODULES))
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    """Whichever module is imported first, the package loads whole and the registry is set."""
    code = (
        f"import workbench.tokenizers.{module}\n"
        "from workbench.tokenizers import Tokenizer\n"
        "print(len(Tokenizer.folder_classes))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(FOLDER_CLASSES))


def test_tokenizers_means_the_third_party_library():
    import tokenizers

    from workbench.tokenizers import base

    assert Path(tokenizers.__file__).resolve().parent != PACKAGE_DIR.resolve()
    assert base.BackendTokenizer is tokenizers.Tokenizer
    assert package.__name__ == "workbench.tokenizers"


def write_settings(folder: Path, tokenizer_config: dict | None = None, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("tokenizer_config", "config", "expected"),
    [
        ({"tokenizer_class": "XLMTokenizer"}, None, XLMTokenizer),
        ({"tokenizer_class": "XLNetTokenizerFast"}, None, XLNetTokenizer),
        ({"tokenizer_class": "TransfoXLTokenizer"}, None, TransfoXLTokenizer),
        ({"tokenizer_class": "BertTokenizer"}, {"model_type": "xlnet"}, Tokenizer),
        (None, {"model_type": "xlm"}, XLMTokenizer),
        (None, {"model_type": "xlnet"}, XLNetTokenizer),
        (None, {"model_type": "transfo-xl"}, TransfoXLTokenizer),
        (None, {"model_type": "gpt2"}, Tokenizer),
    ],
)
def test_one_dispatch_by_the_classes_handles(tmp_path, tokenizer_config, config, expected):
    folder = write_settings(tmp_path / "tok", tokenizer_config, config)
    assert Tokenizer.class_for(folder) is expected


def test_a_class_added_to_the_registry_is_dispatched_to(tmp_path, monkeypatch):
    """Adding a family is a class with ``handles`` in the registry: nothing in the base class changes."""
    folder = write_settings(tmp_path / "tok", {"tokenizer_class": "MyTokenizer"})

    class MyTokenizer(Tokenizer):
        @staticmethod
        def handles(folder) -> bool:
            return (
                json.loads((Path(folder) / "tokenizer_config.json").read_text())["tokenizer_class"]
                == "MyTokenizer"
            )

        @classmethod
        def from_pretrained(cls, name_or_path, **kwargs):
            return ("mine", Path(name_or_path), kwargs)

    monkeypatch.setattr(Tokenizer, "folder_classes", (*FOLDER_CLASSES, MyTokenizer))
    assert Tokenizer.class_for(folder) is MyTokenizer
    assert Tokenizer.from_pretrained(folder, padding_side="left") == (
        "mine",
        folder,
        {"padding_side": "left"},
    )
    with pytest.raises(
        ValueError, match="add_prefix_space applies to byte-level BPE tokenizers, not to MyTokenizer"
    ):
        Tokenizer.from_pretrained(folder, add_prefix_space=True)


def test_an_empty_registry_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    folder = write_settings(tmp_path / "tok", None, {"model_type": "xlnet"})
    monkeypatch.setattr(Tokenizer, "folder_classes", ())
    with pytest.raises(RuntimeError, match="folder_classes is empty"):
        Tokenizer.from_pretrained(folder)
