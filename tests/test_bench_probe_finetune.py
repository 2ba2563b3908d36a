"""Probe mode (pooled features per layer, cross-validated probes) and fine-tuning (loss goes down, the head
saves and loads, SQuAD windows and post-processing)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.bench import finetune as F
from workbench.bench import probe as P
from workbench.bench.data import ChoiceExample, SpanExample, TextExample, get_task


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_path):
    """A random tiny BERT over MiniLM's WordPiece vocabulary, saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("bert")
    hf_model = save_tiny_hf(folder, "bert", vocab_size=30522)  # MiniLM's vocabulary: text works
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path / name, folder / name)
    return folder, hf_model


def test_pooled_features_are_the_mean_of_real_tokens_per_layer(tiny_bert):
    folder, hf_model = tiny_bert
    model = wb.load(folder, task="base", device="cpu")
    examples = [
        TextExample("A short one.", "And its pair here.", 0),
        TextExample("Another, somewhat longer first sentence.", "Short.", 1),
    ]
    features = P.pooled_features(model, examples, batch_size=1, progress=False)  # [layer, item, d]
    assert features.shape == (3, 2, 32)
    for i, ex in enumerate(examples):
        encoding = model.tokenizer(ex.text, ex.text_pair, return_tensors="pt")
        with torch.no_grad():
            hidden = hf_model(**encoding, output_hidden_states=True).hidden_states  # embeddings + 2 layers
        real = torch.tensor(encoding.encodings[0].special_tokens_mask) == 0  # not [CLS] / [SEP]
        for layer in range(3):
            torch.testing.assert_close(
                features[layer, i], hidden[layer][0, real].mean(0), atol=1e-4, rtol=1e-4
            )
    first = P.pooled_features(model, examples, pooling="first", layers=[2], progress=False)
    with torch.no_grad():
        cls = hf_model(
            **model.tokenizer(examples[0].text, examples[0].text_pair, return_tensors="pt")
        ).last_hidden_state
    torch.testing.assert_close(first[0, 0], cls[0, 0], atol=1e-4, rtol=1e-4)


def test_choice_examples_give_one_vector_per_choice(tiny_bert):
    model = wb.load(tiny_bert[0], task="base", device="cpu")
    examples = [ChoiceExample("Context.", ["a", "b", "c"], 0), ChoiceExample("Other.", ["d", "e"], 1)]
    assert P.pooled_features(model, examples, layers=[1], progress=False).shape == (1, 5, 32)
    with pytest.raises(TypeError, match="span extraction has no per-example vector"):
        P.pooled_features(model, [SpanExample("1", "q", "c", [], [])], progress=False)


def test_folds_are_stratified_and_cover_everything():
    labels = [0] * 10 + [1] * 5
    folds = P.fold_ids(labels, 5, seed=1)
    assert sorted(np.bincount(folds)) == [3, 3, 3, 3, 3]
    for fold in range(5):
        assert sorted(np.asarray(labels)[folds == fold]) == [0, 0, 1]
    with pytest.raises(ValueError, match="folds must be between 2"):
        P.fold_ids(labels, 1)


def _synthetic(n=80, d=6, seed=0):
    """Layer 0: noise; layer 1: the label is the sign of dimension 0."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, d, generator=generator)
    labels = (x[1, :, 0] > 0).long()
    return x, labels


def test_cross_validated_probe_finds_the_informative_layer():
    x, labels = _synthetic()
    examples = [TextExample("t", None, int(y)) for y in labels]
    rows = P.cross_validate(get_task("sst2"), examples, x, folds=4)
    by_layer = {row["layer"]: row["value"] for row in rows}
    assert by_layer[1] > 0.9 and by_layer[0] < 0.75
    cola = P.cross_validate(get_task("cola"), examples, x, folds=4, weight_decays=(1.0,))
    assert {row["metric"] for row in cola} == {"mcc", "accuracy"}


def test_ridge_recovers_a_linear_function():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 50, 4, generator=generator, dtype=torch.float64)
    y = 3 * x[0, :, 1] - x[0, :, 2] + 0.5
    predictions = P.ridge_fit_predict(x, y, x, alpha=1e-8)
    torch.testing.assert_close(predictions[0], y)
    assert (predictions[1] - y).abs().mean() > 0.5  # layer 1 is noise


def test_choice_scorer_learns_which_choice_is_right():
    generator = torch.Generator().manual_seed(0)
    n, k, d = 60, 3, 5
    x = torch.randn(1, n, k, d, generator=generator)
    labels = torch.randint(0, k, (n,), generator=generator)
    x[0, torch.arange(n), labels, 0] += 3.0  # the right choice stands out on dimension 0
    valid = torch.ones(n, k, dtype=torch.bool)
    weight, mean, std = P.fit_choice_scorer(x, valid, labels, max_epochs=60, lr=0.05)
    predicted = torch.einsum("lncd,ld->lnc", (x - mean) / std, weight).argmax(-1)[0]
    assert (predicted == labels).float().mean() > 0.95


def test_schedules():
    assert F.schedule_factor("linear", 0, 10, 110) == 0.0
    assert F.schedule_factor("linear", 5, 10, 110) == pytest.approx(0.5)
    assert F.schedule_factor("linear", 60, 10, 110) == pytest.approx(0.5)
    assert F.schedule_factor("cosine", 60, 10, 110) == pytest.approx(0.5)
    assert F.schedule_factor("constant_with_warmup", 50, 10, 110) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        F.schedule_factor("step", 1, 1, 2)


SENTIMENT = [
    ("a good film", 1),
    ("a bad film", 0),
    ("good and fun", 1),
    ("bad and dull", 0),
    ("truly good", 1),
    ("truly bad", 0),
    ("good acting", 1),
    ("bad acting", 0),
]


def test_short_finetune_lowers_the_loss_and_the_head_round_trips(tiny_bert, tmp_path):
    spec = get_task("sst2")
    examples = [TextExample(text, None, label) for text, label in SENTIMENT * 4]
    head = F.build_head(tiny_bert[0], spec, device="cpu")
    config = F.FinetuneConfig(learning_rate=3e-3, epochs=6, batch_size=8, warmup_ratio=0.1, seed=0)
    result = F.finetune(head, spec, examples, examples[:8], config, progress=False)
    losses = result.history.groupby("epoch")["loss"].mean()
    assert losses.iloc[-1] < 0.75 * losses.iloc[0]
    assert len(result.epochs) == 6 and result.metrics["accuracy"] == 1.0
    assert result.examples_per_second > 0
    head.save_pretrained(tmp_path / "head")
    loaded = wb.AutoModelForSequenceClassification.from_pretrained(tmp_path / "head")
    assert not loaded.loading_info.missing_keys
    inputs = head.tokenize(["a good film", "bad acting"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, head(**inputs).logits)
    assert F.evaluate(loaded, spec, examples[:8]) == {"accuracy": 1.0}


def test_early_stopping_keeps_the_best_epoch(tiny_bert):
    spec = get_task("sst2")
    examples = [TextExample(text, None, label) for text, label in SENTIMENT]
    head = F.build_head(tiny_bert[0], spec, device="cpu")
    config = F.FinetuneConfig(learning_rate=1e-9, epochs=5, batch_size=4, patience=1, seed=0)
    result = F.finetune(head, spec, examples, examples, config, progress=False)
    assert len(result.epochs) == 2 and result.best_epoch == 1  # nothing improves: stop after one more epoch


def test_regression_and_multiple_choice_heads_train(tiny_bert):
    stsb = get_task("stsb")
    pairs = [TextExample("a b", "a b", 5.0), TextExample("a b", "c d", 0.0)] * 4
    head = F.build_head(tiny_bert[0], stsb, device="cpu")
    result = F.finetune(
        head, stsb, pairs, pairs, F.FinetuneConfig(learning_rate=1e-3, epochs=2, batch_size=4), progress=False
    )
    assert set(result.metrics) == {"pearson", "spearman"}
    copa = get_task("copa")
    questions = [ChoiceExample("It rained.", ["We got wet.", "We sang."], 0)] * 4
    mc = F.build_head(tiny_bert[0], copa, device="cpu")
    result = F.finetune(
        mc,
        copa,
        questions,
        questions,
        F.FinetuneConfig(learning_rate=1e-3, epochs=2, batch_size=2),
        progress=False,
    )
    assert set(result.metrics) == {"accuracy"}


def test_squad_windows_hold_the_answer_and_postprocessing_recovers_it(tiny_bert):
    tokenizer = wb.AutoTokenizer.from_pretrained(tiny_bert[0])
    context = (
        " ".join(f"word{i}" for i in range(40))
        + " The answer is Bern in Switzerland. "
        + " ".join(f"tail{i}" for i in range(40))
    )
    start = context.index("Bern")
    example = SpanExample("q1", "Where?", context, ["Bern"], [start])
    features = F.squad_features(tokenizer, [example], max_length=48, doc_stride=16)
    assert len(features) > 3 and all(len(f.input_ids) <= 48 for f in features)
    holding = [f for f in features if f.start_position > 0]
    assert holding  # at least one window holds the answer
    for f in holding:
        span = context[f.offsets[f.start_position][0] : f.offsets[f.end_position][1]]
        assert span == "Bern"
    width = max(len(f.input_ids) for f in features)
    starts, ends = np.zeros((len(features), width)), np.zeros((len(features), width))
    chosen = features.index(holding[0])
    starts[chosen, holding[0].start_position] = ends[chosen, holding[0].end_position] = 5.0
    assert F.squad_predictions([example], features, starts, ends) == {"q1": "Bern"}
    starts[:, 0] = ends[:, 0] = 10.0  # [CLS] scores beat the span: SQuAD 2.0 answers nothing
    assert F.squad_predictions([example], features, starts, ends, version_2=True) == {"q1": ""}
    assert F.squad_predictions([example], features, starts, ends, version_2=True, null_threshold=11.0) == {
        "q1": "Bern"
    }


def test_question_answering_head_evaluates_squad_v2_sample(tiny_bert):
    from workbench.bench.data import load_task

    spec = get_task("squad_v2")
    head = F.build_head(tiny_bert[0], spec, device="cpu")
    scores = F.evaluate(
        head, spec, load_task("squad_v2", "sample"), F.FinetuneConfig(max_length=64, doc_stride=32)
    )
    assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1"} <= set(scores)
    assert 0.0 <= scores["f1"] <= 1.0
