"""Benchmark loaders: the committed samples, the full copies in ../shared/data (counts from SOURCE.md), the
official formats that are not local (hand-written files), hub rows, and errors that name file and line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from workbench.bench import data as D
from workbench.bench.data import ChoiceExample, DataFormatError, SpanExample, TextExample, load_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")

SAMPLE_COUNTS = {
    "cola": 8,
    "sst2": 8,
    "mrpc": 8,
    "stsb": 8,
    "rte": 8,
    "qnli": 8,
    "wnli": 8,
    "boolq": 8,
    "cb": 8,
    "copa": 8,
    "superglue_rte": 8,
    "arc_easy": 20,
    "arc_challenge": 10,
    "swag": 10,
    "squad": 55,
    "squad_v2": 14,
}


@pytest.mark.parametrize(("task", "count"), SAMPLE_COUNTS.items())
def test_committed_samples_load(task, count):
    examples = load_task(task, "sample")
    assert len(examples) == count
    family = D.get_task(task).family
    kind = {
        "classification": TextExample,
        "regression": TextExample,
        "multiple_choice": ChoiceExample,
        "span": SpanExample,
    }[family]
    assert all(isinstance(ex, kind) for ex in examples)


def test_sample_fields():
    cola = load_task("cola", "sample")
    assert cola[0].text_pair is None and cola[0].label in (0, 1) and cola[0].text
    mrpc = load_task("mrpc", "sample")[0]
    # the first GLUE MRPC dev pair (1355540/1355592) is a paraphrase
    assert mrpc.text_pair and mrpc.label == 1
    assert isinstance(load_task("stsb", "sample")[0].label, float)
    copa = load_task("copa", "sample")[0]
    assert copa.prompt == "The man turned on the faucet therefore"
    assert copa.continuations == [" the toilet filled with water.", " water flowed from the spout."]
    assert copa.label == 1
    arc = load_task("arc_easy", "sample")
    assert all(0 <= ex.label < len(ex.choices) for ex in arc) and arc[0].prompt.startswith("Question: ")
    v2 = load_task("squad_v2", "sample")
    assert sum(ex.is_impossible for ex in v2) == 6
    squad = load_task("squad", "sample")[0]
    assert squad.context[squad.answer_starts[0] :].startswith(squad.answers[0])


def test_samples_have_a_notice_and_no_race():
    assert (D.SAMPLE_DATA / "NOTICE.md").is_file()
    assert not list(D.SAMPLE_DATA.rglob("*race*")) and not (D.SAMPLE_DATA / "race").exists()


FULL_COUNTS = {
    ("cola", "dev"): 1043,
    ("sst2", "dev"): 872,
    ("mrpc", "dev"): 408,
    ("rte", "dev"): 277,
    ("qnli", "dev"): 5463,
    ("stsb", "dev"): 1500,
    ("wnli", "dev"): 71,
    ("boolq", "dev"): 3270,
    ("cb", "dev"): 56,
    ("copa", "dev"): 100,
    ("superglue_rte", "dev"): 277,
    ("squad", "dev"): 10570,
    ("arc_challenge", "dev"): 299,
    ("arc_challenge", "test"): 1172,
    ("arc_easy", "dev"): 570,
    ("arc_easy", "test"): 2376,
    ("race_middle", "dev"): 1436,
}


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
@pytest.mark.parametrize(("task", "split", "count"), [(*key, value) for key, value in FULL_COUNTS.items()])
def test_full_copies_match_source_counts(task, split, count):
    assert len(load_task(task, SHARED, split=split)) == count


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")
def test_full_copies_label_distributions():
    assert Counter(ex.label for ex in load_task("cola", SHARED)) == {1: 721, 0: 322}
    assert Counter(ex.label for ex in load_task("sst2", SHARED)) == {1: 444, 0: 428}
    assert Counter(ex.label for ex in load_task("copa", SHARED)) == {0: 55, 1: 45}
    assert Counter(ex.label for ex in load_task("boolq", SHARED)) == {1: 2033, 0: 1237}
    assert Counter(ex.label for ex in load_task("race_middle", SHARED)) == {0: 311, 1: 384, 2: 386, 3: 355}
    cb = Counter(ex.label for ex in load_task("cb", SHARED))
    assert cb == {1: 28, 0: 23, 2: 5}  # contradiction 28, entailment 23, neutral 5
    v2 = load_task("squad_v2", SHARED)  # only the 14-question fixture is local
    assert len(v2) == 14 and sum(ex.is_impossible for ex in v2) == 6


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_official_formats_not_local(tmp_path):
    _write(
        tmp_path / "glue/QQP/dev.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tHow do I cook?\tHow to cook?\t1\n",
    )
    _write(
        tmp_path / "glue/MNLI/dev_matched.tsv",
        "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n0\t1\t1\tfic\tA man.\tA person.\tentailment\n"
        "1\t2\t2\tfic\tA cat.\tA dog.\tcontradiction\n",
    )
    _write(
        tmp_path / "superglue/WiC/val.jsonl",
        json.dumps({"word": "bank", "sentence1": "River bank.", "sentence2": "Bank loan.", "label": False})
        + "\n",
    )
    _write(
        tmp_path / "swag/val.csv",
        "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,"
        'ending3,label\nv1,1,"He runs. He",He runs.,He,gold,stops.,flies.,"sings, loudly.",eats.,0\n',
    )
    article = {
        "article": "Tom has a cat.",
        "questions": ["What does Tom have?", "Tom has a _."],
        "options": [["a cat", "a dog", "a cow", "a fish"], ["cat", "dog", "cow", "fish"]],
        "answers": ["A", "A"],
        "id": "middle1.txt",
    }
    _write(tmp_path / "race/dev/middle/1.txt", json.dumps(article))
    qqp = load_task("qqp", tmp_path)
    assert qqp[0].text_pair == "How to cook?" and qqp[0].label == 1
    assert [ex.label for ex in load_task("mnli", tmp_path)] == [0, 2]
    wic = load_task("wic", tmp_path)[0]
    assert wic.text == "bank: River bank." and wic.label == 0
    swag = load_task("swag", tmp_path)[0]
    assert (
        swag.choices[2] == "He sings, loudly."
        and swag.prompt == "He runs. He"
        and swag.continuations[0] == " stops."
    )
    race = load_task("race_middle", tmp_path)
    assert len(race) == 2 and race[1].choices[0] == "Tom has a cat." and race[0].prompt.endswith("Answer:")


def test_flattened_squad_layout(tmp_path):
    record = {
        "id": "q1",
        "question": "Who?",
        "context": "Tom ran.",
        "answers": {"text": ["Tom"], "answer_start": [0]},
    }
    _write(tmp_path / "squad/dev-v1.1.json", json.dumps({"version": 2.0, "data": [record]}))
    (example,) = load_task("squad", tmp_path)
    assert example.answers == ["Tom"] and example.answer_starts == [0]


def test_hub_rows_convert_to_the_same_examples():
    copa = D.hub_example(
        D.get_task("copa"),
        {
            "premise": "It rained.",
            "choice1": "We got wet.",
            "choice2": "We sang.",
            "question": "effect",
            "label": 0,
            "idx": 3,
        },
    )
    assert copa.prompt == "It rained therefore" and copa.continuations[0] == " we got wet."
    arc = D.hub_example(
        D.get_task("arc_easy"),
        {"id": "x", "question": "Q?", "answerKey": "B", "choices": {"text": ["a", "b"], "label": ["A", "B"]}},
    )
    assert arc.label == 1 and arc.choices == ["a", "b"]
    stsb = D.hub_example(D.get_task("stsb"), {"sentence1": "a", "sentence2": "b", "label": 3.2, "idx": 0})
    assert stsb.label == pytest.approx(3.2) and stsb.text_pair == "b"
    squad = D.hub_example(
        D.get_task("squad_v2"),
        {"id": "q", "question": "?", "context": "c", "answers": {"text": [], "answer_start": []}},
    )
    assert squad.is_impossible


def test_missing_file_names_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"glue/SST-2/dev.tsv"):
        load_task("sst2", tmp_path)
    with pytest.raises(ValueError, match="unknown benchmark task 'sst3'"):
        load_task("sst3", tmp_path)
    with pytest.raises(ValueError, match="no 'test' split"):
        load_task("sst2", tmp_path, split="test")


def test_malformed_files_name_file_line_and_expectation(tmp_path):
    path = _write(tmp_path / "glue/SST-2/dev.tsv", "sentence\tlabel\ngood .\t1\nbad .\n")
    with pytest.raises(DataFormatError, match=r"SST-2/dev.tsv, line 3: expected 2 tab-separated fields"):
        load_task("sst2", tmp_path)
    path.write_text("sentence\tlabel\ngood .\tpositive\n")
    with pytest.raises(DataFormatError, match=r"line 2: label 'positive' is not one of \['0', '1'\]"):
        load_task("sst2", tmp_path)
    path.write_text("text\tlabel\ngood .\t1\n")
    with pytest.raises(DataFormatError, match=r"line 1: the header lacks column\(s\) \['sentence'\]"):
        load_task("sst2", tmp_path)
    copa = _write(tmp_path / "superglue/COPA/val.jsonl", '{"premise": "x"}\n{not json\n')
    with pytest.raises(DataFormatError, match=r"COPA/val.jsonl, line 1: missing field 'question'"):
        load_task("copa", tmp_path)
    copa.write_text(
        json.dumps({"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0})
        + "\n{not json\n"
    )
    with pytest.raises(DataFormatError, match=r"line 2: not valid JSON"):
        load_task("copa", tmp_path)
    _write(
        tmp_path / "arc/ARC-e/ARC-Easy-Dev.jsonl",
        json.dumps(
            {
                "id": "1",
                "question": {
                    "stem": "?",
                    "choices": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}],
                },
                "answerKey": "C",
            }
        )
        + "\n",
    )
    with pytest.raises(DataFormatError, match=r"line 1: answerKey 'C' is not a choice label \['A', 'B'\]"):
        load_task("arc_easy", tmp_path)
    _write(
        tmp_path / "squad/dev-v1.1.json", json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": []}]}]})
    )
    with pytest.raises(DataFormatError, match=r"data\[0\].paragraphs\[0\]: missing field 'context'"):
        load_task("squad", tmp_path)
