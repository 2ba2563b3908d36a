"""Chat templates (workbench/tokenizers/chat.py): real templates of five families rendered exactly as Hugging
Face's ``apply_chat_template`` renders them (text and ids), on tiny tokenizers built here; where templates
are found (tokenizer_config.json, chat_template.jinja, named templates); the errors; the sandbox;
``generate`` on a conversation; and the SentencePiece-style BPE tokenizers of Llama 2 and Mistral (byte
fallback; ``legacy``, ``add_prefix_space``, ``add_bos_token``/``add_eos_token``), whose ids must equal Hugging
Face's on tricky strings.

The templates are fixtures (tests/fixtures/chat_templates/, sources in its README.md): each JSON file holds
the special tokens and ``chat_template`` of a released model's tokenizer_config.json, Qwen 2.5's template is
a ``chat_template.jinja``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jinja2
import pytest
import torch
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as BackendTokenizer
from transformers import PreTrainedTokenizerFast

import workbench as wb
from workbench.tokenizers import Tokenizer
from workbench.tokenizers.chat import ChatTemplateError

FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"
CORPUS = ["You are a helpful assistant.", "Hello, how are you?", "I'm doing great. How can I help you today?",
          "What is the capital of France?", "Paris is the capital of France.", "the weather in Paris"] * 4

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "with_system": [SYSTEM, {"role": "user", "content": "Hello, how are you?"},
                    {"role": "assistant", "content": "  I'm doing great.  "},
                    {"role": "user", "content": "What is the capital of France?"}],
    "without_system": [{"role": "user", "content": "Hello, how are you?"},
                       {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
                       {"role": "user", "content": "What is the capital of France?\n"}],
    "one_turn": [{"role": "user", "content": "Héllo wörld ☃"}],
}
# Gemma's and Mistral's templates refuse a system turn (raise_exception), as the released models do.
REFUSES_SYSTEM = {"gemma", "mistral"}


def _byte_level_backend(special: list[str]) -> BackendTokenizer:
    """Llama 3's and Qwen's kind: byte-level BPE, nothing added around the text."""
    backend = BackendTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    return backend


def _sentencepiece_bpe_backend(special: list[str], bos: str = "<s>") -> BackendTokenizer:
    """Llama 2's, Mistral's and Gemma's kind: BPE over "▁"-joined text with byte fallback (<0xNN> tokens for
    what the vocabulary lacks), BOS put in front by the post-processor."""
    trained = BackendTokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    trained.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>"]))
    data = json.loads(trained.to_str())
    vocab = {token: i for i, token in enumerate(["<unk>", bos] + [f"<0x{b:02X}>" for b in range(256)])}
    for token in data["model"]["vocab"]:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    backend = BackendTokenizer(models.BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, vocab[bos])])
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                for token in ["<unk>", bos, *special]])
    return backend


def save_chat_tokenizer(folder: Path, family: str) -> Path:
    """A tiny tokenizer with the special tokens and chat template of ``family`` (a fixture), as
    tokenizer.json + tokenizer_config.json (+ chat_template.jinja for Qwen 2.5)."""
    settings = json.loads((FIXTURES / f"{family}.json").read_text(encoding="utf-8"))
    added = settings.pop("added_tokens")
    special = [value for key, value in settings.items() if key.endswith("_token") and value]
    tokens = list(dict.fromkeys(special + added))
    if family in ("llama3", "qwen2_5"):
        backend = _byte_level_backend(tokens)
    else:
        backend = _sentencepiece_bpe_backend([t for t in tokens if t != settings["bos_token"]], settings["bos_token"])
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    if (FIXTURES / f"{family}.jinja").is_file():
        (folder / "chat_template.jinja").write_text((FIXTURES / f"{family}.jinja").read_text(encoding="utf-8"),
                                                    encoding="utf-8")
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return folder


FAMILIES = ("llama3", "qwen2_5", "gemma", "mistral", "phi3")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """family -> (ours, Hugging Face's PreTrainedTokenizerFast), both loaded from the same folder."""
    pairs = {}
    for family in FAMILIES:
        folder = save_chat_tokenizer(tmp_path_factory.mktemp(family), family)
        pairs[family] = Tokenizer.from_pretrained(folder), PreTrainedTokenizerFast.from_pretrained(str(folder))
    return pairs


def _hf_render(hf, conversation, **options):
    return hf.apply_chat_template(conversation, **options)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_rendering_equals_hugging_face(tokenizers, family, name, add_generation_prompt):
    ours, hf = tokenizers[family]
    conversation = CONVERSATIONS[name]
    options = {"add_generation_prompt": add_generation_prompt}
    if family in REFUSES_SYSTEM and conversation[0]["role"] == "system":
        with pytest.raises(jinja2.TemplateError):
            _hf_render(hf, conversation, tokenize=False, **options)
        with pytest.raises(ChatTemplateError, match=r"chat template 'default', line 1: TemplateError"):
            ours.apply_chat_template(conversation, tokenize=False, **options)
        return
    text = ours.apply_chat_template(conversation, tokenize=False, **options)
    assert text == _hf_render(hf, conversation, tokenize=False, **options)
    ids = ours.apply_chat_template(conversation, return_dict=False, **options)
    assert ids == _hf_render(hf, conversation, return_dict=False, **options)
    encoding = ours.apply_chat_template(conversation, **options)
    assert list(encoding["input_ids"]) == ids and list(encoding["attention_mask"]) == [1] * len(ids)
    # The template wrote the special tokens: as tokens, not as their characters.
    bos = ours.special_tokens.get("bos_token")
    if bos is not None and text.startswith(bos):
        assert ids[0] == ours.token_to_id(bos) and ids.count(ours.token_to_id(bos)) == text.count(bos)


def test_generation_prompt_opens_an_assistant_turn(tokenizers):
    ours, _ = tokenizers["llama3"]
    conversation = CONVERSATIONS["without_system"]
    closed = ours.apply_chat_template(conversation, tokenize=False)
    opened = ours.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert opened == closed + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert closed.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello, how are you?")


def test_qwen_tools_and_tool_calls_equal_hugging_face(tokenizers):
    ours, hf = tokenizers["qwen2_5"]
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city <today> & tomorrow",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    conversation = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temperature": 21}'},
        {"role": "tool", "content": '{"wind": "none"}'},
    ]
    for add_generation_prompt in (True, False):
        options = {"tools": tools, "add_generation_prompt": add_generation_prompt}
        text = ours.apply_chat_template(conversation, tokenize=False, **options)
        assert text == hf.apply_chat_template(conversation, tokenize=False, **options)
        # tojson does not escape HTML (Jinja's own would write \u003c for "<").
        assert "<today> & tomorrow" in text
        assert ours.apply_chat_template(conversation, return_dict=False, **options) == hf.apply_chat_template(
            conversation, return_dict=False, **options)


def test_batch_of_conversations_with_padding_equals_hugging_face(tokenizers):
    ours, hf = tokenizers["phi3"]
    batch = [CONVERSATIONS["with_system"], CONVERSATIONS["one_turn"]]
    options = {"add_generation_prompt": True, "padding": True, "return_tensors": "pt"}
    encoding = ours.apply_chat_template(batch, **options)
    expected = hf.apply_chat_template(batch, **options)
    assert torch.equal(encoding["input_ids"], expected["input_ids"])
    assert torch.equal(encoding["attention_mask"], expected["attention_mask"])
    texts = ours.apply_chat_template(batch, tokenize=False)
    assert texts == hf.apply_chat_template(batch, tokenize=False) and len(texts) == 2


def test_where_templates_are_found_and_saved(tokenizers, tmp_path):
    ours, _ = tokenizers["llama3"]
    folder = tmp_path / "named"
    ours.save_pretrained(folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    plain = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    tool_use = "TOOLS {{ tools | length }}{% for m in messages %} {{ m.content }}{% endfor %}"
    settings["chat_template"] = [{"name": "default", "template": plain}, {"name": "tool_use", "template": tool_use}]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
    named, hf = Tokenizer.from_pretrained(folder), PreTrainedTokenizerFast.from_pretrained(str(folder))
    conversation = CONVERSATIONS["without_system"]
    for options in ({}, {"tools": [{"name": "t"}]}, {"chat_template": "tool_use", "tools": []}):
        assert named.apply_chat_template(conversation, tokenize=False, **options) == hf.apply_chat_template(
            conversation, tokenize=False, **options)
    assert named.apply_chat_template(conversation, tokenize=False, tools=[{}]).startswith("TOOLS 1")
    # chat_template.jinja wins over tokenizer_config.json, as in Hugging Face.
    (folder / "chat_template.jinja").write_text("JINJA {{ messages | length }}", encoding="utf-8")
    assert Tokenizer.from_pretrained(folder).apply_chat_template(conversation, tokenize=False) == "JINJA 3"
    # Saved templates load back, by us and by Hugging Face.
    resaved = tmp_path / "resaved"
    Tokenizer.from_pretrained(folder).save_pretrained(resaved)
    again = PreTrainedTokenizerFast.from_pretrained(str(resaved))
    assert again.apply_chat_template(conversation, tokenize=False) == "JINJA 3"
    assert Tokenizer.from_pretrained(resaved).chat_template == "JINJA {{ messages | length }}"


def test_a_template_given_in_the_call_or_set_on_the_tokenizer(tokenizers):
    ours, hf = tokenizers["mistral"]
    template = "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}{% endfor %}"
    conversation = CONVERSATIONS["one_turn"]
    assert ours.apply_chat_template(conversation, tokenize=False, chat_template=template) == "<s>[USER] Héllo wörld ☃"
    assert ours.apply_chat_template(conversation, chat_template=template, return_dict=False) == (
        hf.apply_chat_template(conversation, chat_template=template, return_dict=False))


def test_without_a_template_the_error_names_the_folder(tmp_path):
    folder = save_chat_tokenizer(tmp_path / "base-model", "phi3")
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    del settings["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
    tokenizer = Tokenizer.from_pretrained(folder)
    assert tokenizer.chat_template is None
    with pytest.raises(ChatTemplateError, match=r"base-model has no chat template: looked for chat_template.jinja"):
        tokenizer.apply_chat_template(CONVERSATIONS["one_turn"])


@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}\n{{ m.content }\n{% endfor %}", r"'default' does not compile, line 2"),
    ("line one\n{% if messages | length > 1 %}\n{{ raise_exception('Only one message, please') }}\n{% endif %}",
     r"'default', line 3: TemplateError: Only one message, please"),
    ("{{ messages[0].content }}\n{{ messages[7].content.upper() }}", r"'default', line 2: UndefinedError"),
])
def test_template_errors_name_the_template_and_line(tokenizers, template, message):
    ours, _ = tokenizers["llama3"]
    ours = Tokenizer(ours.backend, special_tokens=ours.special_tokens)
    ours.chat_template = template
    with pytest.raises(ChatTemplateError, match=message):
        ours.apply_chat_template(CONVERSATIONS["without_system"], tokenize=False)


@pytest.mark.parametrize("template", [
    "{{ messages.__class__.__mro__ }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{% set ns = namespace(_secret=1) %}{{ ns._secret }}",
    "{% set ns = namespace(a=1) %}{% set ns._b = 2 %}",
    "{{ messages.append({'role': 'x'}) }}",  # the environment is immutable: no list or dict is changed
    "{{ dict.__init__.__globals__ }}",
])
def test_the_sandbox_refuses_what_hugging_face_refuses(tokenizers, template):
    ours, hf = tokenizers["llama3"]
    with pytest.raises(jinja2.TemplateError):
        hf.apply_chat_template(CONVERSATIONS["one_turn"], chat_template=template, tokenize=False)
    with pytest.raises(ChatTemplateError):
        ours.apply_chat_template(CONVERSATIONS["one_turn"], chat_template=template, tokenize=False)


def test_globals_filters_and_plain_inputs_as_in_hugging_face(tokenizers):
    ours, hf = tokenizers["llama3"]
    template = (
        "{{ strftime_now('%Y') }}|{{ messages[0].content | tojson }}|{{ messages[0].name is defined }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|"
        "{{ dict(a=1) | tojson }}|{{ messages[0].thinking }}|{{ eos_token }}|{{ date_string }}|"
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}\n"
        "  {% if true %}\n  trimmed\n  {% endif %}\n"
    )
    conversation = [{"role": "user", "content": "<b>\"quoted\" & é</b>", "name": None, "reasoning": "hmm"},
                    {"role": "assistant", "content": "ok"}]
    options = {"chat_template": template, "tokenize": False, "date_string": "26 Jul 2024"}
    text = ours.apply_chat_template(conversation, **options)
    assert text == hf.apply_chat_template(conversation, **options)
    assert text.startswith(f"{datetime.now().year}|\"<b>\\\"quoted\\\" & é</b>\"|False|user|{{\"a\": 1}}|hmm|")
    assert text.endswith("|<|eot_id|>|26 Jul 2024|2\n  trimmed\n")
    assert conversation[0]["name"] is None  # the caller's messages are untouched


def test_bad_conversations(tokenizers):
    ours, _ = tokenizers["llama3"]
    with pytest.raises(ValueError, match="non-empty list of messages"):
        ours.apply_chat_template([])
    with pytest.raises(ValueError, match="non-empty list of messages"):
        ours.apply_chat_template("Hello")
    with pytest.raises(TypeError, match="message 1 must be a dict"):
        ours.apply_chat_template([{"role": "user", "content": "a"}, "b"])


def test_generate_continues_a_conversation(tmp_path):
    model = wb.zoo.tiny("llama", device="cpu")
    model.tokenizer.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the cat"}]
    result = model.generate(conversation, max_new_tokens=4, stop_at_eos=False)
    rendered = "<system>Be brief.\n<user>the cat\n<assistant>"
    assert result.prompts == [rendered]
    ids = model.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False)
    assert result.input_ids[0, : len(ids)].tolist() == ids
    # The same as continuing the rendered text tokenized without special tokens, step for step.
    with torch.no_grad():
        sequence = torch.tensor([ids])
        for _ in range(4):
            sequence = torch.cat([sequence, model(input_ids=sequence).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert result.new_token_ids[0] == sequence[0, len(ids):].tolist()
    batch = model.generate([conversation, conversation[1:]], max_new_tokens=2, stop_at_eos=False)
    assert batch.prompts == [rendered, "<user>the cat\n<assistant>"]
    assert batch.new_token_ids[0] == result.new_token_ids[0][:2]


TRICKY = ["hello world", " hello  world", "Héllo wörld ☃ 日本", "", "the\nfox\tdog", "</s> and <s> x", "<s>Hello",
          "  ", "x </s>", "\u2581Paris", "What is the capital of France?</s>"]


def _save_llama2_style(folder: Path, **settings) -> Path:
    """A tiny tokenizer.json as Llama 2's and Mistral's are (the legacy normalizer that prepends "▁" and
    replaces spaces; BOS by the post-processor), with tokenizer_config.json naming LlamaTokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    _sentencepiece_bpe_backend(["</s>"]).save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **settings}), encoding="utf-8")
    return folder


@pytest.mark.parametrize("settings", [
    {}, {"legacy": True}, {"legacy": False, "add_bos_token": True, "add_eos_token": True},
    {"add_prefix_space": False}, {"legacy": True, "add_prefix_space": False},
    {"tokenizer_class": "PreTrainedTokenizerFast"}, {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": False},
])
def test_llama_style_ids_equal_hugging_face_on_tricky_strings(tmp_path, settings):
    from transformers import AutoTokenizer

    folder = _save_llama2_style(tmp_path / "llama2", **settings)
    ours, hf = Tokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(str(folder))
    for text in TRICKY:
        ids = ours(text)["input_ids"]
        assert ids == hf(text)["input_ids"], text
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text
    # Byte fallback: characters outside the vocabulary become their UTF-8 bytes.
    assert "<0xE2>" in ours.tokenize("☃")
    # tokenizer_config.json's add_bos_token/add_eos_token do not override tokenizer.json (as in Hugging Face 5).
    assert ours("hello")["input_ids"][0] == ours.token_to_id("<s>")
    assert ours("hello")["input_ids"][-1] != ours.token_to_id("</s>")


@pytest.mark.parametrize("flags", [
    {"add_bos_token": False}, {"add_eos_token": True}, {"add_bos_token": True, "add_eos_token": True},
    {"add_bos_token": False, "add_eos_token": False},
])
def test_add_bos_and_eos_token_given_to_from_pretrained_equal_hugging_face(tmp_path, flags):
    from transformers import AutoTokenizer

    folder = _save_llama2_style(tmp_path / "llama2", add_bos_token=True)
    ours, hf = Tokenizer.from_pretrained(folder, **flags), AutoTokenizer.from_pretrained(str(folder), **flags)
    for text, pair in (("hello world", None), ("the fox", "the dog")):
        assert ours(text, pair)["input_ids"] == hf(text, pair)["input_ids"], (text, pair)
    expected_first = ours.token_to_id("<s>") if flags.get("add_bos_token") else None
    first = ours("hello")["input_ids"][0]
    assert (first == expected_first) if expected_first is not None else first != ours.token_to_id("<s>")
