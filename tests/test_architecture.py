"""The tree's own rules (issue 22), read from the source without importing it:

* imports point down: no import cycle between calisim's packages (and topologies) nor between its
  files, function-level imports counted;
* no module over 600 lines, no function over 80;
* a stored value is decoded only in calisim/datastore/;
* tests mirror the tree: tests/<package>/test_<module>.py for the module or package it tests.

A submodule's import of a name from its own package's ``__init__`` counts as an edge to that
``__init__`` (it is a cycle as soon as the ``__init__`` imports the submodule); importing a
submodule through its package (``from calisim.datastore import keys``) is an edge to the submodule
only, since Python runs every parent package's ``__init__`` before any of its modules anyway."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted([*ROOT.glob("calisim/**/*.py"), *ROOT.glob("topologies/*.py")])}
CODE = sorted([*MODULES.values(), *ROOT.glob("benchmarks/*.py")])


def owning_module(name: str) -> str | None:
    """The module (file) an imported dotted name lives in, if it is one of ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(name: str, path: Path) -> set[str]:
    """Every module of ours that the file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {owning_module(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else owning_module(base))
    return found - {None, name}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name, path) for name, path in MODULES.items()}


def package_of(name: str) -> str:
    """calisim.node.bird.config -> calisim.node; calisim.ipam -> calisim.ipam; topologies.flat -> topologies."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "calisim" else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        edges = packages.setdefault(package_of(name), set())
        edges |= {package_of(t) for t in targets} - {package_of(name)}
    return packages


def knots(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan's): nodes that all reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each knot."""
    return [cycle_within(graph, knot) for knot in knots(graph)]


def cycle_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path from the component's first node back to itself, staying inside the component."""
    start = min(component)
    came_from = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                path = [node]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return list(reversed(path)) + [start]
            if target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError(f"no cycle in {component}")


def test_the_cycle_finder_reports_a_cycle_and_nothing_for_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def describe(cycle: list[str], graph: dict[str, set[str]], knots: list[set[str]]) -> str:
    knot = next(k for k in knots if cycle[0] in k)
    more = f"  (all of {', '.join(sorted(knot))} reach each other)" if len(knot) > len(cycle) - 1 else ""
    return " -> ".join(cycle) + more


def test_no_import_cycle_between_packages():
    graph = import_graph()
    packages = package_graph(graph)
    found = cycles(packages)
    lines = []
    for cycle in found:
        lines.append(describe(cycle, packages, knots(packages)))
        for source, target in zip(cycle, cycle[1:]):
            edges = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                           if package_of(a) == source and package_of(b) == target)
            lines.append(f"    {source} -> {target}: {', '.join(edges)}")
    assert not found, "package import cycles:\n" + "\n".join(lines)


def test_no_import_cycle_between_files():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "file import cycles:\n" + "\n".join(describe(c, graph, knots(graph)) for c in found)


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in CODE if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in CODE for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


# Fields of the values Calico and Docker store (pools, blocks, endpoints, peers): read by name only by
# the resources of calisim/datastore/, everyone else gets them from a resource's from_value.
STORED_FIELDS = {"cidr", "masquerade", "ipip", "ipip_mode", "vxlan", "disabled", "ipv4_nets", "ipv6_nets",
                 "profile_ids", "expected_ipv4_addrs", "expected_ipv6_addrs", "as_num", "affinity", "allocations"}


def stored_field_reads(path: Path) -> list[str]:
    """`x["cidr"]` and `x.get("cidr")` of a stored field (a subscript of a CONSTANT table is not one)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and not (isinstance(node.value, ast.Name) and node.value.id.isupper()):
            key = node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args):
            key = node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and key.value in STORED_FIELDS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return found


def test_stored_values_are_decoded_only_in_the_datastore():
    outside = [path for path in MODULES.values() if ROOT / "calisim" / "datastore" not in path.parents]
    found = [read for path in outside for read in stored_field_reads(path)]
    assert not found, "stored values decoded outside calisim/datastore/:\n" + "\n".join(found)


def module_under_test(test_file: Path) -> list[Path]:
    """Where the module a test file is named for may be: a file or a package of that name."""
    folder = test_file.parent.relative_to(ROOT / "tests")
    name = test_file.stem.removeprefix("test_")
    if folder.parts[:1] in (("topologies",), ("benchmarks",)):
        base = ROOT / folder
    else:
        base = ROOT / "calisim" / folder
    return [base / f"{name}.py", base / name / "__init__.py"]


TEST_FILES = sorted((ROOT / "tests").rglob("*.py"))
NOT_A_MODULES_TEST = {ROOT / "tests" / "test_architecture.py"}  # this file: it tests the tree as a whole


def test_every_test_file_is_named_for_a_module_that_exists():
    wrong = []
    for path in TEST_FILES:
        if path.name in ("__init__.py", "conftest.py") or path in NOT_A_MODULES_TEST:
            continue
        candidates = module_under_test(path)
        if not path.name.startswith("test_"):
            wrong.append(f"{path.relative_to(ROOT)}: not a test file (helpers belong in a conftest.py)")
        elif not any(c.exists() for c in candidates):
            wrong.append(f"{path.relative_to(ROOT)}: neither {' nor '.join(str(c.relative_to(ROOT)) for c in candidates)}")
    assert not wrong, "test files that name no module:\n" + "\n".join(wrong)


def test_no_test_file_imports_another():
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in TEST_FILES
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and node.module
             and node.module.rpartition(".")[2].startswith("test_")]
    assert not found, "fixtures and helpers go in a conftest.py, not in another test file: " + ", ".join(found)
