"""Data readers fail loudly and safely (issue 15): encoding errors name file, line and byte; labels and scores
are checked against each task's declared range; SQuAD answer spans are checked against the context; argument
ranges are checked; fixtures and committed samples are marked; random damage to a file never gives a crash,
a hang or a wrong load (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.data import ConlluFormatError, read_conllu
from workbench.bench import data as D
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


# 2. Label and score ranges declared with each task ------------------------------------------------------------
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


@pytest.mark.parametrize("score", ["nan", "NaN", "-0.5", "5.2", "inf", "-inf", "", "high"])
def test_stsb_score_must_be_finite_and_in_0_5(tmp_path, score):
    path = _write(
        tmp_path / "glue/STS-B/dev.tsv",
        STSB_HEADER + "0\tg\tf\t2012\t1\ts\ts\tA man.\tA person.\t4.0\n"
        f"1\tg\tf\t2012\t2\ts\ts\tA cat.\tA dog.\t{score}\n",
    )
    with pytest.raises(DataFormatError) as caught:
        load_task("stsb", tmp_path)
    message = str(caught.value)
    assert str(path) in message and "line 3" in message and "field 'score'" in message
    assert repr(score) in message and "[0, 5]" in message


def test_stsb_range_edges_load(tmp_path):
    _write(
        tmp_path / "glue/STS-B/dev.tsv",
        STSB_HEADER + "0\tg\tf\t2012\t1\ts\ts\tA.\tB.\t0\n1\tg\tf\t2012\t2\ts\ts\tC.\tD.\t5.000\n",
    )
    assert [ex.label for ex in load_task("stsb", tmp_path)] == [0.0, 5.0]
    assert D.get_task("stsb").score_range == (0.0, 5.0)


def test_classification_label_errors_name_file_line_field_and_value(tmp_path):
    path = _write(tmp_path / "glue/RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailed\n")
    with pytest.raises(DataFormatError) as caught:
        load_task("rte", tmp_path)
    message = str(caught.value)
    assert (
        str(path) in message
        and "line 2" in message
        and "'entailed'" in message
        and "field 'label'" in message
    )
    _write(tmp_path / "glue/MRPC/dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n2\t1\t2\ta\tb\n")
    with pytest.raises(
        DataFormatError, match=r"line 2: label '2' is not one of \['0', '1'\] \(field 'Quality'\)"
    ):
        load_task("mrpc", tmp_path)


def _copa(label) -> str:
    record = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": label}
    return json.dumps(record) + "\n"


@pytest.mark.parametrize("label", [True, 2, -1, 1.0, "1"])
def test_copa_label_must_be_0_or_1(tmp_path, label):
    _write(tmp_path / "superglue/COPA/val.jsonl", _copa(label))
    with pytest.raises(DataFormatError, match=r"COPA/val.jsonl, line 1: .*label"):
        load_task("copa", tmp_path)


@pytest.mark.parametrize("label", ["4", "1.0", "-1", "", "one"])
def test_swag_label_must_be_0_to_3(tmp_path, label):
    _write(
        tmp_path / "swag/val.csv",
        f"sent1,sent2,ending0,ending1,ending2,ending3,label\nHe runs.,He,stops.,flies.,sings.,eats.,{label}\n",
    )
    with pytest.raises(DataFormatError, match=r"val.csv, line 2: field 'label' must be 0-3"):
        load_task("swag", tmp_path)
    jsonl = _write(tmp_path / "swag/val.jsonl", "")
    (tmp_path / "swag/val.csv").unlink()
    for bad in (1.7, True, 4):
        row = {"sent1": "a", "sent2": "b", "label": bad, **{f"ending{i}": "e" for i in range(4)}}
        jsonl.write_text(json.dumps(row) + "\n")
        with pytest.raises(DataFormatError, match=r"val.jsonl, line 1: field 'label' must be 0-3"):
            load_task("swag", tmp_path)


def test_hub_rows_are_range_checked():
    stsb = D.get_task("stsb")
    for bad in (float("nan"), -1.0, 5.5):
        with pytest.raises(DataFormatError, match="score"):
            D.hub_example(stsb, {"sentence1": "a", "sentence2": "b", "label": bad, "idx": 7})
    # GLUE test splits on the hub carry label -1: never read as a class
    with pytest.raises(DataFormatError, match=r"row 3: field 'label' -1 is not a class index 0..1"):
        D.hub_example(D.get_task("sst2"), {"sentence": "a", "label": -1, "idx": 3})
    with pytest.raises(DataFormatError, match="swag questions have 4 choices"):
        D.get_task("swag").check_example(D.ChoiceExample("c", ["a", "b"], 0), "row")
    with pytest.raises(DataFormatError, match="not a choice index 0..1"):
        D.get_task("copa").check_example(D.ChoiceExample("c", ["a", "b"], 2), "row")


def test_every_task_declares_its_label_range():
    for spec in D.TASKS.values():
        if spec.family == "classification":
            assert len(spec.labels) >= 2, spec.name
        elif spec.family == "regression":
            assert spec.score_range is not None, spec.name
        elif spec.family == "multiple_choice":
            assert spec.num_choices is not None, spec.name


# 3. SQuAD answer spans are checked against the context ---------------------------------------------------------
def test_squad_answer_not_at_its_start_is_an_error_naming_the_id(tmp_path):
    path = _write(
        tmp_path / "squad/dev-v1.1.json", json.dumps(_squad_document(answers=(("ran", 5),), qid="q-77"))
    )
    with pytest.raises(DataFormatError) as caught:
        load_task("squad", tmp_path)
    message = str(caught.value)
    assert (
        str(path) in message and "'q-77'" in message and "data[0].paragraphs[0].qas[0].answers[0]" in message
    )
    assert (
        "not at answer_start 5" in message and "occurs at [4]" in message and "repair_spans=True" in message
    )


@pytest.mark.parametrize(
    ("answers", "repaired"),
    [
        ((("Tom", -1),), [0]),
        ((("Tom", 99),), [0]),
        ((("Tom", 0), ("home", 3)), [0, 8]),
        ((("Jerry", 0),), None),  # nowhere in the context: an error even with repair_spans
        ((("", 0),), None),
    ],
)
def test_squad_bad_spans_are_errors_or_repaired_on_request(tmp_path, answers, repaired):
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps(_squad_document(answers=answers)))
    with pytest.raises(DataFormatError, match="id 'q1'"):
        load_task("squad", tmp_path)
    if repaired is None:
        with pytest.raises(DataFormatError, match="id 'q1'"):
            load_task("squad", tmp_path, repair_spans=True)
        return
    loaded = load_task("squad", tmp_path, repair_spans=True)
    assert (
        loaded[0].answer_starts == repaired and loaded.spans_repaired == 1 and "repaired" in loaded.data_note
    )


def test_squad_repair_moves_to_the_nearest_occurrence_with_a_warning(tmp_path, caplog):
    context = "the cat saw the dog and the bird."
    document = _squad_document(context=context, answers=(("the", 22), ("dog", 16)))
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps(document))
    with caplog.at_level("WARNING"):
        loaded = load_task("squad", tmp_path, repair_spans=True)
    assert loaded[0].answer_starts == [24, 16]  # "the" at 24 is nearest 22 (12 and 0 are farther)
    assert loaded.spans_repaired == 1 and loaded.data_note.startswith("1 SQuAD answer span(s) repaired")
    assert any(r.levelname == "WARNING" and "1 SQuAD answer span" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="repair_spans applies to the SQuAD tasks only"):
        load_task("sst2", "sample", repair_spans=True)


def test_squad_flattened_layout_spans_and_types_are_checked(tmp_path):
    record = {
        "id": "q1",
        "question": "Who?",
        "context": "Tom ran.",
        "answers": {"text": "Tom", "answer_start": 0},
    }
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps({"data": [record]}))
    with pytest.raises(DataFormatError, match="field 'text' must be list"):
        load_task("squad", tmp_path)
    record["answers"] = {"text": ["ran"], "answer_start": [0]}
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps({"data": [record]}))
    with pytest.raises(DataFormatError, match=r"data\[0\].answers\[0\] \(id 'q1'\): answer 'ran' is not at"):
        load_task("squad", tmp_path)


def test_squad_question_ids_must_be_unique(tmp_path):
    document = _squad_document()
    qas = document["data"][0]["paragraphs"][0]["qas"]
    qas.append(dict(qas[0]))
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps(document))
    with pytest.raises(DataFormatError, match=r"qas\[1\]: question id 'q1' repeats the id of .*qas\[0\]"):
        load_task("squad", tmp_path)


def test_squad_hub_rows_are_span_checked():
    row = {
        "id": "h1",
        "question": "?",
        "context": "Tom ran.",
        "answers": {"text": ["ran"], "answer_start": [1]},
    }
    with pytest.raises(DataFormatError, match=r"answer 0 \(id 'h1'\): answer 'ran' is not at answer_start 1"):
        D.hub_example(D.get_task("squad"), row)


def test_records_that_are_not_objects_are_format_errors(tmp_path):
    _write(
        tmp_path / "squad/dev-v1.1.json", json.dumps({"data": [{"title": "t", "paragraphs": ["context"]}]})
    )
    with pytest.raises(DataFormatError, match=r"data\[0\].paragraphs\[0\]: expected a JSON object"):
        load_task("squad", tmp_path)


@pytest.mark.skipif(not (SHARED / "squad/dev-v1.1.json").is_file(), reason="../shared/data is not here")
def test_real_squad_dev_spans_all_match():
    loaded = load_task("squad", SHARED)
    assert len(loaded) == 10570 and loaded.spans_repaired == 0 and loaded.data_note == ""
    assert sum(len(ex.answers) for ex in loaded) == 34726


# 4. Argument ranges of the data-loading API ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"max_examples": 0}, ValueError, "max_examples must be >= 1"),
        ({"max_examples": -3}, ValueError, "max_examples must be >= 1"),
        ({"max_examples": 2.5}, TypeError, "max_examples must be a positive integer"),
        ({"max_examples": "10"}, TypeError, "max_examples must be a positive integer"),
        ({"max_examples": True}, TypeError, "max_examples must be a positive integer"),
        ({"split": None}, TypeError, "split must be a str"),
        ({"source": 1}, TypeError, "source must be 'local' or 'hub'"),
        ({"source": "web"}, ValueError, "source must be 'local' or 'hub'"),
        ({"data": 3}, TypeError, "data must be a folder path"),
        ({"repair_spans": "yes"}, TypeError, "repair_spans must be True or False"),
    ],
)
def test_load_task_argument_errors_name_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        load_task("sst2", **{"data": "sample", **kwargs})


def test_load_task_argument_edges(tmp_path):
    import numpy as np

    assert len(load_task("sst2", "sample", max_examples=1)) == 1
    assert len(load_task("sst2", "sample", max_examples=np.int64(3))) == 3
    assert len(load_task("sst2", "sample", max_examples=10_000)) == 8
    with pytest.raises(TypeError, match="name must be a task name"):
        load_task(None, "sample")
    with pytest.raises(FileNotFoundError, match=r"data root .*nowhere is not a folder"):
        load_task("sst2", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("3", TypeError), (False, TypeError)],
)
def test_conllu_max_sentences_range(tmp_path, value, error):
    from probes.data import load_treebank

    path = _write(tmp_path / "x.conllu", CONLLU)
    with pytest.raises(error, match="max_sentences must be"):
        read_conllu(path, max_sentences=value)
    with pytest.raises(error, match="max_sentences must be"):
        load_treebank("sample", "dev", max_sentences=value)
    assert len(read_conllu(path, max_sentences=1)) == 1


def test_load_treebank_argument_types():
    from probes.data import load_treebank

    with pytest.raises(ValueError, match="unknown split"):
        load_treebank("sample", ["dev"])
    with pytest.raises(TypeError, match="name_or_path must be"):
        load_treebank(3, "dev")


def test_probing_task_arguments_are_never_truncated():
    import pandas as pd

    from probes.data import load_treebank
    from probes.tasks import ControlTask, SentenceLengthBinTask, get_task

    with pytest.raises(TypeError, match=r"bin edges: expected an integer, got float 7.5"):
        SentenceLengthBinTask(edges=(7.5, 16))
    with pytest.raises(TypeError, match="bin edges: expected an integer"):
        SentenceLengthBinTask(edges=("8", "16"))
    with pytest.raises(TypeError, match="seed: expected an integer"):
        ControlTask("upos", seed=1.9)
    with pytest.raises(TypeError, match="seed: expected an integer"):
        get_task("control_arc", seed="0")
    with pytest.raises(TypeError, match="n_bins: expected an integer"):
        SentenceLengthBinTask.equal_frequency(load_treebank("sample", "dev"), 2.5)
    assert SentenceLengthBinTask(edges=(8, 16)).edges == (8, 16)
    frame = pd.DataFrame({"sentence": [0, 1], "label": [1.0, float("inf")]})
    from probes.tasks import DataFrameTask

    with pytest.raises(ValueError, match="column 'label' must hold finite values, got inf"):
        DataFrameTask(frame, "score")


# 5. Fixtures and committed samples are never silently a dev set ------------------------------------------------
def test_committed_samples_are_marked_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="workbench.bench.data"):
        sst2 = load_task("sst2", "sample")
    assert sst2.is_fixture and sst2.data_note.startswith("committed sample: 8 example(s) of sst2")
    assert sst2.task == "sst2" and sst2.split == "dev" and sst2.path.name == "dev.tsv" and sst2.n_file == 8
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and "committed sample" in warnings[0].getMessage()
    assert "not comparable with published" in warnings[0].getMessage()
    # max_examples keeps the note; the note counts the file
    assert load_task("sst2", D.SAMPLE_DATA, max_examples=2).data_note == sst2.data_note


def test_fixture_fallback_is_marked_with_a_warning(tmp_path, caplog):
    fixture = tmp_path / "hf_transformers_tests_samples/swag/sample.json"
    row = {"sent1": "a", "sent2": "b", "label": 1, **{f"ending{i}": "e" for i in range(4)}}
    _write(fixture, json.dumps(row) + "\n")
    with caplog.at_level("WARNING", logger="workbench.bench.data"):
        swag = load_task("swag", tmp_path)
    assert swag.is_fixture and swag.data_note.startswith("test fixture: 1 example(s) of swag")
    assert str(fixture) in swag.data_note
    assert any("test fixture" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # the official file, when present, is read instead and carries no note
    _write(
        tmp_path / "swag/val.csv",
        "sent1,sent2,ending0,ending1,ending2,ending3,label\nHe runs.,He,stops.,flies.,sings.,eats.,0\n",
    )
    official = load_task("swag", tmp_path)
    assert not official.is_fixture and official.data_note == "" and official.path.name == "val.csv"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
def test_shared_data_fixtures_and_official_files():
    v2 = load_task("squad_v2", SHARED)  # only the transformers fixture is local
    assert v2.is_fixture and "test fixture: 14 example(s) of squad_v2" in v2.data_note
    assert "hf_transformers_tests_samples" in v2.data_note
    swag = load_task("swag", SHARED)
    assert swag.is_fixture and "hf_transformers_tests_samples/swag/sample.json" in swag.data_note
    for task in ("sst2", "copa", "squad", "arc_easy", "race_middle"):
        loaded = load_task(task, SHARED, max_examples=3)
        assert not loaded.is_fixture and loaded.data_note == "" and len(loaded) == 3, task


def test_task_data_is_a_plain_list_of_examples_that_pickles():
    import pickle

    copa = load_task("copa", "sample")
    assert isinstance(copa, list) and copa == list(copa)
    again = pickle.loads(pickle.dumps(copa))
    assert again == copa and again.data_note == copa.data_note and again.is_fixture
    with pytest.raises(TypeError, match="no attribute 'note'"):
        D.TaskData([], note="x")


# 6. Property tests: random truncations and corruptions never crash, hang or load wrongly ----------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    max_examples=50, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None
)
CONLLU_BYTES = CONLLU.replace("cat\tcat", "Zürich\tZürich").encode("utf-8")
SST2_BYTES = (SST2 + "un film naïf .\t0\n").encode("utf-8")
SQUAD_BYTES = json.dumps(
    {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "Tom ran home to Zürich. It rained.",
                        "qas": [
                            {"id": "a", "question": "Who?", "answers": [{"text": "Tom", "answer_start": 0}]},
                            {
                                "id": "b",
                                "question": "Where?",
                                "answers": [{"text": "Zürich", "answer_start": 16}],
                            },
                        ],
                    }
                ],
            }
        ],
    },
    indent=1,
    ensure_ascii=False,
).encode("utf-8")
INTERESTING = [
    b"\t",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"\xc3",
    b'"',
    b"{",
    b"]",
    b"0",
    b"9",
    b"-",
    b" ",
    b"_",
    b"#",
]


@st.composite
def corrupted(draw, data: bytes) -> bytes:
    """``data`` with 1-3 edits: a byte replaced, inserted or deleted (interesting bytes or any byte)."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        byte = draw(st.sampled_from(INTERESTING) | st.binary(min_size=1, max_size=1))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        if kind == "replace":
            data = data[:at] + byte + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + byte + data[at:]
        else:
            data = data[:at] + data[at + 1 :]
    return data


def _check_sentences(sentences) -> None:
    for s in sentences:
        n = len(s.words)
        assert n and all(len(x) == n for x in (s.upos, s.xpos, s.heads, s.deprels, s.feats, s.lemmas))
        assert sum(h == 0 for h in s.heads) == 1 and all(0 <= h <= n for h in s.heads)


@PROPERTY
@given(cut=st.integers(0, len(CONLLU_BYTES)))
def test_property_conllu_truncation(tmp_path, cut):
    original = read_conllu(_write_bytes(tmp_path / "full.conllu", CONLLU_BYTES))
    path = _write_bytes(tmp_path / "cut.conllu", CONLLU_BYTES[:cut])
    try:
        sentences = read_conllu(path)
    except ConlluFormatError as err:
        assert err.path == str(path) and err.line >= 1
        return
    _check_sentences(sentences)
    assert len(sentences) <= len(original)
    for got, want in zip(sentences[:-1], original):
        assert got == want
    if sentences:  # the last sentence may be cut at a line end: a prefix of the original's words
        last, want = sentences[-1], original[len(sentences) - 1]
        assert last.words == want.words[: len(last.words)] and last.heads == want.heads[: len(last.words)]


@PROPERTY
@given(data=corrupted(CONLLU_BYTES))
def test_property_conllu_corruption(tmp_path, data):
    path = _write_bytes(tmp_path / "bad.conllu", data)
    try:
        sentences = read_conllu(path)
    except ConlluFormatError as err:
        assert err.path == str(path) and 1 <= err.line <= data.count(b"\n") + 1
        return
    _check_sentences(sentences)
    assert all("\r" not in w and "\t" not in w and "\n" not in w for s in sentences for w in s.words)


def _sst2(root: Path, data: bytes):
    _write_bytes(root / "glue/SST-2/dev.tsv", data)
    return load_task("sst2", root)


@PROPERTY
@given(cut=st.integers(0, len(SST2_BYTES)))
def test_property_glue_tsv_truncation(tmp_path, cut):
    original = [(ex.text, ex.label) for ex in _sst2(tmp_path / "full", SST2_BYTES)]
    try:
        loaded = _sst2(tmp_path / "cut", SST2_BYTES[:cut])
    except DataFormatError as err:
        assert "dev.tsv" in str(err)
        return
    # the label is the last field: a cut line never loads, so the rows read are exactly the first rows
    assert [(ex.text, ex.label) for ex in loaded] == original[: len(loaded)]


@PROPERTY
@given(data=corrupted(SST2_BYTES))
def test_property_glue_tsv_corruption(tmp_path, data):
    try:
        loaded = _sst2(tmp_path, data)
    except DataFormatError as err:
        assert "dev.tsv" in str(err)
        return
    assert 1 <= len(loaded) <= data.count(b"\n") + 1
    for ex in loaded:
        assert ex.label in (0, 1) and isinstance(ex.label, int) and ex.text_pair is None
        assert "\t" not in ex.text and "\n" not in ex.text


def _squad(root: Path, data: bytes):
    _write_bytes(root / "squad/dev-v1.1.json", data)
    return load_task("squad", root)


@PROPERTY
@given(cut=st.integers(0, len(SQUAD_BYTES)))
def test_property_squad_truncation(tmp_path, cut):
    try:
        loaded = _squad(tmp_path, SQUAD_BYTES[:cut])
    except DataFormatError as err:
        assert "dev-v1.1.json" in str(err)
        return
    assert cut == len(SQUAD_BYTES)  # a cut JSON document never loads
    assert [ex.id for ex in loaded] == ["a", "b"] and loaded[1].answer_starts == [16]


@PROPERTY
@given(data=corrupted(SQUAD_BYTES))
def test_property_squad_corruption(tmp_path, data):
    try:
        loaded = _squad(tmp_path, data)
    except DataFormatError as err:
        assert "dev-v1.1.json" in str(err)
        return
    assert len({ex.id for ex in loaded}) == len(loaded)
    for ex in loaded:
        assert len(ex.answers) == len(ex.answer_starts)
        for answer, start in zip(ex.answers, ex.answer_starts):
            assert answer and ex.context[start : start + len(answer)] == answer


# Metrics never turn bad input into a plausible number --------------------------------------------------------
def test_correlations_with_non_finite_values_are_nan_with_a_warning(caplog):
    import math

    from workbench.bench import metrics as M

    with caplog.at_level("WARNING", logger="workbench.bench.metrics"):
        assert math.isnan(M.spearman([1.0, float("nan"), 3.0, 4.0], [1, 2, 3, 4]))  # was 0.4
        assert math.isnan(M.pearson([1.0, 2.0, 3.0], [1.0, float("inf"), 3.0]))
    assert sum("non-finite" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 2
    assert M.spearman([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)


def test_squad_scores_refuse_answers_that_are_not_lists():
    from workbench.bench import metrics as M

    with pytest.raises(TypeError, match=r"answers\['a'\] must be a list of answer texts"):
        M.squad_scores({"a": "T"}, {"a": "Tom"})  # a str would be scored against its letters: "T" = 1.0
    with pytest.raises(TypeError, match=r"predictions\['a'\] must be a text"):
        M.squad_scores({"a": None}, {"a": ["Tom"]})
    assert M.squad_scores({"a": "Tom"}, {"a": ["Tom"]})["exact_match"] == 1.0


def test_task_data_records_the_file_hash(tmp_path):
    import hashlib

    path = _write(tmp_path / "glue/SST-2/dev.tsv", SST2)
    loaded = load_task("sst2", tmp_path)
    assert loaded.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(SST2.replace("bleak", "bleak !"))
    assert load_task("sst2", tmp_path).file_sha256 != loaded.file_sha256


COPA_BYTES = (_copa(1) + _copa(0).replace('"p"', '"Zürich flooded."')).encode("utf-8")


@PROPERTY
@given(data=corrupted(COPA_BYTES) | st.integers(0, len(COPA_BYTES)).map(lambda cut: COPA_BYTES[:cut]))
def test_property_superglue_jsonl_damage(tmp_path, data):
    _write_bytes(tmp_path / "superglue/COPA/val.jsonl", data)
    try:
        loaded = load_task("copa", tmp_path)
    except DataFormatError as err:
        assert "COPA/val.jsonl" in str(err)
        return
    assert 1 <= len(loaded) <= 2
    for ex in loaded:
        assert ex.label in (0, 1) and type(ex.label) is int and len(ex.choices) == 2
