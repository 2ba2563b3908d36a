"""The generation explorer ("Write With Transformer", for interpretability): type a prompt, see the
next-token candidates with their probabilities, click one to extend the text, and see for the chosen token
its attribution over the prompt and its logit-lens trajectory over layers.

Works for every model with a causal language-modelling head (the ``*LMHeadModel`` / ``*ForCausalLM``
classes, whatever the architecture): nothing here looks inside the model beyond its logits, the
``attribute`` API and the logit lens.
"""

from __future__ import annotations

import html

import torch

from ._base import View, figure_widget, replace_figure
from .attributions import token_rows_html

_CAUSAL_SUFFIXES = ("LMHeadModel", "ForCausalLM")


def check_causal_lm(model, view: str = "the generation explorer") -> None:
    name = getattr(model, "hf_architecture", type(model).__name__)
    if not name.endswith(_CAUSAL_SUFFIXES) or not hasattr(model, "decode_residual"):
        raise ValueError(
            f"{view} needs a causal language model (a *LMHeadModel / *ForCausalLM class), "
            f"got {type(model).__name__}; load one with wb.load(path, task='causal_lm')"
        )
    if model.tokenizer is None:
        raise ValueError(f"{type(model).__name__} has no tokenizer; set model.tokenizer first")


def next_token_candidates(model, prompt: str, k: int) -> tuple[list[int], list[float]]:
    """The k most likely next tokens of ``prompt`` and their probabilities."""
    with torch.no_grad():
        logits = model(**model.tokenize(prompt)).logits[0, -1].float()
    top = torch.topk(logits.softmax(-1), k)
    return top.indices.tolist(), top.values.tolist()


def trajectory_figure(frame, token_text: str, name: str | None = None):
    """Probability (left axis) and rank (right axis, log) of one token across layers."""
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(
        go.Scatter(x=frame["layer"], y=frame["probability"], mode="lines+markers", name="probability")
    )
    figure.add_trace(
        go.Scatter(
            x=frame["layer"],
            y=frame["rank"],
            mode="lines+markers",
            name="rank",
            yaxis="y2",
            line={"dash": "dot"},
        )
    )
    figure.update_layout(
        title=f"{name + ' · ' if name else ''}logit lens: {token_text!r} at the last position, per layer",
        xaxis={"title": "layer", "type": "category"},
        yaxis={"title": "probability", "range": [0, 1]},
        yaxis2={
            "title": "rank (1 = top)",
            "overlaying": "y",
            "side": "right",
            "type": "log",
            "autorange": "reversed",
            "dtick": 1,
        },
        height=360,
        width=760,
        legend={"x": 1.08},
    )
    return figure


class GenerationExplorer:
    """State and actions of the explorer, usable without a front end (``choose`` is what a click does)."""

    def __init__(self, model, prompt: str, k: int = 8, method: str = "input_x_gradient") -> None:
        import ipywidgets as widgets

        check_causal_lm(model)
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(
                "prompt must be a non-empty string (the model needs at least one token to condition on)"
            )
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        from ..attribution import methods as attribution_methods

        if method not in attribution_methods():
            raise ValueError(f"method {method!r} is unknown; choose one of {attribution_methods()}")
        from ..zoo import display_name

        self.model, self.k = model, k
        self.name = display_name(model)  # "gpt2 (random stand-in)" for a stand-in: in every title
        self.controls = {
            "prompt": widgets.Textarea(
                value=prompt,
                description="prompt",
                continuous_update=False,
                layout=widgets.Layout(width="760px"),
            ),
            "method": widgets.Dropdown(
                options=attribution_methods(), value=method, description="attribution"
            ),
        }
        self.candidate_box = widgets.HBox([])
        self.explanation = widgets.HTML("")
        self.lens_widget = figure_widget(
            trajectory_figure({"layer": [], "probability": [], "rank": []}, "", self.name)
        )
        self.chosen: tuple[str, int] | None = None  # (prompt it was chosen for, token id)
        self.candidates: list[tuple[int, float]] = []
        self._extending = False
        self.controls["prompt"].observe(lambda _: self.refresh(explain=not self._extending), names="value")
        self.controls["method"].observe(lambda _: self.explain(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.controls["prompt"], self.controls["method"]]),
                widgets.HTML("<b>next token</b> (click to extend the text):"),
                self.candidate_box,
                self.explanation,
                self.lens_widget,
            ]
        )
        self.refresh()

    @property
    def prompt(self) -> str:
        return self.controls["prompt"].value

    def refresh(self, explain: bool = True) -> None:
        """Recompute the candidates of the current prompt; with ``explain``, explain the most likely one."""
        import ipywidgets as widgets

        ids, probs = next_token_candidates(self.model, self.prompt, self.k)
        self.candidates = list(zip(ids, probs))
        buttons = []
        for rank, (token_id, prob) in enumerate(self.candidates):
            button = widgets.Button(
                description=f"{self._text(token_id)!r} {prob:.1%}",
                tooltip=f"token id {token_id}",
                layout=widgets.Layout(width="auto"),
            )
            button.on_click(lambda _, r=rank: self.choose(r))
            buttons.append(button)
        self.candidate_box.children = buttons
        if explain:
            self.chosen = (self.prompt, ids[0])
            self.explain()

    def choose(self, rank: int) -> None:
        """Pick candidate ``rank``: explain it over the current prompt, then append it to the prompt."""
        if not 0 <= rank < len(self.candidates):
            raise ValueError(f"rank {rank} is out of range: there are {len(self.candidates)} candidates")
        token_id = self.candidates[rank][0]
        prompt = self.prompt
        self.chosen = (prompt, token_id)
        self.explain()
        # Extend the text without explaining the new top candidate: the chosen token stays explained.
        self._extending = True
        try:
            self.controls["prompt"].value = prompt + self._text(token_id)
        finally:
            self._extending = False

    def explain(self) -> None:
        """Attribution of the chosen token over its prompt, and its logit-lens trajectory."""
        from ..attribution import attribute
        from ..lens import logit_lens

        if self.chosen is None:
            return
        prompt, token_id = self.chosen
        attribution = attribute(self.model, prompt, target=token_id, method=self.controls["method"].value)
        frame = attribution.to_frame(0)
        method = self.controls["method"].value
        rows = token_rows_html(list(frame["token"]), {method: frame[method].to_numpy()})
        self.attribution = attribution
        self.explanation.value = (
            f"<div>attribution of <b>{html.escape(repr(self._text(token_id)))}</b> over the prompt "
            f"({html.escape(method)}; red raises its log-probability, blue lowers it):</div>{rows}"
        )
        self.trajectory = logit_lens(self.model, prompt).target(token_id, pos=-1)
        replace_figure(self.lens_widget, trajectory_figure(self.trajectory, self._text(token_id), self.name))

    def candidates_html(self) -> str:
        """The prompt and the candidate table, as static HTML."""
        rows = "".join(
            f"<tr><td class='wb-token'>{html.escape(repr(self._text(i)))}</td><td>{p:.1%}</td></tr>"
            for i, p in self.candidates
        )
        return (
            f"<div><b>model</b>: {html.escape(self.name)}</div>"
            f"<div><b>prompt</b>: {html.escape(self.prompt)}</div>"
            f"<table class='wb-candidates'><tr><th>next token</th><th>p</th></tr>{rows}</table>"
        )

    def _text(self, token_id: int) -> str:
        return self.model.tokenizer.decode([int(token_id)])


def _figure_from_dict(data: dict):
    import plotly.graph_objects as go

    return go.Figure(data)


def generation_explorer(model, prompt: str = "The", k: int = 8, method: str = "input_x_gradient") -> View:
    """Type a prompt, see the next-token candidates, click one to extend the text; for the chosen token, its
    attribution over the prompt (``method``, any of ``wb.attribution.methods()``) and its logit-lens
    trajectory (probability and rank per layer).

    The view's ``explorer`` attribute is the :class:`GenerationExplorer` (``view.explorer.choose(0)`` clicks
    the top candidate from code).
    """
    explorer = GenerationExplorer(model, prompt, k, method)

    def static_parts():
        return [
            explorer.candidates_html(),
            explorer.explanation.value,
            _figure_from_dict(explorer.lens_widget.to_dict()),
        ]

    view = View(
        "generation_explorer", explorer.widget, static_parts, explorer.controls, [explorer.lens_widget]
    )
    view.explorer = explorer
    return view
