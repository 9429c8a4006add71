"""The layers of ARCHITECTURE.md hold: no module imports a higher layer, no imports go in a circle, no module
imports another's private names; every registered search space provides the protocols it offers.

Imports are read with ``ast`` from every module of n2nas/, controllers/ and search_spaces/, at the top of a file and
inside functions alike. The layer order is declared once, in ARCHITECTURE.md's table, and parsed from there.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Protocol

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("n2nas", "controllers", "search_spaces")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _target(name: str) -> str | None:
    """The known module an imported name lives in (``a.b.c`` -> ``a.b`` when ``c`` is not a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every first-party module ``module`` imports, anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]  # `from a import b`: module a.b, or a
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and (target := _target(name)) and target != module:
                found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def declared_layers() -> dict[str, int]:
    """``{unit: layer}`` from the rows of ARCHITECTURE.md's layer table (``| 3 | stage | `unit` `unit` | rule |``)."""
    units = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            for unit in re.findall(r"`([\w.]+)`", cells[2]):
                units[unit] = int(cells[0])
    return units


LAYERS = declared_layers()


def unit_of(module: str) -> str | None:
    """The most specific declared unit owning ``module``; a unit with deeper units declared (the ``n2nas``
    package) owns only its own ``__init__``, so a new module of the package root must be given a row."""
    owners = [u for u in LAYERS if module == u or module.startswith(u + ".")]
    if not owners:
        return None
    unit = max(owners, key=len)
    if module != unit and any(other.startswith(unit + ".") for other in LAYERS):
        return None
    return unit


def test_the_table_declares_layers_bottom_to_top():
    assert LAYERS, "ARCHITECTURE.md has no layer table"
    assert {"n2nas", "n2nas.errors", "n2nas.cli", "controllers", "search_spaces"} <= set(LAYERS)
    assert LAYERS["n2nas.errors"] == 1 and LAYERS["n2nas.cli"] == max(LAYERS.values())


def test_every_module_belongs_to_a_declared_layer():
    missing = sorted(m for m in MODULES if unit_of(m) is None)
    assert not missing, f"give these a layer in ARCHITECTURE.md's table: {missing}"


def test_no_module_imports_a_higher_layer():
    wrong = []
    for module, targets in GRAPH.items():
        here = LAYERS[unit_of(module)]
        for target in sorted(targets):
            there = LAYERS[unit_of(target)]
            if there > here:
                wrong.append(f"{module} (layer {here}) imports {target} (layer {there})")
    assert not wrong, "\n".join(wrong)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_import_circles():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checks_see_what_they_should():
    # lazy imports count, `from package import module` names the module, and a circle is found
    assert "n2nas.searching.loop" in GRAPH["n2nas"]  # imported inside a function of the facade
    assert "n2nas.cli.search_command" in GRAPH["n2nas.cli"]  # `from n2nas.cli import search`
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_says_what_it_does(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text()))
    assert doc and len(doc.split()) >= 12, f"{package}/__init__.py needs a docstring: what it does, what it imports"


def _protocol_members(protocol=None) -> list[str]:
    from search_spaces.protocol import SpaceDefinition

    protocol = protocol or SpaceDefinition
    declared = [n for n in vars(protocol) if not n.startswith("_")] + list(protocol.__annotations__)
    return sorted(set(declared))


def _capabilities() -> list[type]:
    """The optional protocols of ``search_spaces.protocol``: every runtime-checkable protocol but the required one."""
    import search_spaces.protocol as protocol

    return [v for _, v in sorted(vars(protocol).items()) if isinstance(v, type) and Protocol in v.__mro__
            and v is not protocol.SpaceDefinition and v.__module__ == protocol.__name__]


@pytest.mark.parametrize("name", __import__("search_spaces").known_spaces())
def test_every_registered_space_provides_the_space_definition_protocol(name):
    from search_spaces import get_space
    from search_spaces.protocol import SpaceDefinition

    space_def = get_space(name)
    missing = [m for m in _protocol_members() if not hasattr(space_def, m)]
    assert not missing and isinstance(space_def, SpaceDefinition), f"{name} lacks {missing}"
    assert space_def.space.name == space_def.name  # pipelines find their space again by this name


@pytest.mark.parametrize("name", __import__("search_spaces").known_spaces())
def test_a_space_offering_part_of_an_optional_protocol_offers_all_of_it(name):
    # code asks isinstance(space_def, ElasticSpace): a space with some of its members only would silently be
    # treated as having none of them
    from search_spaces import get_space

    space_def = get_space(name)
    for capability in _capabilities():
        members = _protocol_members(capability)
        offered = [m for m in members if hasattr(space_def, m)]
        missing = [m for m in members if not hasattr(space_def, m)]
        assert not offered or (not missing and isinstance(space_def, capability)), \
            f"{name} offers {offered} of {capability.__name__} but lacks {missing}"


def test_the_optional_protocols_are_found_and_claimed_where_expected():
    from search_spaces import get_space
    from search_spaces.protocol import ChecksRecords, ElasticSpace, TabulatesParams

    assert {c.__name__ for c in _capabilities()} >= {"ElasticSpace", "ChecksRecords", "TabulatesParams",
                                                        "DescribesSamples"}
    assert {"largest", "smallest", "random_architecture", "restrict", "shrink_phases", "shared_rule"} <= \
        set(_protocol_members(ElasticSpace))
    assert isinstance(get_space("ecg-res"), ElasticSpace) and not isinstance(get_space("ecg-cpu"), ElasticSpace)
    assert isinstance(get_space("ecg-12lead"), ChecksRecords) and isinstance(get_space("ehr-mlp"), TabulatesParams)


def test_architecture_names_every_method_of_the_protocol():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    assert {"input_size", "build_supernet", "training_settings"} <= set(_protocol_members())
    missing = [m for m in _protocol_members() if f"`{m}`" not in text]
    assert not missing, f"ARCHITECTURE.md's 'Search space' entry should name {missing}"
    unnamed = [c.__name__ for c in _capabilities() if f"`{c.__name__}`" not in text]
    assert not unnamed, f"ARCHITECTURE.md's 'Search space' entry should name the optional protocols {unnamed}"


def private_imports(module: str) -> list[str]:
    """``from other import _name`` lines of ``module`` (``__future__`` and dunder names are public)."""
    path = MODULES[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names = [a.name for a in node.names]
            where = "." * node.level + (node.module or "")
        elif isinstance(node, ast.Import):
            names, where = [a.name for a in node.names], ""
        else:
            continue
        for name in names:
            if any(part.startswith("_") and not part.endswith("__") for part in name.split(".")):
                found.append(f"{module}:{node.lineno} imports {name}" + (f" from {where}" if where else ""))
    return found


def test_no_module_imports_a_private_name_of_another():
    # a name starting with _ is its module's own: a caller elsewhere makes it public first (and gives it a
    # docstring), so that its module can still change it freely
    wrong = [line for module in sorted(MODULES) for line in private_imports(module)]
    assert not wrong, "\n".join(wrong)


def test_the_private_import_check_sees_what_it_should(tmp_path, monkeypatch):
    source = ("from __future__ import annotations\nfrom a import public, __version__\n"
              "def f():\n    from a.b import _hidden\n    import c._d\n")
    (tmp_path / "m.py").write_text(source)
    monkeypatch.setitem(MODULES, "fake.m", tmp_path / "m.py")
    assert private_imports("fake.m") == ["fake.m:4 imports _hidden from a.b", "fake.m:5 imports c._d"]


def test_architecture_names_every_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    files = text[text.index("## Files"):]
    missing = [m for m, p in MODULES.items() if p.name != "__init__.py" and p.name not in files]
    assert not missing, f"name these in ARCHITECTURE.md's Files section: {missing}"


def test_no_two_modules_share_a_name():
    seen: dict[str, str] = {}
    clashes = []
    for module, path in MODULES.items():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {module}")
        seen[path.name] = module
    assert not clashes, "modules sharing a file name: " + "; ".join(clashes)


def test_one_loop_trains_a_network_over_epochs():
    # the one trainer (n2nas/train/trainer.py fit) is the only function of the library that runs epochs of its own
    # gradient steps; the search's epochs drive the runners' shared-weight steps and train nothing themselves
    loops = []
    for module, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            source = ast.unparse(fn)
            over_epochs = any(isinstance(n, (ast.For, ast.While)) and "epoch" in ast.unparse(
                n.target if isinstance(n, ast.For) else n.test) for n in ast.walk(fn))
            if over_epochs and ".backward(" in source:
                loops.append(f"{module}.{fn.name}")
    assert loops == ["n2nas.train.trainer.fit"], loops
