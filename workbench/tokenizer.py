"""Tokenizer: a thin class over the ``tokenizers`` library.

It reads ``tokenizer.json`` (or builds a WordPiece tokenizer from ``vocab.txt``), and returns an
:class:`Encoding`: a mapping of the model inputs (``input_ids``, ``attention_mask``, ``token_type_ids``)
that can be passed as ``model(**encoding)``, which also carries what the model does not take but users
need: token strings, character ``offsets`` and ``word_ids`` (which word each token came from).
Ids equal those of Hugging Face's fast tokenizer on the same files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

logger = logging.getLogger(__name__)

TextInput = Union[str, Sequence[str]]
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token", "bos_token", "eos_token")
# Hugging Face's "no limit" sentinel for model_max_length.
_VERY_LARGE_INTEGER = int(1e30)


class Encoding(Mapping):
    """Tokenized inputs: a mapping of model inputs plus token strings, offsets and word ids.

    Keys (the model inputs): ``input_ids``, ``attention_mask`` and, where the tokenizer makes them,
    ``token_type_ids``; each [batch, pos] (a tensor with ``return_tensors="pt"``, else lists; one text
    without tensors gives flat lists, as Hugging Face does).
    """

    def __init__(self, data: dict[str, Any], encodings: list, is_batched: bool) -> None:
        self._data = data
        self.encodings = encodings  # the tokenizers.Encoding of each sequence
        self.is_batched = is_batched

    def __getitem__(self, key: str):
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str):
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in self.items()}
        return f"Encoding({shapes})"

    def tokens(self, index: int = 0) -> list[str]:
        """The token strings of sequence ``index`` (padding included)."""
        return list(self.encodings[index].tokens)

    def word_ids(self, index: int = 0) -> list[int | None]:
        """For each token of sequence ``index``, the index of the word it came from (None for special tokens)."""
        return list(self.encodings[index].word_ids)

    def sequence_ids(self, index: int = 0) -> list[int | None]:
        """For each token, 0 or 1 for the first or second text of a pair, None for special tokens."""
        return list(self.encodings[index].sequence_ids)

    @property
    def offsets(self) -> list[list[tuple[int, int]]]:
        """Character span (start, end) of every token in its text, per sequence; (0, 0) for special tokens."""
        return [list(e.offsets) for e in self.encodings]

    def to(self, device: torch.device | str) -> Encoding:
        """Move the tensors to ``device`` (in place) and return self."""
        self._data = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._data.items()}
        return self


class Tokenizer:
    """A tokenizer over a ``tokenizers.Tokenizer`` backend.

    Args:
        backend: the ``tokenizers.Tokenizer``; its own padding and truncation settings are switched off and
            set per call instead, as Hugging Face does.
        special_tokens: e.g. ``{"cls_token": "[CLS]", "pad_token": "[PAD]", ...}``.
        model_max_length: the longest input the model takes, in tokens (truncation's default).
        model_input_names: which inputs the model takes.
        padding_side: ``"right"`` or ``"left"``.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        special_tokens: dict[str, str] | None = None,
        model_max_length: int | None = None,
        model_input_names: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
        padding_side: str = "right",
        name_or_path: str = "",
        saved_settings: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()
        self.special_tokens = dict(special_tokens or {})
        self.model_max_length = model_max_length if model_max_length is not None else _VERY_LARGE_INTEGER
        self.model_input_names = tuple(model_input_names)
        self.padding_side = padding_side
        self.name_or_path = name_or_path
        # tokenizer_config.json keys this class does not use (tokenizer_class, do_lower_case, ...),
        # written back by save_pretrained so that other libraries read the folder as before.
        self.saved_settings = dict(saved_settings or {})

    # Construction ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> Tokenizer:
        """Load from a folder, alias or hub id: ``tokenizer.json`` if present, else ``vocab.txt`` (WordPiece)."""
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        settings = _read_tokenizer_settings(folder)
        if (folder / "tokenizer.json").is_file():
            try:
                backend = BackendTokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as err:
                raise ValueError(f"could not read {folder / 'tokenizer.json'}: {err}") from None
        elif (folder / "vocab.txt").is_file():
            backend = wordpiece_from_vocab(
                folder / "vocab.txt",
                lowercase=settings.get("do_lower_case", True),
                strip_accents=settings.get("strip_accents"),
                tokenize_chinese_chars=settings.get("tokenize_chinese_chars", True),
                special_tokens=settings["special_tokens"],
            )
        else:
            raise FileNotFoundError(
                f"no tokenizer in {folder}: expected tokenizer.json, or vocab.txt for a WordPiece (BERT) vocabulary"
            )
        options = {
            "special_tokens": settings["special_tokens"],
            "model_max_length": settings.get("model_max_length"),
            "padding_side": settings.get("padding_side", "right"),
            "name_or_path": str(name_or_path),
            "saved_settings": settings["original"],
        }
        if settings.get("model_input_names"):
            options["model_input_names"] = tuple(settings["model_input_names"])
        options.update(kwargs)
        return cls(backend, **options)

    # Encoding ----------------------------------------------------------------------------------------
    def __call__(
        self,
        text: TextInput,
        text_pair: TextInput | None = None,
        *,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        padding_side: str | None = None,
    ) -> Encoding:
        """Tokenize one text, a pair, or a batch of texts (or pairs).

        Args:
            padding: False; True or ``"longest"`` (to the longest in the batch); ``"max_length"``.
            truncation: False; True or ``"longest_first"``; ``"only_first"``; ``"only_second"``.
            max_length: the length to truncate or pad to; default ``model_max_length``.
            return_tensors: ``"pt"`` for torch tensors, ``"np"`` for numpy arrays, None for lists.
        """
        is_batched = not isinstance(text, str)
        texts = [text] if not is_batched else list(text)
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}")
            inputs: list = list(zip(texts, pairs))
        else:
            inputs = texts
        for item in texts:
            if not isinstance(item, str):
                raise TypeError(f"text must be a str or a list of str, got an item of type {type(item).__name__}")

        self._configure_backend(padding, truncation, max_length, pad_to_multiple_of, padding_side)
        try:
            encodings = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self.backend.no_padding()
            self.backend.no_truncation()
        if not truncation:
            longest = max((len(e.ids) for e in encodings), default=0)
            if longest > self.model_max_length:
                logger.warning(
                    "a sequence has %d tokens, more than model_max_length=%d; the model will refuse it. "
                    "Pass truncation=True to cut it.",
                    longest,
                    self.model_max_length,
                )
        data = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        data = {k: v for k, v in data.items() if k in self.model_input_names}
        data = _as_tensors(data, return_tensors, is_batched)
        return Encoding(data, encodings, is_batched)

    def _configure_backend(self, padding, truncation, max_length, pad_to_multiple_of, padding_side) -> None:
        if truncation:
            strategy = "longest_first" if truncation is True else str(truncation)
            limit = max_length if max_length is not None else self.model_max_length
            if limit >= _VERY_LARGE_INTEGER:
                raise ValueError("truncation=True needs max_length: this tokenizer has no model_max_length")
            self.backend.enable_truncation(limit, strategy=strategy)
        if padding:
            if padding not in (True, "longest", "max_length"):
                raise ValueError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
            pad_token = self.special_tokens.get("pad_token")
            if pad_token is None:
                raise ValueError("this tokenizer has no pad_token; set tokenizer.special_tokens['pad_token']")
            length = None
            if padding == "max_length":
                length = max_length if max_length is not None else self.model_max_length
            self.backend.enable_padding(
                direction=padding_side or self.padding_side,
                pad_id=self.token_to_id(pad_token),
                pad_token=pad_token,
                length=length,
                pad_to_multiple_of=pad_to_multiple_of,
            )

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """The token ids of one text (or pair)."""
        return list(self(text, text_pair, add_special_tokens=add_special_tokens)["input_ids"])

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        """The token strings of one text."""
        return self(text, add_special_tokens=add_special_tokens).tokens()

    # Decoding ----------------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = False):
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in batch]

    def convert_ids_to_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.backend.id_to_token(i) for i in ids]

    def token_to_id(self, token: str) -> int:
        token_id = self.backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"{token!r} is not in the vocabulary of {self.name_or_path or 'this tokenizer'}")
        return token_id

    # Vocabulary --------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def __getattr__(self, name: str):
        # pad_token, pad_token_id, cls_token_id, mask_token_id, ...: read from special_tokens.
        special = self.__dict__.get("special_tokens", {})
        if name in SPECIAL_TOKEN_KEYS:
            return special.get(name)
        if name.endswith("_id") and name[:-3] in SPECIAL_TOKEN_KEYS:
            token = special.get(name[:-3])
            return None if token is None else self.token_to_id(token)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({self.token_to_id(t) for t in self.special_tokens.values()})

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (readable by Hugging Face too)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        settings = {
            **self.saved_settings,
            **self.special_tokens,
            "padding_side": self.padding_side,
            "model_input_names": list(self.model_input_names),
        }
        if self.model_max_length < _VERY_LARGE_INTEGER:
            settings["model_max_length"] = self.model_max_length
        (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")

    def __repr__(self) -> str:
        return (
            f"Tokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r})"
        )


def wordpiece_from_vocab(
    vocab_path: str | Path,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    tokenize_chinese_chars: bool = True,
    special_tokens: dict[str, str] | None = None,
) -> BackendTokenizer:
    """Build BERT's WordPiece tokenizer from a ``vocab.txt`` (what Hugging Face's BertTokenizerFast builds)."""
    special = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", **(special_tokens or {})}
    vocab = {}
    with open(vocab_path, encoding="utf-8") as lines:
        for index, line in enumerate(lines):
            vocab[line.rstrip("\n")] = index
    backend = BackendTokenizer(models.WordPiece(vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_token, sep_token = special["cls_token"], special["sep_token"]
    for token in special.values():
        if token not in vocab:
            raise ValueError(f"{vocab_path} lacks the special token {token!r}")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens(list(special.values()))
    return backend


def _read_tokenizer_settings(folder: Path) -> dict[str, Any]:
    """tokenizer_config.json and special_tokens_map.json, merged; special tokens as plain strings."""
    settings: dict[str, Any] = {}
    original: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            try:
                values = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from None
            settings.update(values)
            if name == "tokenizer_config.json":
                original = {k: v for k, v in values.items() if k not in ("added_tokens_decoder", "name_or_path")}
    settings["original"] = original
    special = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = settings.get(key)
        if isinstance(value, dict):  # {"content": "[CLS]", "lstrip": false, ...}
            value = value.get("content")
        if isinstance(value, str):
            special[key] = value
    settings["special_tokens"] = special
    if settings.get("model_max_length", 0) >= _VERY_LARGE_INTEGER:
        settings["model_max_length"] = None
    return settings


def _as_tensors(data: dict[str, list], return_tensors: str | None, is_batched: bool) -> dict[str, Any]:
    if return_tensors is None:
        return data if is_batched else {k: v[0] for k, v in data.items()}
    lengths = {len(row) for row in data["input_ids"]}
    if len(lengths) > 1:
        raise ValueError(
            f"the sequences have different lengths ({sorted(lengths)}) and cannot form one tensor; "
            f"pass padding=True"
        )
    if return_tensors == "pt":
        return {k: torch.tensor(v, dtype=torch.long) for k, v in data.items()}
    if return_tensors == "np":
        import numpy as np

        return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
    raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
