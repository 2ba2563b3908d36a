"""Data readers fail loudly and safely (issue 15): encoding errors name file, line and byte; labels and scores
are checked against each task's declared range; SQuAD answer spans are checked against the context; argument
ranges are checked; fixtures and committed samples are marked; random damage to a file never gives a crash,
a hang or a wrong load (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.data import ConlluFormatError, read_conllu
from workbench.bench.data import DataFormatError, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")

CONLLU = (
    "# sent_id = s1\n"
    "# text = The cat sat.\n"
    "1\tThe\tthe\tDET\tDT\tDefinite=Def|PronType=Art\t2\tdet\t_\t_\n"
    "2\tcat\tcat\tNOUN\tNN\tNumber=Sing\t3\tnsubj\t_\t_\n"
    "3\tsat\tsit\tVERB\tVBD\tMood=Ind|Tense=Past\t0\troot\t_\tSpaceAfter=No\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n"
    "\n"
    "# sent_id = s2\n"
    "# text = Dogs bark.\n"
    "1\tDogs\tdog\tNOUN\tNNS\tNumber=Plur\t2\tnsubj\t_\t_\n"
    "2\tbark\tbark\tVERB\tVBP\t_\t0\troot\t_\tSpaceAfter=No\n"
    "3\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_\n"
    "\n"
)

SST2 = "sentence\tlabel\nit 's a charming journey .\t1\nunflinchingly bleak .\t0\na gorgeous film .\t1\n"


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _write(path: Path, text: str) -> Path:
    return _write_bytes(path, text.encode("utf-8"))


def _squad_document(context="Tom ran home.", answers=(("Tom", 0),), qid="q1") -> dict:
    qa = {"id": qid, "question": "Who ran?", "answers": [{"text": t, "answer_start": s} for t, s in answers]}
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [qa]}]}]}


# 1. Encoding: file, line and byte offset in the reader's own error class -------------------------------------
LATIN1 = "caf\xe9".encode("latin-1")  # b"caf\xe9": not UTF-8


@pytest.mark.parametrize(
    ("task", "relative", "data", "line"),
    [
        ("sst2", "glue/SST-2/dev.tsv", b"sentence\tlabel\ngood .\t1\n" + LATIN1 + b" .\t0\n", 3),
        (
            "mrpc",
            "glue/MRPC/dev.tsv",
            b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\t" + LATIN1 + b"\n",
            2,
        ),
        (
            "copa",
            "superglue/COPA/val.jsonl",
            b'{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0}\n'
            b'{"premise": "' + LATIN1 + b'"}\n',
            2,
        ),
        ("squad", "squad/dev-v1.1.json", b'{"data": [\n{"title": "' + LATIN1 + b'"}]}', 2),
        (
            "swag",
            "swag/val.csv",
            b"sent1,sent2,ending0,ending1,ending2,ending3,label\n" + LATIN1 + b",b,c,d,e,f,0\n",
            2,
        ),
        (
            "arc_easy",
            "arc/ARC-e/ARC-Easy-Dev.jsonl",
            b'{"id": "1", "question": {"stem": "' + LATIN1 + b'", "choices": []}, "answerKey": "A"}\n',
            1,
        ),
        ("race_middle", "race/validation/middle.jsonl", b"\n\n" + LATIN1, 3),
        ("race_middle", "race/dev/middle/1.txt", b'{"article": "' + LATIN1 + b'"}', 1),
    ],
)
def test_non_utf8_bytes_name_file_line_and_byte(tmp_path, task, relative, data, line):
    path = _write_bytes(tmp_path / relative, data)
    offset = data.index(b"\xe9")
    with pytest.raises(DataFormatError) as caught:
        load_task(task, tmp_path)
    message = str(caught.value)
    assert str(path) in message and f"line {line}" in message
    assert f"byte offset {offset}" in message and "not valid UTF-8" in message and "0xe9" in message


def test_mrpc_byte_order_mark_still_read(tmp_path):
    data = b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta .\tb .\n"
    _write_bytes(tmp_path / "glue/MRPC/dev.tsv", data)
    (example,) = load_task("mrpc", tmp_path)
    assert (example.text, example.text_pair, example.label) == ("a .", "b .", 1)


def test_conllu_non_utf8_names_file_line_and_byte(tmp_path):
    data = CONLLU.encode("utf-8")
    at = data.index(b"cat\tcat")
    damaged = data[:at] + b"c\xe0t" + data[at + 3 :]
    path = _write_bytes(tmp_path / "x.conllu", damaged)
    with pytest.raises(ConlluFormatError) as caught:
        read_conllu(path)
    err = caught.value
    assert err.path == str(path) and err.line == 4
    assert f"byte offset {at + 1} in the file" in str(err) and "not valid UTF-8" in str(err)
    # with a byte-order mark the offsets count it too
    path.write_bytes(b"\xef\xbb\xbf" + damaged)
    with pytest.raises(ConlluFormatError, match=f"byte offset {at + 4} in the file"):
        read_conllu(path)
    path.write_bytes(b"\xef\xbb\xbf" + data)
    assert [s.sent_id for s in read_conllu(path)] == ["s1", "s2"]


def test_json_readers_contain_deep_nesting_and_huge_integers(tmp_path):
    _write(tmp_path / "squad/dev-v1.1.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="not valid JSON .nested too deeply"):
        load_task("squad", tmp_path)
    _write(tmp_path / "superglue/COPA/val.jsonl", '{"label": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataFormatError, match=r"COPA/val.jsonl, line 1: not valid JSON"):
        load_task("copa", tmp_path)


def test_oversized_tsv_field_is_a_data_format_error(tmp_path):
    _write(tmp_path / "glue/SST-2/dev.tsv", "sentence\tlabel\n" + "x" * 200_000 + "\t1\n")
    with pytest.raises(DataFormatError, match=r"dev.tsv, line 2: not valid CSV/TSV"):
        load_task("sst2", tmp_path)
