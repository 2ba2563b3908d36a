"""Zero-shot scoring equals hand computations of summed token log-probabilities (Hugging Face models as the
oracle); pseudo-log-likelihood masks one token at a time; the scorer dispatches by model kind."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import save_tiny_hf_bert
from tiny_gpt2 import save_tiny_gpt2

import workbench as wb
from workbench.bench import zeroshot as Z
from workbench.bench.data import ChoiceExample

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    hf_model = save_tiny_gpt2(folder)
    return folder, hf_model


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp("mlm")
    hf_model = save_tiny_hf_bert(
        folder, "BertForMaskedLM", vocab_size=30522, max_position_embeddings=64, **TINY
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path / name, folder / name)
    return folder, hf_model


REQUESTS = [
    ("The cat sat on the", " mat."),
    ("Hello ", "world!"),
    ("Keys are on the table. The capital of", " Paris"),
]


def test_causal_scores_equal_summed_token_logprobs(tiny_gpt2):
    folder, hf_model = tiny_gpt2
    model = Z.load_scoring_model(folder)
    assert Z.scorer_kind(model) == "causal"
    scores = Z.causal_lm_logprobs(model, REQUESTS, batch_size=2, progress=False)  # batched, padded, sorted
    tokenizer = model.tokenizer
    for (context, continuation), score in zip(REQUESTS, scores):
        context, continuation = context.rstrip(), context[len(context.rstrip()) :] + continuation
        whole = tokenizer.encode(context + continuation)
        n_context = len(tokenizer.encode(context))
        with torch.no_grad():
            logprobs = hf_model(torch.tensor([whole])).logits[0].log_softmax(-1)
        expected = sum(float(logprobs[t - 1, whole[t]]) for t in range(n_context, len(whole)))
        assert score == pytest.approx(expected, abs=1e-4)


def test_choice_metrics_accuracy_and_length_normalized():
    scores = Z.ChoiceScores(logprobs=[[-4.0, -5.0], [-1.0, -3.0]], lengths=[[2, 10], [5, 5]], labels=[1, 0])
    # example 0: raw picks choice 0 (wrong), per character picks choice 1 (-0.5 > -2); example 1: both right
    assert scores.metrics() == {"accuracy": 0.5, "accuracy_norm": 1.0}


def test_score_choices_on_examples(tiny_gpt2):
    model = Z.load_scoring_model(tiny_gpt2[0])
    examples = [
        ChoiceExample("ctx", ["mat.", "hat."], 0, prompt="The cat sat on the"),
        ChoiceExample("ctx", ["Paris", "Rome", "Bern"], 2, prompt="The capital of France is"),
    ]
    scores = Z.score_choices(model, examples, progress=False)
    flat = Z.causal_lm_logprobs(
        model, [(ex.prompt, c) for ex in examples for c in ex.continuations], progress=False
    )
    assert scores.logprobs == [flat[:2], flat[2:]]
    assert scores.lengths == [[5, 5], [6, 5, 5]]


def test_pseudo_log_likelihood_masks_one_token_at_a_time(tiny_mlm):
    folder, hf_model = tiny_mlm
    model = wb.AutoModelForMaskedLM.from_pretrained(folder)
    assert Z.scorer_kind(model) == "masked"
    seen = []
    handle = model.embed.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        (score,) = Z.masked_lm_logprobs(model, [("The cat", " sat on the mat")], batch_size=2, progress=False)
    finally:
        handle.remove()
    tokenizer = model.tokenizer
    original = tokenizer.encode("The cat sat on the mat")  # [CLS] the cat sat on the mat [SEP]
    mask_id = tokenizer.token_to_id("[MASK]")
    copies = torch.cat(seen)
    assert copies.shape == (4, len(original))  # one copy per continuation token: sat, on, the, mat
    positions = []
    for row in copies:
        masked = (row == mask_id).nonzero().flatten().tolist()
        assert len(masked) == 1  # exactly one mask per copy
        positions.append(masked[0])
        unmasked = row.tolist()
        unmasked[masked[0]] = original[masked[0]]
        assert unmasked == original  # everything else untouched
    assert sorted(positions) == [3, 4, 5, 6]
    expected = 0.0
    for position in range(3, 7):
        ids = torch.tensor([original])
        ids[0, position] = mask_id
        with torch.no_grad():
            expected += float(hf_model(ids).logits[0, position].log_softmax(-1)[original[position]])
    assert score == pytest.approx(expected, abs=1e-4)


def test_a_checkpoint_without_lm_head_is_flagged(caplog):
    with pytest.warns(UserWarning, match="no trained LM head"):
        model = Z.load_scoring_model("minilm")  # a sentence-embedding checkpoint: body and pooler, no MLM head
    assert isinstance(model, wb.BertForMaskedLM)
    assert any("no trained LM head" in record.getMessage() for record in caplog.records)


def test_dispatch_by_model_kind(tiny_gpt2, tiny_mlm):
    base = wb.AutoModel.from_pretrained(tiny_mlm[0])
    with pytest.raises(ValueError, match="needs a language-modelling head"):
        Z.scorer_kind(base)
    mlm = Z.load_scoring_model(tiny_mlm[0])
    assert isinstance(mlm, wb.BertForMaskedLM)
    with pytest.raises(NotImplementedError, match="not available for model_type 'bert'"):
        Z.permutation_lm_score_ids(mlm, [1, 2, 3], [2])


def test_xlnet_permutation_score_equals_one_target_at_a_time(tmp_path):
    transformers = pytest.importorskip("transformers")
    if not hasattr(wb, "XLNetLMHeadModel"):
        pytest.skip("XLNet is not in this workbench")
    config = transformers.XLNetConfig(vocab_size=50, d_model=32, n_layer=2, n_head=4, d_inner=37)
    torch.manual_seed(0)
    hf_model = transformers.XLNetLMHeadModel(config).eval()
    hf_model.save_pretrained(tmp_path)
    model = wb.XLNetLMHeadModel.from_pretrained(tmp_path)
    assert Z.scorer_kind(model) == "permutation"
    ids, targets = [5, 9, 13, 7, 21, 30, 4, 3], [3, 4, 5]  # context 5 9 13, targets 7 21 30, then <sep> <cls>
    score = Z.permutation_lm_score_ids(model, ids, targets)
    # The factorization order: every non-target first, then the targets left to right. Token i may not see
    # token j when j comes later in that order (and a target may not see itself in the query stream).
    rank = [0] * len(ids)
    for k, position in enumerate(targets, start=1):
        rank[position] = k
    expected = 0.0
    for position in targets:
        perm_mask = torch.tensor(
            [
                [float(rank[j] > rank[i] or (i == j and rank[i] > 0)) for j in range(len(ids))]
                for i in range(len(ids))
            ]
        )[None]
        mapping = torch.zeros(1, 1, len(ids))
        mapping[0, 0, position] = 1.0
        with torch.no_grad():
            logits = hf_model(torch.tensor([ids]), perm_mask=perm_mask, target_mapping=mapping).logits
        expected += float(logits[0, 0].log_softmax(-1)[ids[position]])
    assert score == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("causal, kind", [(False, "masked"), (True, "causal")])
def test_xlm_scores_as_its_config_says(tmp_path, causal, kind):
    """XLM's record says zero_shot="by_config": one LM head class, trained causal or masked as config.causal
    says; the scorer and the loaded head follow it."""
    size = wb.zoo.TinySize(n_layers=1, d_model=16, n_heads=2, d_mlp=64, n_positions=32, bpe_vocab_size=300)
    model = wb.zoo.tiny("xlm", device="cpu", size=size, causal=causal)
    assert Z.scorer_kind(model) == kind
    folder = model.save_pretrained(tmp_path / "xlm")
    loaded = Z.load_scoring_model(folder, device="cpu")
    assert type(loaded) is wb.XLMWithLMHeadModel and Z.scorer_kind(loaded) == kind
    body = wb.zoo.tiny("xlm", task="base", device="cpu", size=size, causal=causal)
    with pytest.raises(ValueError, match="needs a language-modelling head; XLMModel"):
        Z.scorer_kind(body)
