"""grail's modules import each other without cycles: a cycle makes import order matter and hides in function-level
imports until someone moves one to the top of a file. And they import in layers (``LAYERS``, low to high): a module
imports only from its own layer or a lower one. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import grail

SOURCE = Path(grail.__file__).parent


def module_name(path: Path) -> str:
    """The dotted name of a source file under ``SOURCE`` (a package's ``__init__.py`` is the package)."""
    parts = ("grail", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The grail modules that ``path`` imports anywhere in it; ``from package import name`` counts as importing
    ``package.name`` when that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            for alias in node.names:
                found.add(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Every grail module and the grail modules it imports."""
    paths = sorted(SOURCE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan's algorithm), each as a path that returns to its
    first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, staying inside the group (breadth-first)."""
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "grail.batching" in graph["grail.scoring"]  # module level
    assert "grail.figures" in graph["grail.attacks.runner"]  # inside a method
    assert "grail.io" in graph["grail.compare"]  # from grail import io


def test_cycles_finds_a_cycle_and_only_one_per_group():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_grail_modules_import_each_other_without_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles among grail modules:\n" + "\n".join(" -> ".join(c) for c in found)


# ---- layers: a module imports only from its own layer or a lower one -------------------------------------------------
LAYERS: list[tuple[str, set[str]]] = [
    ("leaves: the config, names, numbers and files every other module shares", {
        "grail", "grail.config", "grail.data.examples", "grail.distributed", "grail.io", "grail.metrics",
        "grail.model_names", "grail.tables", "grail.threads"}),
    ("data, models (and their sharding), batches and the registry of methods (config overrides)", {
        "grail.data", "grail.data.builtin", "grail.data.general", "grail.data.hub", "grail.data.loaders",
        "grail.data.muse", "grail.data.sources", "grail.data.tofu", "grail.batching", "grail.models",
        "grail.methods", "grail.sharding"}),
    ("what is computed on a model: the stages, scoring, the training loop, calibration", {
        "grail.stages", "grail.stages.finetune", "grail.stages.gradients", "grail.stages.localize",
        "grail.stages.objectives", "grail.stages.sharded_topk", "grail.stages.stops", "grail.stages.targets",
        "grail.stages.unlearn",
        "grail.scoring", "grail.training", "grail.calibration"}),
    ("measurements of models and their tables and figures; the run folder", {
        "grail.evaluation", "grail.mmlu", "grail.general_eval", "grail.replay", "grail.audit", "grail.run_folder",
        "grail.report", "grail.compare", "grail.figures", "grail.attacks", "grail.attacks.mia",
        "grail.attacks.relearn", "grail.attacks.precision", "grail.attacks.prompts", "grail.attacks.report"}),
    ("the pipeline over a run folder", {"grail.pipeline"}),
    ("what works on a run through the pipeline: methods, attacks, export, inspection", {
        "grail.experiments", "grail.attacks.runner", "grail.attacks.evidence", "grail.export", "grail.inspection"}),
    ("the command line", {"grail.cli"}),
]
"""grail's layers, low to high."""


def layer_of() -> dict[str, int]:
    return {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer than its own, as a line that says which (modules without a layer
    are left to ``test_every_module_is_in_exactly_one_layer``)."""
    return [f"{module} (layer {layers[module]}) imports {target} (layer {layers[target]})"
            for module in sorted(graph) for target in sorted(graph[module])
            if module in layers and target in layers and layers[target] > layers[module]]


def test_every_module_is_in_exactly_one_layer():
    placed = [module for _, modules in LAYERS for module in modules]
    assert len(placed) == len(set(placed)), sorted({m for m in placed if placed.count(m) > 1})
    modules = set(import_graph())
    assert not modules - set(placed), f"modules without a layer (add them to LAYERS): {sorted(modules - set(placed))}"
    assert not set(placed) - modules, f"LAYERS names modules that do not exist: {sorted(set(placed) - modules)}"


def test_upward_imports_finds_a_lower_module_importing_a_higher_one():
    layers = {"a": 0, "b": 1, "c": 1, "d": 2}
    assert upward_imports({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "c"}}, layers) == [
        "a (layer 0) imports b (layer 1)"]
    assert upward_imports({"a": set(), "b": {"a"}, "c": {"b"}, "d": {"c"}}, layers) == []


def test_no_module_imports_from_a_higher_layer():
    found = upward_imports(import_graph(), layer_of())
    assert not found, "imports against the layers (tests/test_imports.py LAYERS):\n" + "\n".join(found)
