"""Random stand-ins keep their label (through save/load, in every label and results table), randomly
initialized heads are never silent, and every analysis runs on the stand-in of every architecture."""

from __future__ import annotations

import logging

import pytest

import workbench as wb
from workbench import zoo

ARCHITECTURES = zoo.stand_in_architectures()
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
    assert scores.flags() == {"head_initialized": False, "stand_in": True, "truncated": 0}
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


# 4. Every analysis runs on the stand-in of every architecture ------------------------------------------

WIDE = zoo.TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=128, bpe_vocab_size=300)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_bench_attribution_and_patching_run_on_every_stand_in(architecture):
    import torch

    from workbench import interventions
    from workbench.auto import TASK_REGISTRIES
    from workbench.bench import finetune as F
    from workbench.bench import probe as P
    from workbench.bench import zeroshot as Z
    from workbench.bench.data import get_task, load_task

    body = zoo.tiny(architecture, task="base", device="cpu", size=WIDE)
    sst2 = get_task("sst2")
    texts = load_task("sst2", "sample", max_examples=8)
    # probe mode: pooled features of every layer, cross-validated probes
    features = P.pooled_features(body, texts, progress=False)
    assert features.shape == (3, len(texts), 32) and torch.isfinite(features).all()
    rows = P.cross_validate(sst2, texts, features, folds=2, max_epochs=5)
    assert {row["layer"] for row in rows} == {0, 1, 2}
    # zero-shot: the stand-in with its LM head, flagged as a stand-in
    lm = zoo.tiny(architecture, device="cpu", size=WIDE)
    copa = load_task("copa", "sample", max_examples=2)
    scores = Z.score_choices(lm, copa, progress=False)
    assert scores.stand_in and 0.0 <= scores.metrics()["accuracy"] <= 1.0
    # fine-tuning a head on the stand-in itself (there is no folder to reload it from by name)
    config = F.FinetuneConfig(epochs=1, batch_size=4, eval_batch_size=4)
    for task in ("sst2", "copa", "squad"):
        spec = get_task(task)
        if architecture not in TASK_REGISTRIES[F.HEAD_TASKS[spec.family]]:
            with pytest.raises(ValueError, match=f"{architecture} has no"):
                F.build_head(body, spec)
            continue
        head = F.build_head(body, spec)
        assert zoo.is_stand_in(head) and head.tokenizer is body.tokenizer
        for name, value in body.state_dict().items():
            if name in head.body_parameter_names():
                assert torch.equal(head.state_dict()[name], value), name
        examples = load_task(task, "sample", max_examples=2)
        result = F.finetune(head, spec, examples, examples, config, progress=False)
        assert result.metrics and all(v == v for v in result.metrics.values())  # no NaN
    # attribution, with a target token the model predicts (at the mask for masked LMs)
    mask = lm.tokenizer.special_tokens.get("mask_token") if Z.scorer_kind(lm) == "masked" else None
    text = "the cat sat on the " + (mask or "mat")
    attribution = wb.attribute(lm, text, target=5, method=["integrated_gradients", "saliency"], n_steps=2)
    n = lm.tokenize(text)["input_ids"].shape[1]
    assert attribution["saliency"].shape == (1, n) and torch.isfinite(attribution["saliency"]).all()
    # activation patching: restoring the embedding output of the one changed token restores the clean run
    ids = lm.tokenize(text)["input_ids"]
    position = 2
    corrupted = ids.clone()
    corrupted[0, position] = (corrupted[0, position] + 7) % lm.config.vocab_size
    result = interventions.activation_patching(
        lm, ids, corrupted, lambda out: out.logits[:, -1, 5] - out.logits[:, -1, 6], progress=False
    )
    assert len(result.frame) == lm.n_layers * n
    at_change = result.frame.query("layer == 0 and pos == @position")["value"].item()
    assert at_change == pytest.approx(1.0, abs=1e-3)


def test_squad_windows_too_small_for_the_stride_are_a_clear_error():
    from workbench.bench import finetune as F
    from workbench.bench.data import load_task

    model = zoo.tiny("roberta", task="base", device="cpu", size=SMALL)
    examples = load_task("squad", "sample", max_examples=2)
    with pytest.raises(ValueError, match="raise max_length or lower doc_stride"):  # was a Rust panic
        F.squad_features(model.tokenizer, examples, max_length=40, doc_stride=32)


# 2. Every label says "random stand-in" -------------------------------------------------------------------


def _titles(view) -> list[str]:
    titles = []
    for figure in view.figures():
        if hasattr(figure, "layout"):
            titles.append(figure.layout.title.text or "")
            titles += [a.text for a in figure.layout.annotations or []]  # subplot titles
    return titles


@pytest.fixture(scope="module")
def stand_in_lm():
    return zoo.tiny("gpt2", device="cpu", size=SMALL)


@pytest.mark.parametrize("kind", ["head", "model", "matrix", "neuron"])
def test_attention_views_of_a_stand_in_say_so_in_every_title(stand_in_lm, minilm, kind):
    view = wb.viz.attention(stand_in_lm, "The keys to the cabinet.", view=kind)
    titles = [t for t in _titles(view) if t.startswith("tiny-random")]
    assert titles and all("(random stand-in)" in t for t in titles)
    titles = _titles(wb.viz.attention(minilm, "The keys to the cabinet.", view=kind))
    assert any(t.startswith("minilm") for t in titles) and not any("stand-in" in t for t in titles)


def test_compare_lens_and_generation_views_label_the_stand_in(stand_in_lm, minilm):
    view = wb.viz.compare({"gpt2": stand_in_lm, "minilm": minilm}, "The keys to the cabinet.")
    titles = " | ".join(_titles(view))
    assert "gpt2 (random stand-in): L0" in titles and "minilm: L0" in titles
    assert "linear CKA between the layers of gpt2 (random stand-in) and minilm" in titles
    assert "'The keys to the cabinet.'" in titles  # the data the figure shows
    listed = wb.viz.compare([stand_in_lm, minilm], "The keys to the cabinet.")
    assert "tiny-random-gpt2 (random stand-in) 0: L0" in " | ".join(_titles(listed))
    lens = wb.viz.logit_lens_table(stand_in_lm, "The keys to the")
    assert _titles(lens)[0].startswith("tiny-random-gpt2 (random stand-in) · logit lens")
    explorer = wb.viz.generation_explorer(stand_in_lm, "The cat", k=3, method="saliency")
    explorer.explorer.choose(0)
    assert "random stand-in" in explorer.explorer.candidates_html()
    assert _titles(explorer)[0].startswith("tiny-random-gpt2 (random stand-in) · logit lens")


def test_treebank_projection_names_the_model_and_the_data(stand_in_lm):
    import probes  # the treebank view is in probes (it reads probes' treebank and store); viz draws it

    view = probes.treebank_projection(stand_in_lm, max_sentences=3)
    title = _titles(view)[0]
    assert title.startswith("tiny-random-gpt2 (random stand-in) · upos labels, 3 sentences (sample/dev)")


def test_results_tables_with_a_stand_in_column_label_the_model_everywhere():
    import pandas as pd

    from workbench.bench.form import stand_in_models

    frame = pd.DataFrame(
        {
            "model": ["gpt2", "gpt2", "minilm", "minilm"],
            "task": ["upos"] * 4,
            "layer": [0, 1, 0, 1],
            "metric": ["accuracy"] * 4,
            "value": [0.5, 0.6, 0.7, 0.8],
            "stand_in": [True, True, False, False],
        }
    )
    names = [trace.name for trace in wb.viz.probe_results(frame).figures()[0].data]
    assert names == ["gpt2 (random stand-in) accuracy", "minilm accuracy"]
    assert stand_in_models(frame) == ["gpt2"] and stand_in_models(frame.drop(columns="stand_in")) == []
    assert zoo.labelled("gpt2 (random stand-in)", True) == "gpt2 (random stand-in)"  # never twice


def test_finetune_results_say_when_the_model_is_a_stand_in():
    from workbench.bench import finetune as F
    from workbench.bench.data import get_task, load_task

    spec = get_task("sst2")
    head = F.build_head(zoo.tiny("bert", task="base", device="cpu", size=SMALL), spec)
    examples = load_task("sst2", "sample", max_examples=4)
    config = F.FinetuneConfig(epochs=1, batch_size=4)
    assert F.finetune(head, spec, examples, examples, config, progress=False).stand_in


# 5. No other quiet fallback: truncation, untuned regularization, cut max_length --------------------------


def test_zero_shot_truncation_is_a_warning_and_a_count_and_an_oversized_continuation_an_error(stand_in_lm):
    from workbench.bench import zeroshot as Z
    from workbench.bench.data import ChoiceExample

    long_prompt = "the cat sat on the mat and " * 20  # far beyond the stand-in's 64 positions
    examples = [ChoiceExample(long_prompt, [" a dog.", " a mat."], 0), ChoiceExample("Hi", [" there"], 0)]
    with pytest.warns(UserWarning, match="2 of 3 .* lost tokens from the left"):
        scores = Z.score_choices(stand_in_lm, examples, progress=False)
    assert scores.truncated == 2 and scores.to_frame()["truncated"].eq(2).all()
    with pytest.raises(ValueError, match="alone is longer than the model's context"):  # was silently cut
        Z.causal_lm_logprobs(stand_in_lm, [("Hi", " mat" * 100)], progress=False)
    masked = zoo.tiny("bert", device="cpu", size=SMALL)
    stats = {}
    with pytest.warns(UserWarning, match="1 of 1 .* lost tokens"):
        Z.masked_lm_logprobs(masked, [(long_prompt, " a dog.")], progress=False, stats=stats)
    assert stats == {"truncated": 1}


def test_probe_features_warn_about_truncation_and_untuned_regularization(stand_in_lm):
    import numpy as np

    from workbench.bench import probe as P
    from workbench.bench.data import TextExample, get_task

    examples = [TextExample("word " * 200, None, 0)] + [
        TextExample(f"short {i}", None, i % 2) for i in range(5)
    ]
    with pytest.warns(UserWarning, match="1 of 6 inputs are longer than the model's context"):
        features = P.pooled_features(stand_in_lm, examples, progress=False)
    with pytest.warns(UserWarning, match="too few .* to choose weight_decay"):
        P.cross_validate(get_task("sst2"), examples, features, folds=2, max_epochs=2)
    with pytest.warns(UserWarning, match="too few .* to choose alpha"):
        P._regress(features.double(), np.arange(6.0), np.array([0, 1] * 3), [1.0, 10.0], seed=0)


def test_finetuning_says_when_max_length_is_cut_to_the_model(caplog):
    from workbench.bench import finetune as F

    model = zoo.tiny("bert", task="base", device="cpu", size=SMALL)
    with caplog.at_level(logging.WARNING, logger="workbench.bench.finetune"):
        fitted = F._fit_to_model(F.FinetuneConfig(max_length=128), model)
    assert fitted.max_length == 64
    assert any("max_length=128 is more than" in r.getMessage() for r in caplog.records)


def test_bench_run_on_a_saved_stand_in_flags_every_row(tmp_path):
    """wb.bench.run takes names: a stand-in saved by zoo.checkpoint_folder is found by path, runs (GPT has
    no pad token to fine-tune with) and every row says it is a stand-in (read from its config.json)."""
    folder = zoo.checkpoint_folder("openai-gpt", cache_dir=tmp_path, size=WIDE)
    for mode, task in (("finetune", "sst2"), ("probe", "sst2")):
        results = wb.bench.run(
            models=[str(folder)],
            tasks=[task],
            mode=mode,
            max_examples=6,
            folds=2,
            progress=False,
            finetune_config=wb.bench.FinetuneConfig(epochs=1, batch_size=4),
        )
        assert len(results.frame) and results.frame["stand_in"].astype(bool).all()


def test_attribution_views_name_the_model_they_show(stand_in_lm):
    attribution = wb.attribute(stand_in_lm, "the cat sat", target=5, method=["saliency"])
    name = zoo.display_name(stand_in_lm, "gpt2")
    view = wb.viz.token_attributions(attribution, name=name)
    assert "<b>model</b>: gpt2 (random stand-in)" in view.to_html()
    curves = pd_curves()
    assert _titles(wb.viz.faithfulness_curves(curves, name=name))[0].startswith("gpt2 (random stand-in) · ")


def pd_curves():
    import pandas as pd

    return pd.DataFrame(
        {
            "method": ["saliency"] * 4,
            "text_index": [0] * 4,
            "curve": ["deletion", "deletion", "insertion", "insertion"],
            "fraction": [0.0, 1.0, 0.0, 1.0],
            "value": [1.0, 0.0, 0.0, 1.0],
        }
    )
