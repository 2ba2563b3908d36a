"""Configuration: small dataclasses read from (and written back to) a Hugging Face ``config.json``.

Each architecture's config subclasses :class:`ModelConfig` and declares its fields with Hugging Face's
names, so a ``config.json`` round-trips unchanged; keys a class does not know are kept in ``extra`` and
written back. Canonical aliases (``d_model``, ``n_layers``, ``n_heads``, ``d_head``, ``d_mlp``) are
properties, the same on every architecture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"

# config.json keys whose values a dataclass field of another name holds.
_RENAMED_KEYS = {"_name_or_path": "name_or_path"}


@dataclass
class ModelConfig:
    """Fields every architecture shares.

    Attributes:
        architectures: the class names the checkpoint was saved from (e.g. ``["BertForMaskedLM"]``).
        id2label: label names of a classification head; its length is ``num_labels``.
        problem_type: ``"regression"``, ``"single_label_classification"`` or ``"multi_label_classification"``.
        tie_word_embeddings: the unembedding shares its weight with the token embedding.
        name_or_path: where the config was read from.
        extra: keys of the ``config.json`` that this class has no field for, kept and written back.
    """

    model_type: ClassVar[str] = ""

    architectures: list[str] | None = None
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    tie_word_embeddings: bool = True
    name_or_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id2label = {int(k): v for k, v in self.id2label.items()}

    # Labels ------------------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_labels must be a positive integer, got {n!r}")
        if n != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.id2label.items()}

    # Reading and writing -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> ModelConfig:
        """Build from a ``config.json`` dict; unknown keys go to ``extra``; ``overrides`` win.

        ``num_labels`` (an override or a key) sets ``id2label`` to ``LABEL_0..LABEL_{n-1}`` unless
        ``id2label`` of that length is given too.
        """
        values = {**values, **overrides}
        values.pop("model_type", None)
        num_labels = values.pop("num_labels", None)
        values.pop("label2id", None)  # derived from id2label
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra = dict(values.pop("extra", {}) or {})
        for key, value in values.items():
            name = _RENAMED_KEYS.get(key, key)
            if name in known:
                kwargs[name] = value
            else:
                extra[key] = value
        config = cls(**kwargs, extra=extra)
        if num_labels is not None:
            config.num_labels = int(num_labels)
        config.validate()
        return config

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        return cls.from_dict(read_config_json(path), **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, /, **overrides: Any) -> ModelConfig:
        """Read ``config.json`` from a folder, an alias (``"minilm"``) or a Hugging Face hub name."""
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        values = read_config_json(folder / CONFIG_NAME)
        if cls.model_type and values.get("model_type") != cls.model_type:
            raise ValueError(
                f"{folder / CONFIG_NAME} has model_type {values.get('model_type')!r}, but {cls.__name__} reads "
                f"{cls.model_type!r} configs; use workbench.AutoConfig to dispatch on model_type"
            )
        overrides.setdefault("name_or_path", str(name_or_path))
        return cls.from_dict(values, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict, Hugging Face–compatible (``model_type``, ``label2id`` included)."""
        out: dict[str, Any] = {"model_type": self.model_type}
        for f in fields(self):
            if f.name in ("extra", "name_or_path"):
                continue
            out[f.name] = getattr(self, f.name)
        out["id2label"] = {str(i): label for i, label in self.id2label.items()}
        out["label2id"] = self.label2id
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def validate(self) -> None:
        """Check field values; subclasses add their own checks and call ``super().validate()``."""


def read_config_json(path: str | Path) -> dict[str, Any]:
    """Read a ``config.json``, with errors that name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no config.json at {path}: a checkpoint folder needs a Hugging Face config.json "
            f"(with a 'model_type' key) beside its weights"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(values).__name__}")
    return values
