"""The tokenizer files, read and checked once for every tokenizer class.

Every reader raises :class:`TokenizerFileError` naming the file and where in it (the line for text formats,
the byte offset for binary ones) for a malformed, truncated or non-UTF-8 file; nothing of such a file is
used. The readers of one family's own formats stay in its module (``spiece.model`` in :mod:`.xlnet`,
``vocab.pkl`` in :mod:`.transfo_xl`, XLM's ``merges.txt`` in :mod:`.xlm`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer

# The special-token keys of tokenizer_config.json / special_tokens_map.json.
SPECIAL_TOKEN_KEYS = (
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "bos_token",
    "eos_token",
)
# What saved settings never carry over to a tokenizer's saved_settings.
_NOT_SAVED = ("added_tokens_decoder", "name_or_path")


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read as what it should be: ``tokenizer.json``, ``vocab.txt``,
    ``vocab.json``, ``merges.txt``, ``vocab.pkl``, ``spiece.model``, ``tokenizer_config.json`` or
    ``special_tokens_map.json``. The message names the file and where in it: the line for text formats, the
    byte offset for binary ones. Every tokenizer reader of the workbench raises it (or a subclass) for a
    malformed, truncated or non-UTF-8 file; nothing of such a file is used."""


def read_text_file(path: Path, universal_newlines: bool = True) -> str:
    """The UTF-8 text of ``path``; with ``universal_newlines``, ``\r\n`` and ``\r`` read as ``\n``, as
    ``open(path, encoding="utf-8")`` reads them.

    Raises:
        TokenizerFileError: bytes that are not UTF-8, with the line and byte offset of the first.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise TokenizerFileError(
            f"{path}, line {line} (byte {err.start}): not UTF-8 text ({err.reason}: "
            f"{data[err.start : err.end]!r})"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if universal_newlines else text


def read_lines(path: Path, universal_newlines: bool = True) -> list[str]:
    """The lines of a UTF-8 text file, without their newlines (without ``universal_newlines``: split on
    ``\n`` only, a ``\r`` before it dropped, as the ``tokenizers`` library reads merges.txt).

    A non-empty file must end with a newline: one that does not was most likely cut off in the middle of its
    last line (every vocabulary and merges file written by the tokenizer libraries ends with one).

    Raises:
        TokenizerFileError: non-UTF-8 bytes, or no final newline (with the line number).
    """
    text = read_text_file(path, universal_newlines)
    if not text:
        return []
    lines = text.split("\n")
    if not universal_newlines:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if lines[-1]:
        raise TokenizerFileError(
            f"{path}, line {len(lines)}: the file ends in the middle of a line ({lines[-1][:80]!r}) without a "
            f"newline: was it cut off? A complete vocabulary or merges file ends with a newline; if this one is "
            f"complete, add the newline"
        )
    return lines[:-1]


def read_json_file(path: Path, *, duplicate_keys_allowed: bool = True) -> dict[str, Any]:
    """A JSON file that must hold an object.

    Raises:
        TokenizerFileError: non-UTF-8 bytes, invalid JSON (with line and column), something other than an
            object, or (with ``duplicate_keys_allowed=False``) a key written twice in one object.
    """
    text = read_text_file(path)

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise TokenizerFileError(f"{path}: the key {key!r} is written twice")
                seen.add(key)
        return out

    try:
        value = json.loads(text, object_pairs_hook=None if duplicate_keys_allowed else unique)
    except json.JSONDecodeError as err:
        raise TokenizerFileError(
            f"{path}, line {err.lineno} column {err.colno}: not valid JSON: {err.msg}"
        ) from None
    except RecursionError:
        raise TokenizerFileError(f"{path}: the JSON is nested too deeply") from None
    if not isinstance(value, dict):
        raise TokenizerFileError(f"{path} must hold a JSON object, found a {type(value).__name__}")
    return value


def read_wordpiece_vocab(path: Path) -> dict[str, int]:
    """BERT's ``vocab.txt`` as Hugging Face reads it: token -> line number (0-based; a token written twice
    keeps its last line).

    Raises:
        TokenizerFileError: non-UTF-8 bytes or a last line cut off (no final newline), naming the line.
    """
    return {token: index for index, token in enumerate(read_lines(path))}


def read_token_ids(path: Path) -> dict[str, int]:
    """A ``vocab.json``: an object of token -> id (a non-negative int below 2**32), no token written twice.

    Raises:
        TokenizerFileError: naming the file and the first bad entry.
    """
    vocab = read_json_file(path, duplicate_keys_allowed=False)
    for token, index in vocab.items():
        if type(index) is not int or not 0 <= index < 1 << 32:
            raise TokenizerFileError(
                f"{path} must map every token to its id (a non-negative integer); found {token!r}: {index!r}"
            )
    return vocab


def read_bpe_files(vocab_path: Path, merges_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``vocab.json`` + ``merges.txt`` as the ``tokenizers`` library reads them (``BPE.read_file``), checked
    line by line: ``#version`` lines are skipped; every other line is two symbols separated by one space,
    each of them and their concatenation in the vocabulary (what the BPE model requires).

    Raises:
        TokenizerFileError: naming the file and line (or entry) that is wrong.
    """
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    vocab = read_token_ids(vocab_path)
    merges = []
    for number, line in enumerate(read_lines(merges_path, universal_newlines=False), start=1):
        if line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(
                f"{merges_path}, line {number}: {line[:80]!r} is not a merge (two symbols separated by one space)"
            )
        for symbol in (*parts, parts[0] + parts[1]):
            if symbol not in vocab:
                raise TokenizerFileError(
                    f"{merges_path}, line {number}: the merge {line[:80]!r} needs the symbol {symbol[:80]!r}, "
                    f"which {vocab_path} lacks"
                )
        merges.append((parts[0], parts[1]))
    return vocab, merges


def settings_model_max_length(value: Any, folder: Path) -> int | None:
    """tokenizer_config.json's ``model_max_length``: a positive number, None for none or Hugging Face's "no
    limit" sentinel (about 1e30).

    Raises:
        TokenizerFileError: anything else (a string, a bool, zero, a negative number, NaN).
    """
    if value is None:
        return None
    if type(value) not in (int, float) or not value >= 1:
        raise TokenizerFileError(
            f"{folder / 'tokenizer_config.json'}: model_max_length must be a positive number, got {value!r}"
        )
    return None if value >= 1e29 else int(value)


def read_json_if_present(path: Path) -> dict[str, Any]:
    """The object in a JSON file; {} without the file (:class:`TokenizerFileError` for a malformed one)."""
    return read_json_file(path) if path.is_file() else {}


def named_tokenizer_class(folder: Path) -> Any:
    """``tokenizer_config.json``'s ``tokenizer_class`` in ``folder``; None when the file or the key is absent
    (or the value empty)."""
    return read_json_if_present(folder / "tokenizer_config.json").get("tokenizer_class") or None


def named_model_type(folder: Path) -> Any:
    """``config.json``'s ``model_type`` in ``folder``; None when the file or the key is absent."""
    return read_json_if_present(folder / "config.json").get("model_type")


def read_settings(folder: Path) -> dict[str, Any]:
    """``special_tokens_map.json`` updated by ``tokenizer_config.json`` (each {} when absent)."""
    return {
        **read_json_if_present(folder / "special_tokens_map.json"),
        **read_json_if_present(folder / "tokenizer_config.json"),
    }


def saved_settings_of(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a tokenizer keeps to write back (all but ``added_tokens_decoder`` and ``name_or_path``)."""
    return {key: value for key, value in settings.items() if key not in _NOT_SAVED}


def settings_options(
    settings: dict[str, Any], folder: Path, name_or_path: Any, padding_side: str = "right"
) -> dict[str, Any]:
    """The constructor options that every tokenizer class reads from its settings alike: ``model_max_length``
    (checked: :func:`settings_model_max_length`), ``padding_side`` (default ``padding_side``),
    ``name_or_path`` and ``saved_settings``."""
    return {
        "model_max_length": settings_model_max_length(settings.get("model_max_length"), folder),
        "padding_side": settings.get("padding_side", padding_side),
        "name_or_path": str(name_or_path),
        "saved_settings": saved_settings_of(settings),
    }


def special_tokens_of(
    settings: dict[str, Any], defaults: dict[str, str], keys: tuple[str, ...] = SPECIAL_TOKEN_KEYS
) -> dict[str, str]:
    """``defaults`` overridden by the special tokens of ``settings`` (each a string or a dict with its
    ``content``); a key set to null in the settings means "none" and removes the default."""
    special = dict(defaults)
    for key in keys:
        if key in settings:
            value = settings[key]
            value = value.get("content") if isinstance(value, dict) else value
            if value is None:
                special.pop(key, None)
            else:
                special[key] = value
    return special


def additional_special_tokens_of(settings: dict[str, Any], default: Any) -> list[str]:
    """``additional_special_tokens`` (Hugging Face 5: ``extra_special_tokens``) of the settings, each token a
    string; ``default`` when neither is a list."""
    additional = settings.get("additional_special_tokens", settings.get("extra_special_tokens"))
    if additional is None or isinstance(additional, dict):
        additional = default
    return [token.get("content") if isinstance(token, dict) else token for token in additional]


def describe_folder(folder: Path) -> str:
    """The names in ``folder``, for error messages ("nothing" for an empty or missing folder)."""
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return ", ".join(names) if names else "nothing"


def read_tokenizer_json(path: Path) -> BackendTokenizer:
    """A ``tokenizers`` pipeline from ``tokenizer.json``. A SentencePiece normalization table in it
    (``Precompiled``) is checked too: the ``tokenizers`` library loads some corrupted ones and then crashes
    (a Rust panic) on the first text that reaches the damage.

    Raises:
        TokenizerFileError: non-UTF-8 bytes (line and byte offset), JSON that is not a tokenizer (the
            ``tokenizers`` library's reason, with line and column), or a corrupted normalization table.
    """
    text = read_text_file(path, universal_newlines=False)
    try:
        backend = BackendTokenizer.from_str(text)
    except Exception as err:  # the tokenizers library's messages do not name the file
        raise TokenizerFileError(f"{path} is not a readable tokenizer.json: {err}") from None
    if "Precompiled" in text:
        for charsmap in precompiled_charsmaps(json.loads(text)):
            check_precompiled_charsmap(charsmap, str(path))
    return backend


def precompiled_charsmaps(tokenizer_json: dict[str, Any]) -> list[bytes]:
    """The SentencePiece normalization tables (``Precompiled`` steps) of a parsed ``tokenizer.json``'s
    normalizer, in order (none: ``[]``)."""
    normalizer = tokenizer_json.get("normalizer") or {}
    steps = (normalizer.get("normalizers") or []) if normalizer.get("type") == "Sequence" else [normalizer]
    return [
        base64.b64decode(step["precompiled_charsmap"])
        for step in steps
        if isinstance(step, dict) and step.get("type") == "Precompiled" and step.get("precompiled_charsmap")
    ]


def has_tokenizer_files(folder: str | Path) -> bool:
    """Whether ``folder`` holds a tokenizer of any family (``tokenizer.json``, ``vocab.txt``, ``vocab.json``)."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
        return True
    if (folder / "spiece.model").is_file():  # SentencePiece (XLNet)
        return True
    if (folder / "vocab.pkl").is_file():  # Transformer-XL's pickled vocabulary (read without executing it)
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def check_precompiled_charsmap(charsmap: bytes, where: str) -> None:
    """Check SentencePiece's normalization table (``precompiled_charsmap``) as the ``tokenizers`` library will
    use it, so that a corrupted one is an error here and not a crash (a Rust panic) in the middle of
    tokenizing a text.

    The table is a u32 size, a darts-clone double-array trie of that many bytes (blocks of 256 units, so a
    node's 255 possible children stay inside the array), then the normalized strings (UTF-8, each ended by a
    NUL). Every node reachable from the root is visited (level by level, vectorized): each must lie inside the
    array, and each leaf's value must be the start of a character of the strings.

    Raises:
        TokenizerFileError: naming ``where`` and what is wrong.
    """
    import numpy as np

    def fail(problem: str) -> TokenizerFileError:
        return TokenizerFileError(f"{where}: the normalization table (precompiled_charsmap) {problem}")

    if len(charsmap) < 4:
        raise fail(f"has {len(charsmap)} bytes, fewer than its 4-byte size")
    trie_size = int.from_bytes(charsmap[:4], "little")
    if trie_size == 0 or trie_size % 1024 or 4 + trie_size > len(charsmap):
        raise fail(f"declares a trie of {trie_size} bytes in {len(charsmap) - 4}: it is truncated or corrupt")
    units = np.frombuffer(charsmap, dtype="<u4", count=trie_size // 4, offset=4).astype(np.int64)
    strings = charsmap[4 + trie_size :]
    try:
        strings.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(
            f"holds a normalized string that is not UTF-8 (byte {4 + trie_size + err.start})"
        ) from None

    def offset(unit):
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    count, labels = len(units), np.arange(1, 256, dtype=np.int64)
    frontier = np.array([offset(units[0])], dtype=np.int64)
    seen = np.zeros(count, dtype=bool)
    continuation = np.frombuffer(strings, dtype=np.uint8) & 0xC0 == 0x80
    while frontier.size:
        if (frontier >= count).any():
            raise fail("has a trie node outside the trie: it is corrupt")
        seen[frontier] = True
        children = (frontier[:, None] ^ labels[None, :]).ravel()
        child_units = units[children]
        matched = (child_units & ((1 << 31) | 0xFF)) == np.tile(labels, len(frontier))
        nodes = children[matched] ^ offset(child_units[matched])
        if (nodes >= count).any():
            raise fail("has a trie node outside the trie: it is corrupt")
        leaves = nodes[(child_units[matched] >> 8) & 1 == 1]
        values = units[leaves] & ((1 << 31) - 1)
        if (values > len(strings)).any() or continuation[values[values < len(strings)]].any():
            raise fail("points outside its normalized strings, or inside a character: it is corrupt")
        frontier = np.unique(nodes[~seen[nodes]])
