"""The architecture registry: each model file's ARCHITECTURE record, and the tables derived from it."""

import importlib
import inspect
import pkgutil
from dataclasses import replace

import pytest

import workbench as wb
from workbench import auto, models, zoo
from workbench.architecture import TASKS, Architecture
from workbench.model import HookedTransformer
from workbench.models.gpt2 import GPT2Config, GPT2Model
from workbench.registry import REGISTRY, Registry, discover
from workbench.tokenizers import wordpiece_bpe

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


def test_the_tokenizer_families_agree_with_the_tokenizer_dispatch():
    for model_type, family in wordpiece_bpe.FAMILY_BY_MODEL_TYPE.items():
        assert REGISTRY[model_type].tokenizer_family == family


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


FAKE = Architecture(
    display_name="Fake GPT",
    config_class=_FakeConfig,
    base=_FakeModel,
    default_task="base",
    tokenizer_family="byte_level_bpe",
    name_patterns=(r"^fake-gpt",),
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
    assert "fake-gpt" in auto.MODEL_REGISTRY and "fake-gpt" not in auto.CAUSAL_LM_REGISTRY
    with pytest.raises(wb.ConfigError, match="'fake-gpt' is not supported for AutoModelForCausalLM"):
        wb.AutoModelForCausalLM.model_class("fake-gpt")
    assert zoo.architecture_of("fake-gpt-small") == "fake-gpt"
    assert zoo.DISPLAY_NAMES["fake-gpt"] == "Fake GPT"


def test_a_separate_registry_instance_is_independent():
    registry = Registry([FAKE])
    assert registry.model_types() == ["fake-gpt"] and dict(registry.classes("base")) == {
        "fake-gpt": _FakeModel
    }
    assert "fake-gpt" not in REGISTRY and dict(registry.classes("causal_lm")) == {}


def test_a_model_type_registered_twice_is_refused():
    registry = Registry([FAKE])
    with pytest.raises(ValueError, match="'fake-gpt' is registered twice: Fake GPT and Other"):
        registry.register(replace(FAKE, display_name="Other"))
    with pytest.raises(TypeError, match="expected an Architecture record, got dict"):
        registry.register({"model_type": "x"})


def test_bad_records_are_refused_when_declared():
    with pytest.raises(ValueError, match="default_task 'causal_lm' is not one of its tasks"):
        replace(FAKE, default_task="causal_lm")
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
