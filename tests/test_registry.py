"""The architecture registry: each model file's ARCHITECTURE record, and the tables derived from it."""

import ast
import importlib
import inspect
import json
import pkgutil
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import workbench as wb
from workbench import auto, models, zoo
from workbench.architecture import TASKS, Architecture, TinySize
from workbench.bench import zeroshot
from workbench.model import HookedTransformer
from workbench.models.gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from workbench.registry import REGISTRY, Registry, discover
from workbench.tokenizers import Tokenizer, wordpiece_bpe
from workbench.tokenizers.stand_in import STAND_INS, write_stand_in

ARCHITECTURES = list(REGISTRY)
IDS = [architecture.model_type for architecture in ARCHITECTURES]

AUTO_CLASSES = {
    "base": wb.AutoModel,
    "masked_lm": wb.AutoModelForMaskedLM,
    "causal_lm": wb.AutoModelForCausalLM,
    "sequence_classification": wb.AutoModelForSequenceClassification,
    "token_classification": wb.AutoModelForTokenClassification,
    "question_answering": wb.AutoModelForQuestionAnswering,
    "multiple_choice": wb.AutoModelForMultipleChoice,
}


def _model_classes(module) -> set[type]:
    """The HookedTransformer subclasses ``module`` defines (not those it imports)."""
    return {
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, HookedTransformer) and cls.__module__ == module.__name__
    }


def test_every_model_file_declares_its_architecture():
    """A module of workbench.models that defines a model class declares its record, which is registered once
    (a module without one would be skipped by discovery: its models unreachable from the Auto classes)."""
    declared = []
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"workbench.models.{info.name}")
        if not _model_classes(module):
            continue
        assert isinstance(getattr(module, "ARCHITECTURE", None), Architecture), module.__name__
        assert REGISTRY[module.ARCHITECTURE.model_type] is module.ARCHITECTURE
        declared.append(module.ARCHITECTURE.model_type)
    assert sorted(declared) == sorted(REGISTRY.model_types())
    today = {"bert", "distilbert", "gpt2", "openai-gpt", "roberta", "transfo-xl", "xlm", "xlnet"}
    assert today <= set(declared)


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=IDS)
def test_a_record_is_complete_and_consistent(architecture):
    module = inspect.getmodule(architecture.base)
    assert module.ARCHITECTURE is architecture
    assert architecture.display_name and architecture.name_patterns and architecture.tokenizer_family
    assert architecture.config_class.model_type == architecture.model_type
    assert architecture.default_task in architecture.tasks and "base" in architecture.tasks
    for task in TASKS:
        cls = architecture.model_class(task)
        if cls is None:
            continue
        assert issubclass(cls, HookedTransformer), (task, cls)
        assert issubclass(cls, architecture.base), (task, cls)
        assert cls.config_class is architecture.config_class, (task, cls)
        assert inspect.getmodule(cls) is module, (task, cls)  # no record borrows another file's class


def test_every_model_class_of_a_file_is_in_its_record():
    """A HookedTransformer subclass defined in a model file but left out of its record would be unreachable
    from the Auto classes and wb.load."""
    for architecture in REGISTRY:
        module = inspect.getmodule(architecture.base)
        recorded = {architecture.model_class(task) for task in architecture.tasks}
        defined = _model_classes(module)
        assert defined <= recorded, (module.__name__, defined - recorded)


def test_the_tokenizer_dispatch_reads_the_families_from_the_records():
    """One source: the dispatch by config.json's model_type answers with the records' tokenizer_family (for
    the families the base Tokenizer builds itself) and tokenizer_class's model inputs."""
    built = set(wordpiece_bpe.FAMILIES)
    expected = sorted(a.model_type for a in REGISTRY if a.tokenizer_family in built)
    assert wordpiece_bpe.MODEL_TYPES.supported() == expected
    # The seed's; a new architecture of these families joins them without editing this test.
    assert {"bert", "distilbert", "gpt2", "openai-gpt", "roberta"} <= set(expected)
    for architecture in REGISTRY:
        family = architecture.tokenizer_family
        assert wordpiece_bpe.MODEL_TYPES.family(architecture.model_type) == (family if family in built else None)
    assert wordpiece_bpe.MODEL_TYPES.model_inputs("distilbert") == ("input_ids", "attention_mask")
    assert wordpiece_bpe.MODEL_TYPES.model_inputs("bert") is None  # WordPiece's own: with token_type_ids


def test_every_tokenizer_family_has_a_stand_in():
    assert {a.tokenizer_family for a in REGISTRY} <= set(STAND_INS)
    assert zoo.stand_in_architectures() == sorted(REGISTRY.model_types())


@pytest.mark.parametrize("architecture", ARCHITECTURES, ids=IDS)
def test_the_record_shows_where_its_sequence_head_reads(architecture):
    head = architecture.sequence_classification
    assert architecture.classifier_position == head.classifier_position
    assert architecture.base.classifier_position == head.classifier_position
    # Decoders (GPT, GPT-2, Transformer-XL) and XLNet read the last real token; encoders the first ([CLS]).
    decoder = architecture.default_task == "causal_lm"
    assert architecture.classifier_position == ("last" if decoder else "first")


def test_zero_shot_scoring_comes_from_the_records():
    kinds = {a.model_type: a.zero_shot_kind for a in REGISTRY}
    seed = {
        "bert": "masked", "distilbert": "masked", "roberta": "masked", "gpt2": "causal", "openai-gpt": "causal",
        "transfo-xl": "causal", "xlnet": "permutation", "xlm": "by_config",
    }
    assert {model_type: kinds[model_type] for model_type in seed} == seed  # later architectures may join
    xlm = REGISTRY["xlm"]
    assert xlm.zero_shot_scoring(SimpleNamespace(causal=True)) == ("causal", "causal_lm")
    assert xlm.zero_shot_scoring(SimpleNamespace(causal=False)) == ("masked", "masked_lm")
    assert REGISTRY["xlnet"].zero_shot_scoring(None) == ("permutation", "causal_lm")


@pytest.mark.parametrize("task", TASKS)
def test_the_auto_classes_pick_the_registry_classes(task):
    table = auto.TASK_REGISTRIES[task]
    expected = {a.model_type: a.model_class(task) for a in REGISTRY if a.model_class(task) is not None}
    assert dict(table) == expected and expected
    for model_type, cls in expected.items():
        assert AUTO_CLASSES[task].model_class(model_type) is cls
    missing = [a.model_type for a in REGISTRY if a.model_class(task) is None]
    for model_type in missing:
        with pytest.raises(wb.ConfigError, match=f"model_type '{model_type}' is not supported"):
            AUTO_CLASSES[task].model_class(model_type)
    assert dict(auto.CONFIG_REGISTRY) == {a.model_type: a.config_class for a in REGISTRY}


def test_zoo_tables_come_from_the_records():
    assert dict(zoo.DISPLAY_NAMES) == {a.model_type: a.display_name for a in REGISTRY}
    assert dict(zoo.DEFAULT_TASKS) == {a.model_type: a.default_task for a in REGISTRY}
    assert zoo.DISPLAY_NAMES["transfo-xl"] == "Transformer-XL" and zoo.DEFAULT_TASKS["xlm"] == "masked_lm"


class _FakeConfig(GPT2Config):
    model_type = "fake-gpt"


class _FakeModel(GPT2Model):
    config_class = _FakeConfig


class _FakeLM(_FakeModel, GPT2LMHeadModel):
    pass


# An architecture as a new model file would declare it: no other file names it.
FAKE = Architecture(
    "Fake GPT", _FakeConfig, _FakeModel, causal_lm=_FakeLM, default_task="causal_lm",
    tokenizer_family="byte_level_bpe", name_patterns=(r"^fake-gpt",),
)


@pytest.fixture
def fake_registered():
    REGISTRY.register(FAKE)
    try:
        yield FAKE
    finally:
        REGISTRY.unregister(FAKE.model_type)
    assert "fake-gpt" not in REGISTRY and "fake-gpt" not in auto.MODEL_REGISTRY


def test_a_registered_architecture_is_found_by_the_auto_classes_and_the_zoo(fake_registered):
    assert wb.AutoModel.model_class("fake-gpt") is _FakeModel
    config = wb.AutoConfig.for_model(
        "fake-gpt", n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16
    )
    assert type(config) is _FakeConfig
    assert type(wb.AutoModel.from_config(config, seed=0)) is _FakeModel
    assert "fake-gpt" in auto.CAUSAL_LM_REGISTRY and "fake-gpt" not in auto.MASKED_LM_REGISTRY
    assert wb.AutoModelForCausalLM.model_class("fake-gpt") is _FakeLM
    with pytest.raises(wb.ConfigError, match="'fake-gpt' is not supported for AutoModelForMaskedLM"):
        wb.AutoModelForMaskedLM.model_class("fake-gpt")
    assert zoo.architecture_of("fake-gpt-small") == "fake-gpt"
    assert zoo.DISPLAY_NAMES["fake-gpt"] == "Fake GPT"


def test_a_registered_architecture_gets_a_stand_in_zero_shot_and_tokenizer_dispatch(fake_registered, tmp_path):
    """What the record alone gives a new architecture: wb.zoo's tiny stand-in (tokenizer of its family, config
    from the canonical sizes), its zero-shot scorer, and the tokenizer family by config.json's model_type."""
    size = TinySize(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_positions=32, bpe_vocab_size=300)
    assert "fake-gpt" in zoo.stand_in_architectures()
    model = zoo.tiny("fake-gpt", size=size, device="cpu")
    assert type(model) is _FakeLM and model.config.n_embd == 16 and model.config.n_positions == 32
    assert model.config.architectures == ["_FakeLM"] and model.tokenizer.family == "byte_level_bpe"
    assert model.config.eos_token_id == model.tokenizer.token_to_id("<|endoftext|>")
    assert model.stand_in_notice.startswith("tiny random Fake GPT (1 layers")
    assert zeroshot.scorer_kind(model) == "causal"
    assert type(zeroshot.load_scoring_model(model.save_pretrained(tmp_path / "fake"), device="cpu")) is _FakeLM


def test_the_tokenizer_dispatch_follows_a_registered_record(fake_registered, tmp_path):
    """A folder with vocab.txt and config.json's model_type only: the record's tokenizer_class decides the
    model inputs (the files alone would give BERT's, with token_type_ids)."""
    folder = tmp_path / "files"
    folder.mkdir()
    write_stand_in("wordpiece", folder, 300, 32)
    (folder / "tokenizer_config.json").unlink()
    assert Tokenizer.from_pretrained(folder).model_input_names == ("input_ids", "token_type_ids", "attention_mask")
    (folder / "config.json").write_text(json.dumps({"model_type": "fake-gpt"}))
    REGISTRY.unregister("fake-gpt")
    REGISTRY.register(replace(FAKE, tokenizer_family="wordpiece", tokenizer_class="DistilBertTokenizer"))
    assert "fake-gpt" in wordpiece_bpe.MODEL_TYPES.supported()
    tokenizer = Tokenizer.from_pretrained(folder)
    assert tokenizer.family == "wordpiece" and tokenizer.model_input_names == ("input_ids", "attention_mask")


def test_a_record_without_a_stand_in_family_gets_no_stand_in(fake_registered):
    REGISTRY.unregister("fake-gpt")
    REGISTRY.register(replace(FAKE, tokenizer_family="sentencepiece_bpe"))
    assert "fake-gpt" not in zoo.stand_in_architectures()
    with pytest.raises(ValueError, match="no tiny stand-in for architecture 'fake-gpt'"):
        zoo.tiny("fake-gpt")
    assert wordpiece_bpe.MODEL_TYPES.family("fake-gpt") is None  # a family the base Tokenizer does not build


WORKBENCH = Path(wb.__file__).parent


def _code_strings(path: Path):
    """(line, text) of every string literal of ``path`` that is code, not documentation: docstrings and other
    strings standing alone as a statement (attribute docstrings) are left out; f-string parts are in."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documentation = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            yield node.lineno, node.value


def test_no_model_type_literal_outside_the_models_and_tokenizers():
    """A model_type string in code outside workbench/models/ and workbench/tokenizers/ is a table somebody must
    remember to edit; the records are the one place. Documentation (docstrings, comments) may name them;
    hub names such as "bert-base-uncased" or "tiny-random-gpt2" are names, not model types. The bridge's
    adapter records (workbench/bridge/families/) are the other kind of record: each names the Hugging Face
    model types whose layout it describes, native or not."""
    model_types = sorted(REGISTRY.model_types(), key=len, reverse=True)
    pattern = re.compile(rf"(?<![\w.-])({'|'.join(map(re.escape, model_types))})(?![\w-])")
    found = []
    for path in sorted(WORKBENCH.rglob("*.py")):
        if path.relative_to(WORKBENCH).parts[0] in ("models", "tokenizers"):
            continue
        if path.relative_to(WORKBENCH).parts[:2] == ("bridge", "families"):
            continue
        for line, text in _code_strings(path):
            if pattern.search(text):
                found.append(f"{path.relative_to(WORKBENCH)}:{line}: {text[:60]!r}")
    assert not found, found
    assert list(_code_strings(WORKBENCH / "models" / "xlnet.py"))  # the scan does see strings


def test_a_separate_registry_instance_is_independent():
    registry = Registry([FAKE])
    assert registry.model_types() == ["fake-gpt"] and dict(registry.classes("base")) == {
        "fake-gpt": _FakeModel
    }
    assert "fake-gpt" not in REGISTRY and dict(registry.classes("masked_lm")) == {}


def test_a_model_type_registered_twice_is_refused():
    registry = Registry([FAKE])
    with pytest.raises(ValueError, match="'fake-gpt' is registered twice: Fake GPT and Other"):
        registry.register(replace(FAKE, display_name="Other"))
    with pytest.raises(TypeError, match="expected an Architecture record, got dict"):
        registry.register({"model_type": "x"})


def test_bad_records_are_refused_when_declared():
    with pytest.raises(ValueError, match="default_task 'masked_lm' is not one of its tasks"):
        replace(FAKE, default_task="masked_lm")
    with pytest.raises(ValueError, match="zero_shot 'sampling' is not one of"):
        replace(FAKE, zero_shot="sampling")
    with pytest.raises(ValueError, match="zero_shot 'masked' scores with a masked_lm class, and the record has none"):
        replace(FAKE, zero_shot="masked")
    with pytest.raises(ValueError, match="zero_shot 'by_config' scores with a masked_lm class"):
        replace(FAKE, zero_shot="by_config")
    with pytest.raises(ValueError, match=r"name pattern '\^\(fake': missing \)"):
        replace(FAKE, name_patterns=(r"^(fake",))
    with pytest.raises(TypeError, match="name_patterns must be a tuple"):
        replace(FAKE, name_patterns=r"^fake")
    with pytest.raises(ValueError, match="unknown task 'lm'"):
        FAKE.model_class("lm")


def test_a_name_two_architectures_claim_stands_for_neither(fake_registered, caplog):
    REGISTRY.unregister("fake-gpt")
    REGISTRY.register(replace(FAKE, name_patterns=(r"^(fake-)?gpt2",)))
    assert zoo.architecture_of("gpt2-medium") is None
    assert "matches the name patterns of several architectures (gpt2, fake-gpt)" in caplog.text
    assert zoo.architecture_of("fake-gpt2") == "fake-gpt"


def test_discovery_refuses_a_module_whose_record_is_not_an_architecture(tmp_path, monkeypatch):
    package = tmp_path / "fake_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("X = 1\n")  # no ARCHITECTURE: a helper module, skipped
    (package / "broken.py").write_text("ARCHITECTURE = {'model_type': 'broken'}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_models = importlib.import_module("fake_models")
    with pytest.raises(TypeError, match="fake_models.broken.ARCHITECTURE must be a workbench.architecture"):
        discover(fake_models)
    (package / "broken.py").unlink()
    assert len(discover(fake_models)) == 0
