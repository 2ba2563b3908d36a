"""Tokenizer file readers fail loudly and safely (issue 15): every malformed, truncated or corrupted tokenizer
file gives :class:`~workbench.tokenizer.TokenizerFileError` naming the file (and line or byte offset), never
another exception, a hang, a huge allocation or a silently different vocabulary."""

from __future__ import annotations

import pickle
import time
import tracemalloc

import pytest

from workbench.tokenizer import TokenizerFileError
from workbench.transfo_xl_tokenizer import UnsafePickleError, load_vocab_pickle

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
    from workbench.transfo_xl_tokenizer import vocab_from_pickle_state

    for data, message in cases.items():
        path.write_bytes(data)
        with pytest.raises(TokenizerFileError, match=message) as caught:
            vocab_from_pickle_state(load_vocab_pickle(path), path)
        assert str(path) in str(caught.value)
    path.write_bytes(b"\x80\x02NQ.")
    with pytest.raises(UnsafePickleError):
        load_vocab_pickle(path)
