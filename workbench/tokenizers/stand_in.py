"""Tokenizer stand-ins: a small tokenizer of each family, written as a checkpoint folder's files, for the tiny
random models of :mod:`workbench.zoo` (offline: nothing is downloaded).

WordPiece (BERT, DistilBERT) uses the vocabulary of the embedded MiniLM (a real uncased BERT vocabulary) when it
is installed; the others are trained here, in about a second, on the sentences of the committed UD English EWT
sample (``probes/sample_data``), so that common English words are single tokens, as with the real
vocabularies: byte-level BPE (GPT-2, RoBERTa), BPE with ``</w>`` word ends (GPT, XLM), a SentencePiece-style
Unigram model (XLNet) and a word-level vocabulary (Transformer-XL). Every stand-in is the same, byte for byte,
in every process.

>>> vocabulary = write_stand_in("byte_level_bpe", folder, vocab_size=2000, model_max_length=512)  # doctest: +SKIP
>>> vocabulary.ids["eos_token"]  # doctest: +SKIP
0
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, normalizers, pre_tokenizers, trainers

from ..hub import CheckpointNotFoundError, resolve_checkpoint
from .wordpiece_bpe import BYTE_LEVEL_BPE, ROBERTA_BPE, WORD_END_BPE, WORDPIECE, tokenizer_class_of

# The stand-ins' notices belong with the zoo's (one logger for everything a stand-in says).
logger = logging.getLogger("workbench.zoo")


@dataclass(frozen=True)
class StandInVocabulary:
    """What a tiny config needs to know of its tokenizer stand-in.

    Attributes:
        size: tokens in the vocabulary (the config's ``vocab_size``).
        ids: special-token role (``"pad_token"``, ``"bos_token"``, ``"eos_token"``, ``"unk_token"``,
            ``"mask_token"``, ...) -> id, for the roles the family has.
    """

    size: int
    ids: Mapping[str, int]


def write_stand_in(
    family: str, folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str | None = None
) -> StandInVocabulary:
    """Write the files of a stand-in tokenizer of ``family`` into ``folder``.

    Args:
        family: a key of :data:`STAND_INS` (an architecture record's ``tokenizer_family``).
        vocab_size: tokens to train (the trained BPE and Unigram vocabularies; see each family's writer).
        model_max_length: the longest input, written to ``tokenizer_config.json``.
        tokenizer_class: the Hugging Face class ``tokenizer_config.json`` names; default: the family's.

    Raises:
        ValueError: a family with no stand-in.
    """
    if family not in STAND_INS:
        raise ValueError(
            f"no tokenizer stand-in for family {family!r}; stand-ins exist for {sorted(STAND_INS)}"
        )
    write, default_class = STAND_INS[family]
    return write(Path(folder), vocab_size, model_max_length, tokenizer_class or default_class)


# Training text ----------------------------------------------------------------------------------------


def training_sentences() -> list[str]:
    """The sentences of the committed UD English EWT sample (the ``# text =`` lines of its CoNLL-U files)."""
    folder = _sample_data_folder()
    sentences = []
    for path in sorted(folder.glob("*.conllu")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# text = "):
                sentences.append(line[len("# text = ") :])
    if not sentences:
        raise FileNotFoundError(f"no '# text = ' lines in the CoNLL-U files of {folder}")
    return sentences


def _sample_data_folder() -> Path:
    spec = importlib.util.find_spec("probes")  # found without importing it (probes imports workbench)
    folder = Path(spec.origin).parent / "sample_data" if spec is not None and spec.origin else None
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(
            "the tiny stand-ins train their BPE vocabularies on probes/sample_data, which is missing; "
            "reinstall the workbench (pip install -e .)"
        )
    return folder


# Shared steps -------------------------------------------------------------------------------------------


def _train_bpe(
    special_tokens: list[str], vocab_size: int, byte_level: bool
) -> tuple[dict[str, int], list[str]]:
    """Train a BPE vocabulary on the sample sentences -> (vocab, merges as "a b" lines).

    ``byte_level``: GPT-2's byte-level BPE (RoBERTa's too). Else GPT's and XLM's: lowercased words split at
    punctuation, the last symbol of a word marked with ``</w>`` (see :func:`_with_word_ends`).
    """
    if byte_level:
        backend = BackendTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        backend = BackendTokenizer(models.BPE(unk_token="<unk>"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=True)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=alphabet, show_progress=False
    )
    backend.train_from_iterator(training_sentences(), trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    if byte_level:
        return model["vocab"], merges
    return _with_word_ends(model["vocab"], merges, special_tokens)


def _with_word_ends(vocab: dict[str, int], merges: list[str], special_tokens: list[str]):
    """A BPE without word ends -> the same segmentation with ``</w>`` on the last symbol of every word.

    Every token gets a ``</w>`` twin and every merge ``a b`` a twin ``a b</w>`` right after it, so a word is
    split as before and its last piece carries the mark. (The trainer's own ``end_of_word_suffix`` breaks
    ties between equally frequent pairs in a different order in every process: this keeps stand-ins
    reproducible.)
    """
    tokens = [t for t in sorted(vocab, key=vocab.get) if t not in special_tokens]
    ordered = list(special_tokens) + [form for t in tokens for form in (t, t + "</w>")]
    twin_merges = [line for merge in merges for line in (merge, merge + "</w>")]
    return {token: i for i, token in enumerate(ordered)}, twin_merges


def _write_bpe_files(folder: Path, vocab: dict[str, int], merges: list[str], header: bool = True) -> None:
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = (["#version: 0.2"] if header else []) + merges
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_settings(folder: Path, **settings: Any) -> None:
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")


def _vocabulary(vocab: Mapping[str, int], size: int | None = None, **tokens: str) -> StandInVocabulary:
    """``vocab``'s size (unless given) and the ids of the special tokens by role (``eos_token="</s>"``)."""
    ids = {role: vocab[token] for role, token in tokens.items() if token in vocab}
    return StandInVocabulary(len(vocab) if size is None else size, ids)


# The families ---------------------------------------------------------------------------------------------


def _wordpiece(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    """vocab.txt: MiniLM's (a real uncased BERT vocabulary) when installed, else one trained here (with a
    WARNING: the stand-in then tokenizes unlike a released BERT)."""
    try:
        minilm_vocab = resolve_checkpoint("minilm") / "vocab.txt"
    except CheckpointNotFoundError:
        minilm_vocab = None
    if minilm_vocab is not None and minilm_vocab.is_file():
        lines = minilm_vocab.read_text(encoding="utf-8").splitlines()
    else:
        lines = _train_wordpiece(vocab_size)
        logger.warning(
            "MiniLM (a real BERT vocabulary) is not installed: the WordPiece vocabulary of this BERT-family "
            "stand-in is trained on the EWT sample instead (%d tokens), unlike any released BERT's",
            len(lines),
        )
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_settings(
        folder, tokenizer_class=tokenizer_class, do_lower_case=True, model_max_length=model_max_length
    )
    first_ids = {token: i for i, token in reversed(list(enumerate(lines)))}  # a repeated line: its first id
    return _vocabulary(first_ids, len(lines), pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                       sep_token="[SEP]", mask_token="[MASK]")


def _train_wordpiece(vocab_size: int) -> list[str]:
    backend = BackendTokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(training_sentences(), trainer)
    vocab = backend.get_vocab()
    return sorted(vocab, key=vocab.get)


def _byte_level_bpe(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    vocab, merges = _train_bpe(["<|endoftext|>"], vocab_size, byte_level=True)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class=tokenizer_class, model_max_length=model_max_length)
    end = "<|endoftext|>"
    return _vocabulary(vocab, bos_token=end, eos_token=end, unk_token=end)


def _roberta_bpe(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    # RoBERTa's special tokens have these ids in the released vocabulary (<mask> is the last one there).
    vocab, merges = _train_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], vocab_size, byte_level=True)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class=tokenizer_class, model_max_length=model_max_length)
    return _vocabulary(vocab, bos_token="<s>", cls_token="<s>", pad_token="<pad>", eos_token="</s>",
                       sep_token="</s>", unk_token="<unk>", mask_token="<mask>")


def _word_end_bpe(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    vocab, merges = _train_bpe(["<unk>"], vocab_size, byte_level=False)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class=tokenizer_class, model_max_length=model_max_length)
    return _vocabulary(vocab, unk_token="<unk>")


def _xlm(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    # The order of XLM's vocabularies: <s> </s> <pad> <unk> <special0..9>; <special1> is the mask token.
    specials = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]
    vocab, merges = _train_bpe(specials, vocab_size, byte_level=False)
    _write_bpe_files(folder, vocab, merges, header=False)  # XLM reads every line of merges.txt as a merge
    _write_settings(folder, tokenizer_class=tokenizer_class, model_max_length=model_max_length)
    return _vocabulary(vocab, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                       mask_token="<special1>")


def _xlnet(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    """A SentencePiece-style Unigram model (pieces with ``▁`` for spaces) in tokenizer.json.

    The pieces come from ``tokenizers``' Unigram trainer; their scores are recomputed here as the log relative
    frequency of each piece in the text, since the trainer's scores (and order) vary slightly between
    processes and a stand-in must tokenize the same way every time.
    """
    # XLNet's spiece.model order: <unk> <s> </s> <cls> <sep> <pad> <mask> <eod> <eop>.
    specials = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]
    backend = BackendTokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    sentences = training_sentences()
    backend.train_from_iterator(sentences, trainer)
    pieces = sorted({piece for piece, _ in json.loads(backend.to_str())["model"]["vocab"]} - set(specials))
    text = "".join("\u2581" + sentence.replace(" ", "\u2581") for sentence in sentences)
    scores = {piece: math.log((text.count(piece) + 1) / len(text)) for piece in pieces}
    ranked = sorted(pieces, key=lambda piece: (-scores[piece], piece))
    vocab = [(token, 0.0) for token in specials] + [(piece, scores[piece]) for piece in ranked]
    stable = BackendTokenizer(models.Unigram(vocab, unk_id=0))
    stable.pre_tokenizer = pre_tokenizers.Metaspace()
    stable.save(str(folder / "tokenizer.json"))
    _write_settings(folder, tokenizer_class=tokenizer_class, model_max_length=model_max_length)
    ids = {token: i for i, (token, _) in enumerate(vocab)}
    return _vocabulary(ids, unk_token="<unk>", bos_token="<s>", eos_token="</s>", cls_token="<cls>",
                       sep_token="<sep>", pad_token="<pad>", mask_token="<mask>")


def _transfo_xl(folder: Path, vocab_size: int, model_max_length: int, tokenizer_class: str):
    """A word-level vocabulary (vocab.txt): every word of the sample, most frequent first, after <eos>, <unk>
    and <formula> (the tokenizer's extra special token). Its size is the sample's, not ``vocab_size``, and
    the tokenizer has no ``model_max_length`` (Transformer-XL's memory makes any length fit)."""
    split = pre_tokenizers.BertPreTokenizer()  # whitespace and punctuation, close to Moses for this text
    counts = Counter(
        word for sentence in training_sentences() for word, _ in split.pre_tokenize_str(sentence)
    )
    words = ["<eos>", "<unk>", "<formula>"] + sorted(counts, key=lambda word: (-counts[word], word))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    _write_settings(folder, tokenizer_class=tokenizer_class, unk_token="<unk>", eos_token="<eos>")
    return _vocabulary({word: i for i, word in enumerate(words)}, eos_token="<eos>", unk_token="<unk>")


Writer = Callable[[Path, int, int, str], StandInVocabulary]

# family -> (the writer of its files, the Hugging Face tokenizer class its folders name by default). A new
# tokenizer family gets a stand-in (and its architectures tiny models in wb.zoo) by an entry here.
STAND_INS: dict[str, tuple[Writer, str]] = {
    WORDPIECE: (_wordpiece, tokenizer_class_of(WORDPIECE)),
    BYTE_LEVEL_BPE: (_byte_level_bpe, tokenizer_class_of(BYTE_LEVEL_BPE)),
    ROBERTA_BPE: (_roberta_bpe, tokenizer_class_of(ROBERTA_BPE)),
    WORD_END_BPE: (_word_end_bpe, tokenizer_class_of(WORD_END_BPE)),
    "xlm": (_xlm, "XLMTokenizer"),
    "xlnet": (_xlnet, "XLNetTokenizer"),
    "transfo_xl": (_transfo_xl, "TransfoXLTokenizer"),
}
