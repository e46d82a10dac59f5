"""Every docstring example of the package runs and passes; every public name has one.

One test per module runs `doctest.testmod` on it (the examples see the module's globals),
with ELLIPSIS and NORMALIZE_WHITESPACE. Examples that need a download, a GPU, a video that
is not in the repository, or a long run carry `# doctest: +SKIP`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import doctest  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import pkgutil  # noqa: E402
import re  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_slowfast  # noqa: E402

# Extras a module may import at its top level (setup.cfg [options.extras_require]): a module
# that needs an absent one is skipped, any other import error fails.
_OPTIONAL = {"keras_hub", "onnx", "onnxruntime", "openvino", "tf2onnx"}
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# A Google-style example section: `Example:` or `Examples:` alone on its line.
_EXAMPLE_SECTION = re.compile(r"^\s*Examples?:\s*$", re.MULTILINE)


def _walk():
    """`(module name, is a package)` for the package and everything under it."""
    found = [(keras_slowfast.__name__, True)]
    for info in pkgutil.walk_packages(
        keras_slowfast.__path__, keras_slowfast.__name__ + ".", onerror=lambda name: None
    ):
        found.append((info.name, info.ispkg))
    return sorted(found)


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing in _OPTIONAL:
            pytest.skip(f"{name} needs the optional dependency {missing!r}, which is absent")
        raise


_MODULES = [name for name, _ in _walk()]
_PACKAGES = [name for name, ispkg in _walk() if ispkg]


def test_every_module_is_collected():
    """Plumbing: the walk finds the subpackages and their modules."""
    for name in (
        "keras_slowfast.models.layers",
        "keras_slowfast.data.video",
        "keras_slowfast.training.optimizers",
        "keras_slowfast.evaluation.ava",
        "keras_slowfast.weights.readers",
    ):
        assert name in _MODULES


@pytest.mark.parametrize("name", _MODULES)
def test_docstring_examples(name):
    module = _import(name)
    try:
        result = doctest.testmod(module, optionflags=_FLAGS, verbose=False, report=True)
    finally:
        # A fresh Keras state (layer names) for the next module; without a full garbage
        # collection each time, which costs a noticeable part of a second per module.
        keras.backend.clear_session(free_memory=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def _public_names():
    out = []
    for name in _PACKAGES:
        package = _import(name)
        for attr in getattr(package, "__all__", ()):
            out.append((name, attr))
    return out


@pytest.mark.parametrize("package, attr", _public_names())
def test_public_name_has_example(package, attr):
    obj = getattr(importlib.import_module(package), attr)
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        # A constant (a tuple, a dict) has no docstring of its own: its module's documents it.
        pytest.skip(f"{package}.{attr} is a {type(obj).__name__} constant")
    # `__doc__` itself, not `inspect.getdoc`, which would accept a base class's docstring.
    doc = obj.__doc__ or ""
    assert doc.strip(), f"{package}.{attr} has no docstring"
    assert _EXAMPLE_SECTION.search(doc), f"{package}.{attr}: its docstring has no Example section"
    assert ">>>" in doc, f"{package}.{attr}: its Example section has no `>>>` example"
