"""Configuration: small dataclasses read from (and written back to) a Hugging Face ``config.json``.

Each architecture's config subclasses :class:`ModelConfig` and declares its fields with Hugging Face's
names, so a ``config.json`` round-trips unchanged; keys a class does not know are kept in ``extra`` and
written back. The canonical names (:data:`CANONICAL_NAMES`: ``d_model``, ``n_layers``, ``n_heads``,
``n_kv_heads``, ``d_head``, ``d_mlp``, ``vocab_size``, ``max_positions``) are the same on every
architecture: each config's ``ATTRIBUTE_MAP`` (canonical name -> its Hugging Face field, as Hugging Face's
``attribute_map``) makes them readable and writable attributes and accepted keys of :meth:`ModelConfig.from_dict`
(hence of ``AutoConfig.for_model``); those that are no plain field (``d_head = d_model // n_heads``) are
read-only properties, and a key giving one is checked against the value it derives.

Values are checked before anything is built (:meth:`ModelConfig.validate`): every field's type from its
annotation (``true`` or ``12.0`` for a layer count is an error), the ranges that each architecture declares
(``SIZE_FIELDS`` >= 1, ``NON_NEGATIVE_FIELDS`` >= 0, ``PROBABILITY_FIELDS`` in [0, 1]), and an estimate of
the parameters' memory against the memory available. Errors are :class:`ConfigError` and name the field, and
the ``config.json`` when the config was read from one.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

CONFIG_NAME = "config.json"

# True while a model is built with its parameters on the meta device (workbench.model does so to load a
# checkpoint into it): nothing is allocated then, and the loader checks the memory itself, at the dtype and
# on the device it loads to.
BUILDING_WITHOUT_WEIGHTS: ContextVar[bool] = ContextVar("building_without_weights", default=False)


class ConfigError(ValueError):
    """A config value (or a ``config.json``) that cannot describe a model.

    Attributes:
        field: the config field at fault, when there is one.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# config.json keys whose values a dataclass field of another name holds.
_RENAMED_KEYS = {"_name_or_path": "name_or_path"}

# The names every architecture's config answers to (fields, ATTRIBUTE_MAP renames or derived properties).
CANONICAL_NAMES = (
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "d_head",
    "d_mlp",
    "vocab_size",
    "max_positions",
)


def _alias_property(alias: str, name: str) -> property:
    def get(self: ModelConfig) -> Any:
        return getattr(self, name)

    def set_(self: ModelConfig, value: Any) -> None:
        setattr(self, name, value)

    return property(get, set_, doc=f"Another name of ``{name}`` (readable and writable).")


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
    # Per architecture: integer sizes that must be >= 1 (None allowed where the annotation allows it),
    # numbers that must be >= 0, and probabilities (dropouts) in [0, 1]. Subclasses extend their parent's.
    SIZE_FIELDS: ClassVar[tuple[str, ...]] = ()
    NON_NEGATIVE_FIELDS: ClassVar[tuple[str, ...]] = ()
    PROBABILITY_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Per architecture: canonical name -> the Hugging Face field holding it (plain renames only; a subclass
    # inherits its parent's). Each entry becomes a read/write property; see the module docstring.
    ATTRIBUTE_MAP: ClassVar[dict[str, str]] = {}
    # Per architecture: Hugging Face's other names for a field (its config's attribute_map, and the keys of
    # older config.json files) -> the field. Each becomes a read/write property, and from_dict reads it as the
    # field; a dict giving both with different values is an error (a file's or an override's).
    HF_ALIASES: ClassVar[dict[str, str]] = {}

    architectures: list[str] | None = None
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    tie_word_embeddings: bool = True
    name_or_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        renames = {**cls.__dict__.get("ATTRIBUTE_MAP", {}), **cls.__dict__.get("HF_ALIASES", {})}
        for alias, name in renames.items():
            setattr(cls, alias, _alias_property(alias, name))

    def __post_init__(self) -> None:
        # Types and ranges first: subclasses' __post_init__ compute with the values (d_model // n_head).
        self.check_fields()
        self.id2label = {int(k): v for k, v in self.id2label.items()}

    # Canonical names that are no plain field anywhere ------------------------------------------------
    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Every architecture here has as many key/value heads as query heads."""
        return self.n_heads

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings

    @classmethod
    def _hf_alias_keys(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with Hugging Face's other names (``HF_ALIASES``) renamed to the fields they stand for."""
        values = dict(values)
        for alias, name in cls.HF_ALIASES.items():
            if alias not in values:
                continue
            value = values.pop(alias)
            if name in values and values[name] != value:
                raise ConfigError(
                    f"{alias}={value!r} contradicts {name}={values[name]!r} ({cls.model_type or cls.__name__}'s "
                    f"name for it); give one of them",
                    field=alias,
                )
            values[name] = value
        return values

    @classmethod
    def _canonical_keys(cls, values: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
        """``values`` with canonical keys renamed to the Hugging Face fields (``ATTRIBUTE_MAP``); canonical
        keys that are no field are moved to ``derived``, to be checked once the config is built."""
        values = cls._hf_alias_keys(values)
        field_names = {f.name for f in fields(cls)}
        for alias in CANONICAL_NAMES:
            if alias not in values or alias in field_names:
                continue
            value = values.pop(alias)
            name = cls.ATTRIBUTE_MAP.get(alias)
            if name is None:
                derived[alias] = value
            elif name in values and values[name] != value:
                raise ConfigError(
                    f"{alias}={value!r} contradicts {name}={values[name]!r}: {alias} is "
                    f"{cls.model_type or cls.__name__}'s {name}; give one of them",
                    field=alias,
                )
            else:
                values[name] = value
        return values

    # Labels ------------------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"num_labels must be a positive integer, got {n!r}", field="num_labels")
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
        derived: dict[str, Any] = {}
        values = {**cls._canonical_keys(values, derived), **cls._canonical_keys(overrides, derived)}
        values.pop("model_type", None)
        num_labels = values.pop("num_labels", None)
        values.pop("label2id", None)  # derived from id2label
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        extra = values.pop("extra", None) or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"extra must be a JSON object, got {type(extra).__name__}", field="extra")
        extra = dict(extra)
        for key, value in values.items():
            name = _RENAMED_KEYS.get(key, key)
            if name in known:
                kwargs[name] = value
            else:
                extra[key] = value
        config = cls(**kwargs, extra=extra)
        if num_labels is not None:
            config.num_labels = num_labels
        for alias, value in derived.items():
            actual = getattr(config, alias)
            if value != actual:
                raise ConfigError(
                    f"{alias}={value!r}: {cls.model_type or cls.__name__} has no field for {alias}, it follows "
                    f"from the others and is {actual!r} here; set the fields it derives from instead",
                    field=alias,
                )
        config.validate()
        return config

    @classmethod
    def from_file_values(cls, path: str | Path, values: dict[str, Any], **overrides: Any) -> ModelConfig:
        """:meth:`from_dict` on the contents of the config file ``path``: errors name the file (or the
        argument, for a bad value in ``overrides``) and the field."""
        try:
            return cls.from_dict(values, **overrides)
        except ValueError as err:  # ConfigError, and the ValueErrors of architectures' own checks
            field_name = getattr(err, "field", None)
            where = f"the argument {field_name}=" if field_name and field_name in overrides else f"{path}"
            raise ConfigError(f"{where}: {err}", field=field_name) from None

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides: Any) -> ModelConfig:
        return cls.from_file_values(path, read_config_json(path), **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, /, **overrides: Any) -> ModelConfig:
        """Read ``config.json`` from a folder, an alias (``"minilm"``) or a Hugging Face hub name."""
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        values = read_config_json(folder / CONFIG_NAME)
        if cls.model_type and values.get("model_type") != cls.model_type:
            raise ConfigError(
                f"{folder / CONFIG_NAME} has model_type {values.get('model_type')!r}, but {cls.__name__} reads "
                f"{cls.model_type!r} configs; use workbench.AutoConfig to dispatch on model_type"
            )
        overrides.setdefault("name_or_path", str(name_or_path))
        return cls.from_file_values(folder / CONFIG_NAME, values, **overrides)

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
        """Check every value before a model is built: types, ranges, and the memory the parameters need.

        Subclasses add their own checks (e.g. ``hidden_size`` a multiple of ``num_attention_heads``) after
        calling ``super().validate()``.

        Raises:
            ConfigError: naming the field and its value.
        """
        self.check_fields()
        if not BUILDING_WITHOUT_WEIGHTS.get():
            self.check_memory()

    def check_fields(self) -> None:
        """Every field's type against its annotation, then the declared ranges (see the class docstring)."""
        hints = _field_types(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            expected = hints.get(f.name, Any)
            if not _matches(value, expected):
                raise ConfigError(
                    f"{f.name}={value!r} ({_json_type(value)}) must be {_describe(expected)}", field=f.name
                )
        for name in self.SIZE_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r} must be at least 1", field=name)
        for name in self.NON_NEGATIVE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (int, float)) and value < 0:
                raise ConfigError(f"{name}={value!r} must not be negative", field=name)
        for name in self.PROBABILITY_FIELDS:
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(
                    f"{name}={value!r} is a probability (a dropout): it must be in [0, 1]", field=name
                )
        labels = self.id2label
        try:
            ids = sorted(int(key) for key in labels)
        except (TypeError, ValueError):
            ids = None
        if ids != list(range(len(labels))) or not all(isinstance(v, str) for v in labels.values()):
            raise ConfigError(
                f"id2label={labels!r} must map the label ids 0..n-1 to names (strings)", field="id2label"
            )
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"problem_type={self.problem_type!r} must be one of {PROBLEM_TYPES}", field="problem_type"
            )

    # Memory ------------------------------------------------------------------------------------------
    def estimated_parameters(self) -> int:
        """About how many parameters a model of this config has: embeddings (tokens and, where the
        architecture has a table, positions) and per block attention (q, k, v, o) and the MLP."""
        names = {f.name for f in fields(self)}
        table = ("max_position_embeddings", "n_positions")  # fields; XLNet's and Transformer-XL's are not
        positions = sum(getattr(self, name) for name in table if name in names)
        attention = 4 * self.d_model * self.n_heads * self.d_head
        mlp = 2 * self.d_model * self.d_mlp
        return (self.vocab_size + positions) * self.d_model + self.n_layers * (attention + mlp)

    def check_memory(self, available: int | None = None, where: str = "memory available") -> None:
        """Refuse a config whose parameters, in the dtype the checkpoint stores (``torch_dtype``; float32 when
        it names none), would not fit in ``available`` bytes (default: the machine's available memory, where the
        blocks' Python objects count too), naming the size that is furthest above its default. (Loading checks
        again at the dtype it loads in: ``from_pretrained(dtype=...)``.)"""
        on_host = available is None
        available = available_memory() if on_host else available
        parameters = self.estimated_parameters()
        dtype = self.extra.get("torch_dtype") or self.extra.get("dtype")
        dtype = dtype if isinstance(dtype, str) and dtype in _DTYPE_BYTES else "float32"
        needed = _DTYPE_BYTES[dtype] * parameters + (_PYTHON_BYTES_PER_LAYER * self.n_layers if on_host else 0)
        if available is None or needed <= available:
            return
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        sizes = [(name, getattr(self, name)) for name in self.SIZE_FIELDS]
        sizes = [(name, value) for name, value in sizes if isinstance(value, int)]
        sizes.sort(key=lambda item: item[1] / (defaults.get(item[0]) or 1), reverse=True)
        culprit = sizes[0][0] if sizes else None
        listed = ", ".join(f"{name}={value}" for name, value in sizes[:4])
        raise ConfigError(
            f"{culprit}={getattr(self, culprit) if culprit else '?'}: this config describes about "
            f"{parameters:.3g} parameters: {_gib(needed)} in {dtype}"
            f"{' with the Python objects' if on_host else ''}, "
            f"more than the {_gib(available)} of "
            f"{where} ({listed}); is one of these sizes wrong?",
            field=culprit,
        )


# Bytes per parameter of the dtypes a config.json's torch_dtype names.
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}

# The Python objects of one block (its modules and hook points), beside its parameters: about 65 KB,
# measured on a BERT block; it matters for absurd layer counts with tiny widths.
_PYTHON_BYTES_PER_LAYER = 64 * 1024

PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")

# config.json files are small; a bigger one is not a config.
_MAX_CONFIG_BYTES = 16 * 2**20


def read_config_json(path: str | Path) -> dict[str, Any]:
    """Read a ``config.json``, with errors (:class:`ConfigError`) that name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no config.json at {path}: a checkpoint folder needs a Hugging Face config.json "
            f"(with a 'model_type' key) beside its weights"
        )
    size = path.stat().st_size
    if size > _MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is {size} bytes: too large for a config.json (at most {_MAX_CONFIG_BYTES})"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    # ValueError: bad JSON, bad UTF-8, an integer too long to convert; RecursionError: absurd nesting.
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path} is not valid JSON: {type(err).__name__}: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a JSON object, found {_json_type(values)}")
    return values


# Memory --------------------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory available to new allocations: ``MemAvailable`` of /proc/meminfo (else the free
    physical pages), lowered to what a container's memory limit (cgroup v2 or v1) leaves; None where
    nothing can be read."""
    machine = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    machine = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if machine is None:
        try:
            machine = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            pass
    container = _cgroup_headroom()
    known = [n for n in (machine, container) if n is not None]
    return min(known) if known else None


def _cgroup_headroom() -> int | None:
    """The container's memory limit minus its usage, or None where there is no (readable) limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max" or int(limit_text) >= 2**60:  # no limit
                return None
            usage = int(Path(usage_file).read_text().strip()) if Path(usage_file).exists() else 0
            return max(int(limit_text) - usage, 0)
        except (OSError, ValueError):
            continue
    return None


def check_device_memory(config: ModelConfig, device: Any) -> None:
    """On a CUDA device, refuse a config whose parameters would not fit in the device's free memory."""
    import torch

    if device is None or device == "auto":
        return
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        config.check_memory(available=free, where=f"free memory on {device}")


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


# Types of config fields ----------------------------------------------------------------------------------

_TYPE_CACHE: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    if cls not in _TYPE_CACHE:
        _TYPE_CACHE[cls] = typing.get_type_hints(cls)
    return _TYPE_CACHE[cls]


def _matches(value: Any, expected: Any) -> bool:
    """Whether a value fits a field annotation; ``bool`` is not an integer here, nor ``12.0``."""
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if expected is str:
        return isinstance(value, str)
    if origin in (list, tuple) or expected in (list, tuple):
        args = typing.get_args(expected)
        return isinstance(value, (list, tuple)) and all(_matches(item, args[0]) for item in value if args)
    if origin is dict or expected is dict:
        args = typing.get_args(expected)
        if not isinstance(value, dict):
            return False
        if not args:
            return True
        key_type, value_type = args
        # JSON object keys are strings: "0" stands for the integer key 0.
        keys_ok = all(
            _matches(key, key_type) or (key_type is int and isinstance(key, str) and _is_int_text(key))
            for key in value
        )
        return keys_ok and all(_matches(item, value_type) for item in value.values())
    return isinstance(value, expected) if isinstance(expected, type) else True


def _is_int_text(text: str) -> bool:
    return text.strip().lstrip("-").isdigit() and len(text) < 20


def _describe(expected: Any) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(expected))
    names = {
        int: "an integer",
        float: "a (finite) number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
        Any: "anything",
    }
    if expected in names:
        return names[expected]
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        if len(args) == 2:
            key, value = (_describe(arg).removeprefix("an ").removeprefix("a ") for arg in args)
            return f"a JSON object of {key} keys and {value} values"
        return "a JSON object"
    return getattr(expected, "__name__", str(expected))


def _json_type(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
