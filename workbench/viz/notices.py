"""One short box where a notebook section needs a checkpoint that is not on this machine.

Offline, a notebook section about GPT-2 or Llama has nothing real to show. Instead of filling the page with a
random model's output, it shows one box: what the section would show, which checkpoints it needs, and how to
get them (download once, pass a folder, or ask for labelled random stand-ins), and moves on.

>>> box = missing_checkpoints(["gpt2"], "causal attention on a decoder", parameter="second_model")
>>> "hf download gpt2" in box.text()
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

BOX_CLASS = "wb-missing-checkpoint"


@dataclass(frozen=True)
class MissingCheckpoints:
    """The box's content; displayed, it renders as HTML (Jupyter, reports) or as plain text.

    Attributes:
        names: the checkpoints (hub ids or folders) the section needs and this machine lacks.
        shows: what the section would show with them, as a phrase ("the same views on GPT-2").
        parameter: the notebook parameter that names them, for ``--param parameter=/path/to/folder``.
    """

    names: tuple[str, ...]
    shows: str
    parameter: str

    def _folder_example(self) -> str:
        value = "/path/to/folder"
        return f"'[\"{value}\"]'" if len(self.names) > 1 else value

    def text(self) -> str:
        """The box as plain text (one paragraph)."""
        downloads = "; ".join(f"hf download {name}" for name in self.names)
        return (
            f"Not shown here: {self.shows}. It needs {', '.join(self.names)}, not found on this machine (no such "
            f"folder, not in the Hugging Face cache; nothing is downloaded). To see it: `{downloads}` once with "
            f"network, or `--param {self.parameter}={self._folder_example()}` (a checkpoint folder); "
            f"`--param stand_ins=True` uses tiny random stand-ins instead (labelled; the mechanics only)."
        )

    def _repr_html_(self) -> str:
        names = ", ".join(f"<code>{html.escape(name)}</code>" for name in self.names)
        downloads = "; ".join(f"hf download {html.escape(name)}" for name in self.names)
        folder = html.escape(f"--param {self.parameter}={self._folder_example()}")
        return (
            f'<div class="{BOX_CLASS}" style="border:1px solid #c9a227;background:#fff8e1;border-radius:4px;'
            f'padding:0.6em 0.9em;margin:0.4em 0;max-width:60em">'
            f"<b>Not shown here: {html.escape(self.shows)}.</b> It needs {names}, not found on this machine (no "
            f"such folder, not in the Hugging Face cache; nothing is downloaded). To see it: "
            f"<code>{downloads}</code> once with network, or <code>{folder}</code> (a checkpoint folder); "
            f"<code>--param stand_ins=True</code> uses tiny random stand-ins instead (labelled; the mechanics "
            f"only).</div>"
        )

    def __repr__(self) -> str:
        return self.text()


def missing_checkpoints(names: str | Sequence[str], shows: str, parameter: str) -> MissingCheckpoints:
    """The box a notebook shows in place of a section whose checkpoints are missing.

    Args:
        names: one hub id or folder, or several (one box for all of them).
        shows: what the section would show, as a phrase.
        parameter: the notebook parameter that names the checkpoints.

    Raises:
        ValueError: for no names, or an empty ``shows`` or ``parameter``.
    """
    names = (names,) if isinstance(names, str) else tuple(str(name) for name in names)
    if not names or not all(names):
        raise ValueError(f"missing_checkpoints needs at least one checkpoint name, got {names!r}")
    for value, what in ((shows, "shows"), (parameter, "parameter")):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"missing_checkpoints: {what} must be a non-empty string, got {value!r}")
    return MissingCheckpoints(names, shows.strip().rstrip("."), parameter)
