"""Models by name, with a tiny random stand-in when a checkpoint cannot be found offline.

Notebooks compare architectures (BERT, RoBERTa, GPT-2, ...) whose released checkpoints are downloaded from
the Hugging Face hub. On a machine without network and without a local copy, :func:`load` builds a small
random-initialized model of the same architecture instead, with a tokenizer of the same family, and says so
in one warning line (never silently). The stand-in runs through every API (hooks, caches, attribution,
probing, generation), so a notebook still runs top to bottom; its outputs are not meaningful.

>>> import workbench as wb
>>> gpt2 = wb.zoo.load("gpt2")  # doctest: +SKIP
gpt2 is not available offline: using a random-initialized tiny GPT-2 (4 layers, d_model 128, ...) ...
>>> wb.zoo.is_stand_in(gpt2)  # doctest: +SKIP
True

Tokenizers of the stand-ins: BERT and DistilBERT use the WordPiece vocabulary of the embedded MiniLM (a real
BERT vocabulary) when it is installed; the others are trained here, in about a second, on the sentences of
the committed UD English EWT sample (``probes/sample_data``), so that common English words are single
tokens, as with the real vocabularies: byte-level BPE (GPT-2, RoBERTa), BPE with ``</w>`` word ends (GPT,
XLM), a SentencePiece-style Unigram model (XLNet) and a word-level vocabulary (Transformer-XL).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, normalizers, pre_tokenizers, trainers

from .api import default_device
from .api import load as load_checkpoint
from .auto import TASK_REGISTRIES, AutoConfig
from .hub import CheckpointNotFoundError, resolve_checkpoint
from .model import HookedTransformer
from .registry import REGISTRY
from .tokenizers import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinySize:
    """The shape of a stand-in model, in the canonical names (translated per architecture).

    Attributes:
        n_layers: blocks.
        d_model: width of the residual stream.
        n_heads: attention heads per block (d_head = d_model / n_heads).
        d_mlp: hidden width of the MLP (GPT and XLM have no setting for it: theirs is 4 * d_model).
        n_positions: the longest input, in tokens.
        bpe_vocab_size: tokens of the BPE vocabularies trained for GPT-2 and RoBERTa (GPT and XLM: twice as
            many, each also with its ``</w>`` word-end form).
    """

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_positions: int = 512
    bpe_vocab_size: int = 2000


# model_type -> the head a released checkpoint carries (what wb.load gives for the real model), and the name
# notices use: read-only views of the architecture records (workbench.registry).
DEFAULT_TASKS = REGISTRY.field("default_task")
DISPLAY_NAMES = REGISTRY.field("display_name")


def load(
    name_or_path: str | Path,
    task: str | None = None,
    device: torch.device | str | None = "auto",
    fallback: str | None = "tiny",
    architecture: str | None = None,
    size: TinySize = TinySize(),
    seed: int = 0,
    **kwargs: Any,
) -> HookedTransformer:
    """Load a model by name; offline and without a local copy, a tiny random model of its architecture.

    Args:
        name_or_path: a folder, an alias (``"minilm"``) or a Hugging Face hub id (``"gpt2"``,
            ``"bert-base-uncased"``, ``"FacebookAI/roberta-base"``).
        task: as in :func:`workbench.load`; None: the checkpoint's own head (for a stand-in, the head of the
            released checkpoints: masked LM for encoders, causal LM for decoders).
        device: ``"auto"`` (the GPU when there is one) or any torch device.
        fallback: ``"tiny"`` builds a stand-in when the checkpoint cannot be found; None raises
            :class:`~workbench.CheckpointNotFoundError` instead.
        architecture: the ``model_type`` of the stand-in (``"gpt2"``, ``"bert"``, ...); default: guessed
            from the name.
        size: the stand-in's shape.
        seed: the stand-in's random initialization.
        **kwargs: config overrides (``num_labels=3``), for the checkpoint and the stand-in alike.

    Returns:
        The model; a stand-in has ``model.stand_in_notice`` set to the line that was logged (None otherwise).
    """
    if fallback not in ("tiny", None):
        raise ValueError(f"fallback must be 'tiny' or None, got {fallback!r}")
    try:
        model = load_checkpoint(name_or_path, task=task, device=device, **kwargs)
    except CheckpointNotFoundError as err:
        if fallback is None:
            raise
        model_type = architecture or architecture_of(name_or_path)
        if model_type is None:
            raise CheckpointNotFoundError(
                f"{err}\nNo tiny stand-in either: cannot tell the architecture of {str(name_or_path)!r} from its "
                f"name; pass architecture= (one of {sorted(TINY_BUILDERS)})"
            ) from err
        model = tiny(model_type, task=task, device=device, size=size, seed=seed, **kwargs)
        model.stand_in_notice = (
            f"{name_or_path} is not available offline: using a random-initialized tiny "
            f"{DISPLAY_NAMES.get(model_type, model_type)} ({describe(model)}) - its outputs are not meaningful"
        )
        logger.warning(model.stand_in_notice)
        return model
    if is_stand_in(model):  # a stand-in saved earlier and loaded from its folder: still one
        logger.warning("%s is a random stand-in: %s", name_or_path, model.stand_in_notice)
    return model


# The config.json key a stand-in's notice is kept under (HookedTransformer.stand_in_notice reads it).
STAND_IN_KEY = "workbench_stand_in"
STAND_IN_LABEL = "random stand-in"


def is_stand_in(model: HookedTransformer) -> bool:
    """Whether ``model`` is a random stand-in built by :func:`load` or :func:`tiny`, also after
    ``save_pretrained`` and loading it again (the notice is kept in ``config.json``)."""
    return stand_in_notice(model) is not None


def stand_in_notice(model: Any) -> str | None:
    """The stand-in notice of ``model`` (a workbench model, or anything with a ``config``), else None."""
    notice = getattr(model, "stand_in_notice", None)
    if notice is None:
        extra = getattr(getattr(model, "config", None), "extra", None)
        notice = extra.get(STAND_IN_KEY) if isinstance(extra, dict) else None
    return notice


def display_name(model: Any, name: str | None = None) -> str:
    """The label of ``model`` in figures and tables: ``name`` (default: where the model was loaded from),
    with ``" (random stand-in)"`` appended when the model is one (``"gpt2 (random stand-in)"``).

    >>> display_name(tiny("gpt2", device="cpu"), "gpt2")  # doctest: +SKIP
    'gpt2 (random stand-in)'
    """
    if name is None:
        config = getattr(model, "config", None)
        name = getattr(config, "name_or_path", "") or type(model).__name__
    return labelled(name, is_stand_in(model))


def labelled(name: Any, stand_in: bool) -> str:
    """``name`` with ``" (random stand-in)"`` appended when ``stand_in`` (once): the label of a model named in a
    results table, e.g. from its ``stand_in`` column."""
    name = str(name)
    if stand_in and STAND_IN_LABEL not in name:
        return f"{name} ({STAND_IN_LABEL})"
    return name


def architecture_of(name_or_path: str | Path) -> str | None:
    """The ``model_type`` a hub name or folder name stands for (``"roberta-base"`` -> ``"roberta"``), or None.

    Read from each architecture's ``name_patterns``; a name that matches none, or the patterns of several
    architectures (logged as a warning), stands for none.
    """
    name = Path(str(name_or_path)).name.lower()
    matching = [architecture.model_type for architecture in REGISTRY.matching(name)]
    if len(matching) > 1:
        logger.warning(
            "%s matches the name patterns of several architectures (%s): pass architecture= to choose one",
            name_or_path,
            ", ".join(matching),
        )
        return None
    return matching[0] if matching else None


def describe(model: HookedTransformer) -> str:
    """``"4 layers, d_model 128, 4 heads, vocabulary 2000"``."""
    config = model.config
    vocab = model.tokenizer.vocab_size if model.tokenizer is not None else config.vocab_size
    return f"{model.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads, vocabulary {vocab}"


def tiny(
    architecture: str,
    task: str | None = None,
    device: torch.device | str | None = "auto",
    size: TinySize = TinySize(),
    seed: int = 0,
    **config_overrides: Any,
) -> HookedTransformer:
    """A random-initialized small model of ``architecture`` (a ``model_type``) with a tokenizer of its family.

    The model and its tokenizer are built the way a checkpoint folder would be read: the tokenizer's files
    and ``config.json`` are written to a temporary folder and loaded back with :class:`Tokenizer`, so the
    stand-in's tokenizer behaves like a released one of the family (special tokens, padding, word ids).

    Raises:
        ValueError: for an architecture with no stand-in, or a task that architecture has no head for.
    """
    if architecture not in TINY_BUILDERS:
        raise ValueError(
            f"no tiny stand-in for architecture {architecture!r}; stand-ins exist for {sorted(TINY_BUILDERS)}"
        )
    task = task or DEFAULT_TASKS.get(architecture, "base")
    registry = TASK_REGISTRIES.get(task)
    if registry is None:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_REGISTRIES)}")
    if architecture not in registry:
        raise ValueError(f"{architecture} has no {task} head; {task} exists for {sorted(registry)}")
    with tempfile.TemporaryDirectory(prefix=f"workbench-tiny-{architecture}-") as folder:
        folder = Path(folder)
        fields = TINY_BUILDERS[architecture](folder, size)
        config = AutoConfig.for_model(architecture, **fields, **config_overrides)
        config.name_or_path = f"tiny-random-{architecture}"
        config.save_pretrained(folder)  # the tokenizer reads model_type from it (XLM, DistilBERT inputs)
        tokenizer = Tokenizer.from_pretrained(folder)
    tokenizer.name_or_path = config.name_or_path
    model = registry[architecture].from_config(config, seed=seed)
    model.tokenizer = tokenizer
    model.stand_in_notice = f"tiny random {DISPLAY_NAMES.get(architecture, architecture)} ({describe(model)})"
    if device == "auto":
        device = default_device()
    return model.to(device)


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


# Tokenizer files per family ---------------------------------------------------------------------------


def _train_bpe(
    special_tokens: list[str], size: TinySize, byte_level: bool
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
        vocab_size=size.bpe_vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=alphabet,
        show_progress=False,
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


def _wordpiece_vocab(folder: Path, size: TinySize) -> int:
    """Write vocab.txt: MiniLM's (a real uncased BERT vocabulary) when installed, else one trained here (with
    a WARNING: the stand-in then tokenizes unlike a released BERT)."""
    try:
        minilm_vocab = resolve_checkpoint("minilm") / "vocab.txt"
    except CheckpointNotFoundError:
        minilm_vocab = None
    if minilm_vocab is not None and minilm_vocab.is_file():
        lines = minilm_vocab.read_text(encoding="utf-8").splitlines()
    else:
        lines = _train_wordpiece(size)
        logger.warning(
            "MiniLM (a real BERT vocabulary) is not installed: the WordPiece vocabulary of this BERT-family "
            "stand-in is trained on the EWT sample instead (%d tokens), unlike any released BERT's",
            len(lines),
        )
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _train_wordpiece(size: TinySize) -> list[str]:
    backend = BackendTokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=size.bpe_vocab_size, special_tokens=specials, show_progress=False
    )
    backend.train_from_iterator(training_sentences(), trainer)
    vocab = backend.get_vocab()
    return sorted(vocab, key=vocab.get)


# Builders: write the tokenizer files into a folder, return the config fields ---------------------------


def _tiny_bert(folder: Path, size: TinySize) -> dict[str, Any]:
    vocab_size = _wordpiece_vocab(folder, size)
    _write_settings(
        folder, tokenizer_class="BertTokenizer", do_lower_case=True, model_max_length=size.n_positions
    )
    return dict(
        vocab_size=vocab_size,
        hidden_size=size.d_model,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        intermediate_size=size.d_mlp,
        max_position_embeddings=size.n_positions,
        architectures=["BertForMaskedLM"],
    )


def _tiny_distilbert(folder: Path, size: TinySize) -> dict[str, Any]:
    vocab_size = _wordpiece_vocab(folder, size)
    _write_settings(
        folder, tokenizer_class="DistilBertTokenizer", do_lower_case=True, model_max_length=size.n_positions
    )
    return dict(
        vocab_size=vocab_size,
        dim=size.d_model,
        n_layers=size.n_layers,
        n_heads=size.n_heads,
        hidden_dim=size.d_mlp,
        max_position_embeddings=size.n_positions,
        architectures=["DistilBertForMaskedLM"],
    )


def _tiny_roberta(folder: Path, size: TinySize) -> dict[str, Any]:
    # RoBERTa's special tokens have these ids in the released vocabulary (<mask> is the last one there).
    vocab, merges = _train_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], size, byte_level=True)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class="RobertaTokenizer", model_max_length=size.n_positions)
    return dict(
        vocab_size=len(vocab),
        hidden_size=size.d_model,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        intermediate_size=size.d_mlp,
        max_position_embeddings=size.n_positions + 2,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        architectures=["RobertaForMaskedLM"],
    )


def _tiny_gpt2(folder: Path, size: TinySize) -> dict[str, Any]:
    vocab, merges = _train_bpe(["<|endoftext|>"], size, byte_level=True)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class="GPT2Tokenizer", model_max_length=size.n_positions)
    end = vocab["<|endoftext|>"]
    return dict(
        vocab_size=len(vocab),
        n_embd=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        n_inner=size.d_mlp,
        n_positions=size.n_positions,
        bos_token_id=end,
        eos_token_id=end,
        architectures=["GPT2LMHeadModel"],
    )


def _tiny_openai_gpt(folder: Path, size: TinySize) -> dict[str, Any]:
    vocab, merges = _train_bpe(["<unk>"], size, byte_level=False)
    _write_bpe_files(folder, vocab, merges)
    _write_settings(folder, tokenizer_class="OpenAIGPTTokenizer", model_max_length=size.n_positions)
    return dict(
        vocab_size=len(vocab),
        n_embd=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        n_positions=size.n_positions,
        architectures=["OpenAIGPTLMHeadModel"],
    )


def _tiny_xlm(folder: Path, size: TinySize) -> dict[str, Any]:
    # The order of XLM's vocabularies: <s> </s> <pad> <unk> <special0..9>; <special1> is the mask token.
    specials = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]
    vocab, merges = _train_bpe(specials, size, byte_level=False)
    _write_bpe_files(folder, vocab, merges, header=False)  # XLM reads every line of merges.txt as a merge
    _write_settings(folder, tokenizer_class="XLMTokenizer", model_max_length=size.n_positions)
    return dict(
        vocab_size=len(vocab),
        emb_dim=size.d_model,
        n_layers=size.n_layers,
        n_heads=size.n_heads,
        max_position_embeddings=size.n_positions,
        embed_init_std=size.d_model**-0.5,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        unk_index=vocab["<unk>"],
        mask_index=vocab["<special1>"],
        architectures=["XLMWithLMHeadModel"],
    )


def _tiny_xlnet(folder: Path, size: TinySize) -> dict[str, Any]:
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
        vocab_size=size.bpe_vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
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
    _write_settings(folder, tokenizer_class="XLNetTokenizer", model_max_length=size.n_positions)
    ids = {token: i for i, (token, _) in enumerate(vocab)}
    return dict(
        vocab_size=len(vocab),
        d_model=size.d_model,
        n_layer=size.n_layers,
        n_head=size.n_heads,
        d_inner=size.d_mlp,
        mem_len=None,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        architectures=["XLNetLMHeadModel"],
    )


def _tiny_transfo_xl(folder: Path, size: TinySize) -> dict[str, Any]:
    """A word-level vocabulary (vocab.txt): every word of the sample, most frequent first, after <eos>, <unk>
    and <formula> (the tokenizer's extra special token); an adaptive softmax with two cutoffs (the released
    model has three)."""
    split = pre_tokenizers.BertPreTokenizer()  # whitespace and punctuation, close to Moses for this text
    counts = Counter(
        word for sentence in training_sentences() for word, _ in split.pre_tokenize_str(sentence)
    )
    words = ["<eos>", "<unk>", "<formula>"] + sorted(counts, key=lambda word: (-counts[word], word))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    _write_settings(folder, tokenizer_class="TransfoXLTokenizer", unk_token="<unk>", eos_token="<eos>")
    return dict(
        vocab_size=len(words),
        cutoffs=[len(words) // 8, len(words) // 2],
        d_model=size.d_model,
        d_embed=size.d_model,
        n_head=size.n_heads,
        d_head=size.d_model // size.n_heads,
        d_inner=size.d_mlp,
        div_val=1,
        n_layer=size.n_layers,
        mem_len=size.n_positions // 4,
        clamp_len=size.n_positions,
        tie_projs=[False, True, True],
        eos_token_id=0,
        architectures=["TransfoXLLMHeadModel"],
    )


# model_type -> builder. An architecture gets a stand-in by adding one entry here.
TINY_BUILDERS: dict[str, Callable[[Path, TinySize], dict[str, Any]]] = {
    "bert": _tiny_bert,
    "distilbert": _tiny_distilbert,
    "roberta": _tiny_roberta,
    "gpt2": _tiny_gpt2,
    "openai-gpt": _tiny_openai_gpt,
    "xlm": _tiny_xlm,
    "xlnet": _tiny_xlnet,
    "transfo-xl": _tiny_transfo_xl,
}


def checkpoint_folder(
    name_or_path: str | Path,
    cache_dir: str | Path | None = None,
    architecture: str | None = None,
    size: TinySize = TinySize(),
    seed: int = 0,
) -> Path:
    """A checkpoint folder for ``name_or_path``, for APIs that take names (``probes.run``, the benchmarks).

    The checkpoint's own folder when it can be found (a folder, an alias, the hub or its cache); else a tiny
    stand-in (see :func:`load`, which logs the same one-line notice) saved with its tokenizer to
    ``cache_dir/tiny-random-<architecture>`` (default: a new temporary folder, left for the caller).
    """
    try:
        return resolve_checkpoint(name_or_path)
    except CheckpointNotFoundError:
        model = load(name_or_path, task="base", device="cpu", architecture=architecture, size=size, seed=seed)
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="workbench-tiny-"))
    return model.save_pretrained(root / model.config.name_or_path)
