"""Tests of probes.models: batched per-layer probes on synthetic data with a signal planted in one layer."""

from __future__ import annotations

import math

import pytest
import torch

from probes.models import (
    ArcProbe,
    DepthProbe,
    DistanceProbe,
    LinearProbe,
    MDLProbe,
    MLPProbe,
    minimum_spanning_tree,
    spearman,
    tree_depths,
    tree_distances,
    uuas,
)

PLANTED = 2
N_LAYERS = 4


def planted_classification(n=1200, d=16, n_classes=3, seed=0, noise=0.0):
    """Labels are the argmax of a linear map of layer PLANTED; other layers are independent noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_LAYERS, n, d, generator=g)
    weight = torch.randn(d, n_classes, generator=torch.Generator().manual_seed(99))
    scores = x[PLANTED] @ weight + noise * torch.randn(n, n_classes, generator=g)
    return x, scores.argmax(-1)


def split(x, y, n_train):
    return x[:, :n_train], y[:n_train], x[:, n_train:], y[n_train:]


@pytest.fixture(scope="module")
def classification():
    x, y = planted_classification(n=2000)
    return split(x, y, 1200)


# ---------------------------------------------------------------------------------------------------------------
# Linear and MLP probes


@pytest.mark.parametrize(
    "make", [lambda: LinearProbe(3, max_epochs=60), lambda: MLPProbe(3, hidden=32, max_epochs=60)]
)
def test_probe_finds_planted_layer(classification, make):
    x_tr, y_tr, x_te, y_te = classification
    probe = make().fit(x_tr, y_tr, x_te[:, :300], y_te[:300])
    result = probe.score(x_te[:, 300:], y_te[300:])
    assert set(result) >= {"accuracy", "macro_f1", "loss"}
    acc = result["accuracy"]
    assert acc.shape == (N_LAYERS,)
    assert acc[PLANTED] > 0.93, acc
    chance = torch.bincount(y_te[300:]).max() / len(y_te[300:])
    for layer in range(N_LAYERS):
        if layer != PLANTED:
            assert acc[layer] < chance + 0.08, acc
    assert result["macro_f1"][PLANTED] > 0.9
    assert probe.predict(x_te).shape == (N_LAYERS, x_te.shape[1])


def test_random_labels_give_chance():
    x, _ = planted_classification(n=1600)
    y = torch.randint(0, 4, (1600,), generator=torch.Generator().manual_seed(5))
    x_tr, y_tr, x_te, y_te = split(x, y, 1000)
    for probe in (LinearProbe(4, max_epochs=40), MLPProbe(4, hidden=64, max_epochs=40)):
        acc = probe.fit(x_tr, y_tr).score(x_te, y_te)["accuracy"]
        assert (acc - 0.25).abs().max() < 0.07, (type(probe).__name__, acc)


def test_linear_probe_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    x, y = planted_classification(n=1500, noise=1.5, seed=3)
    # make every layer somewhat informative, at different strengths
    x = x.clone()
    for layer, strength in enumerate([0.3, 0.8, 0.0, 2.0]):
        x[layer] += strength * torch.nn.functional.one_hot(y, 16)[:, :16].float() @ torch.eye(16)
    x_tr, y_tr, x_te, y_te = split(x, y, 1000)
    weight_decay = 1e-3
    probe = LinearProbe(3, weight_decay=weight_decay, max_epochs=400, lr=5e-2, batch_size=1000).fit(
        x_tr, y_tr
    )
    ours = probe.score(x_te, y_te)["accuracy"]
    for layer in range(N_LAYERS):
        mean, std = x_tr[layer].mean(0), x_tr[layer].std(0, unbiased=False)
        clf = LogisticRegression(C=1.0 / (len(y_tr) * weight_decay), max_iter=2000)
        clf.fit(((x_tr[layer] - mean) / std).numpy(), y_tr.numpy())
        theirs = clf.score(((x_te[layer] - mean) / std).numpy(), y_te.numpy())
        assert abs(float(ours[layer]) - theirs) <= 0.01, (layer, float(ours[layer]), theirs)


def _sklearn_objective(x, y, weight, bias, weight_decay):
    logits = x @ weight + bias
    return float(torch.nn.functional.cross_entropy(logits, y) + 0.5 * weight_decay * weight.pow(2).sum())


def test_lbfgs_reaches_the_sklearn_optimum():
    """The default L-BFGS fit minimizes the same objective as scikit-learn, layer by layer, at least as well."""
    from sklearn.linear_model import LogisticRegression

    x, y = planted_classification(n=800, d=12, noise=2.0, seed=4)
    weight_decay = 1e-2
    probe = LinearProbe(3, weight_decay=weight_decay, standardize=False, tol=1e-6).fit(x, y)
    assert probe.optimizer == "lbfgs"
    weight, bias = probe.params_
    for layer in range(N_LAYERS):
        ours = _sklearn_objective(x[layer], y, weight[layer], bias[layer], weight_decay)
        clf = LogisticRegression(C=1.0 / (len(y) * weight_decay), max_iter=5000, tol=1e-8).fit(
            x[layer].numpy(), y.numpy()
        )
        theirs = _sklearn_objective(
            x[layer],
            y,
            torch.tensor(clf.coef_.T, dtype=torch.float32),
            torch.tensor(clf.intercept_, dtype=torch.float32),
            weight_decay,
        )
        assert ours <= theirs + 1e-5, (layer, ours, theirs)


def test_linear_probe_optimizers_agree(classification):
    x_tr, y_tr, x_te, y_te = classification
    lbfgs = LinearProbe(3).fit(x_tr, y_tr)
    adam = LinearProbe(3, optimizer="adam", max_epochs=60).fit(x_tr, y_tr)
    for probe in (lbfgs, adam):
        assert probe.score(x_te, y_te)["accuracy"][PLANTED] > 0.93
    # the same objective; the full-batch optimizer gets at least as low on every layer
    assert torch.all(lbfgs.history_["train_loss"][-1] <= adam.history_["train_loss"][-1] + 1e-3)
    with pytest.raises(ValueError, match="optimizer"):
        LinearProbe(3, optimizer="sgd")


def test_lbfgs_layers_stop_independently():
    """A layer that converges early stops moving while the others go on; its result equals a lone fit."""
    x, y = planted_classification(n=600, d=8, noise=1.0)
    x = x.clone()
    # a tiny-scale layer: its gradient is below tol almost at once (no standardization here)
    x[0] = x[0] * 1e-3
    together = LinearProbe(3, standardize=False).fit(x, y)
    alone = LinearProbe(3, standardize=False).fit(x[PLANTED : PLANTED + 1], y)
    torch.testing.assert_close(together.params_[0][PLANTED], alone.params_[0][0], rtol=1e-3, atol=1e-4)
    losses = together.history_["train_loss"]
    assert losses.shape[1] == N_LAYERS and losses.shape[0] > 3
    # every iteration decreases (or keeps) every layer's objective
    assert torch.all(losses[1:] <= losses[:-1] + 1e-6)


def test_batched_equals_single_layer():
    """Training all layers at once gives each layer the probe it would get alone."""
    x_tr, y_tr, x_te, y_te = split(*planted_classification(n=600), 400)
    together = LinearProbe(3, max_epochs=20).fit(x_tr, y_tr, x_te, y_te)
    alone = LinearProbe(3, max_epochs=20).fit(
        x_tr[PLANTED : PLANTED + 1], y_tr, x_te[PLANTED : PLANTED + 1], y_te
    )
    torch.testing.assert_close(together.params_[0][PLANTED], alone.params_[0][0], rtol=1e-4, atol=1e-5)
    assert together.best_epoch_[PLANTED] == alone.best_epoch_[0]


def test_early_stopping_and_best_epoch():
    # few examples, many dimensions: noise layers overfit at once, the planted layer keeps improving for a while
    x, y = planted_classification(n=700, d=64, noise=0.5)
    x_tr, y_tr, x_dev, y_dev = split(x, y, 200)
    probe = LinearProbe(3, weight_decay=0.0, max_epochs=150, patience=10).fit(x_tr, y_tr, x_dev, y_dev)
    best = probe.best_epoch_
    assert best.shape == (N_LAYERS,) and best.dtype == torch.long
    epochs_run = probe.history_["dev_loss"].shape[0]
    assert epochs_run < 150  # stopped early
    assert (best >= 1).all() and (best <= epochs_run).all()
    dev_loss = probe.history_["dev_loss"]
    for layer in range(N_LAYERS):
        # the kept epoch is the best dev epoch, and the kept parameters reproduce that dev loss
        assert int(best[layer]) == int(dev_loss[:, layer].argmin()) + 1
    torch.testing.assert_close(
        probe.score(x_dev, y_dev)["loss"], dev_loss.min(0).values, rtol=1e-4, atol=1e-5
    )
    noise_layers = [layer for layer in range(N_LAYERS) if layer != PLANTED]
    assert best[noise_layers].max() < best[PLANTED]
    # without a dev set: all epochs, the last one kept
    last = LinearProbe(3, max_epochs=7).fit(x_tr, y_tr)
    assert (last.best_epoch_ == 7).all()


def test_weight_decay_shrinks_weights():
    x_tr, y_tr, _, _ = split(*planted_classification(n=600), 400)
    norms = []
    for wd in (0.0, 1e-2, 1e-1):
        probe = LinearProbe(3, weight_decay=wd, max_epochs=30).fit(x_tr, y_tr)
        norms.append(probe.params_[0].norm(dim=(1, 2)))
    assert (norms[0] > norms[1]).all() and (norms[1] > norms[2]).all()


def test_seed_is_reproducible():
    x_tr, y_tr, x_te, y_te = split(*planted_classification(n=500), 300)
    a = MLPProbe(3, hidden=16, max_epochs=5, seed=1).fit(x_tr, y_tr).predict_logits(x_te)
    b = MLPProbe(3, hidden=16, max_epochs=5, seed=1).fit(x_tr, y_tr).predict_logits(x_te)
    c = MLPProbe(3, hidden=16, max_epochs=5, seed=2).fit(x_tr, y_tr).predict_logits(x_te)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    x_tr, y_tr, x_te, y_te = split(*planted_classification(n=900, n_classes=5, noise=2.0), 600)
    probe = LinearProbe(5, max_epochs=10).fit(x_tr, y_tr)
    f1 = probe.score(x_te, y_te)["macro_f1"]
    predictions = probe.predict(x_te)
    for layer in range(N_LAYERS):
        expected = f1_score(y_te.numpy(), predictions[layer].numpy(), average="macro")
        assert math.isclose(float(f1[layer]), expected, abs_tol=1e-5)


def test_bad_inputs():
    x, y = planted_classification(n=100)
    with pytest.raises(ValueError, match="single class"):
        LinearProbe(3).fit(x, torch.zeros(100, dtype=torch.long))
    with pytest.raises(ValueError, match="n_classes"):
        LinearProbe(2).fit(x, y)  # labels go up to 2
    with pytest.raises(ValueError, match=r"\[layer, n, d\]"):
        LinearProbe(3).fit(x[0], y)
    with pytest.raises(ValueError, match="n=100"):
        LinearProbe(3).fit(x, y[:50])
    with pytest.raises(TypeError, match="integers"):
        LinearProbe(3).fit(x, y.float())
    with pytest.raises(ValueError, match="do not match|does not match"):
        LinearProbe(3).fit(x, y, x[:2], y)
    with pytest.raises(ValueError, match="both"):
        LinearProbe(3).fit(x, y, x)
    with pytest.raises(ValueError, match="n_classes"):
        MLPProbe(1)
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearProbe(3).score(x, y)
    probe = LinearProbe(3, max_epochs=2).fit(x, y)
    with pytest.raises(ValueError, match="does not match"):
        probe.score(x[:, :, :5], y)
    with pytest.raises(ValueError, match="n_classes"):
        probe.score(x, y + 1)


# ---------------------------------------------------------------------------------------------------------------
# MDL


def test_mdl_planted_layer_compresses():
    x, y = planted_classification(n=1500)
    mdl = MDLProbe(3, max_epochs=30).fit(x, y)
    result = mdl.result_
    assert set(result) == {"codelength_bits", "uniform_bits", "compression"}
    torch.testing.assert_close(result["uniform_bits"], torch.full((N_LAYERS,), 1500 * math.log2(3)))
    torch.testing.assert_close(result["codelength_bits"], mdl.block_bits_.sum(0))
    ends = mdl.block_ends(1500)
    assert ends[0] == 1 and ends[-1] == 1500 and ends == sorted(set(ends))
    assert float(mdl.block_bits_[0, 0]) == pytest.approx(math.log2(3))  # the first example costs log2(K)
    compression = result["compression"]
    assert compression[PLANTED] > 2.0, compression
    for layer in range(N_LAYERS):
        if layer != PLANTED:
            assert compression[layer] < 1.1, compression
    # score() on other data works the same way
    x2, y2 = planted_classification(n=400, seed=7)
    assert mdl.score(x2, y2)["compression"].argmax() == PLANTED


def test_mdl_bad_inputs():
    with pytest.raises(ValueError, match="fractions"):
        MDLProbe(3, fractions=(50, 10, 100))
    with pytest.raises(ValueError, match="100"):
        MDLProbe(3, fractions=(10, 50))
    x, y = planted_classification(n=100)
    with pytest.raises(ValueError, match="n_classes"):
        MDLProbe(2).fit(x, y)


# ---------------------------------------------------------------------------------------------------------------
# Structural probes


def test_tree_helpers():
    heads = [1, -1, 1, 2]  # 0 <- 1 -> 2 -> 3, root 1
    torch.testing.assert_close(tree_depths(heads), torch.tensor([1.0, 0.0, 1.0, 2.0]))
    expected = torch.tensor([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(tree_distances(heads), expected)
    with pytest.raises(ValueError, match="one root"):
        tree_depths([-1, -1])
    with pytest.raises(ValueError, match="tree"):
        tree_depths([1, 2, 0, -1])


def test_mst_and_uuas_hand_example():
    # 4 words; predicted distances whose MST is the chain 0-1, 1-2, 1-3
    predicted = torch.tensor(
        [[0.0, 1.0, 5.0, 6.0], [1.0, 0.0, 2.0, 1.5], [5.0, 2.0, 0.0, 4.0], [6.0, 1.5, 4.0, 0.0]]
    )
    adjacency = minimum_spanning_tree(predicted)
    edges = {(i, j) for i, j in adjacency.nonzero().tolist() if i < j}
    assert edges == {(0, 1), (1, 2), (1, 3)}
    assert torch.equal(adjacency, adjacency.T)
    gold = tree_distances([1, -1, 1, 2])  # gold edges 0-1, 1-2, 2-3
    assert float(uuas(predicted[None], gold[None])) == pytest.approx(2 / 3)
    assert float(uuas(gold[None], gold[None])) == 1.0
    # masking word 3 (punctuation): both trees over words 0-2 are 0-1, 1-2
    mask = torch.tensor([[True, True, True, False]])
    assert float(uuas(predicted[None], gold[None], mask)) == 1.0
    masked = minimum_spanning_tree(predicted, mask[0])
    assert not masked[3].any() and int(masked.sum()) == 4
    # batched over a leading layer dimension, with padding masked out
    stacked = torch.stack([predicted, gold])[:, None]  # [2 layers, 1 sentence, 4, 4]
    torch.testing.assert_close(uuas(stacked, gold[None]), torch.tensor([2 / 3, 1.0]))


def test_spearman_matches_scipy_style_ties():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (5, 9), generator=g).float()
    y = torch.randn(5, 9, generator=g)
    ours = spearman(x, y)
    for row in range(5):
        assert math.isclose(float(ours[row]), spearmanr(x[row], y[row]).statistic, abs_tol=1e-5)
    valid = torch.tensor([True] * 6 + [False] * 3)
    assert math.isclose(
        float(spearman(x[0], y[0], valid)), spearmanr(x[0, :6], y[0, :6]).statistic, abs_tol=1e-5
    )
    assert math.isnan(float(spearman(torch.ones(4), torch.arange(4.0))))


def planted_trees(n_sentences, seed, n_layers=3, planted=1, d=24, max_len=12):
    """Random trees; in layer ``planted`` word i is A @ v_i, v_i the indicator of the non-root nodes on its path
    to the root, so that ||v_i - v_j||^2 is the tree distance and ||v_i||^2 the depth. Word order is shuffled."""
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(max_len, d, generator=torch.Generator().manual_seed(123))
    features, distances, depths = [], [], []
    for _ in range(n_sentences):
        n = int(torch.randint(5, max_len + 1, (1,), generator=g))
        heads = [-1] + [int(torch.randint(0, i, (1,), generator=g)) for i in range(1, n)]
        paths = torch.zeros(n, max_len)
        for i in range(n):
            node = i
            while heads[node] >= 0:
                paths[i, node] = 1
                node = heads[node]
        layers = [2 * torch.randn(n, d, generator=g) for _ in range(n_layers)]
        layers[planted] = paths @ embed + 0.01 * torch.randn(n, d, generator=g)
        order = torch.randperm(n, generator=g)  # position k holds node order[k]
        position = torch.empty(n, dtype=torch.long)
        position[order] = torch.arange(n)
        word_heads = [-1 if heads[int(node)] < 0 else int(position[heads[int(node)]]) for node in order]
        features.append(torch.stack(layers)[:, order])
        distances.append(tree_distances(word_heads))
        depths.append(tree_depths(word_heads))
    return features, distances, depths


@pytest.fixture(scope="module")
def trees():
    return planted_trees(300, seed=0), planted_trees(100, seed=1)


def test_distance_probe_recovers_planted_trees(trees):
    (f, dist, _), (f_dev, dist_dev, _) = trees
    probe = DistanceProbe(16, lr=1e-2, max_epochs=40).fit(f, dist, f_dev, dist_dev)
    assert probe.projection_.shape == (3, 24, 16)
    result = probe.score(f_dev, dist_dev)
    assert result["uuas"][1] > 0.97, result
    assert result["spearman"][1] > 0.9, result
    assert (result["uuas"][[0, 2]] < 0.4).all(), result
    assert (result["spearman"][[0, 2]] < 0.6).all(), result
    predicted = probe.predict(f_dev[:2])
    assert predicted[0].shape == (3, f_dev[0].shape[1], f_dev[0].shape[1])
    # a punctuation mask drops words from both trees
    mask = [torch.arange(t.shape[1]) != 0 for t in f_dev]
    masked = probe.score(f_dev, dist_dev, mask)
    assert masked["uuas"][1] > 0.8


def test_depth_probe_recovers_planted_depths(trees):
    (f, _, depth), (f_dev, _, depth_dev) = trees
    probe = DepthProbe(16, lr=1e-2, max_epochs=40).fit(f, depth, f_dev, depth_dev)
    result = probe.score(f_dev, depth_dev)
    assert result["root_accuracy"][1] > 0.95, result
    assert result["spearman"][1] > 0.9, result
    assert (result["root_accuracy"][[0, 2]] < 0.4).all(), result
    assert (result["spearman"][[0, 2]].abs() < 0.3).all(), result
    plain = DepthProbe(16, lr=1e-2, max_epochs=2, spearman_lengths=None).fit(f, depth).score(f_dev, depth_dev)
    assert torch.isfinite(plain["spearman"]).all()


def planted_heads(n_sentences, seed, n_layers=3, planted=1, half=24, max_len=12):
    """Random trees; in layer ``planted`` word i is ``[e_i; e_head(i)]`` (random unit "identity" vectors; zeros
    for the root's head), so a bilinear map pairing the second half of i with the first half of j finds heads."""
    g = torch.Generator().manual_seed(seed)
    features, heads = [], []
    for _ in range(n_sentences):
        n = int(torch.randint(4, max_len + 1, (1,), generator=g))
        head = torch.tensor([-1] + [int(torch.randint(0, n, (1,), generator=g)) for _ in range(1, n)])
        head[1:] = torch.where(head[1:] == torch.arange(1, n), 0, head[1:])  # nobody heads itself
        ids = torch.nn.functional.normalize(torch.randn(n, half, generator=g), dim=-1)
        own_head = torch.where((head >= 0)[:, None], ids[head.clamp(min=0)], 0.0)
        layers = [torch.randn(n, 2 * half, generator=g) for _ in range(n_layers)]
        layers[planted] = torch.cat([ids, own_head], dim=-1)
        features.append(torch.stack(layers))
        heads.append(head)
    return features, heads


def test_arc_probe_finds_planted_heads():
    f, heads = planted_heads(300, seed=0)
    f_dev, heads_dev = planted_heads(80, seed=1)
    probe = ArcProbe(24, lr=1e-2, max_epochs=30).fit(f, heads, f_dev, heads_dev)  # rank 24: the identity
    assert probe.projection_.shape == (3, 48, 48)  # query and key maps side by side
    result = probe.score(f_dev, heads_dev)
    assert set(result) == {"accuracy", "loss"}
    assert result["accuracy"][1] > 0.95, result
    assert (result["accuracy"][[0, 2]] < 0.3).all(), result  # chance is about 1/8 here
    scores = probe.predict(f_dev[:2])
    assert scores[0].shape == (3, f_dev[0].shape[1], f_dev[0].shape[1])
    with pytest.raises(ValueError, match="labels\\[0\\]"):
        probe.score(f_dev[:1], [heads_dev[1]])


def test_structural_bad_inputs(trees):
    (f, dist, depth), _ = trees
    with pytest.raises(ValueError, match="rank"):
        DistanceProbe(0)
    with pytest.raises(ValueError, match="labels\\[0\\]"):
        DistanceProbe(4).fit(f[:3], depth[:3])  # depth vectors given to the distance probe
    with pytest.raises(ValueError, match="one entry per sentence"):
        DepthProbe(4).fit(f[:3], depth[:2])
    with pytest.raises(ValueError, match="features\\[1\\]"):
        DepthProbe(4).fit([f[0], f[1][:2]], depth[:2])
    with pytest.raises(TypeError, match="list"):
        DepthProbe(4).fit(f[0], depth[0])
    with pytest.raises(RuntimeError, match="not fitted"):
        DepthProbe(4).score(f[:2], depth[:2])
