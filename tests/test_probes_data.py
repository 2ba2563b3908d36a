"""probes.data (CoNLL-U reading, treebanks) and probes.tasks (probing labels): fast, no model needed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from probes.data import (
    ConlluFormatError,
    Sentence,
    load_treebank,
    read_conllu,
    resolve_treebank,
    sample_data_dir,
)
from probes.tasks import (
    ArcTask,
    ControlTask,
    DataFrameTask,
    DeprelTask,
    DepthTask,
    DistanceTask,
    MainVerbTenseTask,
    SentenceLengthBinTask,
    SubjectNumberTask,
    TreeDepthBinTask,
    UnknownTaskError,
    UposTask,
    XposTask,
    get_task,
    task_names,
    tree_depths,
    tree_distances,
)


def make(words, heads, upos=None, deprels=None, feats=None, xpos=None):
    n = len(words)
    return Sentence(
        sent_id="hand",
        text=" ".join(words),
        words=list(words),
        upos=list(upos or ["X"] * n),
        xpos=list(xpos or ["_"] * n),
        heads=list(heads),
        deprels=list(deprels or ["dep"] * n),
        feats=[dict(f) for f in (feats or [{}] * n)],
    )


# "The dog barked loudly ." : barked is the root
DOG = dict(
    words=["The", "dog", "barked", "loudly", "."],
    heads=[2, 3, 0, 3, 3],
    upos=["DET", "NOUN", "VERB", "ADV", "PUNCT"],
    xpos=["DT", "NN", "VBD", "RB", "."],
    deprels=["det", "nsubj", "root", "advmod", "punct"],
    feats=[{}, {"Number": "Sing"}, {"Tense": "Past", "VerbForm": "Fin", "Mood": "Ind"}, {}, {}],
)
# "The dogs have barked ." : present perfect, plural subject
DOGS = dict(
    words=["The", "dogs", "have", "barked", "."],
    heads=[2, 4, 4, 0, 4],
    upos=["DET", "NOUN", "AUX", "VERB", "PUNCT"],
    deprels=["det", "nsubj", "aux", "root", "punct"],
    feats=[
        {},
        {"Number": "Plur"},
        {"Tense": "Pres", "VerbForm": "Fin"},
        {"Tense": "Past", "VerbForm": "Part"},
        {},
    ],
)
# "Stop !" : imperative, no subject, no tense
STOP = dict(
    words=["Stop", "!"],
    heads=[0, 1],
    upos=["VERB", "PUNCT"],
    deprels=["root", "punct"],
    feats=[{"Mood": "Imp", "VerbForm": "Fin"}, {}],
)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def test_sample_counts():
    counts = {split: load_treebank("sample", split) for split in ("train", "dev", "test")}
    assert {k: len(v) for k, v in counts.items()} == {"train": 200, "dev": 50, "test": 50}
    assert {k: sum(len(s) for s in v) for k, v in counts.items()} == {"train": 4356, "dev": 1166, "test": 898}
    assert len(load_treebank("sample", "train", max_sentences=7)) == 7
    assert (sample_data_dir() / "LICENSE.txt").is_file() and (sample_data_dir() / "README.md").is_file()


def test_known_sentence():
    first = load_treebank("sample", "train", max_sentences=1)[0]
    assert first.sent_id == "weblog-juancole.com_juancole_20051126063000_ENG_20051126_063000-0001"
    assert first.text.startswith("Al-Zaman : American forces killed Shaikh Abdullah al-Ani,")
    assert first.words[:7] == ["Al", "-", "Zaman", ":", "American", "forces", "killed"]
    assert first.upos[:7] == ["PROPN", "PUNCT", "PROPN", "PUNCT", "ADJ", "NOUN", "VERB"]
    assert first.xpos[:3] == ["NNP", "HYPH", "NNP"]
    assert first.heads[:7] == [0, 3, 1, 7, 6, 7, 1]
    assert first.deprels[:7] == ["root", "punct", "flat", "punct", "amod", "nsubj", "parataxis"]
    assert first.feats[6] == {
        "Mood": "Ind",
        "Number": "Plur",
        "Person": "3",
        "Tense": "Past",
        "VerbForm": "Fin",
    }
    assert first.feats[1] == {}
    assert first.lemmas[5] == "force"
    assert (
        len(first.words)
        == len(first.upos)
        == len(first.heads)
        == len(first.deprels)
        == len(first.feats)
        == 29
    )


def test_multiword_tokens_and_empty_nodes_skipped():
    train = load_treebank("sample", "train")
    s = train[8]  # "... I don't find the news ..." : 19-20 don't = do + n't
    assert "don't" in s.text
    assert "don't" not in s.words
    i = s.words.index("do")
    assert s.words[i : i + 2] == ["do", "n't"] and s.upos[i : i + 2] == ["AUX", "PART"]
    assert s.heads[i : i + 2] == [21, 21] and s.words[20] == "find"
    # sent ...-0022 of healingiraq has an empty node 8.1 ("reported") between words 8 and 9
    s = next(x for x in train if x.sent_id.endswith("healingiraq_20040409053012_ENG_20040409_053012-0022"))
    assert s.words[7:9] == ["500", "wounded"] and s.words.count("reported") == 1
    assert all(0 <= h <= len(s) for h in s.heads)


def test_text_rebuilt_without_text_comment(tmp_path):
    path = tmp_path / "x.conllu"
    path.write_text(
        "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
        "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
        "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
        "4\t!\t!\tPUNCT\t.\t_\t3\tpunct\t_\t_\n",
        encoding="utf-8",
    )
    (s,) = read_conllu(path)
    assert s.text == "don't go!" and s.words == ["do", "n't", "go", "!"]
    assert s.sent_id == "x.conllu#1"


GOOD = "1\tHello\thello\tINTJ\tUH\t_\t0\troot\t_\t_\n2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_\n"


@pytest.mark.parametrize(
    "bad_line, line_no, reason",
    [
        ("3\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t_", 7, "expected 10 tab-separated columns, found 9"),
        ("3\tworld\tworld\tNOUN\tNN\t_\tx\tvocative\t_\t_", 7, "HEAD"),
        ("3\tworld\tworld\tNOUN\tNN\t_\t_\tvocative\t_\t_", 7, "HEAD must be a non-negative integer"),
        ("3\tworld\tworld\tNOUN\tNN\t_\t9\tvocative\t_\t_", 7, "outside the sentence"),
        ("5\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t_\t_", 7, "out of order: expected 3"),
        ("3\tworld\tworld\tNOUN\tNN\t_\t0\troot\t_\t_", 7, "exactly one root"),
        ("3\tworld\tworld\tNOUN\tNN\tNumber\t1\tvocative\t_\t_", 7, "FEATS"),
        ("3\tworld\tworld\tNOUN\tNN\t_\t1\t\t_\t_", 7, "column 8 (DEPREL) empty"),
        ("abc\tworld\tworld\tNOUN\tNN\t_\t1\tvocative\t_\t_", 7, "ID"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, line_no, reason):
    path = tmp_path / "bad-ud-dev.conllu"
    # a good sentence (lines 1-2), a blank line, then lines 4-6 good and the bad line 7
    path.write_text(GOOD + "\n# sent_id = 2\n" + GOOD + bad_line + "\n\n", encoding="utf-8")
    with pytest.raises(ConlluFormatError) as info:
        read_conllu(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line_no}: ")
    assert reason in message
    assert info.value.line == line_no and info.value.path == str(path)
    with pytest.raises(ValueError):  # ConlluFormatError is a ValueError
        load_treebank(tmp_path, "dev")


def test_cycle_is_an_error(tmp_path):
    path = tmp_path / "cycle.conllu"
    path.write_text(
        "1\ta\ta\tX\t_\t_\t0\troot\t_\t_\n2\tb\tb\tX\t_\t_\t3\tdep\t_\t_\n3\tc\tc\tX\t_\t_\t2\tdep\t_\t_\n",
        encoding="utf-8",
    )
    with pytest.raises(ConlluFormatError, match=r"cycle\.conllu:\d: HEAD column makes a cycle"):
        read_conllu(path)


def test_load_treebank_paths_and_errors(tmp_path, monkeypatch):
    (tmp_path / "xx_toy-ud-dev.conllu").write_text(GOOD + "\n" + GOOD, encoding="utf-8")
    assert len(load_treebank(tmp_path, "dev")) == 2
    assert len(load_treebank(str(tmp_path / "xx_toy-ud-dev.conllu"))) == 2
    with pytest.raises(FileNotFoundError, match=r"no \*-ud-train.conllu file .*found: xx_toy-ud-dev.conllu"):
        load_treebank(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_treebank("sample", "valid")
    with pytest.raises(FileNotFoundError, match="unknown treebank 'no_such_bank'.*sample, ud_english_ewt"):
        load_treebank("no_such_bank", "dev")
    # PROBES_DATA: the treebank folder itself, or a data folder holding ud_english_ewt/
    monkeypatch.setenv("PROBES_DATA", str(tmp_path))
    assert resolve_treebank("ud_english_ewt") == tmp_path
    (tmp_path / "ud_english_ewt").mkdir()
    (tmp_path / "ud_english_ewt" / "en_ewt-ud-dev.conllu").write_text(GOOD, encoding="utf-8")
    assert len(load_treebank("ud_english_ewt", "dev")) == 1


def test_full_ewt_when_present():
    try:
        path = resolve_treebank("ud_english_ewt")
    except FileNotFoundError:
        pytest.skip("the full UD English EWT is not in ../shared/data (nor PROBES_DATA)")
    dev = read_conllu(next(path.glob("*-ud-dev.conllu")))
    assert len(dev) == 2001 and sum(len(s) for s in dev) == 25147
    sample = load_treebank("sample", "dev")
    assert [s.words for s in dev[:50]] == [s.words for s in sample]


# ----------------------------------------------------------------------------------------------
# Trees
# ----------------------------------------------------------------------------------------------


def test_depths_and_distances_on_hand_trees():
    assert tree_depths(DOG["heads"]) == [2, 1, 0, 1, 1]
    d = tree_distances(DOG["heads"])
    expected = np.array(
        [
            [0, 1, 2, 3, 3],
            [1, 0, 1, 2, 2],
            [2, 1, 0, 1, 1],
            [3, 2, 1, 0, 2],
            [3, 2, 1, 2, 0],
        ]
    )
    np.testing.assert_array_equal(d, expected)
    chain = [0, 1, 2, 3]  # w1 <- w2 <- w3 <- w4
    assert tree_depths(chain) == [0, 1, 2, 3]
    np.testing.assert_array_equal(tree_distances(chain), np.abs(np.subtract.outer(range(4), range(4))))
    # root in the middle, a non-projective-looking shape: w1->3, w2->3, w3 root, w4->5, w5->3
    heads = [3, 3, 0, 5, 3]
    assert tree_depths(heads) == [1, 1, 0, 2, 1]
    d = tree_distances(heads)
    assert d[0, 3] == 3 and d[3, 0] == 3 and d[0, 1] == 2 and d[3, 4] == 1
    assert (d == d.T).all() and (np.diag(d) == 0).all()
    assert tree_depths([0]) == [0] and tree_distances([0]).tolist() == [[0]]
    with pytest.raises(ValueError, match="exactly one root"):
        tree_depths([0, 0])
    with pytest.raises(ValueError, match="not form a tree"):
        tree_depths([0, 3, 2])


def test_depth_matches_distance_to_root_on_sample():
    for s in load_treebank("sample", "dev"):
        d = tree_distances(s.heads)
        assert d[s.heads.index(0)].tolist() == tree_depths(s.heads)
        arcs = [(i, h - 1) for i, h in enumerate(s.heads) if h]
        assert all(d[i, j] == 1 for i, j in arcs) and int((d == 1).sum()) == 2 * len(arcs)


# ----------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------


def test_word_level_tasks():
    sents = [make(**DOG), make(**DOGS)]
    assert UposTask().labels(sents)[0] == ["DET", "NOUN", "VERB", "ADV", "PUNCT"]
    assert UposTask().label_names[:3] == ["ADJ", "ADP", "ADV"] and len(UposTask().label_names) == 17
    assert XposTask().labels(sents)[0] == ["DT", "NN", "VBD", "RB", "."]
    task = DeprelTask()
    assert task.label_names == []
    assert task.labels(sents)[1] == ["det", "nsubj", "aux", "root", "punct"]
    assert task.label_names == sorted({"det", "nsubj", "root", "advmod", "punct", "aux"})
    sub = make(["I", "left"], [2, 0], deprels=["nsubj:pass", "root"])
    assert DeprelTask(universal=True).labels([sub, make(**DOG)])[0] == ["nsubj", "root"]
    assert DepthTask().labels(sents) == [[2, 1, 0, 1, 1], [2, 1, 1, 0, 1]]
    assert DepthTask().kind == "regression" and DepthTask().level == "word"


def test_word_pair_tasks():
    sents = [make(**DOG), make(**STOP)]
    dist = DistanceTask().labels(sents)
    assert dist[0].shape == (5, 5) and dist[1].tolist() == [[0, 1], [1, 0]]
    arc = ArcTask().labels(sents)
    assert arc[1].tolist() == [[0, 0], [1, 0]]  # "!" (row 1) has head "Stop" (column 0)
    a = arc[0]
    assert a.shape == (5, 5) and a.sum() == 4 and a[2].sum() == 0  # the root has no head
    assert a[0, 1] == 1 and a[1, 2] == 1 and a[3, 2] == 1 and a[4, 2] == 1
    assert (a == (dist[0] == 1) & (np.array(DOG["heads"])[:, None] - 1 == np.arange(5))).all()
    assert DistanceTask().level == ArcTask().level == "word_pair"


def test_sentence_level_tasks():
    sents = [make(**DOG), make(**DOGS), make(**STOP)]
    assert SubjectNumberTask().labels(sents) == ["Sing", "Plur", None]
    assert MainVerbTenseTask().labels(sents) == ["Past", "Pres", None]  # "have barked": the finite aux
    kept, labels = MainVerbTenseTask().dataset(sents)
    assert labels == ["Past", "Pres"] and [s.words[1] for s in kept] == ["dog", "dogs"]
    passive = make(
        ["It", "was", "made"],
        [3, 3, 0],
        deprels=["nsubj:pass", "aux:pass", "root"],
        feats=[
            {"Number": "Sing"},
            {"Tense": "Past", "VerbForm": "Fin"},
            {"Tense": "Past", "VerbForm": "Part"},
        ],
    )
    copula = make(
        ["They", "are", "late"],
        [3, 3, 0],
        deprels=["nsubj", "cop", "root"],
        feats=[{"Number": "Plur"}, {"Tense": "Pres", "VerbForm": "Fin"}, {}],
    )
    assert SubjectNumberTask().labels([passive, copula]) == ["Sing", "Plur"]
    assert MainVerbTenseTask().labels([passive, copula]) == ["Past", "Pres"]

    lengths = [make(["w"] * n, [0] + [1] * (n - 1)) for n in (1, 5, 6, 10, 11, 16, 17, 24, 25, 60)]
    task = SentenceLengthBinTask()
    assert task.label_names == ["1-5", "6-10", "11-16", "17-24", "25+"]
    assert task.labels(lengths) == [
        "1-5",
        "1-5",
        "6-10",
        "6-10",
        "11-16",
        "11-16",
        "17-24",
        "17-24",
        "25+",
        "25+",
    ]
    assert SentenceLengthBinTask(edges=(3,)).labels(lengths[:3]) == ["1-3", "4+", "4+"]
    eq = SentenceLengthBinTask.equal_frequency(lengths, 2)
    assert Counter(eq.labels(lengths)) == Counter({eq.label_names[0]: 5, eq.label_names[1]: 5})
    with pytest.raises(ValueError, match="increasing"):
        SentenceLengthBinTask(edges=(5, 5))

    deep = [make(["w"] * n, [0] + list(range(1, n))) for n in (1, 2, 3, 4, 5, 6, 9)]  # chains: depth n - 1
    task = TreeDepthBinTask()
    assert task.label_names == ["0-1", "2", "3", "4", "5+"]
    assert task.labels(deep) == ["0-1", "0-1", "2", "3", "4", "5+", "5+"]
    assert task.labels([make(**DOG), make(**STOP)]) == ["2", "0-1"]


def test_sample_sentence_tasks_have_both_labels():
    train = load_treebank("sample", "train")
    for name in ("sentence_length_bin", "tree_depth_bin", "subject_number", "main_verb_tense"):
        kept, labels = get_task(name).dataset(train)
        assert len(kept) == len(labels) > 100 and None not in labels and len(set(labels)) >= 2


def test_one_label_is_an_error():
    nouns = make(["cats", "dogs"], [0, 1], upos=["NOUN", "NOUN"])
    with pytest.raises(ValueError, match=r"task 'upos' has 1 distinct label\(s\) \['NOUN'\].*at least two"):
        UposTask().labels([nouns, nouns])
    assert UposTask().labels([nouns], check=False) == [["NOUN", "NOUN"]]
    with pytest.raises(ValueError, match="subject_number"):
        SubjectNumberTask().labels([make(**DOG), make(**DOG), make(**STOP)])
    with pytest.raises(ValueError, match="upos"):
        ControlTask("upos").labels([nouns])
    assert DepthTask().labels([make(["a"], [0])]) == [[0]]  # regression: no such check


def test_control_task_deterministic_per_seed_and_type():
    train = load_treebank("sample", "train")
    dev = load_treebank("sample", "dev")
    a = ControlTask(UposTask(), seed=1)
    labels = a.labels(train)
    assert labels == ControlTask(UposTask(), seed=1).labels(train)
    assert labels != ControlTask(UposTask(), seed=2).labels(train)
    assert a.name == "control_upos" and a.level == "word" and a.kind == "classification"
    # one label per word type (lowercased form), in train and in dev alike (the train fit is kept)
    by_type: dict[str, set] = {}
    for sents, ys in ((train, labels), (dev, a.labels(dev))):
        for s, y in zip(sents, ys):
            assert len(y) == len(s)
            for word, label in zip(s.words, y):
                by_type.setdefault(word.lower(), set()).add(label)
    assert all(len(v) == 1 for v in by_type.values())
    assert a.label_of("The") == a.label_of("the")
    # labels come from the task's empirical distribution: type-level frequencies follow it
    gold = Counter(y for sent in UposTask().labels(train) for y in sent)
    total = sum(gold.values())
    assert a.distribution == pytest.approx({k: v / total for k, v in gold.items()})
    types = sorted({w.lower() for s in train for w in s.words})
    drawn = Counter(a.label_of(w) for w in types)
    assert set(drawn) <= set(gold)
    tv = 0.5 * sum(abs(drawn[k] / len(types) - gold[k] / total) for k in gold)
    assert tv < 0.06, (tv, len(types))
    assert set(a.label_names) == set(gold)


def test_control_task_errors_and_registry():
    with pytest.raises(ValueError, match="word-level classification"):
        ControlTask(DepthTask())
    with pytest.raises(ValueError, match="word-level classification"):
        ControlTask("subject_number")
    with pytest.raises(RuntimeError, match="fit"):
        ControlTask("upos").label_of("dog")
    task = get_task("control_deprel", seed=3)
    assert isinstance(task, ControlTask) and task.seed == 3 and task.task.name == "deprel"


def test_arc_control_task():
    train = load_treebank("sample", "train")
    control = get_task("control_arc", seed=1)
    assert control.name == "control_arc" and control.level == "word_pair"
    matrices = control.labels(train)
    assert [m.shape for m in matrices] == [(len(s), len(s)) for s in train]
    behaviours = {}
    for sentence, matrix in zip(train, matrices):
        n = len(sentence)
        assert (matrix.sum(1) == 1).all()  # every word attaches to exactly one word
        for i, word in enumerate(sentence.words):
            target = int(matrix[i].argmax())
            behaviour = control.behaviour(word)
            assert target == {"self": i, "first": 0, "last": n - 1}[behaviour]
            behaviours.setdefault(word.lower(), set()).add(behaviour)
    assert all(len(b) == 1 for b in behaviours.values())  # fixed per word type
    counts = Counter(b for (b,) in behaviours.values())
    assert all(0.25 < counts[b] / len(behaviours) < 0.42 for b in ("self", "first", "last")), counts
    assert matrices[0].tolist() == get_task("control_arc", seed=1).labels(train[:1])[0].tolist()
    assert any((a != b).any() for a, b in zip(matrices, get_task("control_arc", seed=2).labels(train)))


def test_dataframe_task():
    sents = [make(**DOG), make(**DOGS), make(**STOP)]
    frame = pd.DataFrame({"sentence": [0, 0, 2, 2], "word": [1, 2, 0, 1], "label": ["a", "b", "a", "c"]})
    task = DataFrameTask(frame, "mine")
    assert task.name == "mine" and task.level == "word" and task.kind == "classification"
    assert task.label_names == ["a", "b", "c"]
    assert task.labels(sents) == [[None, "a", "b", None, None], None, ["a", "c"]]
    kept, labels = task.dataset(sents)
    assert len(kept) == 2 and labels[1] == ["a", "c"]

    sent_frame = pd.DataFrame({"sentence": [0, 2], "label": [1.5, -2.0]})
    task = DataFrameTask(sent_frame, "score")
    assert task.level == "sentence" and task.kind == "regression" and task.label_names is None
    assert task.labels(sents) == [1.5, None, -2.0]

    with pytest.raises(ValueError, match="columns"):
        DataFrameTask(pd.DataFrame({"s": [0], "label": [1]}), "x")
    with pytest.raises(ValueError, match="several labels for sentence=0"):
        DataFrameTask(pd.DataFrame({"sentence": [0, 0], "label": ["a", "b"]}), "x")
    with pytest.raises(ValueError, match="only 3 sentences"):
        DataFrameTask(pd.DataFrame({"sentence": [0, 5], "label": ["a", "b"]}), "x").labels(sents)
    with pytest.raises(ValueError, match="word 7 of sentence 2, which has 2 words"):
        DataFrameTask(pd.DataFrame({"sentence": [0, 2], "word": [0, 7], "label": ["a", "b"]}), "x").labels(
            sents
        )
    with pytest.raises(ValueError, match="task 'x' has 1 distinct"):
        DataFrameTask(pd.DataFrame({"sentence": [0, 1], "label": ["a", "a"]}), "x").labels(sents)


def test_get_task():
    names = task_names()
    for name in ("upos", "xpos", "deprel", "depth", "distance", "arc", "sentence_length_bin", "tree_depth_bin",
                 "subject_number", "main_verb_tense", "control_upos"):  # fmt: skip
        assert name in names
        task = get_task(name)
        assert task.name == name and task.level in ("word", "word_pair", "sentence")
    assert get_task("deprel", universal=True).universal
    assert get_task("sentence_length_bin", edges=(8,)).label_names == ["1-8", "9+"]
    with pytest.raises(UnknownTaskError, match="unknown task 'pos'; known tasks: upos, xpos") as info:
        get_task("pos")
    assert isinstance(info.value, KeyError) and "main_verb_tense" in str(info.value)
    with pytest.raises(UnknownTaskError):
        get_task("control_depth")
    with pytest.raises(TypeError, match="task 'upos'"):
        get_task("upos", bins=3)
