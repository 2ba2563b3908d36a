"""Benchmark data: one ``Example`` shape per task family, read from each task's official file format.

Task families and their examples:

- ``classification`` (single sentence or pair; ``regression`` for STS-B): :class:`TextExample`
  ``(text, text_pair, label)``; the label is a class index, or a float for regression.
- ``multiple_choice`` (COPA, SWAG, RACE, ARC, and BoolQ as yes/no in zero-shot mode): :class:`ChoiceExample`
  ``(context, choices, label)`` plus the pieces zero-shot prompts are built from.
- ``span`` (SQuAD 1.1 and 2.0): :class:`SpanExample` ``(id, question, context, answers, answer_starts)``;
  no answers means unanswerable (SQuAD 2.0).

Files are read from a root folder laid out like ``../shared/data`` (``glue/SST-2/dev.tsv``,
``superglue/COPA/val.jsonl``, ``squad/dev-v1.1.json``, ...). A missing file raises ``FileNotFoundError``
naming the file; a malformed record raises :class:`DataFormatError` naming the file, the line or record and
what was expected: bytes that are not UTF-8 (with the byte offset), a label outside the task's label set, an
STS-B score that is not a finite number in [0, 5], a SQuAD answer that is not at its ``answer_start`` (or
``repair_spans=True``), a repeated SQuAD id. :func:`load_task` returns a :class:`TaskData`: the examples plus
``data_note`` (non-empty for committed samples, test fixtures and repaired spans, which also log a WARNING).
With the ``datasets`` package and a network, :func:`load_task` ``(..., source="hub")`` reads the same tasks
from the Hugging Face hub (the same range checks apply to every row).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SAMPLE_DATA = Path(__file__).parent / "sample_data"


class DataFormatError(ValueError):
    """A benchmark file that does not have its task's format (the message names the file and record)."""


@dataclass
class TextExample:
    """A single sentence (``text_pair`` None) or a sentence pair, with a class index or a float score."""

    text: str
    text_pair: str | None
    label: int | float
    id: str = ""


@dataclass
class ChoiceExample:
    """A question with ``choices``; ``label`` is the index of the right one.

    ``context`` is the text every choice continues (what a multiple-choice head reads as the first segment);
    ``prompt`` is the zero-shot prompt a language model continues with each choice (lm-evaluation-harness
    style), and ``continuations`` the choices as they follow that prompt (with their leading space).
    """

    context: str
    choices: list[str]
    label: int
    prompt: str = ""
    continuations: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.prompt:
            self.prompt = self.context
        if not self.continuations:
            self.continuations = [" " + choice for choice in self.choices]


@dataclass
class SpanExample:
    """An extractive question; ``answers`` with their character starts in ``context`` (empty: unanswerable)."""

    id: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]

    @property
    def is_impossible(self) -> bool:
        return not self.answers


class TaskData(list):
    """The examples of one task (a plain list of examples) and where they came from.

    Attributes:
        task: the task name; split: the split read; source: ``"local"`` or ``"hub"``.
        path: the file read (None from the hub).
        is_fixture: True when the examples are not the task's official split but a handful of rows: a test
            fixture under the data root (``hf_transformers_tests_samples/``) or the committed samples
            (``data="sample"``, ``workbench/bench/sample_data``).
        spans_repaired: SQuAD answers moved to where their text is (``repair_spans=True``).
        data_note: ``""`` for an official file read as it is; else one line that says what is special (a fixture
            or sample, repaired spans). Every result computed on these examples should carry it (the
            benchmark results' ``data_note`` column).
        n_file: examples in the file, before ``max_examples``.
        file_sha256: SHA-256 of the bytes read (of every file, in name order, for a RACE folder); ``""`` from
            the hub. With ``task``, ``split`` and ``len(self)`` it identifies the data a result was computed on.
    """

    def __init__(self, examples=(), **attributes):
        super().__init__(examples)
        self.task, self.split, self.source, self.path = "", "", "local", None
        self.is_fixture, self.spans_repaired, self.data_note, self.n_file = False, 0, "", len(self)
        self.file_sha256 = ""
        for name, value in attributes.items():
            if not hasattr(self, name):
                raise TypeError(f"TaskData has no attribute {name!r}")
            setattr(self, name, value)


@dataclass(frozen=True)
class TaskSpec:
    """What a benchmark task is: its family, its files, how to read them, and its official metrics.

    Attributes:
        name: the name used by ``run`` and the command line (``"sst2"``).
        family: ``"classification"``, ``"regression"``, ``"multiple_choice"`` or ``"span"``.
        files: split -> candidate paths relative to the data root (the first that exists is read).
        reader: ``reader(path) -> list of examples``.
        metrics: official metric names, the first one the headline (``"mcc"`` for CoLA).
        labels: class names in label-index order (classification).
        hub: (dataset, config, split) on the Hugging Face hub, and a row -> example converter.
        score_range: (lowest, highest) score of a regression task (STS-B: 0-5); scores must be finite.
        num_choices: (fewest, most) choices of a multiple-choice question.

    The label ranges are checked on every loaded example (:meth:`check_example`): a class index in
    ``range(len(labels))``, a finite score in ``score_range``, a choice index below the number of choices.
    """

    name: str
    family: str
    files: dict[str, tuple[str, ...]]
    reader: Callable[[Path], list]
    metrics: tuple[str, ...]
    labels: tuple[str, ...] = ()
    hub: tuple[str, str | None, dict[str, str]] | None = None
    hub_row: Callable[[dict], Any] | None = None
    zero_shot: bool = False  # whether the examples (or a yes/no view of them) can be scored zero-shot
    score_range: tuple[float, float] | None = None
    num_choices: tuple[int, int] | None = None

    @property
    def num_labels(self) -> int:
        return 1 if self.family == "regression" else len(self.labels)

    def check_example(self, example: Any, where: str) -> None:
        """Raise :class:`DataFormatError` (prefixed by ``where``: file and line, or hub row) when ``example`` is
        not an example of this task or its label is outside the task's declared range."""
        kind = {"multiple_choice": ChoiceExample, "span": SpanExample}.get(self.family, TextExample)
        if not isinstance(example, kind):
            raise DataFormatError(f"{where}: expected a {kind.__name__}, got {type(example).__name__}")
        label = getattr(example, "label", None)
        if self.family == "regression":
            if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
                raise DataFormatError(
                    f"{where}: field 'label' (score) must be a finite number, got {label!r}"
                )
            low, high = self.score_range or (-math.inf, math.inf)
            if not low <= label <= high:
                raise DataFormatError(
                    f"{where}: field 'label' (score) {label!r} is outside the {self.name} range [{low}, {high}]"
                )
        elif self.family == "classification":
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(self.labels):
                raise DataFormatError(
                    f"{where}: field 'label' {label!r} is not a class index 0..{len(self.labels) - 1} "
                    f"of {list(self.labels)}"
                )
        elif self.family == "multiple_choice":
            n = len(example.choices)
            if self.num_choices and not self.num_choices[0] <= n <= self.num_choices[1]:
                low, high = self.num_choices
                expected = low if low == high else f"{low}-{high}"
                raise DataFormatError(f"{where}: {self.name} questions have {expected} choices, got {n}")
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n:
                raise DataFormatError(f"{where}: field 'label' {label!r} is not a choice index 0..{n - 1}")
        else:  # span: every answer where its answer_start says
            answers, starts = example.answers, example.answer_starts
            if not isinstance(answers, list) or not isinstance(starts, list) or len(answers) != len(starts):
                raise DataFormatError(f"{where}: answers and answer_starts must be lists of the same length")
            for i, (answer, start) in enumerate(zip(answers, starts)):
                if not isinstance(answer, str) or isinstance(start, bool) or not isinstance(start, int):
                    raise DataFormatError(f"{where}: answer {i} must be a text and an integer answer_start")
                _check_span(example.context, answer, start, False, where, f"answer {i} (id {example.id!r})")


# Readers: shared line readers with errors that name the place ---------------------------------------------------
def decode_utf8(data: bytes, path: Path | str) -> str:
    """``data`` as text (UTF-8, a leading byte-order mark dropped, as MRPC has one); bytes that are not UTF-8
    raise :class:`DataFormatError` naming the file, the line and the byte offset."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise DataFormatError(
            f"{path}, line {line}, column {column} (byte offset {offset}): not valid UTF-8 "
            f"(byte 0x{data[offset]:02x}: {err.reason}); the benchmark readers expect UTF-8 text"
        ) from None


def read_text(path: Path) -> str:
    """The text of a benchmark file: ``FileNotFoundError`` when it is missing, UTF-8 checked (see
    :func:`decode_utf8`)."""
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    return decode_utf8(path.read_bytes(), path)


def _open_text(path: Path) -> io.StringIO:
    # newline="": lines split as a file opened with newline="" splits them (csv needs that).
    return io.StringIO(read_text(path), newline="")


def read_tsv(path: Path, columns: Sequence[str], header: bool = True) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: value}) of a GLUE TSV; the header must hold ``columns``."""
    # GLUE TSVs hold unbalanced quotes, so quoting is disabled.
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        names: list[str] | None = None if header else list(columns)
        for row in _csv_rows(reader, path):
            line = reader.line_num
            if names is None:
                missing = [c for c in columns if c not in row]
                if missing:
                    raise DataFormatError(
                        f"{path}, line {line}: the header lacks column(s) {missing}; expected a tab-separated "
                        f"header with {list(columns)}, got {row}"
                    )
                doubled = sorted({c for c in row if row.count(c) > 1})
                if doubled:
                    raise DataFormatError(f"{path}, line {line}: the header names column(s) {doubled} twice")
                names = row
                continue
            if not row or row == [""]:
                continue
            if len(row) != len(names):
                raise DataFormatError(
                    f"{path}, line {line}: expected {len(names)} tab-separated fields ({names}), got {len(row)}"
                )
            yield line, dict(zip(names, row))


def _csv_rows(reader, path: Path) -> Iterator[list[str]]:
    """The rows of a ``csv.reader``; its errors (a field over the size limit...) name the file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataFormatError(f"{path}, line {reader.line_num}: not valid CSV/TSV ({err})") from None
        yield row


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) of a JSON Lines file."""
    with _open_text(path) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as err:
                raise DataFormatError(
                    f"{path}, line {line}: not valid JSON ({_json_problem(err, lines=False)}); "
                    "expected one JSON object per line"
                ) from None
            if not isinstance(record, dict):
                raise DataFormatError(
                    f"{path}, line {line}: expected a JSON object, got {type(record).__name__}"
                )
            yield line, record


def _json_problem(err: Exception, lines: bool = True) -> str:
    """What a failed ``json.loads`` found wrong (besides JSONDecodeError it raises ValueError for integers of
    more than 4300 digits and RecursionError for deeply nested arrays)."""
    if isinstance(err, json.JSONDecodeError):
        return (
            f"{err.msg} at line {err.lineno}, column {err.colno}"
            if lines
            else f"{err.msg}, column {err.colno}"
        )
    return "nested too deeply" if isinstance(err, RecursionError) else str(err)


def _field(record: dict, key: str, kind: type | tuple, path: Path, where: str) -> Any:
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}, {where}: expected a JSON object with {key!r}, got {record!r:.60}")
    if key not in record:
        raise DataFormatError(f"{path}, {where}: missing field {key!r}; the record has {sorted(record)}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataFormatError(f"{path}, {where}: field {key!r} must be {names}, got {value!r:.60}")
    return value


def _label_index(value: Any, labels: Sequence[str], path: Path, where: str, name: str = "label") -> int:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text not in labels:
        raise DataFormatError(
            f"{path}, {where}: label {value!r} is not one of {list(labels)} (field {name!r})"
        )
    return labels.index(text)


def _score(value: str, score_range: tuple[float, float], path: Path, where: str, name: str) -> float:
    """A regression score: a finite number within ``score_range``, else an error naming field and value."""
    low, high = score_range
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score) or not low <= score <= high:
        raise DataFormatError(
            f"{path}, {where}: field {name!r}: score {value!r} is not a finite number in [{low:g}, {high:g}]"
        )
    return score


# GLUE ---------------------------------------------------------------------------------------------------------
def _glue_reader(
    text: str,
    pair: str | None,
    label: str,
    labels: Sequence[str] = ("0", "1"),
    header: bool = True,
    columns: Sequence[str] | None = None,
    score_range: tuple[float, float] | None = None,
):
    def read(path: Path) -> list[TextExample]:
        wanted = columns or [c for c in (text, pair, label) if c]
        examples = []
        for line, row in read_tsv(path, wanted, header=header):
            where = f"line {line}"
            if score_range is not None:
                value: int | float = _score(row[label], score_range, path, where, label)
            else:
                value = _label_index(row[label], labels, path, where, label)
            examples.append(TextExample(row[text], row[pair] if pair else None, value, id=str(line)))
        return examples

    return read


read_cola = _glue_reader(
    "sentence", None, "label", header=False, columns=("source", "label", "author_label", "sentence")
)
read_sst2 = _glue_reader("sentence", None, "label")
read_mrpc = _glue_reader("#1 String", "#2 String", "Quality")
STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores (Cer et al., 2017)
read_stsb = _glue_reader("sentence1", "sentence2", "score", score_range=STSB_RANGE)
read_qqp = _glue_reader("question1", "question2", "is_duplicate")
read_mnli = _glue_reader("sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"))
read_qnli = _glue_reader("question", "sentence", "label", ("entailment", "not_entailment"))
read_rte = _glue_reader("sentence1", "sentence2", "label", ("entailment", "not_entailment"))
read_wnli = _glue_reader("sentence1", "sentence2", "label")


# SuperGLUE ----------------------------------------------------------------------------------------------------
def _sentence_pairs(first: str, second: str, labels: Sequence[str], label_kinds: type | tuple = str,
                    word: str | None = None, doc: str = ""):
    """A reader of SuperGLUE's JSON Lines of sentence pairs: fields ``first`` and ``second`` (``word`` leads the
    first segment as ``"word: first"`` when given) and ``label``, one of ``labels``."""

    def read(path: Path) -> list[TextExample]:
        out = []
        for line, r in read_jsonl(path):
            where = f"line {line}"
            label = _label_index(_field(r, "label", label_kinds, path, where), labels, path, where)
            text = _field(r, first, str, path, where)
            if word is not None:
                text = f"{_field(r, word, str, path, where)}: {text}"
            out.append(TextExample(text, _field(r, second, str, path, where), label, id=str(r.get("idx", line))))
        return out

    read.__doc__ = doc
    return read


read_boolq = _sentence_pairs(
    "question", "passage", ("false", "true"), (bool, str),
    doc="BoolQ: (question, passage) -> false/true (0/1). As multiple choice: :func:`boolq_as_choices`.",
)


def boolq_as_choices(example: TextExample) -> ChoiceExample:
    """BoolQ as a yes/no question for zero-shot scoring (lm-evaluation-harness's prompt)."""
    question = example.text if example.text.endswith("?") else example.text + "?"
    prompt = f"{example.text_pair}\nQuestion: {question}\nAnswer:"
    return ChoiceExample(
        context=example.text_pair or "",
        choices=["no", "yes"],
        label=int(example.label),
        prompt=prompt,
        continuations=[" no", " yes"],
        id=example.id,
    )


read_cb = _sentence_pairs(
    "premise", "hypothesis", ("entailment", "contradiction", "neutral"),
    doc="CB: (premise, hypothesis) -> entailment / contradiction / neutral (0/1/2).",
)
read_superglue_rte = _sentence_pairs(
    "premise", "hypothesis", ("entailment", "not_entailment"),
    doc="SuperGLUE RTE: (premise, hypothesis) -> entailment / not_entailment (0/1).",
)


def read_copa(path: Path) -> list[ChoiceExample]:
    """COPA: premise + cause/effect question, two choices. Prompt as lm-evaluation-harness: "premise because"."""
    return [copa_example(r, path, f"line {line}") for line, r in read_jsonl(path)]


def copa_example(r: dict, path: Path | str = "<record>", where: str = "record") -> ChoiceExample:
    """One COPA record (a val.jsonl line, or a hub row) -> a :class:`ChoiceExample`."""
    path = Path(path)
    premise = _field(r, "premise", str, path, where)
    question = _field(r, "question", str, path, where)
    if question not in ("cause", "effect"):
        raise DataFormatError(f"{path}, {where}: question must be 'cause' or 'effect', got {question!r}")
    choices = [_field(r, "choice1", str, path, where), _field(r, "choice2", str, path, where)]
    label = _field(r, "label", int, path, where)
    if label not in (0, 1):
        raise DataFormatError(f"{path}, {where}: label must be 0 or 1, got {label!r}")
    connective = "because" if question == "cause" else "therefore"
    prompt = premise.rstrip().rstrip(".") + " " + connective
    # The choice continues the sentence: lower-case its first letter (as lm-evaluation-harness does).
    continuations = [" " + choice[:1].lower() + choice[1:] for choice in choices]
    return ChoiceExample(
        f"{premise} What was the {question}?",
        choices,
        label,
        prompt,
        continuations,
        id=str(r.get("idx", where)),
    )


read_wic = _sentence_pairs(
    "sentence1", "sentence2", ("false", "true"), (bool, str), word="word",
    doc="WiC: is ``word`` used in the same sense in sentence1 and sentence2? The word leads the first segment.",
)


# Multiple choice: SWAG, RACE, ARC -----------------------------------------------------------------------------
def read_swag(path: Path) -> list[ChoiceExample]:
    """SWAG, either the official CSV (``val.csv``: sent1, sent2, ending0..3, label) or Hugging Face's JSON Lines."""
    if path.suffix == ".csv":
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in _csv_rows(reader, path) if row]
        if not rows:
            raise DataFormatError(f"{path}: empty; expected a header line and one line per question")
        header = rows[0][1]
        records = []
        for line, row in rows[1:]:
            if len(row) != len(header):
                raise DataFormatError(
                    f"{path}, line {line}: expected {len(header)} comma-separated fields ({header}), got {len(row)}"
                )
            records.append((line, dict(zip(header, row))))
    else:
        records = list(read_jsonl(path))
    out = []
    for line, r in records:
        where = f"line {line}"
        sent1, sent2 = _field(r, "sent1", str, path, where), _field(r, "sent2", str, path, where)
        endings = [_field(r, f"ending{i}", str, path, where) for i in range(4)]
        value = r.get("label")
        text = value if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        if text is None or text.strip() not in ("0", "1", "2", "3"):
            raise DataFormatError(f"{path}, {where}: field 'label' must be 0-3, got {value!r}")
        label = int(text)
        # The head reads (sent1, sent2 + ending); a language model continues "sent1 sent2" with " ending".
        choices = [f"{sent2} {ending}" for ending in endings]
        out.append(
            ChoiceExample(
                sent1,
                choices,
                label,
                prompt=f"{sent1} {sent2}",
                continuations=[" " + ending for ending in endings],
                id=str(line),
            )
        )
    return out


def _race_item(article: str, question: str, options: list[str], answer: str, path: Path, where: str, id: str):
    if len(options) != 4 or not all(isinstance(o, str) for o in options):
        raise DataFormatError(f"{path}, {where}: expected 4 string options, got {options!r:.80}")
    if answer not in ("A", "B", "C", "D"):
        raise DataFormatError(f"{path}, {where}: answer must be one of A-D, got {answer!r}")
    # Cloze questions ("... _ ...") are filled in; others are asked (as lm-evaluation-harness does).
    if "_" in question:
        context = article
        choices = [question.replace("_", option) for option in options]
        prompt, continuations = article, [" " + choice for choice in choices]
    else:
        context = f"{article}\n{question}"
        choices = list(options)
        prompt, continuations = f"{article}\n\nQuestion: {question}\nAnswer:", [" " + o for o in options]
    return ChoiceExample(context, choices, "ABCD".index(answer), prompt, continuations, id=id)


def read_race(path: Path) -> list[ChoiceExample]:
    """RACE: Hugging Face's per-question JSON Lines (``middle.jsonl``) or a folder of the original per-article
    JSON files (``dev/middle/*.txt``: article, questions, options, answers)."""
    out = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".json"))
        if not files:
            raise FileNotFoundError(f"{path}: no RACE article files (*.txt or *.json) in this folder")
        for file in files:
            text = read_text(file)
            try:
                r = json.loads(text)
            except (ValueError, RecursionError) as err:
                raise DataFormatError(
                    f"{file}: not valid JSON ({_json_problem(err)}); expected a RACE article record"
                ) from None
            questions = _field(r, "questions", list, file, "record")
            options = _field(r, "options", list, file, "record")
            answers = _field(r, "answers", list, file, "record")
            if not len(questions) == len(options) == len(answers):
                raise DataFormatError(f"{file}: questions, options and answers differ in length")
            article = _field(r, "article", str, file, "record")
            for i, (q, o, a) in enumerate(zip(questions, options, answers)):
                out.append(_race_item(article, q, o, a, file, f"question {i}", f"{file.name}:{i}"))
        return out
    for line, r in read_jsonl(path):
        where = f"line {line}"
        out.append(
            _race_item(
                _field(r, "article", str, path, where),
                _field(r, "question", str, path, where),
                _field(r, "options", list, path, where),
                _field(r, "answer", str, path, where),
                path,
                where,
                f"{r.get('example_id', '')}:{line}",
            )
        )
    return out


def read_arc(path: Path) -> list[ChoiceExample]:
    """ARC (AI2's JSON Lines): question.stem, question.choices [{text, label}], answerKey (A-E or 1-5)."""
    out = []
    for line, r in read_jsonl(path):
        where = f"line {line}"
        question = _field(r, "question", dict, path, where)
        stem = _field(question, "stem", str, path, where + " (question)")
        choices = _field(question, "choices", list, path, where + " (question)")
        labels = [str(c.get("label")) for c in choices if isinstance(c, dict)]
        texts = [c.get("text") for c in choices if isinstance(c, dict)]
        if len(labels) != len(choices) or not all(isinstance(t, str) for t in texts) or len(choices) < 2:
            raise DataFormatError(
                f"{path}, {where}: question.choices must be a list of {{text, label}} objects"
            )
        key = str(_field(r, "answerKey", (str, int), path, where))
        if key not in labels:
            raise DataFormatError(f"{path}, {where}: answerKey {key!r} is not a choice label {labels}")
        out.append(
            ChoiceExample(
                stem, texts, labels.index(key), prompt=f"Question: {stem}\nAnswer:", id=str(r.get("id", line))
            )
        )
    return out


# SQuAD --------------------------------------------------------------------------------------------------------
def read_squad(path: Path, repair_spans: bool = False) -> TaskData:
    """SQuAD 1.1 / 2.0: the official nested JSON (data > paragraphs > qas) or Hugging Face's flattened layout
    (data: [{id, question, context, answers: {text, answer_start}}]).

    Every answer must be found at its ``answer_start`` in the context (``context[start:start + len(text)] ==
    text``) and question ids must be unique; else :class:`DataFormatError` names the file, the JSON path and the
    question id. With ``repair_spans=True`` an answer that is elsewhere in the context is moved to the occurrence
    nearest its ``answer_start`` instead, with a WARNING; the count is the result's ``spans_repaired`` (an
    answer found nowhere in the context is still an error).
    """
    text = read_text(path)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise DataFormatError(f"{path}: not valid JSON ({_json_problem(err)})") from None
    if not isinstance(document, dict):
        raise DataFormatError(
            f"{path}: expected a JSON object with a 'data' list, got {type(document).__name__}"
        )
    data = _field(document, "data", list, path, "top level")
    out = TaskData()
    seen: dict[str, str] = {}

    def add(qid: str, question: str, context: str, texts: list, starts: list, at: str) -> None:
        if qid in seen:
            raise DataFormatError(f"{path}, {at}: question id {qid!r} repeats the id of {seen[qid]}")
        seen[qid] = at
        for i, (answer, start) in enumerate(zip(texts, starts)):
            starts[i] = _check_span(
                context, answer, start, repair_spans, path, f"{at}.answers[{i}] (id {qid!r})"
            )
            out.spans_repaired += starts[i] != start
        out.append(SpanExample(qid, question, context, texts, starts))

    for a, article in enumerate(data):
        if isinstance(article, dict) and "paragraphs" in article:
            for p, paragraph in enumerate(_field(article, "paragraphs", list, path, f"data[{a}]")):
                where = f"data[{a}].paragraphs[{p}]"
                context = _field(paragraph, "context", str, path, where)
                for q, qa in enumerate(_field(paragraph, "qas", list, path, where)):
                    at = f"{where}.qas[{q}]"
                    answers = _field(qa, "answers", list, path, at)
                    if qa.get("is_impossible"):
                        answers = []
                    texts = [
                        _field(x, "text", str, path, f"{at}.answers[{i}]") for i, x in enumerate(answers)
                    ]
                    starts = [
                        _field(x, "answer_start", int, path, f"{at}.answers[{i}]")
                        for i, x in enumerate(answers)
                    ]
                    qid = _field(qa, "id", str, path, at)
                    add(qid, _field(qa, "question", str, path, at), context, texts, starts, at)
        elif isinstance(article, dict) and "context" in article:
            at = f"data[{a}]"
            answers = _field(article, "answers", dict, path, at)
            texts = _field(answers, "text", list, path, at + ".answers")
            starts = _field(answers, "answer_start", list, path, at + ".answers")
            if len(texts) != len(starts):
                raise DataFormatError(f"{path}, {at}: answers.text and answers.answer_start differ in length")
            for i, (answer, start) in enumerate(zip(texts, starts)):
                if not isinstance(answer, str) or isinstance(start, bool) or not isinstance(start, int):
                    raise DataFormatError(
                        f"{path}, {at}.answers: answer {i} must be a text and an integer answer_start, "
                        f"got {answer!r:.40} at {start!r:.20}"
                    )
            qid = _field(article, "id", str, path, at)
            question = _field(article, "question", str, path, at)
            add(qid, question, _field(article, "context", str, path, at), list(texts), list(starts), at)
        else:
            raise DataFormatError(
                f"{path}, data[{a}]: expected an article with 'paragraphs' (official format) or "
                f"a flattened question with 'context' (Hugging Face format)"
            )
    if out.spans_repaired:
        logger.warning(
            "%s: %d SQuAD answer span(s) were not at their answer_start and were moved to the nearest "
            "occurrence of the answer text (repair_spans=True)",
            path,
            out.spans_repaired,
        )
    return out


def _check_span(context: str, answer: str, start: int, repair: bool, path: Path | str, where: str) -> int:
    """``start`` when ``answer`` is at ``start`` in ``context``; with ``repair`` the start of the occurrence of
    ``answer`` nearest ``start``; else :class:`DataFormatError` naming ``where``."""
    if not answer:
        raise DataFormatError(f"{path}, {where}: empty answer text")
    if 0 <= start and context[start : start + len(answer)] == answer:
        return start
    found, at = [], context.find(answer)
    while at >= 0:
        found.append(at)
        at = context.find(answer, at + 1)
    if repair and found:
        return min(found, key=lambda position: (abs(position - start), position))
    there = context[start : start + len(answer)] if 0 <= start <= len(context) else "(outside the context)"
    hint = (
        f"the text occurs at {found[:5]}; load with repair_spans=True to move it to the nearest occurrence"
        if found
        else "the text does not occur in the context"
    )
    raise DataFormatError(
        f"{path}, {where}: answer {answer!r:.60} is not at answer_start {start} (the context there reads "
        f"{there!r:.60}); {hint}"
    )


# Hugging Face hub rows -> examples ----------------------------------------------------------------------------
def _hub_text(text: str, pair: str | None, label: str):
    """A converter of hub rows whose columns ``text``, ``pair`` and ``label`` hold the example."""
    return lambda row: TextExample(
        row[text], row[pair] if pair else None, row[label], id=str(row.get("idx", ""))
    )


def _hub_copa(row: dict) -> ChoiceExample:
    return copa_example(row, "<hub>", "row")


def _hub_arc(row: dict) -> ChoiceExample:
    labels, texts = list(row["choices"]["label"]), list(row["choices"]["text"])
    return ChoiceExample(
        row["question"],
        texts,
        labels.index(row["answerKey"]),
        prompt=f"Question: {row['question']}\nAnswer:",
        id=row.get("id", ""),
    )


def _hub_race(row: dict) -> ChoiceExample:
    return _race_item(
        row["article"],
        row["question"],
        list(row["options"]),
        row["answer"],
        Path("<hub>"),
        "row",
        row.get("example_id", ""),
    )


def _hub_swag(row: dict) -> ChoiceExample:
    endings = [row[f"ending{i}"] for i in range(4)]
    return ChoiceExample(
        row["sent1"],
        [f"{row['sent2']} {e}" for e in endings],
        int(row["label"]),
        prompt=f"{row['sent1']} {row['sent2']}",
        continuations=[" " + e for e in endings],
    )


def _hub_squad(row: dict) -> SpanExample:
    return SpanExample(
        row["id"],
        row["question"],
        row["context"],
        list(row["answers"]["text"]),
        list(row["answers"]["answer_start"]),
    )


def _hub_boolq(row: dict) -> TextExample:
    return TextExample(row["question"], row["passage"], int(row["label"]), id=str(row.get("idx", "")))


# The task registry --------------------------------------------------------------------------------------------
def _glue(
    name,
    folder,
    reader,
    metrics,
    labels=("0", "1"),
    family="classification",
    dev="dev.tsv",
    hub_fields=("sentence", None, "label"),
    hub_name=None,
    hub_split="validation",
    score_range=None,
):
    return TaskSpec(
        name,
        family,
        {"dev": (f"glue/{folder}/{dev}",), "train": (f"glue/{folder}/train.tsv",)},
        reader,
        metrics,
        labels,
        hub=("nyu-mll/glue", hub_name or name, {"dev": hub_split, "train": "train"}),
        hub_row=_hub_text(*hub_fields),
        score_range=score_range,
    )


def _mnli(name: str, genres: str) -> TaskSpec:
    """MNLI's dev set of the ``"matched"`` (training) genres or of the ``"mismatched"`` ones; one train set."""
    return _glue(
        name,
        "MNLI",
        read_mnli,
        ("accuracy",),
        ("entailment", "neutral", "contradiction"),
        dev=f"dev_{genres}.tsv",
        hub_fields=("premise", "hypothesis", "label"),
        hub_name="mnli",
        hub_split=f"validation_{genres}",
    )


def _superglue(
    name, folder, reader, metrics, labels, hub_row, family="classification", hub_name=None, **options
):
    """A SuperGLUE task: ``superglue/<folder>/{val,train}.jsonl``, or ``aps/super_glue`` on the hub."""
    return TaskSpec(
        name,
        family,
        {"dev": (f"superglue/{folder}/val.jsonl",), "train": (f"superglue/{folder}/train.jsonl",)},
        reader,
        metrics,
        labels,
        hub=("aps/super_glue", hub_name or name, {"dev": "validation", "train": "train"}),
        hub_row=hub_row,
        **options,
    )


def _race(level: str) -> TaskSpec:
    """RACE's ``"middle"`` or ``"high"`` school questions (4 choices), ``race_<level>``."""
    return TaskSpec(
        f"race_{level}",
        "multiple_choice",
        {
            "dev": (f"race/validation/{level}.jsonl", f"race/dev/{level}"),
            "test": (f"race/test/{level}.jsonl", f"race/test/{level}"),
        },
        read_race,
        ("accuracy",),
        hub=("ehovy/race", level, {"dev": "validation", "test": "test"}),
        hub_row=_hub_race,
        zero_shot=True,
        num_choices=(4, 4),
    )


def _arc(level: str, folder: str) -> TaskSpec:
    """The ``"Easy"`` or ``"Challenge"`` set of ARC (2 to 5 choices), ``arc_<level>`` in lower case."""
    files = {
        split: (f"arc/{folder}/ARC-{level}-{split.title()}.jsonl",) for split in ("dev", "test", "train")
    }
    return TaskSpec(
        f"arc_{level.lower()}",
        "multiple_choice",
        files,
        read_arc,
        ("accuracy",),
        hub=("allenai/ai2_arc", f"ARC-{level}", {"dev": "validation", "test": "test"}),
        hub_row=_hub_arc,
        zero_shot=True,
        num_choices=(2, 5),
    )


def _squad(name: str, dev: tuple[str, ...], train: tuple[str, ...]) -> TaskSpec:
    """SQuAD v1.1 (``"squad"``) or v2.0 (``"squad_v2"``, with unanswerable questions): the same reader."""
    return TaskSpec(
        name,
        "span",
        {"dev": dev, "train": train},
        read_squad,
        ("exact_match", "f1"),
        hub=(f"rajpurkar/{name}", None, {"dev": "validation"}),
        hub_row=_hub_squad,
    )


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        _glue("cola", "CoLA", read_cola, ("mcc", "accuracy")),
        _glue("sst2", "SST-2", read_sst2, ("accuracy",)),
        _glue("mrpc", "MRPC", read_mrpc, ("f1", "accuracy"), hub_fields=("sentence1", "sentence2", "label")),
        _glue(
            "stsb",
            "STS-B",
            read_stsb,
            ("pearson", "spearman"),
            (),
            "regression",
            hub_fields=("sentence1", "sentence2", "label"),
            score_range=STSB_RANGE,
        ),
        _glue("qqp", "QQP", read_qqp, ("f1", "accuracy"), hub_fields=("question1", "question2", "label")),
        _mnli("mnli", "matched"),
        _mnli("mnli_mm", "mismatched"),
        _glue(
            "qnli",
            "QNLI",
            read_qnli,
            ("accuracy",),
            ("entailment", "not_entailment"),
            hub_fields=("question", "sentence", "label"),
        ),
        _glue(
            "rte",
            "RTE",
            read_rte,
            ("accuracy",),
            ("entailment", "not_entailment"),
            hub_fields=("sentence1", "sentence2", "label"),
        ),
        _glue("wnli", "WNLI", read_wnli, ("accuracy",), hub_fields=("sentence1", "sentence2", "label")),
        _superglue(
            "boolq", "BoolQ", read_boolq, ("accuracy",), ("false", "true"), _hub_boolq, zero_shot=True
        ),
        _superglue(
            "cb",
            "CB",
            read_cb,
            ("accuracy", "macro_f1"),
            ("entailment", "contradiction", "neutral"),
            _hub_text("premise", "hypothesis", "label"),
        ),
        _superglue(
            "superglue_rte",
            "RTE",
            read_superglue_rte,
            ("accuracy",),
            ("entailment", "not_entailment"),
            _hub_text("premise", "hypothesis", "label"),
            hub_name="rte",
        ),
        _superglue(
            "wic",
            "WiC",
            read_wic,
            ("accuracy",),
            ("false", "true"),
            lambda r: TextExample(f"{r['word']}: {r['sentence1']}", r["sentence2"], int(r["label"])),
        ),
        _superglue(
            "copa",
            "COPA",
            read_copa,
            ("accuracy",),
            (),
            _hub_copa,
            family="multiple_choice",
            zero_shot=True,
            num_choices=(2, 2),
        ),
        TaskSpec(
            "swag",
            "multiple_choice",
            {
                "dev": ("swag/val.csv", "swag/val.jsonl", "hf_transformers_tests_samples/swag/sample.json"),
                "train": ("swag/train.csv",),
            },
            read_swag,
            ("accuracy",),
            hub=("allenai/swag", "regular", {"dev": "validation", "train": "train"}),
            hub_row=_hub_swag,
            zero_shot=True,
            num_choices=(4, 4),
        ),
        _race("middle"),
        _race("high"),
        _arc("Easy", "ARC-e"),
        _arc("Challenge", "ARC-c"),
        _squad("squad", ("squad/dev-v1.1.json",), ("squad/train-v1.1.json",)),
        _squad(
            "squad_v2",
            ("squad/dev-v2.0.json", "hf_transformers_tests_samples/SQUAD/dev-v2.0.json"),
            ("squad/train-v2.0.json",),
        ),
    ]
}
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")


def get_task(name: str) -> TaskSpec:
    key = name.lower().replace("-", "_")
    if key not in TASKS:
        raise ValueError(f"unknown benchmark task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[key]


def task_file(spec: TaskSpec, root: str | Path, split: str = "dev") -> Path:
    """The first existing candidate file of ``spec``'s ``split`` under ``root``; an error lists what was tried."""
    if split not in spec.files:
        raise ValueError(f"task {spec.name!r} has no {split!r} split; it has {sorted(spec.files)}")
    root = Path(root)
    candidates = [root / relative for relative in spec.files[split]]
    for path in candidates:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"no {split} file for task {spec.name!r} under {root}; looked for: {tried}")


def load_task(
    name: str,
    data: str | Path = "sample",
    split: str = "dev",
    source: str = "local",
    max_examples: int | None = None,
    repair_spans: bool = False,
) -> TaskData:
    """The examples of one task, as a :class:`TaskData` (a list of examples with where they came from).

    The committed samples (``data="sample"``) and the transformers test fixtures that some tasks fall back to
    under a data root (SWAG's and SQuAD 2.0's ``hf_transformers_tests_samples/...``) are loaded with a WARNING,
    ``is_fixture=True`` and a ``data_note`` saying so; results computed on them should carry that note.

    Args:
        name: a task name (``sst2``, ``copa``, ``squad``...; see ``TASKS``).
        data: a root folder laid out like ``../shared/data``, or ``"sample"`` for the committed samples.
        split: ``"dev"`` (what is local for most tasks), ``"train"`` or ``"test"`` where the task has one.
        source: ``"local"`` (files under ``data``) or ``"hub"`` (the Hugging Face hub, with ``datasets``).
        max_examples: keep the first n (an integer >= 1; None keeps all).
        repair_spans: SQuAD only: move an answer that is not at its ``answer_start`` to the nearest occurrence of
            its text (a WARNING, and the count in ``spans_repaired`` and ``data_note``) instead of raising
            :class:`DataFormatError`.
    """
    _check_load_arguments(name, data, split, source, max_examples, repair_spans)
    spec = get_task(name)
    if repair_spans and spec.family != "span":
        raise ValueError(f"repair_spans applies to the SQuAD tasks only, not to {spec.name!r}")
    path = None
    if source == "hub":
        if repair_spans:
            raise ValueError("repair_spans applies to local SQuAD files only, not to source='hub'")
        examples = _load_from_hub(spec, split)
    elif source == "local":
        root = SAMPLE_DATA if str(data) == "sample" else Path(data)
        if not root.is_dir():
            raise FileNotFoundError(
                f"data root {root} is not a folder; pass data= a folder laid out like ../shared/data "
                "(glue/SST-2/dev.tsv, squad/dev-v1.1.json, ...) or 'sample' for the committed samples"
            )
        path = task_file(spec, root, split)
        examples = spec.reader(path, repair_spans=True) if repair_spans else spec.reader(path)
        for example in examples:
            spec.check_example(example, f"{path}, example {getattr(example, 'id', '')!r}")
    else:
        raise ValueError(f"source must be 'local' or 'hub', got {source!r}")
    if not examples:
        raise DataFormatError(f"{path or 'the hub'}: task {spec.name!r} ({split}) has no examples")
    loaded = TaskData(
        examples[: int(max_examples)] if max_examples is not None else examples,
        task=spec.name,
        split=split,
        source=source,
        path=path,
        spans_repaired=getattr(examples, "spans_repaired", 0),
        n_file=len(examples),
        file_sha256=_sha256(path) if path is not None else "",
    )
    notes = []
    fixture = _fixture_note(spec, split, path, len(examples)) if path is not None else ""
    if fixture:
        loaded.is_fixture = True
        notes.append(fixture)
        logger.warning(
            "%s: results on these examples are not comparable with published %s numbers; point data= at the "
            "full data (a folder laid out like ../shared/data)",
            fixture,
            spec.name,
        )
    if loaded.spans_repaired:
        notes.append(f"{loaded.spans_repaired} SQuAD answer span(s) repaired (moved to their text)")
    loaded.data_note = "; ".join(notes)
    return loaded


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# Folders under a data root that hold test fixtures (a handful of rows), never an official split.
FIXTURE_FOLDERS = ("hf_transformers_tests_samples",)


def _fixture_note(spec: TaskSpec, split: str, path: Path, n: int) -> str:
    """What a data note says when ``path`` is a committed sample or a test fixture, else ``""``."""
    resolved = path.resolve()
    if SAMPLE_DATA.resolve() in resolved.parents:
        return (
            f"committed sample: {n} example(s) of {spec.name} from workbench/bench/sample_data, "
            f"not the full {split} set"
        )
    if any(part in FIXTURE_FOLDERS for part in resolved.parts):
        return f"test fixture: {n} example(s) of {spec.name} from {path}, not the {split} set"
    return ""


def _check_load_arguments(name, data, split, source, max_examples, repair_spans) -> None:
    """Clear errors for arguments of :func:`load_task` of the wrong type or outside their range."""
    if not isinstance(name, str):
        raise TypeError(f"load_task: name must be a task name (str), got {type(name).__name__} {name!r:.40}")
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"load_task: data must be a folder path or 'sample', got {type(data).__name__}")
    if not isinstance(split, str):
        raise TypeError(f"load_task: split must be a str ('dev', 'train', 'test'), got {split!r:.40}")
    if not isinstance(source, str):
        raise TypeError(f"load_task: source must be 'local' or 'hub', got {source!r:.40}")
    if max_examples is not None:
        if isinstance(max_examples, bool) or not isinstance(max_examples, numbers.Integral):
            raise TypeError(
                f"load_task: max_examples must be a positive integer or None (all), got "
                f"{type(max_examples).__name__} {max_examples!r:.40}"
            )
        if max_examples < 1:
            raise ValueError(f"load_task: max_examples must be >= 1 (or None for all), got {max_examples}")
    if not isinstance(repair_spans, bool):
        raise TypeError(f"load_task: repair_spans must be True or False, got {repair_spans!r:.40}")


def _load_from_hub(spec: TaskSpec, split: str) -> list:
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "loading from the Hugging Face hub needs the datasets package: pip install 'workbench[datasets]'"
        ) from None
    if spec.hub is None or split not in spec.hub[2]:
        raise ValueError(f"task {spec.name!r} has no {split!r} split on the hub")
    dataset, config, splits = spec.hub
    rows = datasets.load_dataset(dataset, config, split=splits[split])
    return [hub_example(spec, dict(row)) for row in rows]


def hub_example(spec: TaskSpec, row: dict):
    """One Hugging Face ``datasets`` row of ``spec``'s hub dataset -> the task's example."""
    example = spec.hub_row(row)
    if isinstance(example, TextExample) and spec.family == "regression":
        label = example.label
        if isinstance(label, (int, float)) and not isinstance(label, bool):
            example.label = float(label)
    where = f"hub dataset {spec.hub[0] if spec.hub else '?'}, row {row.get('idx', row.get('id', '?'))!r}"
    spec.check_example(example, where)
    return example
