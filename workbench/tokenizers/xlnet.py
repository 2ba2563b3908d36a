"""XLNet's tokenizer: SentencePiece's Unigram model over the ``tokenizers`` library.

The same ids as Hugging Face's ``XLNetTokenizer`` (transformers 5), which rebuilds its pipeline from the
vocabulary whatever file it came from; so does this class:

1. normalization: ```` `` ```` and ``''`` become ``"``, NFKD, accents stripped, lowercase with
   ``do_lower_case``, then SentencePiece's own normalization table (the ``precompiled_charsmap``);
2. pre-tokenization: split on whitespace, each word prefixed with ``▁`` (Metaspace);
3. the Unigram model (the pieces and their scores);
4. ``A <sep> <cls>`` for one text, ``A <sep> B <sep> <cls>`` for a pair: the classification token comes
   *last*, and ``token_type_ids`` are 0 for A, 1 for B and 2 for ``<cls>`` (0 at padding);
5. padding on the *left* by default, so that ``<cls>`` stays at the last position, which the sequence
   summary reads.

The vocabulary comes from ``tokenizer.json`` (its Unigram model and added tokens) or, without one, from
``spiece.model``, SentencePiece's protobuf file, read by a small reader here (no ``sentencepiece`` or
``protobuf`` package needed; every field is checked, and a malformed or truncated file is a
:class:`~workbench.tokenizers.files.TokenizerFileError` naming the byte offset; :mod:`.sentencepiece_bpe` reads
Llama 2's BPE-type ``tokenizer.model`` with it too): the pieces with their scores, the
unknown token's id, the normalization table, and the control (special) and user-defined pieces, which are
matched whole in text.

Differences from Hugging Face's class: ``token_type_ids`` are returned by default (the segment encodings of
XLNet use them; Hugging Face 5 returns them only with ``return_token_type_ids=True``, version 4 always did).
Like Hugging Face 5, ``keep_accents`` is read but accents are always stripped.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import Unigram

from ..hub import resolve_checkpoint
from .base import Tokenizer
from .files import (
    TokenizerFileError,
    additional_special_tokens_of,
    check_precompiled_charsmap,
    describe_folder,
    named_model_type,
    named_tokenizer_class,
    precompiled_charsmaps,
    read_settings,
    read_tokenizer_json,
    settings_options,
    special_tokens_of,
)

TOKENIZER_CLASSES = ("XLNetTokenizer", "XLNetTokenizerFast")
SPIECE_NAME = "spiece.model"
# Hugging Face's XLNetTokenizer defaults, in the order missing tokens get new ids.
DEFAULT_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "<sep>",
    "pad_token": "<pad>",
    "cls_token": "<cls>",
    "mask_token": "<mask>",
}
DEFAULT_ADDITIONAL_SPECIAL_TOKENS = ("<eop>", "<eod>")
MODEL_INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
# SentencePiece piece types (sentencepiece_model.proto): control pieces are special, user-defined ones are
# matched whole but not special.
_CONTROL, _USER_DEFINED = 3, 4


# Reading spiece.model --------------------------------------------------------------------------------


# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_TYPE_NAMES = {
    0: "varint",
    1: "64-bit",
    2: "length-delimited",
    3: "group start",
    4: "group end",
    5: "32-bit",
}
# The fields read here, with the wire type each must have (sentencepiece_model.proto); others are skipped.
_MODEL_FIELDS = {
    1: _LEN,
    2: _LEN,
    3: _LEN,
    4: _LEN,
    5: _LEN,
}  # pieces, trainer/normalizer spec, test, denorm.
_PIECE_FIELDS = {1: _LEN, 2: _I32, 3: _VARINT}  # piece, score, type
_TRAINER_FIELDS = {3: _VARINT, 35: _VARINT, 40: _VARINT}  # model_type, byte_fallback, unk_id
_NORMALIZER_FIELDS = {1: _LEN, 2: _LEN}  # name, precompiled_charsmap
_PIECE_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user-defined", 5: "unused", 6: "byte"}
_UNKNOWN = 2
_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _read_varint(data: memoryview, offset: int, end: int, path: Path) -> tuple[int, int]:
    """The varint at ``offset`` (at most 10 bytes, below ``end``) and the offset after it."""
    if offset < end and data[offset] < 0x80:  # one byte: most varints of a model file
        return data[offset], offset + 1
    value = 0
    for index in range(10):
        if offset >= end:
            raise TokenizerFileError(
                f"{path}, byte {offset}: the data ends inside a varint (truncated file?)"
            )
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if value >= 1 << 64:
                raise TokenizerFileError(f"{path}, byte {offset - 1}: a varint of more than 64 bits")
            return value, offset
    raise TokenizerFileError(f"{path}, byte {offset - 10}: a varint longer than 10 bytes")


def _fields(
    data: memoryview, start: int, end: int, path: Path, expected: dict[int, int], message: str
) -> Iterator[tuple[int, int | memoryview, int]]:
    """The fields of the protobuf message in ``data[start:end]``: (field number, value, offset of the value),
    the value an int for varints and fixed-width fields (raw bits), a memoryview for length-delimited ones
    (strings, sub-messages; no copy, so reading is linear in the file's size).

    Every length is checked against ``end``, and the fields in ``expected`` against their wire type.

    Raises:
        TokenizerFileError: naming ``path``, the byte offset and ``message`` (the message's type).
    """
    offset = start
    while offset < end:
        field_offset = offset
        key = data[offset]
        if key < 0x80:  # a one-byte key: the usual case, read without the general varint reader
            offset += 1
        else:
            key, offset = _read_varint(data, offset, end, path)
        number, wire_type = key >> 3, key & 7

        if number == 0:
            raise _field_error(
                path,
                field_offset,
                message,
                number,
                "field number 0 does not exist in protobuf: the file is corrupt",
            )
        if wire_type != expected.get(number, wire_type):
            raise _field_error(
                path,
                field_offset,
                message,
                number,
                f"a {_WIRE_TYPE_NAMES.get(wire_type, wire_type)} value where the field is "
                f"{_WIRE_TYPE_NAMES[expected[number]]}: the file is corrupt or not a SentencePiece model",
            )
        value_offset = offset
        if wire_type == _LEN:
            length, offset = _read_varint(data, offset, end, path)
            if length > end - offset:
                raise _field_error(
                    path,
                    field_offset,
                    message,
                    number,
                    f"a length-delimited value of {length} bytes, but only {end - offset} bytes remain"
                    f"{'' if end < len(data) else ' in the file'}: the file is truncated or corrupt",
                )
            value_offset = offset
            value, offset = data[offset : offset + length], offset + length
        elif wire_type == _VARINT:
            value, offset = _read_varint(data, offset, end, path)
        elif wire_type in (_I64, _I32):
            width = 8 if wire_type == _I64 else 4
            if offset + width > end:
                raise _field_error(
                    path,
                    field_offset,
                    message,
                    number,
                    f"a {8 * width}-bit value runs past the end of the data: the file is truncated",
                )
            value, offset = int.from_bytes(data[offset : offset + width], "little"), offset + width
        else:
            raise _field_error(
                path,
                field_offset,
                message,
                number,
                f"wire type {_WIRE_TYPE_NAMES.get(wire_type, wire_type)} is not used by SentencePiece models: "
                f"the file is corrupt or not a SentencePiece model",
            )
        yield number, value, value_offset


def _field_error(path: Path, offset: int, message: str, number: int, problem: str) -> TokenizerFileError:
    return TokenizerFileError(f"{path}, byte {offset} ({message} field {number}): {problem}")


def _sub_fields(
    data: memoryview, value: memoryview, offset: int, path: Path, expected: dict[int, int], message: str
) -> dict[int, tuple[Any, int]]:
    """The fields of the sub-message ``value``, which starts at ``offset`` of ``data``: {number: (value, its
    offset)}; a field given twice keeps its last value, as protobuf reads it."""
    fields = _fields(data, offset, offset + len(value), path, expected, message)
    return {number: (field, field_offset) for number, field, field_offset in fields}


def _int32(value: int) -> int:
    """An int32 field's varint (negative numbers are sign-extended to 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def read_sentencepiece_model(path: str | Path) -> dict[str, Any]:
    """The parts of a SentencePiece ``ModelProto`` that the tokenizer needs.

    Every field is checked: its bounds against the file, its wire type against sentencepiece_model.proto,
    pieces as non-empty UTF-8 with a finite score and a type in 1..6, no piece defined twice, exactly one
    unknown piece, at ``unk_id``; a file without its trainer or normalizer spec (both always written after
    the pieces) is a truncated one. Reading is linear in the file's size.

    Returns:
        ``pieces``: [(piece, score, type)] in id order (type 1 normal, 2 unknown, 3 control, 4 user-defined,
        5 unused, 6 byte); ``unk_id``; ``model_type`` (1 Unigram, 2 BPE, 3 word, 4 char); ``byte_fallback``
        (whether text outside the pieces becomes byte pieces ``<0x..>``); ``precompiled_charsmap`` (bytes or
        None).

    Raises:
        TokenizerFileError: naming the file and the byte offset of what is wrong.
    """
    path = Path(path)
    data = memoryview(path.read_bytes())
    pieces: list[tuple[str, float, int]] = []
    piece_offsets: list[int] = []
    trainer: dict[int, tuple[Any, int]] | None = None
    normalizer: dict[int, tuple[Any, int]] | None = None
    for number, value, offset in _fields(data, 0, len(data), path, _MODEL_FIELDS, "ModelProto"):
        if number == 1:  # repeated SentencePiece
            fields = _sub_fields(data, value, offset, path, _PIECE_FIELDS, "SentencePiece")
            pieces.append(_piece(fields, offset, path))
            piece_offsets.append(offset)
        elif number == 2:  # TrainerSpec (a repeated message field merges: later fields win)
            trainer = {
                **(trainer or {}),
                **_sub_fields(data, value, offset, path, _TRAINER_FIELDS, "TrainerSpec"),
            }
        elif number == 3:  # NormalizerSpec
            fields = _sub_fields(data, value, offset, path, _NORMALIZER_FIELDS, "NormalizerSpec")
            normalizer = {**(normalizer or {}), **fields}
    if not pieces:
        raise TokenizerFileError(f"{path} holds no SentencePiece pieces: is it a SentencePiece model file?")
    for name, spec in (("trainer_spec", trainer), ("normalizer_spec", normalizer)):
        if spec is None:
            raise TokenizerFileError(
                f"{path}, byte {len(data)}: the file ends after {len(pieces)} pieces without its {name}, which "
                f"SentencePiece writes after the pieces: the file is truncated"
            )
    model_type = trainer.get(3, (1, 0))[0]
    if model_type not in _MODEL_TYPES:
        raise TokenizerFileError(
            f"{path}, byte {trainer[3][1]}: model_type {model_type} is none of {_MODEL_TYPES}: the file is corrupt"
        )
    unk_id = _int32(trainer.get(40, (0, 0))[0])
    _check_pieces(pieces, piece_offsets, unk_id, path)
    charsmap = normalizer.get(2)
    if charsmap and len(charsmap[0]):
        check_precompiled_charsmap(bytes(charsmap[0]), f"{path}, byte {charsmap[1]}")
    return {
        "pieces": pieces,
        "unk_id": unk_id,
        "model_type": model_type,
        "byte_fallback": bool(trainer.get(35, (0, 0))[0]),
        "precompiled_charsmap": (bytes(charsmap[0]) or None) if charsmap else None,
    }


def _piece(fields: dict[int, tuple[Any, int]], offset: int, path: Path) -> tuple[str, float, int]:
    raw, raw_offset = fields.get(1, (b"", offset))
    try:
        piece = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerFileError(
            f"{path}, byte {raw_offset + err.start}: a piece that is not UTF-8 ({err.reason}): the file is corrupt"
        ) from None
    if not piece:
        raise TokenizerFileError(f"{path}, byte {offset}: an empty piece (SentencePiece forbids them)")
    bits, bits_offset = fields.get(2, (0, offset))
    score = struct.unpack("<f", struct.pack("<I", bits))[0]
    if not math.isfinite(score):
        raise TokenizerFileError(f"{path}, byte {bits_offset}: the piece {piece!r} has the score {score}")
    kind, kind_offset = fields.get(3, (1, offset))
    if kind not in _PIECE_TYPES:
        raise TokenizerFileError(
            f"{path}, byte {kind_offset}: the piece {piece!r} has type {kind}, none of {_PIECE_TYPES}"
        )
    return piece, score, kind


def _check_pieces(pieces: list[tuple[str, float, int]], offsets: list[int], unk_id: int, path: Path) -> None:
    """What SentencePiece checks when it loads a model: no piece twice (among normal, user-defined and unused
    pieces, and among the others), exactly one unknown piece; and it must be the trainer spec's ``unk_id``."""
    seen: tuple[dict[str, int], dict[str, int]] = ({}, {})
    unknown = []
    for index, (piece, _, kind) in enumerate(pieces):
        group = seen[0] if kind in (1, 4, 5) else seen[1]
        if piece in group:
            raise TokenizerFileError(
                f"{path}, byte {offsets[index]}: the piece {piece!r} (id {index}) is already id {group[piece]}"
            )
        group[piece] = index
        if kind == _UNKNOWN:
            unknown.append(index)
    if len(unknown) != 1:
        raise TokenizerFileError(
            f"{path}: a SentencePiece model has exactly one unknown piece; this one has {len(unknown)} "
            f"(ids {unknown})"
        )
    if unk_id != unknown[0]:
        raise TokenizerFileError(
            f"{path}: the trainer spec's unk_id is {unk_id} but the unknown piece is id {unknown[0]} "
            f"({pieces[unknown[0]][0]!r}) of {len(pieces)}: the file is corrupt"
        )


# The pipeline ----------------------------------------------------------------------------------------


def xlnet_normalizer(precompiled_charsmap: bytes | None, do_lower_case: bool) -> normalizers.Normalizer:
    """Hugging Face's: quotes, NFKD, no accents, (lowercase), SentencePiece's table."""
    steps = [
        normalizers.Replace("``", '"'),
        normalizers.Replace("''", '"'),
        normalizers.NFKD(),
        normalizers.StripAccents(),
    ]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    if precompiled_charsmap:
        steps.append(normalizers.Precompiled(precompiled_charsmap))
    return normalizers.Sequence(steps)


def set_xlnet_pipeline(
    backend: BackendTokenizer, precompiled_charsmap: bytes | None, do_lower_case: bool, sep: str, cls: str
) -> None:
    """Normalizer, pre-tokenizer, decoder and ``A <sep> <cls>`` post-processor, as Hugging Face sets them."""
    backend.normalizer = xlnet_normalizer(precompiled_charsmap, do_lower_case)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {sep}:0 {cls}:2",
        pair=f"$A:0 {sep}:0 $B:1 {sep}:1 {cls}:2",
        special_tokens=[(sep, backend.token_to_id(sep)), (cls, backend.token_to_id(cls))],
    )


def backend_from_spiece(path: str | Path) -> tuple[BackendTokenizer, bytes | None]:
    """A Unigram backend with the pieces of ``spiece.model`` (control pieces as special added tokens), and
    its normalization table.

    User-defined pieces stay ordinary pieces of the Unigram model, matched inside the pre-tokenized words
    as SentencePiece itself matches them: ``"a <eod>b"`` is ``▁ a ▁ <eod> b`` for the ``sentencepiece``
    library and for Hugging Face (5.x), where an added token would drop the ``▁`` before it and add one
    after it. Those that are named special tokens (``<sep>``, ``<cls>``, ``<mask>``...) become special added
    tokens in :meth:`XLNetTokenizer.from_pretrained`, as Hugging Face's conversion makes them."""
    model = read_sentencepiece_model(path)
    if model["model_type"] != 1:
        raise TokenizerFileError(
            f"{path} is a SentencePiece model of type {model['model_type']}; XLNet's is Unigram (1)"
        )
    vocab = [(piece, score) for piece, score, _ in model["pieces"]]
    backend = BackendTokenizer(Unigram(vocab, unk_id=model["unk_id"], byte_fallback=False))
    for piece, _, kind in model["pieces"]:
        if kind == _CONTROL:
            backend.add_tokens([AddedToken(piece, normalized=False, special=True)])
    return backend, model["precompiled_charsmap"]


class XLNetTokenizer(Tokenizer):
    """XLNet's SentencePiece tokenizer (see the module docstring).

    Args (beyond :class:`~workbench.tokenizers.base.Tokenizer`'s): ``do_lower_case``; ``precompiled_charsmap``, the
    SentencePiece normalization table (kept to rebuild the pipeline). ``padding_side`` defaults to ``"left"``.
    """

    def __init__(
        self,
        backend: BackendTokenizer,
        *,
        do_lower_case: bool = False,
        precompiled_charsmap: bytes | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("model_input_names", MODEL_INPUT_NAMES)
        options.setdefault("padding_side", "left")
        super().__init__(backend, **options)
        self.do_lower_case = do_lower_case
        self.precompiled_charsmap = precompiled_charsmap

    @staticmethod
    def handles(folder: str | Path) -> bool:
        """Whether ``folder`` holds an XLNet tokenizer: tokenizer_config.json's ``tokenizer_class`` is
        ``XLNetTokenizer(Fast)``; or it names none and config.json's ``model_type`` is ``xlnet``; or neither
        file says anything and the folder has a ``spiece.model`` (the only SentencePiece tokenizer here)."""
        folder = Path(folder)
        named = named_tokenizer_class(folder)
        if named:
            return named in TOKENIZER_CLASSES
        model_type = named_model_type(folder)
        if model_type is not None:
            return model_type == "xlnet"
        return (folder / SPIECE_NAME).is_file() and not (folder / "tokenizer.json").is_file()

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> XLNetTokenizer:
        """Load ``tokenizer.json`` (or, without it, ``spiece.model``) and the settings of
        ``tokenizer_config.json`` / ``special_tokens_map.json`` from a folder, alias or hub id. ``kwargs``:
        constructor options (``padding_side``, ``model_max_length``, ...), which override the settings."""
        folder = resolve_checkpoint(name_or_path)
        settings = read_settings(folder)
        if (folder / "tokenizer.json").is_file():
            backend = read_tokenizer_json(folder / "tokenizer.json")  # its normalization table checked
            tokenizer_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
            charsmap = next(iter(precompiled_charsmaps(tokenizer_json)), None)
            if not isinstance(backend.model, Unigram):
                raise TokenizerFileError(
                    f"{folder / 'tokenizer.json'} holds a {type(backend.model).__name__} model; "
                    f"XLNet's tokenizer "
                    f"is a SentencePiece Unigram model"
                )
        elif (folder / SPIECE_NAME).is_file():
            backend, charsmap = backend_from_spiece(folder / SPIECE_NAME)
        else:
            raise FileNotFoundError(
                f"no XLNet tokenizer in {folder}: it needs tokenizer.json or {SPIECE_NAME}. "
                f"Found: {describe_folder(folder)}"
            )
        special = special_tokens_of(settings, DEFAULT_SPECIAL_TOKENS)
        # Hugging Face's defaults; from spiece.model, its control and user-defined pieces instead.
        default = DEFAULT_ADDITIONAL_SPECIAL_TOKENS if (folder / "tokenizer.json").is_file() else ()
        additional = additional_special_tokens_of(settings, default)
        # Named special tokens first, in Hugging Face's order (a missing one gets the next id), then the rest.
        # tokenizer.json's added tokens keep their flags; from spiece.model, a user-defined piece that is a
        # named special token becomes special (as Hugging Face's conversion makes it).
        from_spiece = not (folder / "tokenizer.json").is_file()
        present = {
            t.content for t in backend.get_added_tokens_decoder().values() if t.special or not from_spiece
        }
        missing = [token for token in [*special.values(), *additional] if token not in present]
        backend.add_special_tokens(
            [AddedToken(t, normalized=False, special=True) for t in dict.fromkeys(missing)]
        )
        for role in ("sep_token", "cls_token"):
            if role not in special:
                raise ValueError(f"XLNet's tokenizer needs a {role} (its template is A <sep> <cls>)")
        do_lower_case = bool(settings.get("do_lower_case", False))
        set_xlnet_pipeline(backend, charsmap, do_lower_case, special["sep_token"], special["cls_token"])
        options: dict[str, Any] = {
            **settings_options(settings, folder, name_or_path, padding_side="left"),
            "special_tokens": special,
            "do_lower_case": do_lower_case,
            "precompiled_charsmap": charsmap,
        }
        if settings.get("model_input_names"):
            options["model_input_names"] = tuple(settings["model_input_names"])
        options.update(kwargs)
        return cls(backend, **options)

    def save_pretrained(self, folder: str | Path) -> None:
        """``tokenizer.json`` and ``tokenizer_config.json`` (``tokenizer_class`` ``XLNetTokenizer``), which
        Hugging Face's XLNetTokenizer and this class read back."""
        self.saved_settings.setdefault("tokenizer_class", "XLNetTokenizer")
        self.saved_settings["do_lower_case"] = self.do_lower_case
        super().save_pretrained(folder)
