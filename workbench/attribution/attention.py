"""Attention-based token attribution: raw attention, attention rollout, attention flow, gradient-weighted attention.

Pure tensor functions (no model, no hooks). Their input is the softmax attention of every layer, stacked:

    patterns: [layer, batch, head, query_pos, key_pos]

i.e. ``torch.stack([cache[f"blocks.{l}.attn.hook_pattern"] for l in range(n_layers)])`` (a list of the
per-layer [batch, head, query_pos, key_pos] tensors is accepted too). Every function returns one score per
key (input token) and sequence, [batch, key_pos]: how much the token at ``query_positions[b]`` (e.g. 0 for
[CLS] in an encoder, the last real token in a decoder) draws on each input token. Negative query positions
count from the end (-1 is the last position).

``attention_mask`` ([batch, key_pos], 1 for real tokens, 0 for padding) is optional everywhere; padding keys
get exactly 0 and no attribution passes through a padding position, even if the patterns give padding some
attention. The query position must be a real token.

Rollout and flow (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers") model each layer as

    A_l = normalize_rows(mean_heads(W_l) + I)        (= 0.5 * W_l + 0.5 * I when W_l's rows sum to 1)

where W_l is the layer's attention restricted to real tokens (rows and columns of padding set to 0) and I
stands for the residual connection (``add_residual=False``: A_l = the masked head mean of W_l, unnormalized).
Padding rows of A_l are rows of I, so they never reach a real token.

* rollout = A_L @ ... @ A_2 @ A_1, read at the query row;
* flow = the maximum flow in the layered graph with nodes (layer l = 0..L, position i) and an edge
  (l - 1, j) -> (l, i) of capacity A_l[i, j], from each input node (0, j) to the query node (L, q).

A two-layer example with two tokens and one head, query position 0::

    W_1 = [[1, 0],        A_1 = [[1,  0 ],        W_2 = [[0, 1],        A_2 = [[.5, .5],
           [1, 0]]               [.5, .5]]               [0, 1]]               [0,  1 ]]

    raw attention (layer -1)  = W_2[0]                     = [0,   1  ]
    rollout                   = [1, 0] @ A_2 @ A_1 = [.5, .5] @ A_1 = [.75, .25]
    flow from token 0         = 0.5 via (1, 0) + 0.5 via (1, 1) = 1.0
    flow from token 1         = min(A_1[1, 1], A_2[0, 1]) via (1, 1) = 0.5     -> flow = [1.0, 0.5]
    rollout, add_residual=False = [1, 0] @ W_2 @ W_1 = [1, 0]

Rollout is a product of row-stochastic matrices, so a real query's rollout sums to 1; flow values do not
(each is at most 1, the capacity into the query node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "ATTENTION_METHODS",
    "attention_flow",
    "attention_rollout",
    "grad_attention",
    "layer_attention_matrices",
    "raw_attention",
]

# Residual capacities at or below this count as saturated in the max-flow (capacities are at most 1).
_FLOW_EPS = 1e-12


# Validation --------------------------------------------------------------------------------------------


def _as_patterns(patterns, name: str = "patterns") -> torch.Tensor:
    if isinstance(patterns, (list, tuple)):
        if not patterns:
            raise ValueError(
                f"{name} is an empty list; pass one [batch, head, query_pos, key_pos] tensor per layer"
            )
        patterns = torch.stack([torch.as_tensor(p) for p in patterns])
    patterns = torch.as_tensor(patterns)
    if patterns.dim() != 5:
        raise ValueError(
            f"{name} must be [layer, batch, head, query_pos, key_pos] (5 dimensions), got shape {tuple(patterns.shape)}"
        )
    if not patterns.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {patterns.dtype}")
    if 0 in patterns.shape:
        raise ValueError(f"{name} has an empty dimension: shape {tuple(patterns.shape)}")
    return patterns.to(torch.promote_types(patterns.dtype, torch.float32))


def _require_square(patterns: torch.Tensor, what: str) -> None:
    if patterns.shape[3] != patterns.shape[4]:
        raise ValueError(
            f"{what} needs square attention (query_pos == key_pos, the full sequence attending to itself), "
            f"got query_pos={patterns.shape[3]}, key_pos={patterns.shape[4]}"
        )


def _query_positions(query_positions, batch: int, length: int) -> torch.Tensor:
    """[batch] int64 in 0..length-1 (an int applies to every sequence; negative positions count from the end)."""
    q = torch.as_tensor(query_positions)
    if q.is_floating_point() or q.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise ValueError(f"query_positions must be integers, got dtype {q.dtype}")
    if q.dim() == 0:
        q = q.expand(batch)
    if q.dim() != 1 or q.shape[0] != batch:
        raise ValueError(
            f"query_positions must be one position per sequence, [batch={batch}], got shape {tuple(q.shape)}"
        )
    q = q.to(torch.int64).cpu()
    bad = ((q < -length) | (q >= length)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"query position {q[bad[0]].item()} (sequence {bad[0]}) is out of range for {length} query positions "
            f"(valid: {-length}..{length - 1})"
        )
    return q % length


def _mask(attention_mask, batch: int, length: int, q: torch.Tensor | None) -> torch.Tensor | None:
    """attention_mask as a bool [batch, key_pos] tensor on the CPU (None stays None); the queries must be real."""
    if attention_mask is None:
        return None
    mask = torch.as_tensor(attention_mask).detach().cpu()
    if mask.dim() != 2 or tuple(mask.shape) != (batch, length):
        raise ValueError(
            f"attention_mask must be [batch={batch}, key_pos={length}], got shape {tuple(mask.shape)}"
        )
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    mask = mask.bool()
    if q is not None:
        padded = (~mask[torch.arange(batch), q]).nonzero().flatten().tolist()
        if padded:
            b = padded[0]
            raise ValueError(
                f"query position {q[b].item()} of sequence {b} is padding (attention_mask is 0 there)"
            )
    return mask


def _index(value, count: int, what: str, expected: str = "an int") -> int:
    """``value`` as an index into ``count`` layers or heads (negative counts from the end), else a ValueError
    naming ``what`` (``"layer"``, ``"head"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    if not -count <= value < count:
        raise ValueError(f"{what} {value} is out of range for {count} {what}s (valid: {-count}..{count - 1})")
    return int(value) % count


def _read_rows(matrices: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """matrices [batch, query_pos, key_pos], q [batch] -> [batch, key_pos]."""
    return matrices[torch.arange(matrices.shape[0], device=matrices.device), q.to(matrices.device)]


def _zero_padding(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return scores if mask is None else scores * mask.to(scores.device, scores.dtype)


# Raw attention -----------------------------------------------------------------------------------------


def raw_attention(
    patterns, query_positions, layer: int = -1, head: int | None = None, attention_mask=None
) -> torch.Tensor:
    """The attention the query token pays to each key at one layer: [batch, key_pos].

    Args:
        patterns: [layer, batch, head, query_pos, key_pos] softmax attention (or a list of per-layer
            [batch, head, query_pos, key_pos] tensors).
        query_positions: [batch] (or an int for every sequence): the query row read in each sequence.
        layer: which layer (negative counts from the last; default the last layer).
        head: which head, or None for the mean over heads.
        attention_mask: optional [batch, key_pos]; padding keys are set to 0 (no renormalization).

    Returns:
        ``patterns[layer, b, head, query_positions[b], :]`` (head-averaged if ``head`` is None), [batch, key_pos].
    """
    patterns = _as_patterns(patterns)
    n_layers, batch, n_heads, n_queries, n_keys = patterns.shape
    q = _query_positions(query_positions, batch, n_queries)
    layer = _index(layer, n_layers, "layer")
    mask = _mask(attention_mask, batch, n_keys, q if n_queries == n_keys else None)
    at_layer = patterns[layer]  # [batch, head, query_pos, key_pos]
    if head is None:
        at_layer = at_layer.mean(1)
    else:
        at_layer = at_layer[:, _index(head, n_heads, "head", "an int or None (the mean over heads)")]
    return _zero_padding(_read_rows(at_layer, q), mask)


# Rollout -----------------------------------------------------------------------------------------------


def layer_attention_matrices(patterns, attention_mask=None, add_residual: bool = True) -> torch.Tensor:
    """The per-layer matrices A_l that rollout multiplies and flow uses as capacities: [layer, batch, pos, pos].

    A_l = normalize_rows(mean_heads(W_l) * m_q * m_k + I) with ``add_residual`` (= 0.5 W + 0.5 I for
    row-stochastic W), else mean_heads(W_l) * m_q * m_k, where m is the attention mask (rows and columns of
    padding zeroed; padding rows become rows of I with the residual, rows of 0 without).
    """
    patterns = _as_patterns(patterns)
    _require_square(patterns, "layer_attention_matrices")
    n_layers, batch, _, length, _ = patterns.shape
    mask = _mask(attention_mask, batch, length, None)
    matrices = patterns.mean(2)  # [layer, batch, pos, pos]
    if mask is not None:
        m = mask.to(matrices.device, matrices.dtype)
        matrices = matrices * m[None, :, :, None] * m[None, :, None, :]
    if add_residual:
        matrices = matrices + torch.eye(length, dtype=matrices.dtype, device=matrices.device)
        matrices = matrices / matrices.sum(-1, keepdim=True)
    return matrices


def _layer_matrices_and_queries(what: str, patterns, query_positions, attention_mask, add_residual: bool):
    """What rollout and flow start from: ``(patterns, matrices, q, mask)``, the checked square patterns
    [layer, batch, head, pos, pos] (a float tensor), their :func:`layer_attention_matrices` [layer, batch, pos,
    pos], the query positions [batch] and the bool attention mask [batch, pos] (or None)."""
    patterns = _as_patterns(patterns)
    _require_square(patterns, what)
    _, batch, _, length, _ = patterns.shape
    q = _query_positions(query_positions, batch, length)
    mask = _mask(attention_mask, batch, length, q)
    return patterns, layer_attention_matrices(patterns, mask, add_residual), q, mask


def attention_rollout(
    patterns, query_positions, attention_mask=None, add_residual: bool = True
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): [batch, key_pos].

    rollout = A_L @ ... @ A_1 (see :func:`layer_attention_matrices`), read at row ``query_positions[b]``:
    the share of each input token in the query token's final representation when attention mixes tokens
    linearly and the residual stream carries half. Computed as a row vector pushed down the layers,
    e_q^T A_L ... A_1, so the cost is O(layer * batch * pos^2). Differentiable in ``patterns``.

    Args:
        patterns: [layer, batch, head, pos, pos] softmax attention (or a list of per-layer tensors).
        query_positions: [batch] (or an int): the output position to explain in each sequence.
        attention_mask: optional [batch, pos]; padding keys get exactly 0 and nothing flows through them.
        add_residual: add the identity for the residual connection and renormalize rows (the paper's
            default); False multiplies the raw head-averaged attention.

    Returns:
        [batch, pos]; each row sums to 1 with ``add_residual`` and row-stochastic patterns.
    """
    _, matrices, q, mask = _layer_matrices_and_queries(
        "attention_rollout", patterns, query_positions, attention_mask, add_residual
    )
    n_layers, _, length, _ = matrices.shape
    row = torch.nn.functional.one_hot(q, length).to(matrices.device, matrices.dtype)  # [batch, pos]
    for layer in reversed(range(n_layers)):
        row = torch.einsum("bi,bij->bj", row, matrices[layer])
    return _zero_padding(row, mask)


# Flow --------------------------------------------------------------------------------------------------


class _FlowNetwork:
    """A directed graph with float capacities and Dinic's max-flow (BFS level graph + blocking flows).

    Edges are stored in flat lists; edge e and its reverse e ^ 1 are adjacent. ``max_flow`` restores the
    capacities first, so one network serves many (source, sink) pairs.
    """

    def __init__(self, n_nodes: int):
        self.n_nodes = n_nodes
        self.adjacency: list[list[int]] = [[] for _ in range(n_nodes)]
        self.head: list[int] = []  # the node each edge points to
        self.capacity: list[float] = []

    def add_edge(self, tail: int, head: int, capacity: float) -> None:
        self.adjacency[tail].append(len(self.head))
        self.head.append(head)
        self.capacity.append(capacity)
        self.adjacency[head].append(len(self.head))
        self.head.append(tail)
        self.capacity.append(0.0)

    def max_flow(self, source: int, sink: int, eps: float = _FLOW_EPS) -> float:
        if source == sink:
            raise ValueError("source and sink are the same node")
        residual = list(self.capacity)
        adjacency, head, n_nodes = self.adjacency, self.head, self.n_nodes
        total = 0.0
        while True:
            # Levels: BFS distance from the source over edges with residual capacity.
            level = [-1] * n_nodes
            level[source] = 0
            queue = deque([source])
            while queue:
                u = queue.popleft()
                for e in adjacency[u]:
                    v = head[e]
                    if level[v] < 0 and residual[e] > eps:
                        level[v] = level[u] + 1
                        queue.append(v)
            if level[sink] < 0:
                return total
            # Blocking flow: DFS along level-increasing edges, with a current-arc pointer per node.
            arc = [0] * n_nodes
            path: list[int] = []  # edges from the source to u
            u = source
            while True:
                if u == sink:
                    pushed = min(residual[e] for e in path)
                    for e in path:
                        residual[e] -= pushed
                        residual[e ^ 1] += pushed
                    total += pushed
                    # Retreat to the tail of the first saturated edge.
                    cut = next(k for k, e in enumerate(path) if residual[e] <= eps)
                    u = head[path[cut] ^ 1]
                    del path[cut:]
                    continue
                edges, next_level = adjacency[u], level[u] + 1
                i = arc[u]
                while i < len(edges) and not (
                    residual[edges[i]] > eps and level[head[edges[i]]] == next_level
                ):
                    i += 1
                arc[u] = i
                if i < len(edges):
                    path.append(edges[i])
                    u = head[edges[i]]
                elif u == source:
                    break
                else:  # dead end: drop u from the level graph and retreat
                    level[u] = -1
                    u = head[path.pop() ^ 1]
                    arc[u] += 1


def _flow_one_sequence(matrices: np.ndarray, query: int, real: np.ndarray) -> np.ndarray:
    """Max-flow from each input node (0, j) to (L, query): matrices [L, pos, pos] (A_l), real [pos] bool -> [pos]."""
    n_layers, length, _ = matrices.shape
    positive = (matrices > _FLOW_EPS) & real[None, :, None] & real[None, None, :]
    # Keep only nodes from which the query node can be reached: at the top layer that is the query node
    # alone; a node of layer l-1 is kept when it has an edge into a kept node of layer l. (Every unit of
    # flow runs along source-to-sink paths of the original DAG, so the dropped nodes carry none.)
    useful = np.zeros((n_layers + 1, length), dtype=bool)
    useful[n_layers, query] = True
    for layer in range(n_layers, 0, -1):
        useful[layer - 1] = (positive[layer - 1] & useful[layer][:, None]).any(0)
    network = _FlowNetwork((n_layers + 1) * length)
    for layer in range(1, n_layers + 1):
        rows, cols = np.nonzero(positive[layer - 1] & useful[layer][:, None] & useful[layer - 1][None, :])
        capacities = matrices[layer - 1][rows, cols].tolist()
        for i, j, capacity in zip(rows.tolist(), cols.tolist(), capacities):
            network.add_edge((layer - 1) * length + j, layer * length + i, capacity)
    sink = n_layers * length + query
    flow = np.zeros(length)
    for j in np.nonzero(useful[0])[0].tolist():
        flow[j] = network.max_flow(j, sink)
    return flow


def attention_flow(patterns, query_positions, attention_mask=None, add_residual: bool = True) -> torch.Tensor:
    """Attention flow (Abnar & Zuidema 2020): [batch, key_pos].

    The layered DAG has a node (l, i) for every layer boundary l = 0..L (0: the input tokens, l: the output
    of layer l) and position i, and an edge (l - 1, j) -> (l, i) of capacity A_l[i, j], the same
    residual-augmented, head-averaged attention that rollout multiplies (:func:`layer_attention_matrices`).
    The score of input token j is the value of the maximum flow from (0, j) to (L, query_positions[b]).
    Padding nodes get no edges, so padding keys score exactly 0.

    Cost: one max-flow per (sequence, input token), with Dinic's algorithm in pure Python on a graph of
    (L + 1) * pos nodes and about L * pos^2 edges (nodes that cannot reach the query node are dropped
    first). About 0.25 s per sequence of 50 tokens and 12 layers (12 heads, random softmax attention, one
    CPU core; networkx's maximum_flow_value takes about 30 times longer); each max-flow is at least
    O(L * pos^2) and there are pos of them per sequence, so prefer rollout for long inputs. Not
    differentiable (runs in numpy, float64; results are returned in the dtype of ``patterns``).

    Args:
        patterns: [layer, batch, head, pos, pos] softmax attention (or a list of per-layer tensors).
        query_positions: [batch] (or an int): the output position to explain in each sequence.
        attention_mask: optional [batch, pos]; padding keys get exactly 0.
        add_residual: as in :func:`attention_rollout`.

    Returns:
        [batch, pos] flow values, each between 0 and 1, on the device of ``patterns``.
    """
    patterns, matrices, q, mask = _layer_matrices_and_queries(
        "attention_flow", patterns, query_positions, attention_mask, add_residual
    )
    _, batch, length, _ = matrices.shape
    matrices = matrices.detach().to("cpu", torch.float64).numpy()
    real = np.ones((batch, length), dtype=bool) if mask is None else mask.numpy()
    flows = [_flow_one_sequence(matrices[:, b], int(q[b]), real[b]) for b in range(batch)]
    return torch.as_tensor(np.stack(flows)).to(patterns.device, patterns.dtype)


# Gradient-weighted attention ---------------------------------------------------------------------------


def grad_attention(
    patterns, gradients, query_positions, layer: int | None = None, attention_mask=None
) -> torch.Tensor:
    """Gradient-weighted attention: [batch, key_pos].

    Computes, for the query row q = query_positions[b],

        score[b, k] = mean_{layers} mean_{heads} ReLU(patterns[l, b, h, q, k] * gradients[l, b, h, q, k])

    (over one layer only when ``layer`` is an int): the head-averaged, positively clamped product of each
    attention weight with the gradient of the target with respect to it, i.e. Chefer et al. 2021's
    Ā = E_h[(∇A ⊙ A)^+] read at the query row and averaged over layers -- their simple variant without the
    rollout-style propagation through layers. The clamp is applied per head, before averaging.

    Args:
        patterns: [layer, batch, head, query_pos, key_pos] softmax attention (or a list per layer).
        gradients: d target / d patterns, the same shape (e.g. the ``.grad`` of the hooked patterns after
            ``target.sum().backward()``).
        query_positions: [batch] (or an int).
        layer: None for the mean over layers, or one layer (negative counts from the last).
        attention_mask: optional [batch, key_pos]; padding keys are set to 0.
    """
    patterns = _as_patterns(patterns)
    gradients = _as_patterns(gradients, "gradients")
    if gradients.shape != patterns.shape:
        raise ValueError(
            f"gradients must have the shape of patterns {tuple(patterns.shape)}, got {tuple(gradients.shape)}"
        )
    n_layers, batch, _, n_queries, n_keys = patterns.shape
    q = _query_positions(query_positions, batch, n_queries)
    mask = _mask(attention_mask, batch, n_keys, q if n_queries == n_keys else None)
    if layer is not None:
        index = _index(layer, n_layers, "layer")
        patterns, gradients = patterns[index : index + 1], gradients[index : index + 1]
    # ReLU per head, then the mean over heads: [layer, batch, query_pos, key_pos].
    weighted = (patterns * gradients.to(patterns.device, patterns.dtype)).clamp(min=0).mean(2)
    return _zero_padding(_read_rows(weighted.mean(0), q), mask)


ATTENTION_METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "attention": raw_attention,
    "attention_rollout": attention_rollout,
    "attention_flow": attention_flow,
    "grad_attention": grad_attention,
}
"""Name -> function. All take (patterns, query_positions, ...) except grad_attention, which takes
(patterns, gradients, query_positions, ...)."""
