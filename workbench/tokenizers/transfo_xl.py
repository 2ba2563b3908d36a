"""Transformer-XL's word-level tokenizer: Moses pre-tokenization in Python, then a ``tokenizers`` WordLevel model.

The same ids as Hugging Face 4.35's ``TransfoXLTokenizer`` (transformers 5 deleted it) on the same vocabulary:

1. the text is split on the special tokens (``<unk>``, ``<eos>``, ``<formula>``...), which are kept whole;
2. each other piece is stripped and, with ``lower_case``, lowercased;
3. it goes through Hugging Face's Moses pipeline (``sacremoses``, an optional dependency:
   ``pip install sacremoses``): punctuation normalization, the Moses tokenizer with aggressive dash splits
   (``well-known`` -> ``well @-@ known``) and no escaping, then number splitting (``5,000.5`` ->
   ``5 @,@ 000 @.@ 5``), as WikiText-103 was tokenized;
4. each word is looked up in the vocabulary (``<unk>`` when missing); with ``add_eos`` an ``<eos>`` follows.

``moses=False`` skips step 3 and splits on whitespace only, as the original Transformer-XL code did on
pre-tokenized text (no ``sacremoses`` needed). Special tokens missing from the vocabulary
(``additional_special_tokens``, default ``<formula>``) get the next ids, as in Hugging Face.

Vocabularies are read from ``vocab.pkl`` (the released checkpoints' pickle, read by a restricted unpickler
that executes nothing, after checking every length in the file: see :func:`load_vocab_pickle`),
``vocab.json`` (symbol -> id) or ``vocab.txt`` (one symbol per line, its first field; ids in order of first
appearance, as Hugging Face's ``vocab_file``). A malformed file is a
:class:`~workbench.tokenizers.files.TokenizerFileError` naming it (and the line or byte offset).
:meth:`TransfoXLTokenizer.save_pretrained` writes ``vocab.txt`` and ``tokenizer_config.json``, which Hugging
Face 4.35 reads back too.

Differences from Hugging Face 4.35: it returns ``attention_mask`` too (the workbench models take it; pads
with ``<eos>``, as there is no padding token); ``word_ids()`` indexes the Moses words and ``offsets`` are
spans within them, not in the original text; ``decode`` Moses-detokenizes the words and joins the
``@,@``/``@.@`` numbers back, but without Hugging Face's separate handling of special tokens inside a decoded
text; the pickle's own settings (``lower_case`` ...) are ignored as Hugging Face ignores them:
``tokenizer_config.json`` and the constructor decide. ``delimiter=""`` (character-level) is not supported.
"""

from __future__ import annotations

import io
import logging
import pickle
import pickletools
import re
import reprlib
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, normalizers, pre_tokenizers, processors

from ..hub import resolve_checkpoint
from .base import Encoding, Tokenizer, import_sacremoses
from .files import (
    TokenizerFileError,
    describe_folder,
    named_model_type,
    named_tokenizer_class,
    read_lines,
    read_settings,
    read_token_ids,
    settings_options,
    special_tokens_of,
)

logger = logging.getLogger(__name__)

TOKENIZER_CLASS = "TransfoXLTokenizer"
MODEL_TYPE = "transfo-xl"
DEFAULT_SPECIAL_TOKENS = {"unk_token": "<unk>", "eos_token": "<eos>"}
DEFAULT_ADDITIONAL_SPECIAL_TOKENS = ["<formula>"]
_SPECIAL_KEYS = ("unk_token", "eos_token", "bos_token", "pad_token", "sep_token", "cls_token", "mask_token")

# Hugging Face's number splitting (tokenize_numbers / detokenize_numbers).
_NUMBER_SEPARATOR = re.compile(r"(?<=\d)[,.](?=\d)")
_JOINED_NUMBERS = [(re.compile(r" @\,@ "), ","), (re.compile(r" @\.@ "), ".")]


# Reading vocab.pkl without executing it ---------------------------------------------------------------


class UnsafePickleError(TokenizerFileError):
    """A vocab.pkl asked for something other than plain data; nothing of it was executed."""


# The largest vocab.pkl read (the released WikiText-103 one is about 10 MB): the unpickled objects take a
# bounded multiple of the file's size, since every length in the file is checked against the file first.
MAX_VOCAB_PICKLE_BYTES = 1 << 30
# Deepest nesting of MARK-delimited containers (a vocabulary pickle needs a handful).
_MAX_PICKLE_MARK_DEPTH = 1000
# Opcodes a vocabulary never needs: external objects (persistent ids, out-of-band buffers) and the copyreg
# extension registry.
_REFUSED_OPCODES = {"PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER", "EXT1", "EXT2", "EXT4"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
_POPS_MARK = {
    "APPENDS",
    "SETITEMS",
    "ADDITEMS",
    "TUPLE",
    "LIST",
    "DICT",
    "FROZENSET",
    "POP_MARK",
    "INST",
    "OBJ",
}


class _Ignored:
    """Stands in for the tokenizer objects that Hugging Face 4.35 pickled along with the vocabulary (its Moses
    normalizer and tokenizers, compiled regexes, its added-token trie): built without running any of their
    code, their state dropped. The vocabulary never depends on them."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Ignored:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


# Plain containers, rebuilt as themselves.
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "Counter"): Counter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}
# What a vocab.pkl written by Hugging Face 4.35's save_pretrained (a pickle of the tokenizer's __dict__) holds
# besides the vocabulary: replaced by inert placeholders, never imported or called.
_IGNORED_GLOBALS = {
    ("re", "_compile"),
    ("sacremoses.normalize", "MosesPunctNormalizer"),
    ("sacremoses.tokenize", "MosesTokenizer"),
    ("sacremoses.tokenize", "MosesDetokenizer"),
    ("transformers.tokenization_utils", "Trie"),
    ("tokenizers", "AddedToken"),
}


class _VocabUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` hands out only plain containers (and inert placeholders for the
    Hugging Face tokenizer internals above); any other global — a function to call, a class to build — is
    refused before it is imported, so a crafted pickle cannot run code."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if (module, name) in _IGNORED_GLOBALS:
            return _Ignored
        raise UnsafePickleError(
            f"{self.path}: refusing to load the global {module}.{name}: a Transformer-XL vocab.pkl may only hold "
            f"plain data (dicts, lists, strings, numbers, Counter, OrderedDict); nothing from the file was executed. "
            f"If you trust it, convert it to vocab.txt (one symbol per line) with the library that wrote it"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.path}: refusing a persistent id in the pickle (a torch.save file?)")


def check_pickle_bounds(data: bytes, path: Path) -> None:
    """Walk the opcodes of a pickle without building anything, and refuse one that would make the unpickler
    allocate more than a small multiple of its size.

    A pickle's opcodes carry lengths (``BINBYTES``, ``BINUNICODE``, ``LONG4``, ``FRAME``) and memo indices
    (``LONG_BINPUT``) that the unpickler trusts: a 9-byte file can ask it for 1 GiB. Here every length must fit
    in the bytes that remain, a memo index may not exceed the byte offset where it is stored (every earlier
    memo entry took at least one byte; the unpickler's memo grows to twice the largest index), containers may
    nest ``_MAX_PICKLE_MARK_DEPTH`` deep, and the pickle must end (``STOP``) exactly at the end of the file.

    Raises:
        TokenizerFileError: naming the file, the byte offset and the opcode.
    """
    memo: set[int] = set()
    depth = 0
    stream = io.BytesIO(data)
    following = 0  # where the next opcode starts
    try:
        for opcode, arg, position in pickletools.genops(stream):
            name, following = opcode.name, stream.tell()
            where = f"{path}, byte {position} (opcode {name})"
            if name in _REFUSED_OPCODES:
                raise UnsafePickleError(f"{where}: a vocabulary pickle holds no {name}; nothing was loaded")
            if name == "FRAME" and arg > len(data) - following:
                raise TokenizerFileError(
                    f"{where}: a frame of {arg} bytes, but only {len(data) - following} bytes follow: the file "
                    f"is truncated or corrupt"
                )
            if name in _MEMO_PUTS or name == "MEMOIZE":
                index = len(memo) if name == "MEMOIZE" else arg
                if index > position:
                    raise TokenizerFileError(
                        f"{where}: memo index {index}, but at most {position} objects can have been memoized "
                        f"before it: the file is corrupt"
                    )
                memo.add(index)
            elif name in _MEMO_GETS and arg not in memo:
                raise TokenizerFileError(f"{where}: memo index {arg} was never stored: the file is corrupt")
            elif name == "MARK":
                depth += 1
                if depth > _MAX_PICKLE_MARK_DEPTH:
                    raise TokenizerFileError(
                        f"{where}: containers nested more than {_MAX_PICKLE_MARK_DEPTH} deep; a vocabulary "
                        f"needs a few levels"
                    )
            elif name in _POPS_MARK:
                depth -= 1
    except TokenizerFileError:
        raise
    except (ValueError, IndexError, OverflowError) as err:  # pickletools: truncated argument, unknown opcode
        opcode_byte = data[following : following + 1]
        raise TokenizerFileError(
            f"{path}, byte {following} (opcode byte {opcode_byte!r}): not a complete pickle: {err}"
        ) from None
    if stream.tell() != len(data):
        raise TokenizerFileError(
            f"{path}, byte {stream.tell()}: {len(data) - stream.tell()} bytes follow the end of the pickle: the "
            f"file is corrupt"
        )


def load_vocab_pickle(path: str | Path) -> dict[str, Any]:
    """Read a Transformer-XL ``vocab.pkl`` (a pickled dict with ``sym2idx``, ``idx2sym``, ``counter``...)
    without executing anything in it, and in memory bounded by a small multiple of the file's size
    (:func:`check_pickle_bounds` runs first; files over ``MAX_VOCAB_PICKLE_BYTES`` are refused).

    Raises:
        UnsafePickleError: the pickle names a global that is not a plain container (e.g. ``os.system``).
        TokenizerFileError: the file is not a complete pickle, asks for more memory than its size allows, or
            holds no ``sym2idx``/``idx2sym``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_VOCAB_PICKLE_BYTES:
        raise TokenizerFileError(
            f"{path} has {size} bytes; a vocabulary pickle of more than {MAX_VOCAB_PICKLE_BYTES} bytes is not "
            f"read (convert it to vocab.txt, one symbol per line)"
        )
    data = path.read_bytes()
    check_pickle_bounds(data, path)
    try:
        state = _VocabUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except Exception as err:
        raise TokenizerFileError(
            f"{path} is not a readable vocabulary pickle: {type(err).__name__}: {err}"
        ) from None
    if not isinstance(state, dict) or not ({"sym2idx", "idx2sym"} & set(state)):
        found = sorted(map(str, state))[:20] if isinstance(state, dict) else type(state).__name__
        raise TokenizerFileError(
            f"{path} holds no Transformer-XL vocabulary (no 'sym2idx' or 'idx2sym'); found {found}"
        )
    return state


def vocab_from_pickle_state(state: Mapping[str, Any], path: Path) -> dict[str, int]:
    """symbol -> id from an unpickled vocab.pkl: ``sym2idx`` (what Hugging Face encodes with), else ``idx2sym``.

    Raises:
        TokenizerFileError: ``sym2idx`` is not a mapping of strings to ints, or ``idx2sym`` not a list of strings.
    """
    sym2idx = state.get("sym2idx")
    if sym2idx:
        if not isinstance(sym2idx, Mapping):
            raise TokenizerFileError(f"{path}: sym2idx must be a dict, found a {type(sym2idx).__name__}")
        vocab = dict(sym2idx)
    else:
        idx2sym = state.get("idx2sym")
        if not isinstance(idx2sym, (list, tuple)):
            raise TokenizerFileError(f"{path}: idx2sym must be a list, found a {type(idx2sym).__name__}")
        vocab = {symbol: index for index, symbol in reversed(list(enumerate(idx2sym)))}
    for symbol, index in vocab.items():
        if not isinstance(symbol, str) or type(index) is not int:
            raise TokenizerFileError(
                f"{path}: sym2idx must map strings to ints, found {reprlib.repr(symbol)}: {reprlib.repr(index)}"
            )
    return vocab


def read_vocab_txt(path: Path) -> dict[str, int]:
    """vocab.txt as Hugging Face's ``vocab_file``: the first field of each non-empty line, ids in order of first
    appearance.

    Raises:
        TokenizerFileError: non-UTF-8 bytes or a last line without its newline (a cut-off file), with the line.
    """
    vocab: dict[str, int] = {}
    for line in read_lines(path):
        fields = line.strip().split()
        if fields and fields[0] not in vocab:
            vocab[fields[0]] = len(vocab)
    return vocab


# Hugging Face's text pipeline --------------------------------------------------------------------------


def tokenize_numbers(words: list[str]) -> list[str]:
    """Split separators inside numbers: ``["5,000", "1.73"]`` -> ``["5", "@,@", "000", "1", "@.@", "73"]``."""
    out = []
    for word in words:
        out.extend(_NUMBER_SEPARATOR.sub(r" @\g<0>@ ", word).split())
    return out


def detokenize_numbers(text: str) -> str:
    """The inverse of :func:`tokenize_numbers` on a joined text: ``"5 @,@ 000"`` -> ``"5,000"``."""
    for pattern, replacement in _JOINED_NUMBERS:
        text = pattern.sub(replacement, text)
    return text


def _sacremoses():
    return import_sacremoses(
        "Transformer-XL's tokenizer runs Moses pre-tokenization as Hugging Face's does; it needs sacremoses: "
        "pip install sacremoses (or pip install 'workbench[transfo-xl]'; or load it with moses=False to split on "
        "whitespace only)"
    )


# The tokenizer ---------------------------------------------------------------------------------------


class TransfoXLTokenizer(Tokenizer):
    """Transformer-XL's word-level tokenizer (Moses words, then a WordLevel lookup).

    Args (beyond :class:`~workbench.tokenizers.base.Tokenizer`'s):
        vocab: symbol -> id (the released checkpoints' ``sym2idx``).
        lower_case: lowercase the text before splitting it.
        add_eos: put ``<eos>`` after every text (Hugging Face's ``add_eos``, off in its ``__call__``).
        moses: Moses pre-tokenization as Hugging Face 4.35 (needs ``sacremoses``); False splits on whitespace.
        language: the Moses language (``"en"``).
        additional_special_tokens: kept whole in text; added with the next ids when missing from ``vocab``.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        *,
        vocab: Mapping[str, int],
        lower_case: bool = False,
        add_eos: bool = False,
        moses: bool = True,
        language: str = "en",
        additional_special_tokens: Sequence[str] = (),
        **options: Any,
    ) -> None:
        options.setdefault("model_input_names", ("input_ids", "attention_mask"))
        super().__init__(backend, **options)
        self.vocab = dict(vocab)
        self.lower_case = lower_case
        self.add_eos = add_eos
        self.moses = moses
        self.language = language
        self.additional_special_tokens = list(additional_special_tokens)
        specials = sorted(
            {*self.special_tokens.values(), *self.additional_special_tokens}, key=len, reverse=True
        )
        self._special_split = re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None
        self._moses_tools: tuple | None = None
        if moses:
            _sacremoses()  # fail now, with the message, rather than at the first call

    # Construction ------------------------------------------------------------------------------------
    @staticmethod
    def handles(folder: str | Path) -> bool:
        """Whether ``folder`` holds a Transformer-XL tokenizer: tokenizer_config.json's ``tokenizer_class`` is
        ``TransfoXLTokenizer``, or it names none and config.json's ``model_type`` is ``transfo-xl`` or there is
        a ``vocab.pkl``."""
        folder = Path(folder)
        named = named_tokenizer_class(folder)
        if named:
            return named == TOKENIZER_CLASS
        if (folder / "tokenizer.json").is_file():
            return False
        return named_model_type(folder) == MODEL_TYPE or (folder / "vocab.pkl").is_file()

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> TransfoXLTokenizer:
        """Load from a folder, alias or hub id: ``vocab.pkl``, else ``vocab.json``, else ``vocab.txt``, with the
        settings of ``tokenizer_config.json`` / ``special_tokens_map.json``. ``kwargs``: constructor options
        (``lower_case``, ``add_eos``, ``moses``, ``padding_side``...), which override the saved settings."""
        folder = resolve_checkpoint(name_or_path)
        if (folder / "vocab.pkl").is_file():
            vocab_path = folder / "vocab.pkl"
            vocab = vocab_from_pickle_state(load_vocab_pickle(vocab_path), vocab_path)
        elif (folder / "vocab.json").is_file():
            vocab_path = folder / "vocab.json"
            vocab = read_token_ids(vocab_path)
        elif (folder / "vocab.txt").is_file():
            vocab_path = folder / "vocab.txt"
            vocab = read_vocab_txt(vocab_path)
        else:
            raise FileNotFoundError(
                f"no Transformer-XL vocabulary in {folder}: looked for vocab.pkl, vocab.json and vocab.txt. "
                f"Found: {describe_folder(folder)}"
            )
        settings = read_settings(folder)
        if settings.get("delimiter") == "":
            raise ValueError(f"{folder}: delimiter '' (character-level Transformer-XL) is not supported")
        # Its own key order: keys missing from the defaults are added (and get new ids) in this order.
        special = special_tokens_of(settings, DEFAULT_SPECIAL_TOKENS, _SPECIAL_KEYS)
        _check_vocab(vocab, vocab_path, special.get("unk_token", "<unk>"))
        additional = settings.get("additional_special_tokens", DEFAULT_ADDITIONAL_SPECIAL_TOKENS)
        additional = [token.get("content") if isinstance(token, dict) else token for token in additional]
        options: dict[str, Any] = {
            **settings_options(settings, folder, name_or_path),
            "special_tokens": special,
            "additional_special_tokens": additional,
            "lower_case": bool(settings.get("lower_case", False)),
            "add_eos": bool(settings.get("add_eos", False)),
            "moses": bool(settings.get("moses", True)),
            "language": settings.get("language", "en"),
        }
        options.update(kwargs)
        return cls.from_vocab(vocab, **options)

    @classmethod
    def from_vocab(
        cls,
        vocab: Mapping[str, int],
        special_tokens: Mapping[str, str] | None = None,
        additional_special_tokens: Sequence[str] = DEFAULT_ADDITIONAL_SPECIAL_TOKENS,
        lower_case: bool = False,
        add_eos: bool = False,
        **options: Any,
    ) -> TransfoXLTokenizer:
        """Build from a vocabulary (symbol -> id; ids 0..n-1)."""
        special = dict(DEFAULT_SPECIAL_TOKENS) if special_tokens is None else dict(special_tokens)
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"the vocabulary's ids must be 0..{len(ids) - 1} without gaps or repeats")
        unk = special.get("unk_token", "<unk>")
        if unk not in vocab:
            raise ValueError(f"the vocabulary has no unknown-word token {unk!r} for words it lacks")
        backend = BackendTokenizer(models.WordLevel(dict(vocab), unk_token=unk))
        if lower_case:
            backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # Special tokens first, so that those missing from the vocabulary get the next ids in this order.
        backend.add_special_tokens(list(dict.fromkeys([*special.values(), *additional_special_tokens])))
        eos = special.get("eos_token", "<eos>")
        if add_eos:
            backend.post_processor = processors.TemplateProcessing(
                single=f"$A:0 {eos}:0",
                pair=f"$A:0 {eos}:0 $B:1 {eos}:1",
                special_tokens=[(eos, backend.token_to_id(eos))],
            )
        else:
            backend.post_processor = processors.TemplateProcessing(
                single="$A:0", pair="$A:0 $B:1", special_tokens=[]
            )
        return cls(
            backend,
            vocab=vocab,
            special_tokens=special,
            additional_special_tokens=additional_special_tokens,
            lower_case=lower_case,
            add_eos=add_eos,
            **options,
        )

    # Pre-tokenization ----------------------------------------------------------------------------------
    def _moses(self):
        if self._moses_tools is None:
            sacremoses = _sacremoses()
            self._moses_tools = (
                sacremoses.MosesPunctNormalizer(self.language),
                sacremoses.MosesTokenizer(self.language),
                sacremoses.MosesDetokenizer(self.language),
            )
        return self._moses_tools

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as Hugging Face 4.35 splits it (special tokens kept whole)."""
        specials = {*self.special_tokens.values(), *self.additional_special_tokens}
        pieces = self._special_split.split(text) if self._special_split is not None else [text]
        words: list[str] = []
        for piece in pieces:
            if piece in specials:
                words.append(piece)
                continue
            piece = piece.strip()
            if self.lower_case:
                piece = piece.lower()
            if not piece:
                continue
            if not self.moses:
                words.extend(piece.split())
                continue
            normalizer, moses_tokenizer, _ = self._moses()
            moses_words = moses_tokenizer.tokenize(
                normalizer.normalize(piece),
                aggressive_dash_splits=True,
                return_str=False,
                escape=False,
                protected_patterns=sorted(specials),
            )
            words.extend(tokenize_numbers(moses_words))
        return words

    # Encoding ----------------------------------------------------------------------------------------
    def __call__(
        self, text, text_pair=None, *, is_split_into_words: bool = False, **options: Any
    ) -> Encoding:
        """Tokenize one text, a pair, or a batch, as :meth:`Tokenizer.__call__` (same options), after the
        Moses step. With ``is_split_into_words=True`` each input word goes through it on its own and
        ``word_ids()`` gives the input word of every token; otherwise ``word_ids()`` indexes the Moses words."""
        return self._encode_words(text, text_pair, is_split_into_words, self.words, **options)

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[str]:
        """The words of one text, as the vocabulary spells them (``<unk>`` not substituted)."""
        return self.words(text) + (
            [self.special_tokens.get("eos_token", "<eos>")] if add_special_tokens and self.add_eos else []
        )

    # Decoding ----------------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Words joined back into text: Moses detokenization and the numbers' ``@,@``/``@.@`` undone (as
        Hugging Face's ``convert_tokens_to_string``); without Moses, joined with spaces."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        special_ids = set(self.all_special_ids) if skip_special_tokens else set()
        tokens = [self.backend.id_to_token(i) for i in ids if i not in special_ids]
        if not self.moses:
            return " ".join(tokens)
        _, _, detokenizer = self._moses()
        return detokenize_numbers(detokenizer.detokenize(tokens)).strip()

    @property
    def all_special_ids(self) -> list[int]:
        tokens = {*self.special_tokens.values(), *self.additional_special_tokens}
        return sorted({self.token_to_id(token) for token in tokens})

    # Saving ------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``vocab.txt`` (symbols in id order) and ``tokenizer_config.json``; Hugging Face 4.35's
        TransfoXLTokenizer and this class read them back with the same ids. No tokenizer.json: the Moses
        step is not part of a ``tokenizers`` pipeline."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        symbols = sorted(self.vocab, key=self.vocab.__getitem__)
        if any(not symbol or any(c.isspace() for c in symbol) for symbol in symbols):
            raise ValueError("a symbol is empty or holds whitespace: it cannot be written to vocab.txt")
        (folder / "vocab.txt").write_text("".join(f"{symbol}\n" for symbol in symbols), encoding="utf-8")
        settings = {
            **self.saved_settings,
            "tokenizer_class": TOKENIZER_CLASS,
            "additional_special_tokens": self.additional_special_tokens,
            "lower_case": self.lower_case,
            "add_eos": self.add_eos,
            "moses": self.moses,
            "language": self.language,
        }
        self._write_tokenizer_config(folder, settings)

    def __repr__(self) -> str:
        return (
            f"TransfoXLTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"lower_case={self.lower_case}, moses={self.moses}, add_eos={self.add_eos})"
        )


def _check_vocab(vocab: Mapping[str, int], path: Path, unk: str) -> None:
    """What :meth:`TransfoXLTokenizer.from_vocab` needs of a vocabulary read from ``path``: ids 0..n-1 and the
    unknown-word token."""
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        first = next(index for index, value in enumerate(ids) if value != index)
        raise TokenizerFileError(
            f"{path}: the ids of a vocabulary must be 0..{len(ids) - 1} without gaps or repeats; the sorted ids "
            f"differ from that at position {first} (id {ids[first]})"
        )
    if unk not in vocab:
        raise TokenizerFileError(
            f"{path} has no unknown-word token {unk!r} (the unk_token of tokenizer_config.json, default <unk>)"
        )
