"""Notebook views: selectors drive the figures (through the widget objects, no browser), the numbers shown
are the model's (neuron-view scores = hook_scores, logit lens = the model's logits, CKA = its formula),
mismatched inputs are rejected with messages naming the mismatch, and every architecture's cache draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from plotly.callbacks import Points
from tiny_gpt2 import load_tiny_gpt2
from tiny_hf import ARCHITECTURES, architectures_with, tiny_model

import workbench as wb
from workbench import viz
from workbench.viz.compare import pool_to_words, token_words

TEXT = "The keys to the cabinet are on the table."


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    return load_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def lm():
    return wb.load("minilm", device="cpu")


def random_patterns(layers=3, heads=2, n=5, seed=0, causal=False):
    scores = torch.randn(layers, heads, n, n, generator=torch.Generator().manual_seed(seed))
    if causal:
        scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
    return scores.softmax(-1).numpy()


def line_coordinates(figure):
    return [(tuple(t.x), tuple(t.y)) for t in figure.data if t.mode == "lines" and t.x and t.x[0] is not None]


# Linear CKA ---------------------------------------------------------------------------------------------


def test_linear_cka_matches_a_hand_computation():
    # One feature each: CKA is the squared correlation of (1, 2, 3) and (1, 4, 9) = 8² / (2 · 294/9) = 48/49.
    assert viz.linear_cka([[1.0], [2.0], [3.0]], [[1.0], [4.0], [9.0]]) == pytest.approx(48 / 49, abs=1e-12)


def test_linear_cka_equals_the_kernel_form_and_is_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 3))
    h = np.eye(20) - 1 / 20  # the centring matrix: HSIC(K, L) = tr(K H L H)
    k, l_ = x @ x.T, y @ y.T
    kernel_form = np.trace(k @ h @ l_ @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l_ @ h @ l_ @ h))
    assert viz.linear_cka(x, y) == pytest.approx(kernel_form, rel=1e-10)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert viz.linear_cka(x, 3 * x @ rotation + 1) == pytest.approx(1.0, abs=1e-10)


def test_cka_rejects_different_example_counts():
    with pytest.raises(ValueError, match="x has 4 rows .* but y has 3"):
        viz.linear_cka(np.ones((4, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="hidden_a has 5 examples .* but hidden_b has 4"):
        viz.cka(np.ones((2, 5, 3)), np.ones((2, 4, 3)))


# Attention ---------------------------------------------------------------------------------------------


def test_head_view_layer_and_query_selectors_change_the_lines():
    tokens = list("abcde")
    view = viz.attention_heads(tokens, random_patterns())
    first = line_coordinates(view.figure())
    view.controls["layer"].value = 2
    assert line_coordinates(view.figure()) != first
    assert line_coordinates(view.figure_widgets[0]) == line_coordinates(view.figure())  # the live figure too
    view.controls["query"].value = 3
    starts = {ys[i] for _, ys in line_coordinates(view.figure()) for i in range(0, len(ys), 3)}
    assert starts == {-3}
    view.controls["heads"].value = (1,)
    assert {t.legendgroup for t in view.figure().data if t.mode == "lines"} == {"head 1"}


def test_head_view_click_on_a_token_selects_it():
    view = viz.attention_heads(list("abcde"), random_patterns())
    live = view.figure_widgets[0]
    query_trace = next(t for t in live.data if t.name == "query")
    query_trace._dispatch_on_click(
        Points(point_inds=[2], xs=[0], ys=[-2], trace_name="query", trace_index=0), None
    )
    assert view.controls["query"].value == 2


def test_model_view_click_opens_that_head():
    patterns = random_patterns(layers=2, heads=3)
    view = viz.model_view(list("abcde"), patterns)
    grid, detail = view.figure_widgets
    cell = next(t for t in grid.data if t.name == "1,2")
    cell._dispatch_on_click(Points(point_inds=[0], xs=[0], ys=[0], trace_name="1,2", trace_index=0), None)
    assert (view.controls["layer"].value, view.controls["head"].value) == (1, 2)
    np.testing.assert_allclose(np.asarray(detail.data[0].z, dtype=float), patterns[1, 2])
    assert len(grid.data) == 6


def test_matrix_shows_a_causal_mask_and_leaves_bidirectional_attention_whole():
    causal = viz.attention_matrix(list("abcde"), random_patterns(causal=True))
    z = np.asarray(causal.figure().data[0].z, dtype=float)
    assert np.isnan(z[np.triu_indices(5, 1)]).all() and not np.isnan(z[np.tril_indices(5)]).any()
    assert "causal mask" in causal.figure().layout.title.text
    encoder = viz.attention_matrix(list("abcde"), random_patterns())
    assert not np.isnan(np.asarray(encoder.figure().data[0].z, dtype=float)).any()
    encoder.controls["head"].value = "mean"
    np.testing.assert_allclose(
        np.asarray(encoder.figure().data[0].z, dtype=float), random_patterns()[0].mean(0)
    )


@pytest.mark.parametrize("model_name", ["minilm", "tiny_gpt2"])
def test_neuron_view_scores_are_the_models_scores_and_pattern(model_name, request, lm):
    model = lm if model_name == "minilm" else request.getfixturevalue("tiny_gpt2")
    _, cache = model.run_with_cache(TEXT)
    view = viz.attention(cache, view="neuron", layer=1, head=2, query=4)
    _, scores_bar, softmax_bar = view.figure().data[2:]
    scores = cache["blocks.1.attn.hook_scores"][0, 2, 4].numpy()
    pattern = cache["blocks.1.attn.hook_pattern"][0, 2, 4].numpy()
    visible = pattern > 0
    np.testing.assert_allclose(np.asarray(scores_bar.x)[visible], scores[visible], atol=1e-4)
    np.testing.assert_allclose(np.asarray(softmax_bar.x), pattern, atol=1e-5)
    assert visible.all() == (model_name == "minilm")  # the decoder masks later keys
    view.controls["query"].value = 5
    assert not np.allclose(np.asarray(view.figure().data[4].x), softmax_bar.x)


def test_neuron_view_of_a_grouped_query_rotary_model_shows_its_scores():
    # Llama-style: 4 query heads share 2 key/value heads, and the scores use the rotated q and k.
    model = tiny_model("llama", n_kv_heads=2, perturb=0.1)
    ids = torch.arange(3, 10)[None]
    _, cache = model.run_with_cache(ids)
    assert cache["blocks.1.attn.hook_k"].shape[2] == 2
    tokens = [f"t{i}" for i in ids[0].tolist()]
    scores = cache["blocks.1.attn.hook_scores"][0, 3, 5].numpy()
    pattern = cache["blocks.1.attn.hook_pattern"][0, 3, 5].numpy()
    visible = pattern > 0
    for view in (
        viz.attention(cache, view="neuron", tokens=tokens, layer=1, head=3, query=5),
        viz.attention(model, ids, view="neuron", tokens=tokens, layer=1, head=3, query=5),
    ):
        _, scores_bar, softmax_bar = view.figure().data[2:]
        np.testing.assert_allclose(np.asarray(scores_bar.x)[visible], scores[visible], atol=1e-5)
        np.testing.assert_allclose(np.asarray(softmax_bar.x), pattern, atol=1e-5)


def test_attention_views_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="patterns has 5 query positions but tokens has 6"):
        viz.attention_heads(list("abcdef"), random_patterns())
    with pytest.raises(ValueError, match="patterns has 4 key positions but tokens has 5"):
        viz.attention_matrix(list("abcde"), np.ones((1, 2, 5, 4)) / 4)
    with pytest.raises(ValueError, match="patterns must have 3 or 4 dimensions"):
        viz.model_view(list("abcde"), np.ones((5, 5)))
    with pytest.raises(ValueError, match="layer=7 is not available"):
        viz.attention_matrix(list("abcde"), random_patterns(), layer=7)
    with pytest.raises(ValueError, match="must be a list of token strings"):
        viz.attention_heads("abcde", random_patterns())
    with pytest.raises(ValueError, match=r"q \(2, 5, 2, 4\) and k \(2, 5, 3, 4\) must agree"):
        viz.neuron_view(np.ones((2, 5, 2, 4)), np.ones((2, 5, 3, 4)), list("abcde"))
    with pytest.raises(ValueError, match="k has 4 positions but tokens has 5"):
        viz.neuron_view(np.ones((2, 5, 2, 4)), np.ones((2, 4, 2, 4)), list("abcde"))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_every_attention_view_draws_every_architecture(model_type):
    model = tiny_model(model_type)
    ids = torch.arange(3, 10)[None]
    _, cache = model.run_with_cache(ids)
    tokens = [f"t{i}" for i in ids[0].tolist()]
    for kind in ("head", "model", "matrix", "neuron"):
        view = viz.attention(cache, view=kind, tokens=cache.tokens or tokens)
        assert view.figures() and f'data-wb-view="{view.kind}"' in view.to_html()
        view.controls["layer"].value = 1
    # What the matrix shows is the cached pattern (keys before the queries, e.g. a memory, come first).
    view = viz.attention(cache, view="matrix", tokens=tokens, layer=1, head=3)
    shown = np.asarray(view.figure().data[0].z, dtype=float)
    pattern = cache["blocks.1.attn.hook_pattern"][0, 3].numpy()
    np.testing.assert_allclose(np.nan_to_num(shown), pattern, atol=1e-6)


# Compare ----------------------------------------------------------------------------------------------


def test_tokens_of_different_tokenizers_align_on_the_same_words(lm, tiny_gpt2):
    text = "The cat sat, on the mat."
    words = {}
    for name, model in (("bert", lm), ("gpt2", tiny_gpt2)):
        encoding = model.tokenize(text)
        words[name] = token_words(encoding.offsets[0], text)
        assert sorted({w for w in words[name] if w is not None}) == list(range(6))
    assert words["bert"][0] is None and words["bert"][-1] is None  # [CLS], [SEP]
    assert None not in words["gpt2"]


def test_word_pooling_sums_keys_and_averages_queries():
    patterns = np.array([[[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]]])
    hidden = np.arange(6, dtype=float).reshape(1, 3, 2)
    word_patterns, word_hidden = pool_to_words(patterns, hidden, [0, 1, 1], 2)
    np.testing.assert_allclose(word_patterns[0, 0], [[0.5, 0.5], [0.15, 0.85]])
    np.testing.assert_allclose(word_hidden[0], [[0, 1], [3, 4]])


def test_compare_synchronizes_selectors_and_maps_layers_by_cka(lm, tiny_gpt2):
    view = viz.compare({"minilm": lm, "gpt2": tiny_gpt2}, "The cat sat on the mat.")
    before = [np.asarray(t.z, dtype=float) for t in view.figure().data]
    assert [len(t.x) for t in view.figure().data] == [6, 6]  # both on the 6 words
    view.controls["layer"].value = 5  # minilm layer 5, gpt2 (2 layers) its last layer
    after = [np.asarray(t.z, dtype=float) for t in view.figure().data]
    assert not np.allclose(before[0], after[0]) and not np.allclose(before[1], after[1])
    assert [a.text for a in view.figure().layout.annotations] == ["minilm: L5 mean", "gpt2: L1 mean"]
    assert view.cka_matrix.shape == (7, 3)  # embeddings + 6 layers × embeddings + 2 layers
    _, _, hidden_a = view.runs["minilm"]
    _, _, hidden_b = view.runs["gpt2"]
    assert view.cka_matrix[3, 1] == pytest.approx(viz.linear_cka(hidden_a[3], hidden_b[1]))
    with pytest.raises(ValueError, match="at least two models"):
        viz.compare({"minilm": lm}, "text")


# Attributions --------------------------------------------------------------------------------------------


def test_token_attributions_method_selector_and_attribution_input(tiny_gpt2):
    attr = wb.attribute(
        tiny_gpt2, "The cat sat on the", target=" mat", method=["saliency", "input_x_gradient"]
    )
    view = viz.token_attributions(attr)
    assert view.output.value.count("<tr>") == 2
    view.controls["methods"].value = ("saliency",)
    assert view.output.value.count("<tr>") == 1 and "input_x_gradient" not in view.output.value
    assert view.output.value.count('class="wb-token"') == len(attr.tokens[0])
    with pytest.raises(ValueError, match=r"scores\['ig'\] has 3 positions but tokens has 2"):
        viz.token_attributions(["a", "b"], {"ig": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"methods \['lime'\] have no scores"):
        viz.token_attributions(["a", "b"], {"ig": [1, 2]}, methods=["lime"])


def test_faithfulness_curves_follow_the_selectors(tiny_gpt2):
    result = wb.attribution.evaluate(
        tiny_gpt2,
        ["The cat sat on the", "Hello world"],
        target=" mat",
        methods=["saliency", "input_x_gradient"],
    )
    view = viz.faithfulness_curves(result)
    assert {t.legendgroup for t in view.figure().data} == {"saliency", "input_x_gradient", "random"}
    view.controls["methods"].value = ("saliency",)
    assert len(view.figure().data) == 2  # deletion and insertion
    first = view.figure().data[0].y
    view.controls["text_index"].value = 1
    assert tuple(view.figure().data[0].y) != tuple(first)
    with pytest.raises(ValueError, match=r"lacks columns \['curve'\]"):
        viz.faithfulness_curves(result.curves.drop(columns="curve"))


# Hidden states -------------------------------------------------------------------------------------------


def test_projection_is_pca_and_follows_the_layer_selector():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    reps = rng.normal(size=(2, 30, 6)) * np.array([5, 3, 1, 1, 1, 1])
    labels = ["NOUN"] * 10 + ["VERB"] * 20
    view = viz.projection(reps, labels, hover=[f"w{i}" for i in range(30)])
    verbs = next(t for t in view.figure().data if t.name == "VERB")
    expected = PCA(2).fit_transform(reps[0])[10:]
    np.testing.assert_allclose(np.abs(np.column_stack([verbs.x, verbs.y])), np.abs(expected), atol=1e-8)
    view.controls["layer"].value = 1
    assert not np.allclose(next(t for t in view.figure().data if t.name == "VERB").x, verbs.x)
    with pytest.raises(ValueError, match="labels has 29 entries but reps has 30 points"):
        viz.projection(reps, labels[:-1])


def test_treebank_projection_colours_words_by_upos(lm):
    import probes  # the treebank view is in probes (it reads probes' treebank and store); viz draws it

    view = probes.treebank_projection(lm, max_sentences=5)
    names = {t.name for t in view.figure().data}
    assert {"NOUN", "VERB", "PUNCT"} <= names
    assert view.controls["layer"].options[0][0] == "layer embed"


def test_logit_lens_table_is_the_models_prediction_and_takes_a_target(tiny_gpt2):
    view = viz.logit_lens_table(tiny_gpt2, "The cat sat on the")
    heatmap = view.figure().data[0]
    logits = tiny_gpt2(**tiny_gpt2.tokenize("The cat sat on the")).logits[0].detach()
    probs = logits.softmax(-1)
    np.testing.assert_allclose(
        np.asarray(heatmap.z, dtype=float)[-1], probs.max(-1).values.numpy(), atol=1e-5
    )
    top_last = tiny_gpt2.tokenizer.decode([int(probs[-1].argmax())])
    assert heatmap.text[-1][-1] == top_last
    view.controls["target"].value = " mat"
    target_id = tiny_gpt2.tokenizer.encode(" mat", add_special_tokens=False)[0]
    np.testing.assert_allclose(
        np.asarray(view.figure().data[0].z, dtype=float)[-1], probs[:, target_id].numpy(), atol=1e-5
    )
    assert list(view.frame.columns) == [
        "layer",
        "pos",
        "input_token",
        "rank",
        "token",
        "token_id",
        "probability",
    ]


# Generation --------------------------------------------------------------------------------------------


def test_generation_explorer_click_extends_the_text_and_explains_the_token(tiny_gpt2):
    view = viz.generation_explorer(tiny_gpt2, "The cat sat on", k=4)
    explorer = view.explorer
    token_id, probability = explorer.candidates[1]
    explorer.candidate_box.children[1].click()  # what a click in the notebook does
    assert explorer.prompt == "The cat sat on" + tiny_gpt2.tokenizer.decode([token_id])
    assert explorer.chosen == ("The cat sat on", token_id)
    # GPT-2's last logit-lens row is the model's own prediction: the candidate's probability.
    assert explorer.trajectory["probability"].iloc[-1] == pytest.approx(probability, abs=1e-5)
    assert explorer.attribution.scores["input_x_gradient"].shape[1] == len(
        tiny_gpt2.to_str_tokens("The cat sat on")
    )
    assert len(explorer.candidate_box.children) == 4
    assert explorer.candidates == list(
        zip(*viz.generation.next_token_candidates(tiny_gpt2, explorer.prompt, 4))
    )


def test_generation_explorer_needs_a_causal_lm(lm):
    with pytest.raises(ValueError, match="needs a causal language model .* got BertModel"):
        viz.generation_explorer(lm, "The")


@pytest.mark.parametrize("model_type", architectures_with("causal_lm"))
def test_generation_explorer_works_for_every_decoder(model_type, tiny_gpt2):
    model = tiny_model(model_type, "causal_lm", vocab_size=tiny_gpt2.config.vocab_size)
    model.tokenizer = tiny_gpt2.tokenizer
    view = viz.generation_explorer(model, "The cat", k=3, method="saliency")
    view.explorer.choose(0)
    assert view.explorer.prompt.startswith("The cat") and len(view.explorer.trajectory) == model.n_layers + 1
    assert "Plotly.newPlot" in view.to_html()


# Probing ----------------------------------------------------------------------------------------------


def probing_frame():
    rows = []
    for model in ("minilm", "gpt2"):
        for task, metric in (("upos", "accuracy"), ("depth", "spearman")):
            for layer in range(4):
                value = 0.5 + 0.1 * layer + (0.05 if model == "minilm" else 0)
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "layer": layer,
                        "probe": "linear",
                        "split": "test",
                        "metric": metric,
                        "value": value,
                        "control": 0.4 if task == "upos" else None,
                        "selectivity": value - 0.4 if task == "upos" else None,
                    }
                )
    return pd.DataFrame(rows)


def test_probe_results_one_line_per_model_and_selectors():
    view = viz.probe_results(probing_frame())
    figure = view.figure()
    assert [t.name for t in figure.data] == ["minilm accuracy", "gpt2 accuracy"]
    assert list(figure.data[0].y) == pytest.approx([0.55, 0.65, 0.75, 0.85])
    view.controls["show"].value = "both"
    assert len(view.figure().data) == 4
    view.controls["task"].value = "depth"
    assert view.controls["metric"].value == "spearman"
    assert [t.name for t in view.figure().data] == [
        "minilm spearman",
        "gpt2 spearman",
    ]  # no control for depth
    with pytest.raises(ValueError, match=r"lacks columns \['layer'\]"):
        viz.probe_results(probing_frame().drop(columns="layer"))


# The View object --------------------------------------------------------------------------------------


def test_a_view_offers_the_widget_and_a_static_rendering():
    view = viz.attention_matrix(list("abc"), random_patterns(n=3))
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert 'data-wb-view="attention_matrix"' in bundle["text/html"]
    assert "Plotly.newPlot" in bundle["text/html"] and "cdn" not in bundle["text/html"].lower()
    page = view.to_html(full_html=True)
    assert page.count("Plotly.newPlot") == 1 and len(page) > 1_000_000  # plotly.js inlined
    with pytest.raises(ValueError, match="plot needs a plotly figure"):
        viz.plot("not a figure")
