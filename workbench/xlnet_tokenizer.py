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
``protobuf`` package needed): the pieces with their scores, the unknown token's id, the normalization table,
and the control (special) and user-defined pieces, which are matched whole in text.

Differences from Hugging Face's class: ``token_type_ids`` are returned by default (the segment encodings of
XLNet use them; Hugging Face 5 returns them only with ``return_token_type_ids=True``, version 4 always did).
Like Hugging Face 5, ``keep_accents`` is read but accents are always stripped.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import Unigram

from .tokenizer import SPECIAL_TOKEN_KEYS, Tokenizer

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


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message: ints for varints and fixed-width fields
    (raw bits), bytes for length-delimited ones (strings, sub-messages)."""
    out, offset = [], 0
    while offset < len(data):
        key, offset = _read_varint(data, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, offset = _read_varint(data, offset)
        elif wire_type == 1:
            value, offset = int.from_bytes(data[offset : offset + 8], "little"), offset + 8
        elif wire_type == 2:
            length, offset = _read_varint(data, offset)
            value, offset = data[offset : offset + length], offset + length
        elif wire_type == 5:
            value, offset = int.from_bytes(data[offset : offset + 4], "little"), offset + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {number})")
        out.append((number, value))
    return out


def read_sentencepiece_model(path: str | Path) -> dict[str, Any]:
    """The parts of a SentencePiece ``ModelProto`` that the tokenizer needs.

    Returns:
        ``pieces``: [(piece, score, type)] in id order (type 1 normal, 2 unknown, 3 control, 4 user-defined,
        5 unused, 6 byte); ``unk_id``; ``model_type`` (1 Unigram, 2 BPE, 3 word, 4 char);
        ``precompiled_charsmap`` (bytes or None).
    """
    path = Path(path)
    try:
        fields = _fields(path.read_bytes())
        pieces, unk_id, model_type, charsmap = [], 0, 1, None
        for number, value in fields:
            if number == 1:  # repeated SentencePiece
                piece = {1: b"", 2: 0, 3: 1}
                piece.update(dict(_fields(value)))
                score = struct.unpack("<f", struct.pack("<I", piece[2]))[0]
                pieces.append((piece[1].decode("utf-8"), score, piece[3]))
            elif number == 2:  # TrainerSpec
                spec = dict(_fields(value))
                model_type, unk_id = spec.get(3, 1), spec.get(40, 0)
            elif number == 3:  # NormalizerSpec
                charsmap = dict(_fields(value)).get(2) or None
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as err:
        raise ValueError(f"{path} is not a SentencePiece model file: {err}") from None
    if not pieces:
        raise ValueError(f"{path} holds no SentencePiece pieces: is it a SentencePiece model file?")
    return {"pieces": pieces, "unk_id": unk_id, "model_type": model_type, "precompiled_charsmap": charsmap}


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


def _charsmap_of(backend_json: dict[str, Any]) -> bytes | None:
    normalizer = backend_json.get("normalizer") or {}
    steps = (
        normalizer.get("normalizers", [normalizer]) if normalizer.get("type") == "Sequence" else [normalizer]
    )
    for step in steps:
        if step and step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
            return base64.b64decode(step["precompiled_charsmap"])
    return None


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
        raise ValueError(
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

    Args (beyond :class:`~workbench.tokenizer.Tokenizer`'s): ``do_lower_case``; ``precompiled_charsmap``, the
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
        settings = _read_json(folder / "tokenizer_config.json")
        if settings.get("tokenizer_class"):
            return settings["tokenizer_class"] in TOKENIZER_CLASSES
        model_type = _read_json(folder / "config.json").get("model_type")
        if model_type is not None:
            return model_type == "xlnet"
        return (folder / SPIECE_NAME).is_file() and not (folder / "tokenizer.json").is_file()

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> XLNetTokenizer:
        """Load ``tokenizer.json`` (or, without it, ``spiece.model``) and the settings of
        ``tokenizer_config.json`` / ``special_tokens_map.json`` from a folder, alias or hub id. ``kwargs``:
        constructor options (``padding_side``, ``model_max_length``, ...), which override the settings."""
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(name_or_path)
        settings = {
            **_read_json(folder / "special_tokens_map.json"),
            **_read_json(folder / "tokenizer_config.json"),
        }
        if (folder / "tokenizer.json").is_file():
            try:
                backend = BackendTokenizer.from_file(str(folder / "tokenizer.json"))
                charsmap = _charsmap_of(json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")))
            except Exception as err:
                raise ValueError(f"could not read {folder / 'tokenizer.json'}: {err}") from None
            if not isinstance(backend.model, Unigram):
                raise ValueError(
                    f"{folder / 'tokenizer.json'} holds a {type(backend.model).__name__} model; "
                    f"XLNet's tokenizer "
                    f"is a SentencePiece Unigram model"
                )
        elif (folder / SPIECE_NAME).is_file():
            backend, charsmap = backend_from_spiece(folder / SPIECE_NAME)
        else:
            found = ", ".join(sorted(p.name for p in folder.iterdir())) if folder.is_dir() else "nothing"
            raise FileNotFoundError(
                f"no XLNet tokenizer in {folder}: it needs tokenizer.json or {SPIECE_NAME}. Found: {found}"
            )
        special = dict(DEFAULT_SPECIAL_TOKENS)
        for key in SPECIAL_TOKEN_KEYS:
            if key in settings:
                value = settings[key]
                value = value.get("content") if isinstance(value, dict) else value
                if value is None:
                    special.pop(key, None)
                else:
                    special[key] = value
        additional = settings.get("additional_special_tokens", settings.get("extra_special_tokens"))
        if additional is None or isinstance(additional, dict):
            # Hugging Face's defaults; from spiece.model, its control and user-defined pieces instead.
            additional = DEFAULT_ADDITIONAL_SPECIAL_TOKENS if (folder / "tokenizer.json").is_file() else ()
        additional = [t.get("content") if isinstance(t, dict) else t for t in additional]
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
        model_max_length = settings.get("model_max_length")
        options: dict[str, Any] = {
            "special_tokens": special,
            "model_max_length": model_max_length if model_max_length and model_max_length < 1e29 else None,
            "padding_side": settings.get("padding_side", "left"),
            "name_or_path": str(name_or_path),
            "saved_settings": {
                k: v for k, v in settings.items() if k not in ("added_tokens_decoder", "name_or_path")
            },
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


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    return values if isinstance(values, dict) else {}
