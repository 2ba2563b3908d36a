"""Random stand-ins keep their label (through save/load, in every label and results table), randomly
initialized heads are never silent, and every analysis runs on the stand-in of every architecture."""

from __future__ import annotations

import logging

import pytest

import workbench as wb
from workbench import zoo

ARCHITECTURES = sorted(zoo.TINY_BUILDERS)
SMALL = zoo.TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=300)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# 1. The label survives save_pretrained -> load ----------------------------------------------------------


@pytest.mark.parametrize("architecture", ["gpt2", "bert"])
def test_stand_in_status_survives_save_and_load(architecture, tmp_path, caplog):
    model = zoo.load(f"no-such-org/{architecture}-x", architecture=architecture, device="cpu", size=SMALL)
    assert zoo.is_stand_in(model)
    notice = model.stand_in_notice
    folder = model.save_pretrained(tmp_path / "saved")
    # every way of loading the folder gives back a labelled stand-in
    loaded = [
        wb.load(folder, device="cpu"),
        wb.AutoModel.from_pretrained(folder),
        type(model).from_pretrained(folder),
    ]
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        loaded.append(zoo.load(folder, device="cpu"))
    assert any("random stand-in" in r.getMessage() for r in caplog.records)  # said when loaded by zoo
    for again in loaded:
        assert zoo.is_stand_in(again) and again.stand_in_notice == notice
    assert "random stand-in" in zoo.display_name(loaded[0])


def test_tiny_models_are_stand_ins_and_real_checkpoints_are_not(minilm):
    for architecture in ARCHITECTURES:
        model = zoo.tiny(architecture, task="base", device="cpu", size=SMALL)
        assert zoo.is_stand_in(model), architecture
        assert model.stand_in_notice.startswith("tiny random")
    assert not zoo.is_stand_in(minilm) and minilm.stand_in_notice is None
    assert zoo.display_name(minilm, "minilm") == "minilm"


def test_clearing_the_notice_removes_it_from_the_saved_config(tmp_path):
    model = zoo.tiny("gpt2", task="base", device="cpu", size=SMALL)
    model.stand_in_notice = None
    assert not zoo.is_stand_in(wb.load(model.save_pretrained(tmp_path / "m"), device="cpu"))


# 3. A freshly initialized LM head is a WARNING and a column --------------------------------------------


def test_zero_shot_with_an_initialized_mlm_head_warns_and_says_so_in_the_results(caplog):
    from workbench.bench import zeroshot as Z
    from workbench.bench.data import ChoiceExample

    examples = [ChoiceExample("The cat sat on the", [" mat.", " moon."], 0)]
    with pytest.warns(UserWarning, match="no trained LM head"):
        model = Z.load_scoring_model("minilm")  # MiniLM ships no MLM head
    with pytest.warns(UserWarning, match="no trained LM head"), caplog.at_level(logging.WARNING):
        scores = Z.score_choices(model, examples, progress=False)
    assert any(r.levelno == logging.WARNING and "LM head" in r.getMessage() for r in caplog.records)
    assert scores.head_initialized and scores.initialized_keys and not scores.stand_in
    frame = scores.to_frame()
    assert set(frame["metric"]) == {"accuracy", "accuracy_norm"}
    assert frame["head_initialized"].all() and not frame["stand_in"].any()


def test_zero_shot_with_a_trained_head_is_not_flagged_and_a_stand_in_is(recwarn):
    from workbench.bench import zeroshot as Z
    from workbench.bench.data import ChoiceExample

    examples = [ChoiceExample("The cat sat on the", [" mat.", " moon."], 0)]
    stand_in = zoo.tiny("gpt2", device="cpu", size=SMALL)
    scores = Z.score_choices(stand_in, examples, progress=False)
    assert not scores.head_initialized and scores.stand_in
    assert scores.flags() == {"head_initialized": False, "stand_in": True}
    assert not [w for w in recwarn if "LM head" in str(w.message)]


def test_fill_mask_with_an_initialized_head_warns_and_flags_every_row(caplog):
    mlm = wb.load("minilm", task="masked_lm", device="cpu")
    with pytest.warns(UserWarning, match="freshly initialized"), caplog.at_level(logging.WARNING):
        table = wb.fill_mask(mlm, "The keys to the [MASK] are on the table.", top_k=3)
    assert any("fill_mask" in r.getMessage() for r in caplog.records)
    assert table["head_initialized"].all() and table.attrs["head_initialized"]
    assert table.attrs["initialized_keys"] and not table["stand_in"].any()
    stand_in = zoo.tiny("bert", device="cpu", size=SMALL)
    table = wb.fill_mask(stand_in, "The keys to the [MASK] are on the table.", top_k=2)
    assert table["stand_in"].all() and not table["head_initialized"].any()
