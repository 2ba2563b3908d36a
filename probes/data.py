"""Universal Dependencies data for probing: read CoNLL-U files into :class:`Sentence` objects.

``read_conllu(path)`` reads one file; ``load_treebank(name_or_path, split)`` finds the
``*-ud-{train,dev,test}.conllu`` file of a treebank folder::

    from probes.data import load_treebank
    train = load_treebank("ud_english_ewt", "train", max_sentences=1000)   # the full EWT (shared data)
    dev = load_treebank("sample", "dev")                                   # the sample committed here
    test = load_treebank("/path/to/UD_French-GSD", "test")                 # any UD treebank folder

``Sentence.words`` are the *syntactic* words: multiword-token ranges (``3-4  don't``) are skipped
and their parts (``do``, ``n't``) kept; empty nodes of the enhanced graph (``8.1``) are skipped.
All per-word lists are aligned with ``words``; ``heads`` are 1-based as in UD, 0 being the root.

Every line is checked (UTF-8, 10 tab-separated columns, word ids 1..n in order, integer heads within the
sentence, ``Name=Value`` features, one root and no cycle); a malformed line raises
:class:`ConlluFormatError`, whose message names the file, the line number and what was wrong.
Fields are parsed with the ``conllu`` package's field parsers.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conllu.exceptions import ParseException
from conllu.parser import DEFAULT_FIELD_PARSERS, DEFAULT_FIELDS, parse_comment_line

__all__ = [
    "ConlluFormatError",
    "SPLITS",
    "Sentence",
    "TREEBANKS",
    "load_treebank",
    "read_conllu",
    "resolve_treebank",
    "sample_data_dir",
]

SPLITS = ("train", "dev", "test")
# Names load_treebank knows besides folder paths (see resolve_treebank).
TREEBANKS = ("sample", "ud_english_ewt")

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, dropped at the start of a file


class ConlluFormatError(ValueError):
    """A malformed CoNLL-U line: ``str(err)`` is ``"<file>:<line>: <what was wrong>"``."""

    def __init__(self, path, line: int, message: str, content: str | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        text = f"{self.path}:{line}: {message}"
        if content is not None:
            shown = content if len(content) <= 120 else content[:117] + "..."
            text += f" (line: {shown!r})"
        super().__init__(text)


@dataclass
class Sentence:
    """One UD sentence; every per-word list is aligned with ``words`` (the syntactic words)."""

    sent_id: str
    text: str
    words: list[str]
    upos: list[str]
    xpos: list[str | None]
    heads: list[int]  # 1-based head of each word, 0 = root
    deprels: list[str]  # as in the file, subtypes included ("nmod:poss")
    feats: list[dict[str, str]]  # {} where the FEATS column is "_"
    lemmas: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.words)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def read_conllu(path, max_sentences: int | None = None) -> list[Sentence]:
    """Read a CoNLL-U file; stop after ``max_sentences`` sentences (an integer >= 1) when it is given."""
    _check_max_sentences(max_sentences)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_conllu: path must be a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CoNLL-U file at {path}")
    sentences: list[Sentence] = []
    for sentence in _iter_sentences(path):
        sentences.append(sentence)
        if max_sentences is not None and len(sentences) >= max_sentences:
            break
    return sentences


def _check_max_sentences(max_sentences) -> None:
    if max_sentences is None:
        return
    if isinstance(max_sentences, bool) or not isinstance(max_sentences, numbers.Integral):
        raise TypeError(
            f"max_sentences must be a positive integer or None (all), got "
            f"{type(max_sentences).__name__} {max_sentences!r:.40}"
        )
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be >= 1 (or None for all), got {max_sentences}")


def _iter_blocks(path: Path) -> Iterator[list[tuple[int, str]]]:
    """Yield each sentence as a list of (line number, line) pairs, blank lines dropped."""
    block: list[tuple[int, str]] = []
    with open(path, "rb") as f:
        offset = 0  # of the line's first byte in the file
        for number, raw in enumerate(f, start=1):
            start = len(BOM) if number == 1 and raw.startswith(BOM) else 0
            line = _decode_line(path, number, offset + start, raw[start:])
            offset += len(raw)
            line = line[:-1] if line.endswith("\n") else line
            line = line[:-1] if line.endswith("\r") else line
            if "\r" in line:
                raise ConlluFormatError(
                    path, number, "carriage return inside a line (lines end with \\n)", line
                )
            if line.strip():
                block.append((number, line))
            elif block:
                yield block
                block = []
    if block:
        yield block


def _decode_line(path: Path, number: int, offset: int, raw: bytes) -> str:
    """One line of a CoNLL-U file (starting at byte ``offset``) as text; bytes that are not UTF-8 are a
    :class:`ConlluFormatError` naming the line and the byte offset in the file."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConlluFormatError(
            path,
            number,
            f"not valid UTF-8 at column {err.start + 1} (byte offset {offset + err.start} in the file, byte "
            f"0x{raw[err.start]:02x}: {err.reason})",
        ) from None


def _iter_sentences(path: Path) -> Iterator[Sentence]:
    for index, block in enumerate(_iter_blocks(path)):
        yield _parse_block(path, index, block)


def _parse_field(path, number, line, columns, name):
    try:
        return DEFAULT_FIELD_PARSERS[name](columns, DEFAULT_FIELDS.index(name))
    except ParseException as err:
        raise ConlluFormatError(path, number, f"bad {name.upper()} column: {err}", line) from None


def _parse_block(path: Path, index: int, block: list[tuple[int, str]]) -> Sentence:
    metadata: dict[str, str] = {}
    words, lemmas, upos, xpos, heads, deprels, feats, misc = [], [], [], [], [], [], [], []
    head_lines: list[tuple[int, str]] = []  # where each word's line is, for errors found later
    surface: list[tuple[str, bool]] = []  # (form, space after) of surface tokens, to rebuild the text
    mwt_end = 0  # last word id covered by the current multiword token
    for number, line in block:
        if line.startswith("#"):
            try:
                for key, value in parse_comment_line(line):
                    metadata.setdefault(key, value)
            except ParseException as err:
                raise ConlluFormatError(path, number, f"bad comment line: {err}", line) from None
            continue
        columns = line.split("\t")
        if len(columns) != 10:
            raise ConlluFormatError(
                path, number, f"expected 10 tab-separated columns, found {len(columns)}", line
            )
        for k, value in enumerate(columns):
            if value == "" or value != value.strip():
                what = "empty" if value == "" else "has leading or trailing spaces"
                raise ConlluFormatError(
                    path, number, f"column {k + 1} ({DEFAULT_FIELDS[k].upper()}) {what}", line
                )
        token_id = _parse_field(path, number, line, columns, "id")
        if isinstance(token_id, tuple):
            if token_id[1] == "-":  # multiword token "3-4": keep its form for the text only
                start, end = token_id[0], token_id[2]
                if start != len(words) + 1 or end <= start:
                    raise ConlluFormatError(
                        path,
                        number,
                        f"multiword token range {columns[0]} does not start at word {len(words) + 1}",
                        line,
                    )
                mwt_end = end
                surface.append((columns[1], "SpaceAfter=No" not in columns[9].split("|")))
            elif token_id[0] != len(words):  # empty node "8.1" follows word 8
                raise ConlluFormatError(
                    path, number, f"empty node {columns[0]} does not follow word {token_id[0]}", line
                )
            continue
        if token_id != len(words) + 1:
            raise ConlluFormatError(
                path, number, f"word id {columns[0]} out of order: expected {len(words) + 1}", line
            )
        head = _parse_field(path, number, line, columns, "head")
        if not isinstance(head, int) or head < 0:
            raise ConlluFormatError(
                path, number, f"HEAD must be a non-negative integer, got {columns[6]!r}", line
            )
        word_feats = _parse_field(path, number, line, columns, "feats") or {}
        bad = [name for name, value in word_feats.items() if not name or not value]
        if bad:
            raise ConlluFormatError(path, number, f"FEATS must be Name=Value pairs, got {columns[5]!r}", line)
        if columns[7] == "_":
            raise ConlluFormatError(path, number, "DEPREL is missing ('_')", line)
        words.append(columns[1])
        lemmas.append(columns[2])
        upos.append(columns[3])
        xpos.append(_parse_field(path, number, line, columns, "xpos"))
        heads.append(head)
        deprels.append(columns[7])
        feats.append(dict(word_feats))
        misc.append(columns[9])
        head_lines.append((number, line))
        if token_id > mwt_end:
            surface.append((columns[1], "SpaceAfter=No" not in columns[9].split("|")))

    first_line = block[0][0]
    if not words:
        raise ConlluFormatError(path, first_line, "sentence without any word line")
    if mwt_end > len(words):
        raise ConlluFormatError(path, first_line, f"multiword token reaches word {mwt_end} of {len(words)}")
    _check_tree(path, heads, head_lines)
    sent_id = metadata.get("sent_id") or f"{path.name}#{index + 1}"
    text = metadata.get("text")
    if text is None:
        text = "".join(form + (" " if space else "") for form, space in surface).rstrip()
    return Sentence(sent_id, text, words, upos, xpos, heads, deprels, feats, lemmas)


def _check_tree(path, heads: list[int], head_lines: list[tuple[int, str]]) -> None:
    n = len(heads)
    for i, head in enumerate(heads):
        if head > n:
            number, line = head_lines[i]
            raise ConlluFormatError(path, number, f"HEAD {head} is outside the sentence (words 1..{n})", line)
        if head == i + 1:
            number, line = head_lines[i]
            raise ConlluFormatError(path, number, "word is its own head", line)
    roots = [i for i, head in enumerate(heads) if head == 0]
    if len(roots) != 1:
        where = head_lines[roots[1]] if len(roots) > 1 else head_lines[0]
        what = f"{len(roots)} words with HEAD 0" + (f" (words {[r + 1 for r in roots]})" if roots else "")
        raise ConlluFormatError(path, where[0], f"sentence must have exactly one root, found {what}")
    state = [0] * n  # 0 unvisited, 1 on the current path, 2 reaches the root
    for start in range(n):
        walk = []
        i = start
        while i >= 0 and state[i] == 0:
            state[i] = 1
            walk.append(i)
            i = heads[i] - 1
        if i >= 0 and state[i] == 1:
            number, line = head_lines[i]
            raise ConlluFormatError(path, number, f"HEAD column makes a cycle through word {i + 1}", line)
        for j in walk:
            state[j] = 2


# ----------------------------------------------------------------------------------------------
# Treebanks
# ----------------------------------------------------------------------------------------------


def sample_data_dir() -> Path:
    """The folder of the committed EWT sample (``probes/sample_data``)."""
    return _SAMPLE_DIR


def _ewt_candidates() -> list[Path]:
    candidates = []
    env = os.environ.get("PROBES_DATA")
    if env:
        # PROBES_DATA names either the treebank folder itself or a data folder holding ud_english_ewt/.
        candidates += [Path(env).expanduser() / "ud_english_ewt", Path(env).expanduser()]
    candidates += [
        _REPO_ROOT.parent / "shared" / "data" / "ud_english_ewt",
        _REPO_ROOT / "shared" / "data" / "ud_english_ewt",
    ]
    return candidates


def resolve_treebank(name_or_path) -> Path:
    """The folder (or single file) that ``name_or_path`` stands for.

    ``"sample"`` is the committed EWT sample; ``"ud_english_ewt"`` is the full EWT, looked up in
    ``$PROBES_DATA`` (the treebank folder, or a folder holding ``ud_english_ewt/``), then in
    ``../shared/data/ud_english_ewt`` relative to the repository root; anything else is a path to a
    UD treebank folder or to one ``.conllu`` file.
    """
    name = str(name_or_path)
    if name == "sample":
        return _SAMPLE_DIR
    if name == "ud_english_ewt":
        tried = _ewt_candidates()
        for folder in tried:
            if folder.is_dir() and any(folder.glob("*-ud-*.conllu")):
                return folder
        raise FileNotFoundError(
            "treebank 'ud_english_ewt' not found; looked in: "
            + ", ".join(str(p) for p in tried)
            + ". Set PROBES_DATA to the folder holding its *-ud-{train,dev,test}.conllu files, "
            "or use load_treebank('sample', ...) for the committed sample."
        )
    path = Path(name).expanduser()
    if path.exists():
        return path
    raise FileNotFoundError(
        f"unknown treebank {name!r}: not a known name ({', '.join(TREEBANKS)}) and no such file or folder"
    )


def load_treebank(
    name_or_path="sample", split: str = "train", max_sentences: int | None = None
) -> list[Sentence]:
    """Read one split of a UD treebank: the folder's ``*-ud-{split}.conllu`` file.

    ``name_or_path`` is ``"sample"``, ``"ud_english_ewt"``, a treebank folder or a ``.conllu`` file
    (then ``split`` is not used); see :func:`resolve_treebank`.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    _check_max_sentences(max_sentences)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load_treebank: name_or_path must be a treebank name or path, got {name_or_path!r:.40}"
        )
    path = resolve_treebank(name_or_path)
    if path.is_file():
        return read_conllu(path, max_sentences=max_sentences)
    matches = sorted(path.glob(f"*-ud-{split}.conllu"))
    if not matches:
        found = sorted(p.name for p in path.glob("*.conllu"))
        raise FileNotFoundError(
            f"no *-ud-{split}.conllu file in {path}" + (f" (found: {', '.join(found)})" if found else "")
        )
    if len(matches) > 1:
        raise ValueError(f"several *-ud-{split}.conllu files in {path}: {', '.join(p.name for p in matches)}")
    return read_conllu(matches[0], max_sentences=max_sentences)
