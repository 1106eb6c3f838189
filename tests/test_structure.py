"""How the package is put together: no import cycles, stages independent, settings light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import picochat

PACKAGE = Path(picochat.__file__).parent


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    """Every picochat module -> the picochat modules it imports, at the top or inside a function."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("picochat"):
                submodules = [
                    f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules
                ]
                found.update(submodules if len(submodules) == len(node.names) else [node.module, *submodules])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
        graph[name] = found - {name}
    return graph


def test_no_import_cycles():
    graph = imports()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
        return seen

    cycles = sorted(name for name in graph if name in reachable(name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_a_stage_never_imports_another_stage():
    graph = imports()
    stages = {"picochat.pretrain", "picochat.sft", "picochat.rl"}
    for stage in stages & set(graph):
        assert not graph[stage] & stages, (stage, graph[stage] & stages)


def test_settings_and_the_training_commands_import_no_torch():
    code = "import sys, picochat.settings, picochat.commands.pretrain, picochat.commands.sft; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
