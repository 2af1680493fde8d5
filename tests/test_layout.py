"""The layout's promises: light modules stay Keras-free, no import cycle, no sys.path tricks, the
course's names importable from the course's five modules, and no test reaching for a private name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSE_MODULES = ("char_map", "utils", "data_generator", "sample_models", "train_utils")


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package and of the course's five modules."""
    modules = {name: ROOT / f"{name}.py" for name in COURSE_MODULES}
    for path in sorted((ROOT / "ctclab").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Project modules that ``path`` imports anywhere (top level or inside functions).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in known:
                    found.add(candidate)
                elif node.module in known:
                    found.add(node.module)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules forming a cycle (first == last), or None; depth-first search with colours."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                return stack[stack.index(neighbour) :] + [neighbour]
            if neighbour not in state:
                cycle = visit(neighbour)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_planted_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_project_modules():
    modules = project_modules()
    graph = {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}
    assert len(graph) > 40 and "ctclab.models.registry" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_registry_imports_no_builder_module():
    modules = project_modules()
    registry = imported_modules(modules["ctclab.models.registry"], set(modules))
    assert not registry & {"ctclab.models.course", "ctclab.models.deep", "ctclab.models.attention"}
    for builder_module in ("ctclab.models.course", "ctclab.models.deep", "ctclab.models.attention"):
        assert "ctclab.models.registry" in imported_modules(modules[builder_module], set(modules))


def test_the_package_never_imports_the_course_modules():
    """The course's modules call into the package, never the other way round."""
    modules = project_modules()
    for name, path in modules.items():
        if name.startswith("ctclab"):
            assert not imported_modules(path, set(COURSE_MODULES)), f"{name} imports a course module"


@pytest.mark.parametrize(
    "module",
    ["ctclab.data.descriptors", "ctclab.decoding.lm", "ctclab.runs", "ctclab.data.corpus", "ctclab.emg.corpus"],
)
def test_light_modules_do_not_import_keras(module):
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax'))))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


def python_files() -> list[Path]:
    return [
        path
        for folder in ("ctclab", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "__pycache__" not in path.parts
    ] + [ROOT / f"{name}.py" for name in COURSE_MODULES]


def test_no_sys_path_manipulation_anywhere():
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_no_test_imports_a_private_name():
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ctclab"):
                offenders += [f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")]
    assert offenders == []


COURSE_NAMES = {  # DESIGN.md's course names -> the course module a learner imports them from
    "char_map": ["text_to_int_sequence", "int_sequence_to_text"],
    "utils": ["plot_raw_audio", "spectrogram", "calc_feat_dim", "read_audio", "plot_loss_curves"],
    "data_generator": ["AudioGenerator", "vis_train_features", "create_desc_json", "read_descriptors"],
    "sample_models": [
        "simple_rnn_model",
        "rnn_model",
        "cnn_rnn_model",
        "deep_rnn_model",
        "bidirectional_rnn_model",
        "cnn_output_length",
        "final_model",
    ],
    "train_utils": ["train_model", "load_histories", "compare_models"],
}


@pytest.mark.parametrize("module", COURSE_MODULES)
def test_course_modules_export_the_course_names(module):
    imported = __import__(module)
    assert set(COURSE_NAMES[module]) <= set(imported.__all__)
    for name in imported.__all__:
        value = getattr(imported, name)
        assert value.__module__.startswith("ctclab."), f"{module}.{name} should come from the package"
