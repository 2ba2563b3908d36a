"""Tokenizer file readers fail loudly and safely (issue 15): every malformed, truncated or corrupted tokenizer
file gives :class:`~workbench.tokenizers.files.TokenizerFileError` naming the file (and line or byte offset), never
another exception, a hang, a huge allocation or a silently different vocabulary."""

from __future__ import annotations

import json
import pickle
import re
import struct
import time
import tracemalloc
from pathlib import Path

import pytest

import workbench as wb
from workbench.tokenizers import TokenizerFileError
from workbench.tokenizers.transfo_xl import UnsafePickleError, load_vocab_pickle
from workbench.tokenizers.xlnet import read_sentencepiece_model

GIB = 1 << 30

# vocab.pkl ---------------------------------------------------------------------------------------------

# A few bytes each, all asking the unpickler for a gigabyte or more before it notices the file has ended.
SMALL_HUGE_PICKLES = {
    "BINBYTES8 of 1 GiB": b"\x80\x04\x8e" + GIB.to_bytes(8, "little"),
    "FRAME of 1 GiB": b"\x80\x04\x95" + GIB.to_bytes(8, "little"),
    "BINUNICODE of 1 GiB": b"\x80\x02X" + GIB.to_bytes(4, "little") + b".",
    "LONG4 of 1 GiB": b"\x80\x02\x8b" + GIB.to_bytes(4, "little") + b".",
    "BINBYTES of 1 GiB": b"\x80\x03B" + GIB.to_bytes(4, "little") + b".",
    # The memo grows to twice the index: 2**27 entries of 8 bytes, twice, is 2 GiB (and 12 s).
    "LONG_BINPUT at 2**27": b"\x80\x02Nr" + (1 << 27).to_bytes(4, "little") + b".",
}


@pytest.mark.parametrize("name", sorted(SMALL_HUGE_PICKLES))
def test_tiny_vocab_pkl_cannot_allocate_a_gigabyte(tmp_path, name):
    path = tmp_path / "vocab.pkl"
    path.write_bytes(SMALL_HUGE_PICKLES[name])
    assert path.stat().st_size <= 11
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(TokenizerFileError, match=r"vocab\.pkl, byte \d+"):
            load_vocab_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, (
        f"{name}: {peak / 2**20:.0f} MiB allocated reading a {path.stat().st_size}-byte file"
    )
    assert time.perf_counter() - start < 2


def test_vocab_pkl_structure_errors_name_the_file(tmp_path):
    path = tmp_path / "vocab.pkl"
    cases = {
        pickle.dumps({"sym2idx": {"<unk>": 0}}) + b"junk": "4 bytes follow the end of the pickle",
        pickle.dumps({"sym2idx": {"<unk>": 0}}, protocol=2)[:-5]: "not a complete pickle",
        pickle.dumps({"sym2idx": {"<unk>": 0}}, protocol=4)[:-5]: "truncated or corrupt",
        b"\x80\x02NQ.": "holds no BINPERSID",  # a persistent id: refused before the unpickler sees it
        b"\x80\x02h\x05.": "memo index 5 was never stored",
        b"\x80\x02" + b"(" * 1001 + b".": "nested more than 1000 deep",
        pickle.dumps({"sym2idx": [1, 2]}): "sym2idx must be a dict",
        pickle.dumps({"idx2sym": 5}): "idx2sym must be a list",
        pickle.dumps({"sym2idx": {"a": True}}): "sym2idx must map strings to ints",
        pickle.dumps([1, 2]): "holds no Transformer-XL vocabulary",
    }
    from workbench.tokenizers.transfo_xl import vocab_from_pickle_state

    for data, message in cases.items():
        path.write_bytes(data)
        with pytest.raises(TokenizerFileError, match=message) as caught:
            vocab_from_pickle_state(load_vocab_pickle(path), path)
        assert str(path) in str(caught.value)
    path.write_bytes(b"\x80\x02NQ.")
    with pytest.raises(UnsafePickleError):
        load_vocab_pickle(path)


# spiece.model ------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire_type)
    return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def _piece(text: str | bytes, score: float = -1.0, kind: int | None = None) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    body = _field(1, 2, raw) + _field(2, 5, struct.pack("<f", score))
    return _field(1, 2, body + (_field(3, 0, _varint(kind)) if kind is not None else b""))


def _spiece(pieces: list[bytes] | None = None, unk_id: int = 0, model_type: int = 1) -> bytes:
    """A SentencePiece ModelProto as the library writes it: pieces, then trainer and normalizer specs."""
    if pieces is None:
        pieces = [_piece("<unk>", 0.0, 2), _piece("<s>", 0.0, 3), _piece("</s>", 0.0, 3)]
        pieces += [_piece(p, -float(i)) for i, p in enumerate(["\u2581the", "\u2581a", "t", "h", "e", "a"])]
    trainer = _field(3, 0, _varint(model_type)) + _field(40, 0, _varint(unk_id))
    normalizer = _field(1, 2, b"identity")
    return b"".join(pieces) + _field(2, 2, trainer) + _field(3, 2, normalizer)


def test_spiece_synthetic_model_reads():
    """The hand-written model the tests below corrupt is itself read as written."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spiece.model"
        path.write_bytes(_spiece())
        model = read_sentencepiece_model(path)
    assert [p for p, _, _ in model["pieces"]][:4] == ["<unk>", "<s>", "</s>", "\u2581the"]
    assert [k for _, _, k in model["pieces"]][:4] == [2, 3, 3, 1]
    assert model["unk_id"] == 0 and model["model_type"] == 1 and model["precompiled_charsmap"] is None


SPIECE_CORRUPTIONS = {
    # A length of 4 GiB where the old reader's slice silently came back empty: loaded as one empty piece.
    "length past the end": (
        b"\x0a\xff\xff\xff\xff\x0f",
        r"byte 0 \(ModelProto field 1\): a length-delimited",
    ),
    "varint of 11 bytes": (b"\x48" + b"\xff" * 10 + b"\x01", r"byte 1: a varint longer than 10 bytes"),
    "ends inside a varint": (b"\x48\xff", r"byte 2: the data ends inside a varint"),
    "piece score as a varint": (
        _field(1, 2, _field(1, 2, b"<unk>") + _field(2, 0, b"\x05")) + _spiece()[0:0],
        r"byte 9 \(SentencePiece field 2\): a varint value where the field is 32-bit",
    ),
    "pieces as a varint": (_field(1, 0, b"\x05"), r"byte 0 \(ModelProto field 1\): a varint value"),
    "group wire type": (b"\x4b", r"wire type group start is not used"),
    "field number 0": (b"\x02\x00", "field number 0"),
    "non-UTF-8 piece": (
        _spiece([_piece("<unk>", 0, 2), _piece(b"\xffab")]),
        r"byte 20: a piece that is not UTF-8",
    ),
    "empty piece": (_spiece([_piece("<unk>", 0, 2), _piece("")]), "an empty piece"),
    "NaN score": (_spiece([_piece("<unk>", 0, 2), _piece("a", float("nan"))]), "has the score nan"),
    "piece type 7": (_spiece([_piece("<unk>", 0, 2), _piece("a", 0, 7)]), "has type 7"),
    "piece twice": (
        _spiece([_piece("<unk>", 0, 2), _piece("a"), _piece("a")]),
        r"'a' \(id 2\) is already id 1",
    ),
    "no unknown piece": (_spiece([_piece("a"), _piece("b")]), "exactly one unknown piece; this one has 0"),
    "unk_id out of range": (_spiece(unk_id=40), "unk_id is 40 but the unknown piece is id 0"),
    "unk_id negative": (_spiece(unk_id=(1 << 64) - 1), "unk_id is -1"),
    "model type 9": (_spiece(model_type=9), "model_type 9 is none of"),
    "no trainer spec": (b"".join([_piece("<unk>", 0, 2), _piece("a")]), "without its trainer_spec"),
}


@pytest.mark.parametrize("name", sorted(SPIECE_CORRUPTIONS))
def test_spiece_corruption_is_an_error_naming_file_and_byte(tmp_path, name):
    data, message = SPIECE_CORRUPTIONS[name]
    path = tmp_path / "spiece.model"
    path.write_bytes(data)
    with pytest.raises(TokenizerFileError, match=message) as caught:
        read_sentencepiece_model(path)
    assert str(path) in str(caught.value)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "XLNetTokenizer"}')
    with pytest.raises(TokenizerFileError):
        wb.AutoTokenizer.from_pretrained(tmp_path)


def test_spiece_truncated_at_every_field_boundary_is_an_error(tmp_path):
    """Cut between two pieces, the old reader loaded the first pieces as the whole vocabulary."""
    data = _spiece()
    path = tmp_path / "spiece.model"
    for end in range(1, len(data)):
        path.write_bytes(data[:end])
        with pytest.raises(TokenizerFileError, match=re.escape(str(path))):
            read_sentencepiece_model(path)


# Text and JSON tokenizer files -------------------------------------------------------------------------

BPE_VOCAB = {"<|endoftext|>": 0, "a": 1, "b": 2, "ab": 3, "c": 4, "abc": 5}
BPE_MERGES = "#version: 0.2\na b\nab c\n"
WORDPIECE_VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n##s\n"
FAMILIES = {
    "gpt2": {"tokenizer_config.json": '{"tokenizer_class": "GPT2Tokenizer"}'},
    "roberta": {"tokenizer_config.json": '{"tokenizer_class": "RobertaTokenizer"}'},
    "openai-gpt": {"tokenizer_config.json": '{"tokenizer_class": "OpenAIGPTTokenizer"}'},
    "bert": {"tokenizer_config.json": '{"tokenizer_class": "BertTokenizer"}'},
    "xlm": {"tokenizer_config.json": '{"tokenizer_class": "XLMTokenizer"}'},
    "transfo-xl": {"tokenizer_config.json": '{"tokenizer_class": "TransfoXLTokenizer", "moses": false}'},
}
BPE_FAMILIES = ("gpt2", "roberta", "openai-gpt")
_bad = "\u00e9".encode()[:1]  # the first byte of a two-byte character: not UTF-8 alone

# (family, file, content, expected message): each once raised KeyError, TypeError, AttributeError,
# UnicodeDecodeError or json.JSONDecodeError, or loaded (XLM's one-field merge; a cut-off last line).
MALFORMED = [
    *[
        (f, "vocab.json", "[1, 2]", r"vocab\.json must hold a JSON object, found a list")
        for f in BPE_FAMILIES
    ],
    *[
        (f, "vocab.json", '{"a": "1"}', r"vocab\.json must map every token to its id.*'a': '1'")
        for f in BPE_FAMILIES
    ],
    *[
        (f, "vocab.json", '{"a": 1, "a": 2}', r"vocab\.json: the key 'a' is written twice")
        for f in BPE_FAMILIES
    ],
    *[(f, "vocab.json", b'{"a\xc3": 1}', r"vocab\.json, line 1 \(byte 3\): not UTF-8") for f in BPE_FAMILIES],
    *[(f, "vocab.json", '{"a":\n 1,', r"vocab\.json, line 2 column 4: not valid JSON") for f in BPE_FAMILIES],
    *[(f, "merges.txt", "a b\nab\n", r"merges\.txt, line 2: 'ab' is not a merge") for f in BPE_FAMILIES],
    *[
        (f, "merges.txt", "a b\nab d\n", r"merges\.txt, line 2: .* needs the symbol 'd'")
        for f in BPE_FAMILIES
    ],
    *[
        (f, "merges.txt", b"a b\n" + _bad + b" c\n", r"merges\.txt, line 2 \(byte 4\): not UTF-8")
        for f in BPE_FAMILIES
    ],
    *[
        (f, "merges.txt", "a b\nab c", r"merges\.txt, line 2: the file ends in the middle of a line")
        for f in BPE_FAMILIES
    ],
    (
        "bert",
        "vocab.txt",
        WORDPIECE_VOCAB.encode() + _bad + b"\n",
        r"vocab\.txt, line 9 \(byte 43\): not UTF-8",
    ),
    (
        "bert",
        "vocab.txt",
        WORDPIECE_VOCAB + "dog",
        r"vocab\.txt, line 9: the file ends in the middle of a line",
    ),
    ("bert", "vocab.txt", "the\ncat\n", r"vocab\.txt lacks the special token"),
    ("bert", "tokenizer_config.json", "[1]", r"tokenizer_config\.json must hold a JSON object"),
    (
        "bert",
        "tokenizer_config.json",
        b'{"a": "\xff"}',
        r"tokenizer_config\.json, line 1 \(byte 7\): not UTF-8",
    ),
    (
        "bert",
        "tokenizer_config.json",
        '{"model_max_length": "512"}',
        "model_max_length must be a positive number",
    ),
    ("bert", "special_tokens_map.json", "{", r"special_tokens_map\.json, line 1 column 2: not valid JSON"),
    ("xlm", "vocab.json", "[1]", r"vocab\.json must hold a JSON object"),
    ("xlm", "vocab.json", '{"a": "1"}', r"vocab\.json must map every token to its id"),
    ("xlm", "merges.txt", b"a b 3\n" + _bad + b" c\n", r"merges\.txt, line 2 \(byte 6\): not UTF-8"),
    ("xlm", "merges.txt", "a b 3\nab\n", r"merges\.txt, line 2: 'ab' is not a merge"),
    ("xlm", "merges.txt", "a b 3\nab c", r"merges\.txt, line 2: the file ends in the middle of a line"),
    ("transfo-xl", "vocab.json", "[1]", r"vocab\.json must hold a JSON object"),
    ("transfo-xl", "vocab.json", '{"<unk>": "0"}', r"vocab\.json must map every token to its id"),
    (
        "transfo-xl",
        "vocab.json",
        '{"<unk>": 0, "a": 2}',
        r"vocab\.json: the ids of a vocabulary must be 0\.\.1",
    ),
    ("transfo-xl", "vocab.json", '{"a": 0}', r"vocab\.json has no unknown-word token '<unk>'"),
    ("transfo-xl", "vocab.txt", b"<unk>\n" + _bad + b"\n", r"vocab\.txt, line 2 \(byte 6\): not UTF-8"),
    ("transfo-xl", "vocab.txt", "<unk>\nthe", r"vocab\.txt, line 2: the file ends in the middle of a line"),
    ("transfo-xl", "vocab.txt", "the\n", r"vocab\.txt has no unknown-word token"),
    (
        "xlm",
        "tokenizer_config.json",
        '{"tokenizer_class": "XLMTokenizer", "model_max_length": "512"}',
        "model_max_length must be a positive number",
    ),
    (
        "transfo-xl",
        "tokenizer_config.json",
        '{"tokenizer_class": "TransfoXLTokenizer", "moses": false, "model_max_length": -1}',
        "model_max_length must be a positive number",
    ),
]


def _write_family(folder: Path, family: str, replace: dict[str, str | bytes] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes] = dict(FAMILIES[family])
    if family in BPE_FAMILIES:
        vocab = dict(BPE_VOCAB)
        if family == "roberta":
            vocab.update(
                {t: len(vocab) + i for i, t in enumerate(["<s>", "</s>", "<unk>", "<pad>", "<mask>"])}
            )
        if family == "openai-gpt":
            vocab["<unk>"] = len(vocab)
        files.update({"vocab.json": json.dumps(vocab), "merges.txt": BPE_MERGES})
    elif family == "bert":
        files["vocab.txt"] = WORDPIECE_VOCAB
    elif family == "xlm":
        files.update({"vocab.json": json.dumps(BPE_VOCAB), "merges.txt": "a b 10\nab c 5\n"})
    else:
        files["vocab.txt"] = "<eos>\n<unk>\nthe\ncat\n"
    files.update(replace or {})
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_reads_its_small_files(tmp_path, family):
    """The well-formed files the malformed ones below start from load."""
    tokenizer = wb.AutoTokenizer.from_pretrained(_write_family(tmp_path, family))
    assert tokenizer.vocab_size >= 4


@pytest.mark.parametrize(("family", "name", "content", "message"), MALFORMED)
def test_malformed_tokenizer_file_names_file_and_line(tmp_path, family, name, content, message):
    folder = _write_family(tmp_path, family, {name: content})
    if family == "transfo-xl" and name == "vocab.json":
        (folder / "vocab.txt").unlink()  # vocab.json is read only without vocab.txt
    with pytest.raises(TokenizerFileError, match=message) as caught:
        wb.AutoTokenizer.from_pretrained(folder)
    assert str(folder / name) in str(caught.value)


def test_tokenizer_json_errors_name_the_file(tmp_path):
    cases = {
        b'{"model": 3}': r"tokenizer\.json is not a readable tokenizer\.json: .* at line 1 column 12",
        b'{"version": "1.0", \xff}': r"tokenizer\.json, line 1 \(byte 19\): not UTF-8",
        b"[1, 2]": r"tokenizer\.json is not a readable tokenizer\.json",
    }
    for data, message in cases.items():
        (tmp_path / "tokenizer.json").write_bytes(data)
        with pytest.raises(TokenizerFileError, match=message):
            wb.AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "XLNetTokenizer"}')
    (tmp_path / "tokenizer.json").write_bytes(b'{"model": 3}')
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json"):
        wb.AutoTokenizer.from_pretrained(tmp_path)


# Property tests: truncated and corrupted files give TokenizerFileError or a correct load ---------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PROPERTY = settings(
    max_examples=60,
    deadline=5000,  # each file loads in milliseconds; a hang shows as a deadline error
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def _changed(data: bytes, draw) -> bytes:
    """1-4 bytes of data changed, or 1-8 bytes inserted, or a range deleted (never the intact file)."""
    kind = draw(st.sampled_from(["flip", "insert", "delete"]))
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[at : at + draw(st.integers(1, 16))]
    return bytes(out)


def _load(folder: Path):
    """The tokenizer, or None for our own error class; any other exception fails the test."""
    try:
        return wb.AutoTokenizer.from_pretrained(folder)
    except TokenizerFileError:
        return None


@pytest.fixture(scope="module")
def intact(tmp_path_factory):
    """Each family's small, valid files, and a tokenizer.json saved from the BERT one."""
    root = tmp_path_factory.mktemp("intact")
    files = {family: _write_family(root / family, family) for family in FAMILIES}
    wb.AutoTokenizer.from_pretrained(files["bert"]).save_pretrained(root / "tokenizer_json")
    files["tokenizer_json"] = root / "tokenizer_json"
    return files


def _copy_with(source: Path, target: Path, name: str, data: bytes) -> Path:
    import shutil

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / name).write_bytes(data)
    return target


JSON_FILES = [("tokenizer_json", "tokenizer.json"), ("gpt2", "vocab.json"), ("xlm", "vocab.json")]


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(("family", "name"), JSON_FILES)
def test_truncated_json_file_is_an_error(tmp_path, intact, family, name, data):
    """A JSON file cut anywhere (but in trailing whitespace) is an error naming it."""
    full = (intact[family] / name).read_bytes()
    end = data.draw(st.integers(0, len(full.rstrip()) - 1))
    folder = _copy_with(intact[family], tmp_path / "case", name, full[:end])
    with pytest.raises(TokenizerFileError, match=re.escape(str(folder / name))):
        wb.AutoTokenizer.from_pretrained(folder)


LINE_FILES = [
    ("bert", "vocab.txt"),
    ("gpt2", "merges.txt"),
    ("openai-gpt", "merges.txt"),
    ("xlm", "merges.txt"),
]
LINE_FILES += [("transfo-xl", "vocab.txt")]


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(("family", "name"), LINE_FILES)
def test_truncated_line_file_is_an_error_or_its_whole_lines(tmp_path, intact, family, name, data):
    """Cut inside a line: an error naming the file and line. Cut at the end of a line, the shorter file is
    a valid one, and it is read as exactly those lines (a cut-off last line is never read as a token)."""
    full = (intact[family] / name).read_bytes()
    end = data.draw(st.integers(0, len(full) - 1))
    folder = _copy_with(intact[family], tmp_path / "case", name, full[:end])
    tokenizer = _load(folder)
    if end and full[end - 1 : end] != b"\n":
        assert tokenizer is None, f"{name} cut inside a line loaded"
    elif tokenizer is not None and name == "vocab.txt":
        lines = full[:end].decode().splitlines()
        vocab = tokenizer.backend.get_vocab(with_added_tokens=False)
        assert all(
            vocab.get(line.split()[0] if family == "transfo-xl" else line) is not None for line in lines
        )


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(
    ("family", "name"),
    [*JSON_FILES, *LINE_FILES],
)
def test_corrupted_text_file_is_an_error_or_loads(tmp_path, intact, family, name, data):
    """Bytes changed, inserted or deleted: TokenizerFileError, or (a corruption that is still a valid file) a
    tokenizer that encodes text; never another exception, a hang or a crash."""
    full = (intact[family] / name).read_bytes()
    folder = _copy_with(intact[family], tmp_path / "case", name, _changed(full, data.draw))
    tokenizer = _load(folder)
    if tokenizer is not None:
        assert isinstance(tokenizer("the cat abc")["input_ids"], list)


def _vocab_pickles() -> dict[str, bytes]:
    from collections import Counter, OrderedDict

    symbols = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", ".", ","]
    state = {
        "sym2idx": OrderedDict((s, i) for i, s in enumerate(symbols)),
        "idx2sym": symbols,
        "counter": Counter({s: 10 - i for i, s in enumerate(symbols)}),
        "special": ["<eos>"],
        "lower_case": False,
    }
    fixtures = Path(__file__).parent / "fixtures" / "transfo_xl" / "tokenizer"
    return {
        "protocol 2": pickle.dumps(state, protocol=2),
        "protocol 4": pickle.dumps(state, protocol=4),
        "legacy": (fixtures / "legacy" / "vocab.pkl").read_bytes(),
        "saved by 4.35": (fixtures / "saved_by_4.35" / "vocab.pkl").read_bytes(),
    }


VOCAB_PICKLES = _vocab_pickles()


def _pickle_outcome(path: Path):
    from workbench.tokenizers.transfo_xl import vocab_from_pickle_state

    try:
        return vocab_from_pickle_state(load_vocab_pickle(path), path)
    except TokenizerFileError:
        return None


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize("kind", sorted(VOCAB_PICKLES))
def test_vocab_pkl_truncated_or_corrupted(tmp_path, kind, data):
    """Cut anywhere: an error. Corrupted: an error or a vocabulary of strings -> ints, read in bounded
    memory (under 64 MiB for these few-kilobyte files) and time."""
    full = VOCAB_PICKLES[kind]
    path = tmp_path / "vocab.pkl"
    truncate = data.draw(st.booleans())
    path.write_bytes(
        full[: data.draw(st.integers(0, len(full) - 1))] if truncate else _changed(full, data.draw)
    )
    tracemalloc.start()
    try:
        vocab = _pickle_outcome(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    if truncate:
        assert vocab is None
    elif vocab is not None:
        assert all(isinstance(s, str) and type(i) is int for s, i in vocab.items())


def _spiece_models() -> dict[str, bytes]:
    models = {"hand-written": _spiece()}
    try:
        import sentencepiece as spm
    except ImportError:
        return models
    import tempfile

    words = "the quick brown fox jumps over lazy dog café naïve Hello world 1999".split()
    lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(10)) for i in range(200)]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "corpus.txt").write_text("\n".join(lines), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(Path(folder) / "corpus.txt"),
            model_prefix=str(Path(folder) / "spiece"),
            vocab_size=40,
            model_type="unigram",
            user_defined_symbols=["<sep>", "<cls>"],
            character_coverage=1.0,
            minloglevel=2,
        )
        models["sentencepiece"] = (Path(folder) / "spiece.model").read_bytes()
    return models


SPIECE_MODELS = _spiece_models()


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize("kind", sorted(SPIECE_MODELS))
def test_spiece_model_truncated_or_corrupted(tmp_path, kind, data):
    """Cut anywhere: an error, or (cut after the parts read) the same pieces. Corrupted: an error or a model
    whose pieces are non-empty strings with finite scores, which builds an XLNet tokenizer."""
    full = SPIECE_MODELS[kind]
    path = tmp_path / "spiece.model"
    path.write_bytes(full)
    intact_model = read_sentencepiece_model(path)
    truncate = data.draw(st.booleans())
    path.write_bytes(
        full[: data.draw(st.integers(0, len(full) - 1))] if truncate else _changed(full, data.draw)
    )
    try:
        model = read_sentencepiece_model(path)
    except TokenizerFileError:
        return
    if truncate:
        assert model == intact_model, "a truncated spiece.model loaded as another vocabulary"
        return
    assert all(piece and score == score for piece, score, _ in model["pieces"])
    if model["model_type"] == 1:
        (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "XLNetTokenizer"}')
        tokenizer = _load(tmp_path)
        if tokenizer is not None:
            assert isinstance(tokenizer("the quick fox")["input_ids"], list)


@pytest.mark.skipif("sentencepiece" not in SPIECE_MODELS, reason="needs the sentencepiece library")
def test_corrupted_normalization_table_is_an_error_not_a_panic(tmp_path):
    """A normalization table cut short loads in the tokenizers library but panics (a Rust panic, which
    ``except Exception`` does not catch) at the first text that reaches a cut-off string; it is checked
    when the file is read."""
    from tokenizers import normalizers

    from workbench.tokenizers.files import check_precompiled_charsmap

    path = tmp_path / "spiece.model"
    path.write_bytes(SPIECE_MODELS["sentencepiece"])
    charsmap = read_sentencepiece_model(path)["precompiled_charsmap"]
    check_precompiled_charsmap(charsmap, "intact")
    cut = charsmap[: charsmap.rindex(b"\0", 0, len(charsmap) - len(charsmap) // 5) + 1]  # still UTF-8
    text = "".join(chr(c) for c in range(0xA0, 0x10000) if not 0xD800 <= c < 0xE000)
    with pytest.raises(BaseException) as crash:  # what the check prevents
        normalizers.Precompiled(cut).normalize_str(text)
    assert not isinstance(crash.value, Exception)
    with pytest.raises(TokenizerFileError, match=r"cut: the normalization table .* points outside"):
        check_precompiled_charsmap(cut, "cut")


@pytest.mark.skipif("sentencepiece" not in SPIECE_MODELS, reason="needs the sentencepiece library")
def test_tokenizer_json_with_a_corrupted_normalization_table_is_an_error(tmp_path):
    import base64

    (tmp_path / "spm").mkdir()
    (tmp_path / "spm" / "spiece.model").write_bytes(SPIECE_MODELS["sentencepiece"])
    wb.AutoTokenizer.from_pretrained(tmp_path / "spm").save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / "tokenizer.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    steps = saved["normalizer"]["normalizers"]
    step = next(step for step in steps if step["type"] == "Precompiled")
    charsmap = base64.b64decode(step["precompiled_charsmap"])
    cut = charsmap[: charsmap.rindex(b"\0", 0, len(charsmap) - len(charsmap) // 5) + 1]
    step["precompiled_charsmap"] = base64.b64encode(cut).decode()
    path.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: the normalization table"):
        wb.AutoTokenizer.from_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / "tokenizer_config.json").unlink()  # read as a plain tokenizer.json
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: the normalization table"):
        wb.AutoTokenizer.from_pretrained(tmp_path / "saved")


_SYMBOL = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=3)


@settings(max_examples=60, deadline=5000, database=None)
@given(pairs=st.lists(st.tuples(_SYMBOL, _SYMBOL), max_size=12), crlf=st.booleans(), header=st.booleans())
def test_bpe_reader_reads_valid_files_as_the_tokenizers_library(pairs, crlf, header):
    """On every valid vocab.json + merges.txt, read_bpe_files gives what tokenizers' BPE.read_file gives."""
    import tempfile

    from tokenizers import models

    from workbench.tokenizers import read_bpe_files

    symbols = dict.fromkeys(s for a, b in pairs for s in (a, b, a + b))
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    newline = "\r\n" if crlf else "\n"
    lines = (["#version: 0.2"] if header else []) + [f"{a} {b}" for a, b in pairs]
    with tempfile.TemporaryDirectory() as folder:
        vocab_path, merges_path = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
        vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
        merges_path.write_bytes("".join(line + newline for line in lines).encode())
        assert read_bpe_files(vocab_path, merges_path) == models.BPE.read_file(
            str(vocab_path), str(merges_path)
        )


def test_vocab_pkl_with_gaps_in_its_memo_still_loads(tmp_path):
    """Old pickle optimizers left gaps between memo indices: still read (an index up to its byte offset)."""
    data = b"\x80\x02}q\x03X\x07\x00\x00\x00sym2idxq\x0f}q\x11X\x05\x00\x00\x00<unk>K\x00ss."
    assert pickle.loads(data) == {"sym2idx": {"<unk>": 0}}
    path = tmp_path / "vocab.pkl"
    path.write_bytes(data)
    assert load_vocab_pickle(path) == {"sym2idx": {"<unk>": 0}}
