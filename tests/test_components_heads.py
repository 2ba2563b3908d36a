"""Task-head mixins (workbench.components.heads): one forward per head kind, same numbers and names as before."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import workbench as wb
from workbench.components.heads import (
    CausalLMHead,
    LanguageModelHead,
    MaskedLMHead,
    MultipleChoiceHead,
    QuestionAnsweringHead,
    SequenceClassificationHead,
    TokenClassificationHead,
)

ENCODERS = ["bert", "distilbert", "roberta", "xlm", "xlnet"]
# Every registered architecture with a sequence-classification head (the decoders read the last real token).
SEQUENCE_CLASSIFIERS = sorted(wb.auto.TASK_REGISTRIES["sequence_classification"])

# The checkpoint names of each head's own parameters (Hugging Face's): the mixins must not change them.
HEAD_KEYS = {
    "token_classification": ["classifier.bias", "classifier.weight"],
    "question_answering": ["qa_outputs.bias", "qa_outputs.weight"],
}


def _model(model_type: str, task: str):
    model = wb.zoo.tiny(model_type, task, device="cpu", num_labels=2)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def _inputs(model):
    ids = torch.randint(5, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


@pytest.mark.parametrize(
    "task, mixin",
    [
        ("token_classification", TokenClassificationHead),
        ("question_answering", QuestionAnsweringHead),
        ("multiple_choice", MultipleChoiceHead),
        ("sequence_classification", SequenceClassificationHead),
        ("masked_lm", MaskedLMHead),
        ("causal_lm", LanguageModelHead),  # XLM's one LM head serves both tasks
    ],
)
def test_one_forward_and_one_signature_per_head_kind(task, mixin):
    registry = wb.auto.TASK_REGISTRIES[task]
    classes = {registry[m] for m in registry}
    assert len(classes) >= 4
    for cls in classes:
        assert issubclass(cls, mixin) and cls.forward is mixin.forward, cls.__name__
        assert "labels" in inspect.signature(cls.forward).parameters or task == "question_answering"
    assert len({str(inspect.signature(cls.forward)) for cls in classes}) == 1


@pytest.mark.parametrize("model_type", ENCODERS)
def test_token_classification_is_the_classifier_on_the_body_with_hf_loss(model_type):
    torch.manual_seed(0)
    model = _model(model_type, "token_classification")
    ids, mask = _inputs(model)
    labels = torch.randint(0, 2, ids.shape)
    labels[1, 5:] = -100
    labels[0, 0] = -100
    out = model(ids, mask, labels=labels, output_hidden_states=True)
    body = model.encode(input_ids=ids, attention_mask=mask)
    expected = model.classifier(body.last_hidden_state)  # eval: dropout (where there is one) is identity
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(
        out.loss, F.cross_entropy(expected.reshape(-1, 2), labels.reshape(-1), ignore_index=-100)
    )
    assert len(out.hidden_states) == model.n_layers + 1
    keys = sorted(k for k in model.state_dict() if k.startswith(("classifier.", "qa_outputs.")))
    assert keys == HEAD_KEYS["token_classification"]
    assert hasattr(model, "classifier_dropout") == (model_type != "xlnet")  # XLNet: none, as in Hugging Face
    if model_type == "xlnet":
        assert isinstance(out, wb.models.xlnet.XLNetClassifierOutput) and out.mems is not None


@pytest.mark.parametrize("model_type", ENCODERS)
def test_question_answering_span_loss_ignores_positions_outside_the_input(model_type):
    model = _model(model_type, "question_answering")
    ids, mask = _inputs(model)
    start, end = torch.tensor([1, 99]), torch.tensor([3, 2])  # 99 is outside: clamped to pos, ignored
    out = model(ids, mask, start_positions=start, end_positions=end)
    logits = model.qa_outputs(model.encode(input_ids=ids, attention_mask=mask).last_hidden_state)
    torch.testing.assert_close(out.start_logits, logits[..., 0])
    torch.testing.assert_close(out.end_logits, logits[..., 1])
    expected = (F.cross_entropy(logits[:1, :, 0], start[:1]) + F.cross_entropy(logits[..., 1], end)) / 2
    torch.testing.assert_close(out.loss, expected)
    assert model(ids, mask, start_positions=start).loss is None  # both positions, or no loss
    keys = sorted(k for k in model.state_dict() if k.startswith(("classifier.", "qa_outputs.")))
    assert keys == HEAD_KEYS["question_answering"]
    assert model.hook_names[-1] == "hook_logits"  # registered last, as before
    tupled = model(ids, mask, return_dict=False)
    torch.testing.assert_close(tupled[0], out.start_logits)


def test_body_inputs_are_passed_by_keyword_and_an_unknown_one_names_the_class():
    model = _model("bert", "token_classification")
    ids, mask = _inputs(model)
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    with_types = model(ids, mask, token_type_ids=types).logits
    assert not torch.allclose(with_types, model(ids, mask).logits)  # token_type_ids reached the body
    with pytest.raises(
        TypeError, match=r"BertForTokenClassification.forward got unexpected input\(s\) \['langs'\]"
    ):
        model(ids, mask, langs=types)
    with pytest.raises(TypeError):  # a third positional input is not silently bound to some body input
        model(ids, mask, types)


def test_question_answering_needs_two_labels():
    config = wb.AutoConfig.for_model("xlm", **{"emb_dim": 16, "n_layers": 1, "n_heads": 2, "vocab_size": 30})
    config.num_labels = 3
    with pytest.raises(ValueError, match="num_labels=2"):
        wb.auto.TASK_REGISTRIES["question_answering"]["xlm"](config)


@pytest.mark.parametrize("model_type", ENCODERS)
def test_multiple_choice_scores_each_flattened_choice(model_type):
    model = _model(model_type, "multiple_choice")
    ids, mask = _inputs(model)
    ids, mask = ids.view(1, 2, -1), mask.view(1, 2, -1)  # one question, two choices
    labels = torch.tensor([1])
    out = model(ids, attention_mask=mask, labels=labels)
    body = model.encode(input_ids=ids.view(2, -1), attention_mask=mask.view(2, -1))
    expected = model.sequence_scores(body, ids.view(2, -1), mask.view(2, -1)).view(1, 2)
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.loss, F.cross_entropy(expected, labels))
    assert model.hook_names[-1] == "hook_logits"
    with pytest.raises(TypeError):  # only input_ids by position: XLNet's second input is token_type_ids
        model(ids, mask)


# Sequence classification -------------------------------------------------------------------------------


def _hand_loss(logits: torch.Tensor, labels: torch.Tensor, problem: str) -> torch.Tensor:
    """Hugging Face's three losses, written out: mean squared error, cross-entropy, binary cross-entropy."""
    if problem == "regression":
        return ((logits.squeeze(-1) - labels.squeeze(-1).float()) ** 2).mean()
    if problem == "single_label_classification":
        return -logits.log_softmax(-1).gather(-1, labels[:, None]).mean()
    p = logits.sigmoid()
    return -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()


# (num_labels, config.problem_type, labels, the problem Hugging Face solves): unset, it follows the labels.
PROBLEMS = [
    (1, None, torch.tensor([0.5, -1.0]), "regression"),
    (3, None, torch.tensor([2, 0]), "single_label_classification"),
    (3, None, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), "multi_label_classification"),
    (1, "regression", torch.tensor([[0.5], [-1.0]]), "regression"),
    (2, "single_label_classification", torch.tensor([1, 1]), "single_label_classification"),
    (2, "multi_label_classification", torch.tensor([[0.0, 1.0], [1.0, 1.0]]), "multi_label_classification"),
]


@pytest.mark.parametrize("model_type", SEQUENCE_CLASSIFIERS)
def test_sequence_classification_loss_follows_the_problem_type(model_type):
    ids, mask = _inputs(_model(model_type, "sequence_classification"))
    for num_labels, problem_type, labels, problem in PROBLEMS:
        model = wb.zoo.tiny(model_type, "sequence_classification", device="cpu", num_labels=num_labels)
        model.config.problem_type = problem_type
        out, cache = model.run_with_cache(
            {"input_ids": ids, "attention_mask": mask}, names_filter="hook_logits", labels=labels
        )
        assert out.logits.shape == (2, num_labels)
        assert torch.equal(cache["hook_logits"], out.logits)  # hook_logits sees the logits
        torch.testing.assert_close(out.loss, _hand_loss(out.logits, labels, problem), msg=f"{problem_type}")
    assert model.hook_names[-1] == "hook_logits"
    assert model(ids, mask).loss is None


@pytest.mark.parametrize("model_type", SEQUENCE_CLASSIFIERS)
def test_sequence_classification_rejects_an_unknown_input_by_name(model_type):
    model = _model(model_type, "sequence_classification")
    ids, mask = _inputs(model)
    name = type(model).__name__
    with pytest.raises(TypeError, match=rf"{name}.forward got unexpected input\(s\) \['bogus'\]"):
        model(ids, mask, bogus=ids)
    with pytest.raises(TypeError):  # a third positional input is not silently bound to some body input
        model(ids, mask, ids)


def test_a_hook_on_the_logits_changes_the_loss():
    model = _model("bert", "sequence_classification")
    ids, mask = _inputs(model)
    labels = torch.tensor([0, 1])
    with model.hooks([("hook_logits", lambda logits, hook: torch.zeros_like(logits))]):
        out = model(ids, mask, labels=labels)
    assert torch.equal(out.logits, torch.zeros(2, 2))
    torch.testing.assert_close(out.loss, torch.tensor(2.0).log())  # uniform over two labels


@pytest.mark.parametrize("model_type", ["gpt2", "openai-gpt", "transfo-xl"])
def test_decoders_classify_from_the_last_real_token(model_type):
    model = _model(model_type, "sequence_classification")
    assert model.classifier_position == "last"
    ids, mask = _inputs(model)  # row 1 is right-padded after 5 tokens
    padded = model(ids, mask).logits
    alone = model(ids[1:, :5]).logits  # the same row without its padding: one row needs no mask
    torch.testing.assert_close(padded[1], alone[0])
    body = model.decode(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(padded, model.classifier(body[[0, 1], [6, 4]]))


# Language-model heads ------------------------------------------------------------------------------------

# Every registered LM head class once (XLM's serves both tasks).
LANGUAGE_MODELS = [("masked_lm", model_type) for model_type in sorted(wb.auto.TASK_REGISTRIES["masked_lm"])]
LANGUAGE_MODELS += [
    ("causal_lm", model_type) for model_type in sorted(wb.auto.TASK_REGISTRIES["causal_lm"]) if model_type != "xlm"
]


def _hand_lm_loss(logits: torch.Tensor, labels: torch.Tensor, shifted: bool) -> torch.Tensor:
    """Mean negative log-likelihood of the labels that are not -100: at the same position, or one ahead."""
    if shifted:
        logits, labels = logits[:, :-1], labels[:, 1:]
    picked = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    kept = labels != -100
    return -(picked * kept).sum() / kept.sum()


@pytest.mark.parametrize("task, model_type", LANGUAGE_MODELS)
def test_language_model_loss_is_the_hand_computed_one(task, model_type):
    model = _model(model_type, task)
    ids, mask = _inputs(model)
    labels = ids.clone()
    labels[1, 5:] = -100
    labels[0, 2] = -100
    out, cache = model.run_with_cache(
        {"input_ids": ids, "attention_mask": mask}, names_filter="hook_logits", labels=labels
    )
    assert out.logits.shape == (2, 7, model.config.vocab_size)
    assert torch.equal(cache["hook_logits"], out.logits)  # hook_logits sees the logits
    shifted = isinstance(model, CausalLMHead) and model.shift_labels
    assert shifted == (task == "causal_lm" and model_type != "xlnet")  # XLNet, XLM: labels are the targets
    if model_type == "transfo-xl":  # its own rule: log-probabilities, the per-position losses and their mean
        losses = -out.logits[:, :-1].gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
        torch.testing.assert_close(out.losses, losses.masked_fill(labels[:, 1:] == -100, 0.0))
    torch.testing.assert_close(out.loss, _hand_lm_loss(out.logits, labels, shifted))
    assert model(ids, mask).loss is None
    assert model.hook_names[-1] == "hook_logits"


@pytest.mark.parametrize("task, model_type", LANGUAGE_MODELS)
def test_language_model_rejects_an_unknown_input_and_decodes_residuals(task, model_type):
    model = _model(model_type, task)
    ids, mask = _inputs(model)
    name = type(model).__name__
    with pytest.raises(TypeError, match=rf"{name}.forward got unexpected input\(s\) \['bogus'\]"):
        model(ids, mask, bogus=ids)
    with pytest.raises(TypeError):
        model(ids, mask, ids)
    if "unembed" in model._modules and model.config.tie_word_embeddings:
        assert model.unembed.weight is model.embed.weight
        assert "unembed.weight" in model.tied_parameter_names()
    if getattr(model, "ln_final", None) is None:  # where the body ends in a final norm, the lens applies it
        out = model(ids, mask, output_hidden_states=True)
        torch.testing.assert_close(model.decode_residual(out.hidden_states[-1]), out.logits)


def test_causal_lm_returns_its_cache_and_continues_from_it():
    model = _model("gpt2", "causal_lm")
    ids, mask = _inputs(model)
    ids, mask = ids[:1], mask[:1]
    full = model(ids, mask).logits
    first = model(ids[:, :4], mask[:, :4], use_cache=True)
    rest = model(ids[:, 4:], mask, past_key_values=first.past_key_values, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], dim=1), full)


# Base models: forward is the body function plus return_dict -------------------------------------------

BASES = ["bert", "distilbert", "gpt2", "openai-gpt", "roberta", "transfo-xl", "xlm", "xlnet"]


@pytest.mark.parametrize("model_type", BASES)
def test_base_forward_is_the_body_function_with_return_dict(model_type):
    model = _model(model_type, "base")
    body_name = "encode" if hasattr(type(model), "encode") else "decode"
    body = getattr(model, body_name)
    forward = inspect.signature(type(model).forward)
    expected = list(inspect.signature(getattr(type(model), body_name)).parameters)
    assert list(forward.parameters) == [*expected, "return_dict"]
    assert forward.parameters["return_dict"].kind is inspect.Parameter.KEYWORD_ONLY
    assert type(model).forward.__name__ == "forward" and "return_dict" in type(model).forward.__doc__
    ids, mask = _inputs(model)
    out = model(ids, attention_mask=mask, output_hidden_states=True)  # Transformer-XL's second input is mems
    torch.testing.assert_close(out.last_hidden_state, body(ids, attention_mask=mask).last_hidden_state)
    assert len(out.hidden_states) == model.n_layers + 1
    tupled = model(ids, attention_mask=mask, return_dict=False)
    assert isinstance(tupled, tuple) and torch.equal(tupled[0], out.last_hidden_state)
    traced = torch.jit.trace(model, (ids,), strict=False, check_trace=False)  # traced: a tuple
    torch.testing.assert_close(traced(ids)[0], model(ids).last_hidden_state)
