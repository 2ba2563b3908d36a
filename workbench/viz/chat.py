"""The chat view: a conversation, the model's reply token by token with its probabilities, and for a chosen
reply token its attribution over the conversation and its logit-lens trajectory.

The conversation is rendered with the tokenizer's chat template (``add_generation_prompt=True``) and
continued by :func:`workbench.generation.generate` (greedy unless sampling options are given), so the reply
and its probabilities are exactly ``generate(messages)``'s. For reply token ``i`` the view reads the context
the model saw when it wrote it: the rendered prompt plus reply tokens ``0 .. i-1``. Over that context it
shows the attribution of the token's log-probability (``wb.attribute``, input × gradient by default: one
backward pass) and the logit lens at the last position (the token's probability and rank per layer; the
last layer is the model's own prediction).
"""

from __future__ import annotations

import html

import torch

from ._base import View, figure_widget, label_tokens, replace_figure
from .attributions import token_rows_html
from .generation import check_causal_lm, trajectory_figure


def check_chat_model(model) -> None:
    """A causal LM whose tokenizer has a chat template, or a ``ValueError`` saying how to give it one."""
    check_causal_lm(model, "the chat view")
    if not model.tokenizer.chat_template:
        from ..tokenizers.chat import ChatTemplateError

        where = model.tokenizer.name_or_path or type(model).__name__
        raise ChatTemplateError(
            f"the chat view needs a chat template, and {where}'s tokenizer has none (no chat_template in "
            f"tokenizer_config.json, no chat_template.jinja); set model.tokenizer.chat_template to a Jinja "
            f"template, or load the instruction-tuned model's tokenizer"
        )


def check_messages(messages) -> list[dict]:
    """The conversation as a list of ``{"role", "content"}`` dicts, or a ``ValueError`` naming the bad one."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            "messages must be a non-empty list of {'role': ..., 'content': ...} dicts (one conversation), "
            f"got {type(messages).__name__}"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {index} must be a dict with 'role' and 'content', got {message!r}")
    return list(messages)


def conversation_html(messages: list[dict]) -> str:
    """The messages as role-labelled blocks."""
    blocks = "".join(
        f"<div class='wb-chat-message'><b>{html.escape(str(m['role']))}</b>: "
        f"<span style='white-space:pre-wrap'>{html.escape(str(m['content']))}</span></div>"
        for m in messages
    )
    return f"<div class='wb-chat'>{blocks}</div>"


def reply_figure(steps, name: str):
    """Bars: the probability of each reply token when the model wrote it; hover lists the alternatives."""
    import plotly.graph_objects as go

    hover = [
        "<br>".join(f"{token!r}: {p:.3f}" for token, p in zip(row.top_tokens, row.top_probabilities))
        for row in steps.itertuples()
    ]
    figure = go.Figure(
        go.Bar(
            x=label_tokens([repr(t) for t in steps["token"]]),
            y=steps["probability"],
            customdata=hover,
            hovertemplate="%{x}: p = %{y:.3f}<br><b>top candidates</b><br>%{customdata}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{name} · reply tokens and their probabilities",
        xaxis={"title": "reply token", "type": "category"},
        yaxis={"title": "probability", "range": [0, 1]},
        height=320,
        width=760,
    )
    return figure


class ChatView:
    """State of the view, usable without a front end: ``select(i)`` is what choosing reply token ``i`` does.

    Attributes:
        result: the :class:`~workbench.generation.GenerationResult` of the conversation.
        steps: one row per reply token (token, token_id, probability, top_tokens, top_probabilities).
        prompt_ids: [prompt_pos] the rendered conversation's token ids.
        reply_ids: the reply's token ids.
        attribution, trajectory: the chosen token's ``Attribution`` (over prompt + reply prefix) and its
            logit-lens frame (layer, token, rank, probability, logit).
    """

    def __init__(self, model, messages, max_new_tokens: int, method: str, k: int, **generate_options) -> None:
        import ipywidgets as widgets

        from ..attribution import methods as attribution_methods
        from ..generation import generate
        from ..zoo import display_name

        check_chat_model(model)
        self.messages = check_messages(messages)
        if method not in attribution_methods():
            raise ValueError(f"method {method!r} is unknown; choose one of {attribution_methods()}")
        self.model, self.method, self.generate_options = model, method, generate_options
        self.name = display_name(model)  # "llama (random stand-in)" for a stand-in: in every title
        self.result = generate(model, self.messages, max_new_tokens, top_candidates=k, **generate_options)
        self.steps = self.result.steps[self.result.steps["sequence"] == 0].reset_index(drop=True)
        self.reply_ids = self.result.new_token_ids[0]
        sequence = self.result.input_ids[0]  # one conversation: no padding, no tokens after the end
        self.prompt_ids = sequence[: sequence.shape[0] - len(self.reply_ids)]
        self.sequence = sequence

        options = [
            (f"{i}: {token!r} ({p:.1%})", i)
            for i, (token, p) in enumerate(zip(self.steps["token"], self.steps["probability"]))
        ]
        self.controls = {"token": widgets.Dropdown(options=options, value=0, description="reply token")}
        self.reply_widget = figure_widget(reply_figure(self.steps, self.name))
        self.reply_widget.data[0].on_click(lambda trace, points, state: self._clicked(points))
        self.explanation = widgets.HTML("")
        self.lens_widget = figure_widget(
            trajectory_figure({"layer": [], "probability": [], "rank": []}, "", self.name)
        )
        self.controls["token"].observe(lambda change: self.select(change["new"]), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HTML(self.header_html()),
                self.reply_widget,
                self.controls["token"],
                self.explanation,
                self.lens_widget,
            ]
        )
        self.select(0)

    @property
    def reply_tokens(self) -> list[str]:
        return list(self.steps["token"])

    def context_ids(self, index: int) -> torch.Tensor:
        """[pos]: what the model read when it wrote reply token ``index``: prompt + reply before it."""
        return self.sequence[: self.prompt_ids.shape[0] + index]

    def select(self, index: int) -> None:
        """Explain reply token ``index``: its attribution over its context and its logit-lens trajectory."""
        from ..attribution import attribute
        from ..lens import logit_lens

        if not 0 <= index < len(self.reply_ids):
            raise ValueError(
                f"reply token {index} is out of range: the reply has {len(self.reply_ids)} tokens"
            )
        self.chosen = index
        if self.controls["token"].value != index:
            self.controls["token"].value = index  # its observer calls select again, which ends here
            return
        token_id, context = self.reply_ids[index], self.context_ids(index)
        self.attribution = attribute(self.model, context, target=token_id, method=self.method)
        self.trajectory = logit_lens(self.model, context).target(token_id, pos=-1)
        frame = self.attribution.to_frame(0)
        probability = self.steps["probability"][index]
        n_prompt = self.prompt_ids.shape[0]
        rows = token_rows_html(list(frame["token"]), {self.method: frame[self.method].to_numpy()})
        self.explanation.value = (
            f"<div>attribution of reply token {index} <b>{html.escape(repr(self.reply_tokens[index]))}</b> "
            f"(p = {probability:.3f}) over the conversation ({n_prompt} tokens as the chat "
            f"template renders them) and the reply before it ({index} tokens): {html.escape(self.method)} of "
            f"its log-probability; red raises it, blue lowers it</div>{rows}"
        )
        replace_figure(
            self.lens_widget, trajectory_figure(self.trajectory, self.reply_tokens[index], self.name)
        )

    def _clicked(self, points) -> None:
        if points.point_inds:
            self.select(points.point_inds[0])

    def header_html(self) -> str:
        reply = html.escape(self.result.text)
        return (
            f"<div><b>model</b>: {html.escape(self.name)}</div>{conversation_html(self.messages)}"
            f"<div><b>reply</b>: <span style='white-space:pre-wrap'>{reply}</span></div>"
        )

    def steps_html(self) -> str:
        """The reply as a table: each token, its probability and the top alternatives."""
        rows = []
        for i, row in enumerate(self.steps.itertuples()):
            alternatives = ", ".join(f"{t!r} {p:.3f}" for t, p in zip(row.top_tokens, row.top_probabilities))
            rows.append(
                f"<tr><td>{i}</td><td class='wb-token'>{html.escape(repr(row.token))}</td>"
                f"<td>{row.probability:.3f}</td><td>{html.escape(alternatives)}</td></tr>"
            )
        return (
            "<table class='wb-chat-steps'><tr><th>#</th><th>reply token</th><th>p</th><th>top candidates</th>"
            f"</tr>{''.join(rows)}</table>"
        )

    def caption(self) -> str:
        return (
            f"{self.name}: the conversation rendered with its tokenizer's chat template and continued by "
            f"generate ({len(self.reply_ids)} reply tokens); p is the model's softmax probability of each "
            f"reply "
            f"token when it wrote it; for reply token {self.chosen}: {self.method} attribution of its "
            f"log-probability over the prompt and reply prefix, and the logit lens (probability and rank per "
            f"layer) at the position that predicts it"
        )


def chat(
    model,
    messages,
    max_new_tokens: int = 20,
    method: str = "input_x_gradient",
    k: int = 5,
    **generate_options,
) -> View:
    """A conversation and the model's reply: each reply token with its probability and top ``k``
    alternatives; for the chosen reply token (control ``"token"``, or a click on its bar), its attribution
    over the conversation and the reply before it (``method``, any of ``wb.attribution.methods()``) and its
    logit-lens trajectory (probability and rank per layer).

    Args:
        model: a causal LM whose tokenizer has a chat template (``model.tokenizer.chat_template``).
        messages: one conversation, ``[{"role": "user", "content": ...}, ...]``.
        max_new_tokens: the longest reply.
        generate_options: passed to :func:`workbench.generation.generate` (``stop_at_eos``, ``do_sample``,
            ``seed``...).

    The view's ``chat`` attribute is the :class:`ChatView` (``view.chat.select(2)`` explains reply token 2).
    """
    state = ChatView(model, messages, max_new_tokens, method, k, **generate_options)

    def static_parts():
        return [
            state.header_html(),
            _copy(state.reply_widget),
            state.steps_html(),
            state.explanation.value,
            _copy(state.lens_widget),
        ]

    view = View(
        "chat",
        state.widget,
        static_parts,
        state.controls,
        [state.reply_widget, state.lens_widget],
        caption=state.caption,
    )
    view.chat = state
    return view


def _copy(widget):
    import plotly.graph_objects as go

    return go.Figure(widget.to_dict())
