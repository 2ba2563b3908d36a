"""Saving and loading dictionaries in SAELens's folder format: ``cfg.json`` + ``sae_weights.safetensors``.

The weights file holds ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_out], ``b_dec`` [d_out]
and, for a JumpReLU, ``threshold`` [d_sae]. ``cfg.json`` follows SAELens 6: ``architecture`` (``"standard"``,
``"topk"`` with ``k``, ``"jumprelu"``, ``"transcoder"``, ``"jumprelu_transcoder"``), ``d_in``, ``d_sae``,
``dtype``, ``apply_b_dec_to_input``, ``normalize_activations`` and ``metadata`` (``model_name``,
``hook_name``, ``hook_name_out``); older files (hook_point, model_name at the top level) are read too.

A BatchTopK dictionary is saved as a JumpReLU with its estimated threshold, as SAELens does (that is what
it computes at inference); our own files add a ``"workbench"`` entry (kind, k, training settings) that
SAELens ignores, so a workbench load gets the kind back. A top-k transcoder has no SAELens architecture and
is written as ``"topk_transcoder"``, which only the workbench reads.

Checked against the ``sae-lens`` package itself (tests/test_sae_lens_oracle.py): what it saves loads here
with the same outputs, and what we save loads there with the same outputs. What that taught: SAELens saves
a top-k dictionary it trained with ``rescale_acts_by_decoder_norm: true`` (its training default; the
decoder norms are folded into the saved weights, so they are 1); such files are read by folding the norms
the same way (:func:`fold_decoder_norms`), which leaves the outputs unchanged. Of ``metadata`` the
workbench uses ``model_name``, ``hook_name`` and ``hook_name_out``; the other entries (``context_size``,
``prepend_bos``, ``hook_head_index``, ``neuronpedia_id``, ``training_architecture``, ...) are kept in
``SAEConfig.sae_lens_metadata`` and written back on save.

Only safetensors are read (no pickles). Every problem is reported with the file and the key or shape.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import DTYPES, SAEConfig
from .dictionary import SparseAutoencoder

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
# The SAELens config format these files follow (metadata.sae_lens_version tells SAELens which reader to use).
FORMAT_VERSION = "6.0.0"
MAX_CFG_BYTES = 1 << 20
# The metadata entries the workbench reads into SAEConfig fields; the others go to sae_lens_metadata.
_METADATA_FIELDS = ("model_name", "hook_name", "hook_name_out", "sae_lens_version")

_ARCHITECTURES = {  # (our kind, transcoder) -> SAELens architecture
    ("relu", False): "standard",
    ("topk", False): "topk",
    ("jumprelu", False): "jumprelu",
    ("batchtopk", False): "jumprelu",
    ("relu", True): "transcoder",
    ("jumprelu", True): "jumprelu_transcoder",
    ("batchtopk", True): "jumprelu_transcoder",
    ("topk", True): "topk_transcoder",
}
_KINDS = {
    "standard": "relu",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "transcoder": "relu",
    "jumprelu_transcoder": "jumprelu",
    "topk_transcoder": "topk",
}


class SAEFileError(ValueError):
    """A dictionary folder whose cfg.json or weights cannot be used (the message names file and key)."""


def save(dictionary: SparseAutoencoder, folder: str | os.PathLike) -> Path:
    """Write ``cfg.json`` and ``sae_weights.safetensors`` into ``folder`` (created if needed).

    Training normalisation is folded into the saved weights (the module itself is not changed), so the
    files say ``normalize_activations: "none"`` and give the same outputs on the model's activations.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dictionary.cfg
    folded = SparseAutoencoder(cfg, seed=0)
    folded.load_state_dict(dictionary.state_dict())
    folded.fold_scales_()
    tensors = {name: getattr(folded, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    threshold = folded.threshold_values
    if threshold is not None:
        tensors["threshold"] = threshold.detach().to(cfg.torch_dtype)
    tensors = {name: t.cpu().contiguous() for name, t in tensors.items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CFG_FILE).write_text(json.dumps(_cfg_json(cfg), indent=2) + "\n")
    return folder


def _cfg_json(cfg: SAEConfig) -> dict[str, Any]:
    architecture = _ARCHITECTURES[(cfg.kind, cfg.is_transcoder)]
    out: dict[str, Any] = {
        "architecture": architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": bool(cfg.apply_b_dec_to_input),
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_training_version": FORMAT_VERSION,
            **cfg.sae_lens_metadata,  # what a loaded SAELens file said (its training version included)
            "model_name": cfg.model_name,
            "hook_name": cfg.hook_name,
            "sae_lens_version": FORMAT_VERSION,
        },
    }
    if cfg.kind == "topk":
        out["k"] = cfg.k
        out["rescale_acts_by_decoder_norm"] = False
    if cfg.is_transcoder:
        out["d_out"] = cfg.d_out
        out["metadata"]["hook_name_out"] = cfg.hook_name_out
    settings = cfg.to_dict()
    settings["normalize_activations"] = "none"  # folded
    del settings["sae_lens_metadata"]  # written once, in "metadata"
    out["workbench"] = settings
    return out


def load(
    name_or_path: str | os.PathLike, device: torch.device | str | None = None, revision: str | None = None
) -> SparseAutoencoder:
    """Load a dictionary saved in SAELens's format.

    Args:
        name_or_path: a folder holding ``cfg.json`` and ``sae_weights.safetensors``; or a hub location
            ``"org/repo/sub/folder"`` (the repository ``org/repo``, then the folder inside it, as SAELens's
            releases lay them out, e.g. ``"jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre"``),
            fetched with ``huggingface_hub`` (only those two files; offline it reads the hub cache).
        device: where to put it (default: CPU).
        revision: a hub branch, tag or commit.

    Raises:
        FileNotFoundError: no such folder (and not reachable on the hub); a folder without one of the files.
        SAEFileError: an unknown architecture, a missing or malformed config field, a missing, unexpected,
            misshapen or non-finite tensor (naming the file and the key).
    """
    folder = _resolve(name_or_path, revision)
    cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: a dictionary folder holds {CFG_FILE} and {WEIGHTS_FILE}"
            )
    raw = _read_json(cfg_path)
    cfg = config_from_json(raw, cfg_path)
    tensors = _read_tensors(weights_path)
    dictionary = SparseAutoencoder(cfg, seed=0)
    _fill(dictionary, tensors, weights_path)
    if raw.get("architecture") == "topk" and raw.get("rescale_acts_by_decoder_norm"):
        fold_decoder_norms(dictionary)
    return dictionary.to(device) if device is not None else dictionary


@torch.no_grad()
def fold_decoder_norms(dictionary: SparseAutoencoder) -> None:
    """Fold the decoder row norms ``n`` [d_sae] into the weights: ``W_dec /= n``, ``W_enc *= n``,
    ``b_enc *= n`` (SAELens's ``fold_W_dec_norm``).

    A SAELens top-k file with ``rescale_acts_by_decoder_norm`` multiplies the pre-activations by ``n``
    before the top-k and divides the kept activations by ``n`` before decoding; after the fold a plain
    top-k computes exactly that (the pre-activations and features are the rescaled ones SAELens selects).
    """
    norms = dictionary.W_dec.norm(dim=-1).clamp_min(1e-8)  # [d_sae]; SAELens clamps the same way
    dictionary.W_dec.div_(norms[:, None])
    dictionary.W_enc.mul_(norms)
    dictionary.b_enc.mul_(norms)


def _resolve(name_or_path: str | os.PathLike, revision: str | None) -> Path:
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path} is a file; pass the folder that holds {CFG_FILE} and {WEIGHTS_FILE}")
    parts = text.split("/")
    if text.startswith((".", "/", "~")) or len(parts) < 2 or "\\" in text:
        raise FileNotFoundError(
            f"no dictionary folder at {path.resolve()} (and {text!r} is not 'org/repo[/folder]')"
        )
    return _download(parts[0] + "/" + parts[1], "/".join(parts[2:]), revision)


def _download(repo_id: str, subfolder: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    prefix = f"{subfolder}/" if subfolder else ""
    try:
        root = snapshot_download(
            repo_id, revision=revision, allow_patterns=[prefix + CFG_FILE, prefix + WEIGHTS_FILE]
        )
    except Exception as err:  # huggingface_hub raises many types: offline, missing repo, HTTP, permissions
        reason = str(err).splitlines()[0] if str(err) else ""
        raise FileNotFoundError(
            f"could not fetch {prefix + CFG_FILE} and {prefix + WEIGHTS_FILE} from the hub repository "
            f"{repo_id!r} ({type(err).__name__}: {reason}); pass a local folder, or fetch it once with "
            f"network and then work offline with HF_HUB_OFFLINE=1"
        ) from err
    return Path(root) / subfolder


def _read_json(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_CFG_BYTES:
        raise SAEFileError(f"{path} is {size} bytes; a dictionary config is at most {MAX_CFG_BYTES}")
    try:
        values = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SAEFileError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise SAEFileError(f"{path} holds a JSON {type(values).__name__}; a dictionary config is an object")
    return values


def config_from_json(raw: dict[str, Any], path: Path | str = CFG_FILE) -> SAEConfig:
    """An :class:`SAEConfig` from the contents of a SAELens ``cfg.json`` (6.x, or older with top-level
    ``hook_point``/``hook_name``/``model_name`` and ``activation_fn_str``)."""
    metadata = raw.get("metadata") or raw.get("meta") or {}
    if not isinstance(metadata, dict):
        raise SAEFileError(f"{path}: 'metadata' must be an object, got {type(metadata).__name__}")
    extra_metadata = {key: value for key, value in metadata.items() if key not in _METADATA_FIELDS}
    _warn_about_reshaping(raw, path)
    ours = raw.get("workbench")
    if isinstance(ours, dict):
        try:
            return SAEConfig.from_dict({**ours, "sae_lens_metadata": extra_metadata})
        except (TypeError, ValueError) as err:
            raise SAEFileError(f"{path}: its 'workbench' entry is not a valid SAEConfig: {err}") from None
    architecture = raw.get("architecture", "standard")
    if architecture == "standard" and raw.get("activation_fn_str", raw.get("activation_fn")) == "topk":
        architecture = "topk"  # pre-6 files said top-k through the activation function
    if architecture not in _KINDS:
        raise SAEFileError(
            f"{path}: architecture {architecture!r} is not supported; supported: {sorted(_KINDS)}"
        )
    normalize = raw.get("normalize_activations", "none")
    if normalize not in ("none", False, None):
        raise SAEFileError(
            f"{path}: normalize_activations={normalize!r} needs a scaling factor this file does not hold; "
            f"fold it into the weights first (SAELens: fold_activation_norm_scaling_factor)"
        )
    k = raw.get("k", (raw.get("activation_fn_kwargs") or {}).get("k"))
    dtype = str(raw.get("dtype", "float32")).removeprefix("torch.")
    values = {
        "d_in": _positive_int(raw, "d_in", path),
        "d_sae": _positive_int(raw, "d_sae", path),
        "kind": _KINDS[architecture],
        "k": k,
        "apply_b_dec_to_input": bool(
            raw.get("apply_b_dec_to_input", architecture in ("standard", "topk", "jumprelu"))
        ),
        "hook_name": metadata.get("hook_name", raw.get("hook_name", raw.get("hook_point"))),
        "hook_name_out": metadata.get("hook_name_out", raw.get("hook_name_out")),
        "model_name": metadata.get("model_name", raw.get("model_name")),
        "dtype": dtype if dtype in DTYPES else "float32",
        "decoder_unit_norm": False,  # a loaded dictionary's decoder is what it is; training may set it
        "sae_lens_metadata": extra_metadata,
    }
    if "d_out" in raw or architecture.endswith("transcoder"):
        values["d_out"] = _positive_int(raw, "d_out", path)
    if values["hook_name_out"] is None and architecture.endswith("transcoder"):
        values["hook_name_out"] = "<unknown output hook>"
    try:
        return SAEConfig(**values)
    except ValueError as err:
        raise SAEFileError(f"{path}: {err}") from None


def _warn_about_reshaping(raw: dict[str, Any], path: Path | str) -> None:
    """SAELens settings that change what the dictionary is applied to, which a plain load cannot carry out:
    said out loud rather than dropped."""
    reshape = raw.get("reshape_activations", "none")
    if reshape not in ("none", None):
        warnings.warn(
            f"{path}: reshape_activations={reshape!r}: SAELens flattens [..., n_heads, d_head] activations to "
            f"[..., d_in] before encoding; this dictionary reads [..., d_in], so flatten the heads first "
            f"(x.flatten(-2)) and reshape its outputs back",
            stacklevel=3,
        )
    head = (raw.get("metadata") or {}).get("hook_head_index", raw.get("hook_head_index"))
    if head is not None:
        warnings.warn(
            f"{path}: hook_head_index={head}: the dictionary was trained on one head's activation; give it "
            f"that head's slice, not the whole hook point",
            stacklevel=3,
        )


def _positive_int(raw: dict[str, Any], key: str, path: Path | str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SAEFileError(f"{path}: {key!r} must be a positive integer, got {value!r}")
    return value


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise SAEFileError(f"{path} is not a readable safetensors file: {err}") from None


def _fill(dictionary: SparseAutoencoder, tensors: dict[str, torch.Tensor], path: Path) -> None:
    cfg = dictionary.cfg
    expected = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "b_enc": (cfg.d_sae,),
        "W_dec": (cfg.d_sae, cfg.d_out),
        "b_dec": (cfg.d_out,),
    }
    if cfg.kind in ("jumprelu", "batchtopk"):
        expected["threshold"] = (cfg.d_sae,)
    # Extra keys some releases carry that do not change the function (all-ones scaling folded by SAELens).
    ignorable = {"scaling_factor", "finetuning_scaling_factor"}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected) - ignorable)
    if missing or unexpected:
        raise SAEFileError(
            f"{path}: keys do not match a {cfg.kind} dictionary: missing {missing}, unexpected {unexpected} "
            f"(expected {sorted(expected)})"
        )
    for key in ignorable & set(tensors):
        if not torch.all(tensors[key] == 1):
            raise SAEFileError(f"{path}: {key!r} is not all ones; fold it into W_dec before loading")
    for key, shape in expected.items():
        tensor = tensors[key]
        if tuple(tensor.shape) != shape:
            raise SAEFileError(
                f"{path}: {key!r} has shape {list(tensor.shape)}, expected {list(shape)} from {CFG_FILE}"
            )
        if not tensor.is_floating_point():
            raise SAEFileError(f"{path}: {key!r} has dtype {tensor.dtype}; expected a floating-point tensor")
        if not torch.isfinite(tensor).all():
            raise SAEFileError(f"{path}: {key!r} holds NaN or infinite values")
    threshold = tensors.get("threshold")
    if threshold is not None and (threshold < 0).any():
        raise SAEFileError(f"{path}: 'threshold' has negative entries; a JumpReLU threshold is >= 0")
    with torch.no_grad():
        for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(dictionary, key).copy_(tensors[key])
        if cfg.kind == "jumprelu":
            dictionary.log_threshold.copy_(threshold.to(torch.float64).log())  # log(0) = -inf: always open
        elif cfg.kind == "batchtopk":
            dictionary.threshold.copy_(threshold)


SparseAutoencoder.save = save
