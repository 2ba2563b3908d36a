"""Textbook references for the attention attributions of workbench.attribution.attention.

Written as plainly as possible: numpy arrays, explicit loops over sequences, layers and positions, and a
plain Edmonds-Karp max-flow (Ford-Fulkerson with breadth-first augmenting paths) on a dict of dicts.
Inputs are numpy arrays: patterns [layer, batch, head, pos, pos], mask [batch, pos] of 0/1 (or None).
"""

from __future__ import annotations

import numpy as np


def layer_matrix(patterns, layer, b, mask=None, add_residual=True):
    """A_l for one sequence: head mean, padding rows and columns zeroed, then (W + I) with rows summing to 1."""
    n_heads, n = patterns.shape[2], patterns.shape[3]
    real = [True] * n if mask is None else [bool(mask[b][i]) for i in range(n)]
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if real[i] and real[j]:
                a[i, j] = sum(patterns[layer, b, h, i, j] for h in range(n_heads)) / n_heads
    if add_residual:
        for i in range(n):
            a[i, i] += 1.0
            a[i, :] = a[i, :] / a[i, :].sum()
    return a


def raw_attention(patterns, queries, layer=-1, head=None, mask=None):
    n_layers, batch, n_heads = patterns.shape[:3]
    out = []
    for b in range(batch):
        if head is None:
            row = sum(patterns[layer, b, h, queries[b]] for h in range(n_heads)) / n_heads
        else:
            row = patterns[layer, b, head, queries[b]]
        if mask is not None:
            row = row * np.asarray(mask[b], dtype=float)
        out.append(row)
    return np.array(out)


def rollout(patterns, queries, mask=None, add_residual=True):
    """Multiply the full matrices, rollout = A_L @ ... @ A_1, and read the query row."""
    n_layers, batch = patterns.shape[:2]
    out = []
    for b in range(batch):
        total = layer_matrix(patterns, 0, b, mask, add_residual)
        for layer in range(1, n_layers):
            total = layer_matrix(patterns, layer, b, mask, add_residual) @ total
        out.append(total[queries[b]])
    return np.array(out)


def max_flow(capacity, source, sink):
    """Edmonds-Karp on ``capacity``: {u: {v: c}}. Returns the value of the maximum flow."""
    residual = {}
    for u in capacity:
        for v, c in capacity[u].items():
            residual.setdefault(u, {})
            residual.setdefault(v, {})
            residual[u][v] = residual[u].get(v, 0.0) + c
            residual[v].setdefault(u, 0.0)
    if source not in residual or sink not in residual:
        return 0.0
    value = 0.0
    while True:
        # Shortest augmenting path by breadth-first search.
        parent = {source: None}
        queue = [source]
        while queue and sink not in parent:
            u = queue.pop(0)
            for v, c in residual[u].items():
                if c > 1e-12 and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if sink not in parent:
            return value
        path = []
        v = sink
        while parent[v] is not None:
            path.append((parent[v], v))
            v = parent[v]
        pushed = min(residual[u][v] for u, v in path)
        for u, v in path:
            residual[u][v] -= pushed
            residual[v][u] += pushed
        value += pushed


def flow_graph(patterns, b, mask=None, add_residual=True):
    """{(l - 1, j): {(l, i): A_l[i, j]}} for one sequence: nodes are (layer boundary, position)."""
    n_layers, n = patterns.shape[0], patterns.shape[3]
    graph = {}
    for layer in range(1, n_layers + 1):
        a = layer_matrix(patterns, layer - 1, b, mask, add_residual)
        for i in range(n):
            for j in range(n):
                if a[i, j] > 0:
                    graph.setdefault((layer - 1, j), {})[(layer, i)] = a[i, j]
    return graph


def flow(patterns, queries, mask=None, add_residual=True):
    n_layers, batch, n = patterns.shape[0], patterns.shape[1], patterns.shape[3]
    out = np.zeros((batch, n))
    for b in range(batch):
        graph = flow_graph(patterns, b, mask, add_residual)
        for j in range(n):
            if mask is None or mask[b][j]:
                out[b, j] = max_flow(graph, (0, j), (n_layers, queries[b]))
    return out


def flow_networkx(patterns, queries, mask=None, add_residual=True):
    """The same flow with networkx's maximum_flow_value (a second, independent max-flow)."""
    import networkx as nx

    n_layers, batch, n = patterns.shape[0], patterns.shape[1], patterns.shape[3]
    out = np.zeros((batch, n))
    for b in range(batch):
        graph = nx.DiGraph()
        for u, edges in flow_graph(patterns, b, mask, add_residual).items():
            for v, c in edges.items():
                graph.add_edge(u, v, capacity=c)
        for j in range(n):
            source, sink = (0, j), (n_layers, queries[b])
            if (mask is None or mask[b][j]) and source in graph and sink in graph:
                out[b, j] = nx.maximum_flow_value(graph, source, sink)
    return out


def grad_attention(patterns, gradients, queries, layer=None, mask=None):
    """mean over layers (or the one layer) and heads of ReLU(pattern * gradient), at the query row."""
    n_layers, batch, n_heads, _, n_keys = patterns.shape
    layers = range(n_layers) if layer is None else [layer % n_layers]
    out = np.zeros((batch, n_keys))
    for b in range(batch):
        for k in range(n_keys):
            total = 0.0
            for layer_index in layers:
                for h in range(n_heads):
                    product = (
                        patterns[layer_index, b, h, queries[b], k]
                        * gradients[layer_index, b, h, queries[b], k]
                    )
                    total += max(product, 0.0)
            out[b, k] = total / (len(layers) * n_heads)
            if mask is not None and not mask[b][k]:
                out[b, k] = 0.0
    return out
