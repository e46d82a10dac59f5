"""The package's structure: layers that depend one way, one home per shared name, one
meaning per public name, `__all__`s that agree, and functions short enough to read.

These tests read the source (`ast`) and import the modules; they build no model except in
the one subprocess that checks what building a model imports.
"""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import keras_slowfast as ks

PACKAGE = Path(ks.__file__).parent
ROOT = PACKAGE.parent

# Functions longer than this many code lines (docstring excluded) are split into phases.
MAX_FUNCTION_LINES = 150
# Known long functions waiting to be split into phases; no other function may join them.
LONG_FUNCTIONS_ALLOWED: set[str] = set()


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources():
    """`{module name: (path, ast tree)}` of every module of the package."""
    return {_module_name(p): (p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))}


# ---------------------------------------------------------------------------------------
# The layers depend one way.


def _import_graph():
    """`{module: {imported keras_slowfast modules}}` over every import statement (also
    those inside functions), resolving `from package import submodule`."""
    sources = _sources()
    graph = {}
    for name, (_, tree) in sources.items():
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import submodule` depends on the submodule; parent
                # packages are imported by every import and are not counted.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in sources] or [node.module]
            else:
                continue
            for target in targets:
                if target in sources and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_weights_and_models_do_not_import_each_other():
    graph = _import_graph()
    bad = []
    for module, targets in graph.items():
        for target in targets:
            for low, high in (("weights", "models"), ("models", "weights"), ("models", "data")):
                if module.startswith(f"keras_slowfast.{low}") and target.startswith(
                    f"keras_slowfast.{high}"
                ):
                    bad.append(f"{module} -> {target}")
            # Nothing below the presets layer may import it, nor the package root.
            if module.startswith(("keras_slowfast.weights", "keras_slowfast.models")) and (
                target in ("keras_slowfast", "keras_slowfast.presets", "keras_slowfast.hub")
            ):
                bad.append(f"{module} -> {target}")
    assert bad == []


def test_no_import_cycle_between_modules():
    graph = _import_graph()
    # The package root re-exports the public API; a module importing the root would close
    # a cycle through it, so the root's own edges are left out and any edge into it fails.
    into_root = sorted(m for m, targets in graph.items() if "keras_slowfast" in targets)
    assert into_root == []
    graph["keras_slowfast"] = set()
    assert _cycles(graph) == []


def test_the_graph_walker_sees_a_cycle():
    # The cycle finder itself, on a graph with a known cycle (a check that can fail).
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_building_a_model_does_not_import_the_data_pipeline():
    code = (
        "import sys\n"
        "from keras_slowfast.models import SlowFast\n"
        "SlowFast(width_per_group=8, classes=3)\n"
        "print(sorted(m for m in sys.modules if m.startswith('keras_slowfast.data')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------
# What is shared has a home: no module uses another module's private names.


def _is_private(name):
    return name.startswith("_") and not name.startswith("__")


def private_uses(module, tree, is_init=False):
    """`(line, "imported.module._name")` of each private name of another package module
    that `module`'s code imports or reaches as an attribute (`alias._name`)."""
    found = []
    aliases = {}  # local name -> the keras_slowfast module or name it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = parts[: len(parts) - node.level + (1 if is_init else 0)]
                base = ".".join(keep + ([node.module] if node.module else []))
            if base.split(".")[0] != "keras_slowfast":
                continue
            for a in node.names:
                if _is_private(a.name) and base != module:
                    found.append((node.lineno, f"{base}.{a.name}"))
                aliases[a.asname or a.name] = f"{base}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "keras_slowfast":
                    aliases[a.asname or "keras_slowfast"] = a.name if a.asname else "keras_slowfast"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            chain, value = [], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases:
                target = ".".join([aliases[value.id], *chain])
                if target != module:
                    found.append((node.lineno, f"{target}.{node.attr}"))
    return sorted(found)


def test_the_private_name_walker_sees_each_kind_of_use():
    # A check that can fail: each way of reaching another module's private name is seen,
    # and the module's own private names, dunders and other packages' names are not.
    code = (
        "import os\n"
        "import keras_slowfast.data.video\n"
        "from keras_slowfast.data import video as video_lib\n"
        "from keras_slowfast.data.kinetics import _GATE, read_video_list\n"
        "from keras_slowfast.m import _own\n"
        "from . import _sibling\n"
        "video_lib._open(1)\n"
        "keras_slowfast.data.video._frames(2)\n"
        "os._exit\n"
        "video_lib.__name__\n"
    )
    found = private_uses("keras_slowfast.m", ast.parse(code))
    assert found == [
        (4, "keras_slowfast.data.kinetics._GATE"),
        (6, "keras_slowfast._sibling"),
        (7, "keras_slowfast.data.video._open"),
        (8, "keras_slowfast.data.video._frames"),
    ]


def test_no_private_name_crosses_modules():
    crossings = [
        f"{path.relative_to(ROOT)}:{line} uses {name}"
        for module, (path, tree) in _sources().items()
        for line, name in private_uses(module, tree, is_init=path.name == "__init__.py")
    ]
    assert crossings == []


# ---------------------------------------------------------------------------------------
# `__all__`: every name resolves, packages agree with their modules, one name one meaning.


def _all_modules():
    names = [ks.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(ks.__path__, ks.__name__ + ".", onerror=lambda n: None)
    ]
    return sorted(names)


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:  # a module of an optional extra
        pytest.skip(f"{name} needs {err.name!r}, which is absent")


def _importable(names):
    """The modules among `names` that import (those of absent optional extras left out)."""
    out = []
    for name in names:
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError:
            pass
    return out


def _is_command(name):
    """A command-line module: its public names are its arguments and `main`."""
    last = name.rsplit(".", 1)[-1]
    return last == "cli" or last.endswith("_cli") or ".cli." in name


MODULES = _all_modules()
PACKAGES = [
    name
    for name in MODULES
    if (ROOT / name.replace(".", "/") / "__init__.py").is_file()
    and name != ks.__name__
    and not _is_command(name)
]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_of_all_resolves(name):
    module = _import(name)
    names = getattr(module, "__all__", [])
    assert len(names) == len(set(names)), f"{name}.__all__ lists a name twice"
    assert [n for n in names if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_is_its_modules_all(name):
    """A package that declares `__all__` exports exactly what its public modules declare."""
    package = _import(name)
    if not hasattr(package, "__all__"):
        pytest.skip(f"{name} declares no __all__")
    declared = {}
    for info in pkgutil.iter_modules(package.__path__):
        sub = f"{name}.{info.name}"
        if info.name.startswith("_") or info.ispkg or _is_command(sub):
            continue
        module = _import(sub)
        assert hasattr(module, "__all__"), f"{sub} declares no __all__"
        for attr in module.__all__:
            declared.setdefault(attr, (sub, getattr(module, attr)))
    assert sorted(set(package.__all__) - set(declared)) == [], "exported by no module"
    assert sorted(set(declared) - set(package.__all__)) == [], "declared but not exported"
    assert [n for n, (_, obj) in declared.items() if getattr(package, n) is not obj] == []


def test_root_exports_what_its_modules_declare():
    for name in ks.__all__:
        obj = getattr(ks, name)
        module = importlib.import_module(obj.__module__)
        assert getattr(module, name) is obj
        if hasattr(module, "__all__"):
            assert name in module.__all__, f"{module.__name__}.__all__ lacks {name}"


def test_one_public_name_one_meaning():
    """A name in the `__all__` of several modules is one object (re-exported), and no two
    modules define a public function or class of the same name (commands excepted: each
    has its `main` and `build_parser`)."""
    meanings = {}
    for module in _importable(MODULES):
        name = module.__name__
        if _is_command(name):
            continue
        for attr in getattr(module, "__all__", []):
            meanings.setdefault(attr, {})[id(getattr(module, attr))] = name
    assert {a: sorted(m.values()) for a, m in meanings.items() if len(m) > 1} == {}

    defined = {}
    for module, (_, tree) in _sources().items():
        if _is_command(module):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not _is_private(node.name):
                defined.setdefault(node.name, []).append(module)
    assert {n: m for n, m in defined.items() if len(m) > 1} == {}


# ---------------------------------------------------------------------------------------
# Functions short enough to read.


def function_lengths(tree):
    """`(code lines, name)` of every function, its docstring left out."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            has_doc = (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            )
            start = body[0].end_lineno + 1 if has_doc else node.lineno
            out.append((node.end_lineno - start + 1, node.name))
    return out


def test_the_length_counter_leaves_out_the_docstring():
    code = 'def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n\ndef g(): pass\n'
    assert sorted(function_lengths(ast.parse(code))) == [(1, "g"), (2, "f")]


def test_no_function_is_too_long():
    too_long = sorted(
        f"{path.relative_to(ROOT).as_posix()}::{function} ({lines} lines)"
        for _, (path, tree) in _sources().items()
        for lines, function in function_lengths(tree)
        if lines > MAX_FUNCTION_LINES
        and f"{path.relative_to(ROOT).as_posix()}::{function}" not in LONG_FUNCTIONS_ALLOWED
    )
    assert too_long == []


# ---------------------------------------------------------------------------------------
# Type hints on every public function and method.

# Modules exempt from the rule: none. An entry may only be added with a reason, and goes as
# soon as its module is hinted (the test below enforces that the allowance only shrinks).
UNHINTED_MODULES_ALLOWED: set[str] = set()
# Public methods besides those without a leading underscore: the constructor, and `__call__`
# of the classes used as functions (schedules, person detectors).
_PUBLIC_DUNDERS = ("__init__", "__call__")


def _declared_public(tree):
    """The names a module declares public: its `__all__` when it is a literal, else every
    top-level name without a leading underscore."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:  # computed (the package root's): its names live elsewhere
                break
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and not node.name.startswith("_")
    }


def _missing_hints(function, is_method):
    """The parameters of `function` without an annotation (`self` / `cls` of a method
    excepted; `*args` and `**kwargs` included), and `"return"` when it has no return one."""
    args = function.args
    params = [*args.posonlyargs, *args.args]
    is_static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list
    )
    if is_method and not is_static and params:
        params = params[1:]
    params += args.kwonlyargs
    missing = [p.arg for p in params if p.annotation is None]
    missing += [f"*{a.arg}" for a in [args.vararg] if a is not None and a.annotation is None]
    missing += [f"**{a.arg}" for a in [args.kwarg] if a is not None and a.annotation is None]
    if function.returns is None:
        missing.append("return")
    return missing


def unhinted_public_functions(tree):
    """`(name, missing)` of each public function, and public method of a public class, of a
    module that lacks a parameter or return annotation."""
    public = _declared_public(tree)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found = []
    for node in tree.body:
        if getattr(node, "name", None) not in public:
            continue
        if isinstance(node, functions):
            found.append((node.name, _missing_hints(node, is_method=False)))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, functions) and (
                    not item.name.startswith("_") or item.name in _PUBLIC_DUNDERS
                ):
                    found.append((f"{node.name}.{item.name}", _missing_hints(item, True)))
    return [(name, missing) for name, missing in found if missing]


def test_the_hint_walker_sees_each_missing_hint():
    # A check that can fail: each kind of missing annotation is seen, and what is not public
    # (private functions and methods, names left out of `__all__`) or not a parameter to
    # annotate (`self`, `cls`) is not.
    code = (
        "__all__ = ['f', 'g', 'h', 'C']\n"
        "def f(a: int, b) -> int: ...\n"
        "def g(a: int, *args, **kwargs: str): ...\n"
        "def h(a: int, *, b: int = 1, **kwargs: object) -> None: ...\n"
        "def _private(a): ...\n"
        "def unlisted(a): ...\n"
        "class C:\n"
        "    def __init__(self, x): ...\n"
        "    def method(self) -> int: ...\n"
        "    @classmethod\n"
        "    def make(cls, y: int): ...\n"
        "    @staticmethod\n"
        "    def static(z) -> int: ...\n"
        "    def _helper(self, w): ...\n"
        "    def __repr__(self): ...\n"
        "class _Hidden:\n"
        "    def method(self, v): ...\n"
    )
    assert unhinted_public_functions(ast.parse(code)) == [
        ("f", ["b"]),
        ("g", ["*args", "return"]),
        ("C.__init__", ["x", "return"]),
        ("C.make", ["return"]),
        ("C.static", ["z"]),
    ]
    # Without `__all__`, every top-level name without a leading underscore is public.
    assert unhinted_public_functions(ast.parse("def f(a): ...\ndef _g(b): ...\n")) == [
        ("f", ["a", "return"])
    ]


def test_public_functions_have_type_hints():
    unhinted = [
        f"{rel}::{name} lacks {', '.join(missing)}"
        for _, (path, tree) in _sources().items()
        if (rel := path.relative_to(ROOT).as_posix()) not in UNHINTED_MODULES_ALLOWED
        for name, missing in unhinted_public_functions(tree)
    ]
    assert unhinted == []


def test_the_hint_allowance_lists_only_unhinted_modules():
    # An entry goes once its module is gone or hinted, so that the allowance only shrinks.
    sources = {p.relative_to(ROOT).as_posix(): tree for p, tree in _sources().values()}
    stale = sorted(
        rel
        for rel in UNHINTED_MODULES_ALLOWED
        if rel not in sources or not unhinted_public_functions(sources[rel])
    )
    assert stale == []
