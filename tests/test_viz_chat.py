"""The chat view (workbench/viz/chat.py) on a tiny random Llama given a chat template: the reply and its
probabilities are ``generate(messages)``'s, the logit lens ends at the model's own prediction, the
attribution covers exactly the prompt and reply prefix (integrated gradients complete), the selector
redraws, the export names the random stand-in and draws offline, and models it cannot show are refused."""

from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench import viz
from workbench.tokenizers.chat import ChatTemplateError

TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the cat"}]
N_NEW = 4


@pytest.fixture(scope="module")
def llama():
    model = wb.zoo.tiny("llama", device="cpu")
    model.tokenizer.chat_template = TEMPLATE
    return model


@pytest.fixture(scope="module")
def view(llama):
    return viz.chat(llama, MESSAGES, max_new_tokens=N_NEW, stop_at_eos=False)


def test_the_reply_and_its_probabilities_are_generates(llama, view):
    result = llama.generate(MESSAGES, max_new_tokens=N_NEW, stop_at_eos=False)
    chat = view.chat
    assert chat.reply_ids == result.new_token_ids[0] and len(chat.reply_ids) == N_NEW
    assert chat.reply_tokens == result.tokens
    assert chat.prompt_ids.tolist() == llama.tokenizer.apply_chat_template(
        MESSAGES, add_generation_prompt=True, return_dict=False
    )
    probabilities = chat.steps["probability"].to_numpy()
    assert ((probabilities > 0) & (probabilities <= 1)).all()
    assert probabilities.tolist() == pytest.approx(list(result.steps["probability"]), abs=1e-6)
    # The top alternatives are the step's, most likely first, and the greedy token is the first of them.
    for row in chat.steps.itertuples():
        assert row.top_tokens[0] == row.token
        assert list(row.top_probabilities) == sorted(row.top_probabilities, reverse=True)


@pytest.mark.parametrize("index", [0, N_NEW - 1])
def test_lens_and_attribution_read_the_context_the_token_was_written_from(llama, view, index):
    chat = view.chat
    chat.select(index)
    token_id = chat.reply_ids[index]
    context = torch.cat([chat.prompt_ids, torch.tensor(chat.reply_ids[:index], dtype=torch.long)])
    with torch.no_grad():
        logits = llama(input_ids=context[None]).logits[0, -1].float()
    # The lens: embeddings then one row per block; the last is the model's prediction (greedy: rank 1).
    lens = chat.trajectory
    assert list(lens["layer"]) == ["embed"] + [str(i) for i in range(llama.n_layers)]
    assert lens["probability"].iloc[-1] == pytest.approx(float(logits.softmax(-1)[token_id]), abs=1e-6)
    assert lens["probability"].iloc[-1] == pytest.approx(chat.steps["probability"][index], abs=1e-5)
    assert lens["rank"].iloc[-1] == 1
    # The attribution: exactly the prompt plus the reply before the token, explaining its log-probability.
    attribution = chat.attribution
    assert attribution.input_ids[0].tolist() == context.tolist()
    assert len(attribution.to_frame(0)) == len(chat.prompt_ids) + index
    assert float(attribution.target_values[0]) == pytest.approx(
        float(logits.log_softmax(-1)[token_id]), abs=1e-5
    )


def test_integrated_gradients_are_complete(llama):
    view = viz.chat(llama, MESSAGES, max_new_tokens=2, method="integrated_gradients", stop_at_eos=False)
    view.chat.select(1)
    attribution = view.chat.attribution
    scores = attribution["integrated_gradients"][0]
    assert scores.shape[0] == len(view.chat.prompt_ids) + 1
    # Completeness: the scores add up to f(input) - f(baseline) (the log-probability of the token on the
    # conversation, and on it with every non-special token replaced by the pad token), up to the integral's
    # discretization.
    token_id = view.chat.reply_ids[1]
    baseline = wb.attribution.baseline_ids(llama, attribution.input_ids)
    with torch.no_grad():
        at_baseline = llama(input_ids=baseline).logits[0, -1].float().log_softmax(-1)[token_id]
    difference = float(attribution.target_values[0] - at_baseline)
    assert abs(difference) > 0.1  # the test means something: the baseline changes the token's probability
    assert float(scores.sum()) == pytest.approx(difference, rel=1e-3)


def test_the_selector_redraws_the_explanation(view):
    chat = view.chat
    view.controls["token"].value = 2
    assert chat.chosen == 2
    token = repr(chat.reply_tokens[2])
    assert token in view.figure(1).layout.title.text
    assert "reply token 2" in chat.explanation.value
    chat.select(1)
    assert (
        view.controls["token"].value == 1 and repr(chat.reply_tokens[1]) in view.figure(1).layout.title.text
    )
    with pytest.raises(ValueError, match="out of range: the reply has 4 tokens"):
        chat.select(N_NEW)


def test_the_export_names_the_stand_in_and_the_data_and_draws_offline(llama, view):
    label = wb.zoo.display_name(llama)
    assert "random stand-in" in label
    fragment = view.to_html()
    assert 'data-wb-view="chat"' in fragment and label in fragment
    assert "chat template" in fragment and "Be brief." in fragment
    for figure in view.figures():
        assert label in figure.layout.title.text
    page = view.to_html(full_html=True)
    # plotly.js inlined (no script loaded from elsewhere), both figures drawn from it.
    assert "<script src=" not in page and len(page) > 1_000_000 and page.count("Plotly.newPlot") == 2


def test_a_model_without_a_chat_template_is_refused():
    model = wb.zoo.tiny("llama", device="cpu")
    assert not model.tokenizer.chat_template
    with pytest.raises(
        ChatTemplateError, match="chat view needs a chat template.*set model.tokenizer.chat_template"
    ):
        viz.chat(model, MESSAGES)


def test_bad_inputs_are_refused(llama):
    with pytest.raises(ValueError, match="messages must be a non-empty list"):
        viz.chat(llama, "Hello")
    with pytest.raises(ValueError, match="message 1 must be a dict with 'role' and 'content'"):
        viz.chat(llama, [MESSAGES[0], {"content": "no role"}])
    with pytest.raises(ValueError, match="method 'nope' is unknown"):
        viz.chat(llama, MESSAGES, method="nope")
    encoder = wb.load("minilm", device="cpu")
    with pytest.raises(ValueError, match="the chat view needs a causal language model"):
        viz.chat(encoder, MESSAGES)
