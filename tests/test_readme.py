"""The README's Python snippets run as written, each on its own, so the tour stays true.

Every fenced ``python`` block of README.md (and of the docs in ``DOCUMENTS``) is executed with ``exec`` in a
fresh namespace (nothing carries over from another block: a block that forgets ``import torch`` or a variable
fails here), in a temporary working directory and temporary folder (saved models and stand-ins land there),
all in one process (imports are shared, so the whole tour takes seconds). Two first-line comments, of a fixed
form, let a block skip on a fresh offline clone, with that reason in the skip message:

- ``# needs the Hugging Face hub: gpt2, bert-base-uncased``: runs only when each id is in the local Hugging
  Face cache (every block runs with the hub offline: a test downloads nothing);
- ``# slow: what makes it slow``: runs only with ``WORKBENCH_README_SLOW=1``.

Skipped blocks are still compiled, so their syntax stays valid.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# The README and the docs whose blocks are whole programs. Not here yet: docs/bench.md (its block reads the
# real data in ../shared/data), docs/viz.md (a hub chat model, a notebook to execute) and docs/sae.md.
DOCUMENTS = [ROOT / "README.md"] + [
    ROOT / "docs" / name for name in ("hooks.md", "weight_processing.md", "bridge.md", "architecture.md")
]

HUB_MARKER = re.compile(r"^# needs the Hugging Face hub: (?P<ids>[\w./-]+(?:, [\w./-]+)*)$")
SLOW_MARKER = re.compile(r"^# slow: (?P<reason>\S.*)$")
FENCE = re.compile(r"^```python\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    """One fenced python block: where it is (``README.md:27``, the fence's line) and its source."""

    document: Path
    line: int
    source: str

    @property
    def name(self) -> str:
        return f"{self.document.name}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.source.splitlines()[0] if self.source.strip() else ""

    @property
    def hub_ids(self) -> list[str]:
        match = HUB_MARKER.match(self.first_line)
        return match["ids"].split(", ") if match else []

    @property
    def slow_reason(self) -> str | None:
        match = SLOW_MARKER.match(self.first_line)
        return match["reason"] if match else None


def snippets(document: Path) -> list[Snippet]:
    """The fenced ``python`` blocks of a Markdown file, in order."""
    text = document.read_text(encoding="utf-8")
    return [
        Snippet(document, text.count("\n", 0, match.start()) + 1, match["body"])
        for match in FENCE.finditer(text)
    ]


ALL = [snippet for document in DOCUMENTS for snippet in snippets(document)]


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def not_cached(hub_ids: list[str], cache_dir: Path | None = None) -> list[str]:
    """The hub ids whose config.json or weights are not in the local Hugging Face cache (default: the user's;
    looked up without network)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(repo_id: str, filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir), str)

    return [
        repo_id
        for repo_id in hub_ids
        if not (cached(repo_id, "config.json") and any(cached(repo_id, name) for name in WEIGHT_FILES))
    ]


def test_the_readme_has_its_tour():
    """The extraction finds the tour (an empty list would make every other test here pass vacuously)."""
    names = [snippet.name for snippet in ALL if snippet.document.name == "README.md"]
    assert len(names) >= 10, names
    runnable = [s for s in ALL if not s.hub_ids and s.slow_reason is None]
    assert len(runnable) >= 8, "most of the tour must run offline on a fresh clone"


def test_hub_snippets_run_when_the_checkpoint_is_cached(tmp_path):
    """The skip is decided by the local cache: a snapshot with config.json and weights counts, config alone not."""
    snapshot = tmp_path / "models--openai-community--gpt2" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "models--openai-community--gpt2" / "refs").mkdir()
    (tmp_path / "models--openai-community--gpt2" / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text("{}")
    ids = ["openai-community/gpt2", "bert-base-uncased"]
    assert not_cached(ids, cache_dir=tmp_path) == ids
    (snapshot / "model.safetensors").write_bytes(b"")
    assert not_cached(ids, cache_dir=tmp_path) == ["bert-base-uncased"]


@pytest.mark.parametrize("snippet", ALL, ids=lambda snippet: snippet.name)
def test_markers_have_the_fixed_form(snippet):
    """A first-line comment that looks like a skip marker but is misspelled would run (and fail) or, worse,
    be taken for an ordinary comment: only the two fixed forms are allowed there."""
    first = snippet.first_line
    if re.match(r"#\s*(needs|slow)\b", first, re.IGNORECASE):
        assert HUB_MARKER.match(first) or SLOW_MARKER.match(first), (
            f"{snippet.name}: {first!r} is neither '# needs the Hugging Face hub: id[, id]' nor '# slow: reason'"
        )
    body = snippet.source.splitlines()[1:]
    assert not any(HUB_MARKER.match(line) or SLOW_MARKER.match(line) for line in body), (
        f"{snippet.name}: a skip marker counts only on the first line"
    )


@pytest.mark.parametrize("snippet", ALL, ids=lambda snippet: snippet.name)
def test_snippet_runs(snippet, tmp_path, monkeypatch):
    code = compile(snippet.source, snippet.name, "exec")  # every block, skipped or not, is valid Python
    if snippet.slow_reason is not None and os.environ.get("WORKBENCH_README_SLOW") != "1":
        pytest.skip(f"slow: {snippet.slow_reason} (WORKBENCH_README_SLOW=1 runs it)")
    missing = not_cached(snippet.hub_ids)
    if missing:
        pytest.skip(f"needs the Hugging Face hub: {', '.join(missing)} (not in the local Hugging Face cache)")
    # Tests download nothing: hub ids come from the local cache (wb.zoo.load falls back to its stand-in).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    threads = torch.get_num_threads()
    # The tour's models are tiny: more threads only add synchronisation (and, on a shared machine, spinning).
    torch.set_num_threads(1)
    try:
        exec(code, {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)


def test_fill_mask_on_minilm_says_its_head_is_untrained():
    """What the README says of MiniLM's masked-LM head: fill_mask warns at the caller's line and marks its table."""
    import workbench as wb

    mlm = wb.AutoModelForMaskedLM.from_pretrained("minilm", device="cpu")
    with pytest.warns(UserWarning, match="freshly initialized.*meaningless") as record:
        table = mlm.fill_mask("The capital of France is [MASK].", top_k=3)
    assert record[0].filename == __file__  # the user's line, not the library's
    assert table["head_initialized"].all() and table.attrs["head_initialized"]
    assert (
        "meaningless" in table.attrs["warning"] and "mlm_head.dense.weight" in table.attrs["initialized_keys"]
    )
    with pytest.warns(UserWarning, match="freshly initialized") as record:
        wb.fill_mask(mlm, "The capital of France is [MASK].", top_k=3)
    assert record[0].filename == __file__


def test_fill_mask_on_a_stand_in_says_it_is_random():
    import workbench as wb

    mlm = wb.zoo.tiny("bert", device="cpu")
    with pytest.warns(UserWarning, match="random stand-in.*random"):
        table = mlm.fill_mask("The capital of France is [MASK].", top_k=3)
    assert (
        table["stand_in"].all()
        and not table["head_initialized"].any()
        and "stand-in" in table.attrs["warning"]
    )
