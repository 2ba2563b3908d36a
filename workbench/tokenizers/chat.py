"""Chat templates: a conversation rendered to the prompt text a chat model was trained on.

A chat model's folder carries its prompt format as a Jinja template: ``chat_template.jinja`` (and named ones
in ``additional_chat_templates/``), or ``tokenizer_config.json``'s ``chat_template`` (one string, or a list of
``{"name", "template"}``). :func:`read_chat_templates` finds them; :func:`render_chat` renders a conversation
(a list of ``{"role", "content"}`` messages) exactly as Hugging Face's ``apply_chat_template`` does:

* in a sandboxed environment (``ImmutableSandboxedEnvironment``): templates come from the hub and are
  untrusted code, so they can call no method that changes state and reach no Python internals;
* with ``trim_blocks`` and ``lstrip_blocks`` (a block tag's own line break and indentation vanish), the
  ``loopcontrols`` extension (``break``, ``continue``) and ``{% generation %}`` blocks (rendered as their body);
* with Hugging Face's globals: ``raise_exception(message)``, ``strftime_now(format)``, a ``dict`` and a
  ``namespace`` that refuse underscore names; and its ``tojson`` filter (no HTML escaping);
* seeing the tokenizer's special tokens (``bos_token``, ``eos_token``, ...), ``messages``, ``tools``,
  ``documents``, ``add_generation_prompt`` and any extra keyword the caller passes.

The inputs are copied into plain JSON values first (str, int, float, bool, None, lists, dicts), as Hugging
Face does, so that no object with methods reaches the sandbox; keys whose value is None are dropped from
every message (many templates print a literal "None" otherwise).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"
# What a template may be, as a tokenizer holds it: one template, or several by name ("default", "tool_use").
ChatTemplates = Union[str, dict[str, str]]
# Older names under which some templates read a message's reasoning, aliased as Hugging Face does.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
# What jinja calls a template compiled from a string, in tracebacks.
_TEMPLATE_FILENAME = "<template>"


class ChatTemplateError(ValueError):
    """No chat template, or one that does not compile or render; the message names the template (and the
    line, where Jinja knows it)."""


def read_chat_templates(folder: Path, settings: Mapping[str, Any]) -> ChatTemplates | None:
    """The chat template(s) of the tokenizer in ``folder``, as Hugging Face reads them: ``chat_template.jinja``
    (the default) and ``additional_chat_templates/<name>.jinja`` win over ``tokenizer_config.json``'s
    ``chat_template`` (``settings``); one default alone is a str, several templates a dict by name.
    None when the folder has none."""
    templates: dict[str, str] = {}
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        templates["default"] = (folder / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    if (folder / CHAT_TEMPLATE_DIR).is_dir():
        for path in sorted((folder / CHAT_TEMPLATE_DIR).glob("*.jinja")):
            templates[path.stem] = path.read_text(encoding="utf-8")
    if templates:
        return templates["default"] if list(templates) == ["default"] else templates
    return as_chat_templates(settings.get("chat_template"))


def as_chat_templates(value: Any) -> ChatTemplates | None:
    """tokenizer_config.json's ``chat_template`` as a tokenizer holds it: a str stays one; a list of
    ``{"name": ..., "template": ...}`` (the saved form of several) becomes a dict by name."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, Mapping) for item in value):
        return {item["name"]: item["template"] for item in value}
    raise ChatTemplateError(
        f"chat_template must be a string or a list of {{'name': ..., 'template': ...}}, got {type(value).__name__}"
    )


def select_template(
    templates: ChatTemplates | None, chosen: str | None, has_tools: bool, where: str
) -> tuple[str, str]:
    """(the template's name, its source) for this call, as Hugging Face's ``get_chat_template`` chooses:
    ``chosen`` is a template's name or a template itself; else the ``"tool_use"`` one when tools are given
    and it exists, else ``"default"``.

    Raises:
        ChatTemplateError: no template at all (``where`` names the folder), or several and none default.
    """
    if isinstance(templates, dict):
        if chosen is not None:
            return (chosen, templates[chosen]) if chosen in templates else ("the chat_template argument", chosen)
        if has_tools and "tool_use" in templates:
            return "tool_use", templates["tool_use"]
        if "default" in templates:
            return "default", templates["default"]
        raise ChatTemplateError(
            f"the tokenizer of {where} has several chat templates and none is 'default': pass "
            f"chat_template= one of {sorted(templates)}"
        )
    if chosen is not None:
        return "the chat_template argument", chosen
    if templates is None:
        raise ChatTemplateError(
            f"the tokenizer of {where} has no chat template: looked for {CHAT_TEMPLATE_FILE} and for "
            f"tokenizer_config.json's 'chat_template'; pass chat_template= (a Jinja template) or set "
            f"tokenizer.chat_template (a base model without chat tuning has none)"
        )
    return "default", templates


def render_chat(
    template: str,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    *,
    add_generation_prompt: bool = False,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    special_tokens: Mapping[str, str] | None = None,
    template_name: str = "default",
    **variables: Any,
) -> list[str]:
    """Render each conversation (a list of messages) with ``template``.

    The template sees ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the
    ``special_tokens`` (``bos_token``...) and ``variables`` (which override a special token of the same name).

    Raises:
        ChatTemplateError: the template does not compile, or fails while rendering (its own
            ``raise_exception`` included), naming ``template_name`` and the template's line.
        TypeError: a message that is not a mapping.
    """
    compiled = _compile(template, template_name)
    context = _plain({**(special_tokens or {}), **variables})
    tools, documents = _plain(tools), _plain(documents)
    rendered = []
    for conversation in conversations:
        messages = [_message(message, index) for index, message in enumerate(conversation)]
        try:
            text = compiled.render(
                messages=messages,
                tools=tools,
                documents=documents,
                add_generation_prompt=add_generation_prompt,
                **context,
            )
        except Exception as err:  # a template is code: any error it raises is the template's
            raise ChatTemplateError(
                f"chat template {template_name!r}, line {_template_line(err)}: {type(err).__name__}: {err}"
            ) from err
        rendered.append(text)
    return rendered


def _message(message: Any, index: int) -> dict[str, Any]:
    """One message as plain data, without the keys whose value is None, with reasoning aliased."""
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        message = _plain(message)
    if not isinstance(message, Mapping):
        raise TypeError(
            f"message {index} must be a dict such as {{'role': 'user', 'content': '...'}}, "
            f"got {type(message).__name__}"
        )
    plain = {key: value for key, value in _plain(message).items() if value is not None}
    reasoning = next((plain[key] for key in _REASONING_FIELDS if plain.get(key) is not None), None)
    if reasoning is not None:
        plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
    return plain


def _plain(value: Any) -> Any:
    """``value`` rebuilt from plain JSON types; anything else becomes an inert ``"<TypeName>"``."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    # Subclasses (enums, numpy scalars...) back to the base type, through the base's own conversion.
    for base, convert in ((str, str.__str__), (int, int.__int__), (float, float.__float__)):
        if isinstance(value, base):
            return convert(value)
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a numpy or torch scalar
        return _plain(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):  # pydantic models
        return _plain(value.model_dump())
    return f"<{type(value).__name__}>"


def _template_line(err: BaseException) -> int | str:
    """The template line where ``err`` happened: a syntax error knows it; at render time Jinja rewrites the
    traceback so that the template's frames carry its line numbers."""
    lineno = getattr(err, "lineno", None)
    if lineno is not None:
        return lineno
    line: int | str = "unknown"
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@lru_cache(maxsize=32)
def _compile(template: str, name: str):
    """The compiled template (cached: a model's template is rendered many times)."""
    environment = _environment()
    try:
        return environment.from_string(template)
    except Exception as err:  # jinja2.TemplateSyntaxError, with the line
        raise ChatTemplateError(
            f"chat template {name!r} does not compile, line {_template_line(err)}: {err}"
        ) from err


@lru_cache(maxsize=1)
def _environment():
    """Hugging Face's chat template environment (see the module docstring)."""
    jinja2 = _import_jinja2()
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """``{% generation %}...{% endgeneration %}`` marks the assistant's tokens for training masks;
        rendering keeps the body as it is."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    environment.globals["dict"] = _TemplateDict()
    environment.globals["namespace"] = _namespace_class(jinja2)
    return environment


def _import_jinja2():
    try:
        import jinja2
    except ImportError:
        raise ImportError("chat templates need jinja2 (>=3.1.6): pip install 'jinja2>=3.1.6'") from None
    if tuple(int(part) for part in jinja2.__version__.split(".")[:3] if part.isdigit()) < (3, 1, 6):
        # Older versions have known sandbox escapes, and hub templates are untrusted code (Hugging Face
        # refuses them too).
        raise ImportError(f"chat templates need jinja2>=3.1.6, found {jinja2.__version__}")
    return jinja2


def _raise_exception(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters (< > & '), which would change the prompt.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _TemplateDict:
    """``dict(...)`` and ``dict.fromkeys(...)`` for templates, without the dict type itself (whose attributes
    would lead out of the sandbox)."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


def _namespace_class(jinja2):
    """Jinja's ``namespace`` refusing underscore-prefixed attributes (a way to CPython internals)."""

    def check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace, got {name!r}"
            )

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):  # Jinja's signature trick: namespace(self=...) still works
            self, args = args[0], args[1:]
            attributes = dict(*args, **kwargs)
            for name in attributes:
                check(name)
            jinja2.utils.Namespace.__init__(self, attributes)

        def __setitem__(self, name, value):
            check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

    return TemplateNamespace
