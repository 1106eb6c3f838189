"""How the package is put together: no import cycles, even at run time; the core never imports a room; the
stages, the engine and the server stay apart; settings are light to import (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from functools import cache
from pathlib import Path

import picochat

PACKAGE = Path(picochat.__file__).parent
MODULES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in PACKAGE.rglob("*.py")
}
CORE = [
    "picochat.equations",
    "picochat.tokenizer.tokenizer",
    "picochat.tokenizer.training",
    "picochat.tokenizer.chat",
    "picochat.model",
    "picochat.optim",
    "picochat.schedule",
    "picochat.settings",
    "picochat.checkpoint",
    "picochat.training",
    "picochat.pretrain",
    "picochat.sft",
    "picochat.rl",
    "picochat.engine",
    "picochat.chat_cli",
]
# a room is every module whose name starts with one of these (picochat.evaluation.bpb is the core's)
ROOMS = [
    "picochat.serve",
    "picochat.hf",
    "picochat.report",
    "picochat.pipeline",
    "picochat.launch",
    "picochat.commands",
    "picochat.evaluation.",
    "picochat.data.corpus",
    "picochat.data.fetch",
    "picochat.data.sources",
    "picochat.data.parsers",
    "picochat.tools.sandbox",
    "picochat.tokenizer.reference",
]
STAGES = ["picochat.pretrain", "picochat.sft", "picochat.rl"]


def packages_of(name: str) -> list[str]:
    """The packages whose __init__ runs before `name` is imported: picochat.a.b -> [picochat, picochat.a]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported(module: str, node: ast.AST) -> set[str]:
    """The picochat modules one import statement names (a relative import resolved from `module`)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
    source = ".".join(part for part in (base, node.module or "") if part)
    return {source} | {f"{source}.{alias.name}" for alias in node.names}


@cache
def run_time_imports() -> dict[str, frozenset[str]]:
    """Every picochat module -> the picochat modules that run when it runs: what it imports, at the top or
    inside a function, and the __init__ of each package on the way (importing picochat.a.b runs
    picochat/a/__init__.py first), but for the packages that hold the importer: they are already running."""
    graph = {}
    for module, path in MODULES.items():
        running = {module, *packages_of(module)}
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            for name in imported(module, node) & MODULES.keys():
                found |= {name, *packages_of(name)} - running
        graph[module] = frozenset(found)
    return graph


def path_to(start: str, goal) -> list[str] | None:
    """The shortest import chain from `start` to a module for which goal(module) holds, or None."""
    graph = run_time_imports()
    came_from: dict[str, str] = {}
    todo = deque([start])
    while todo:
        module = todo.popleft()
        for name in sorted(graph[module]):
            if name not in came_from:
                came_from[name] = module
                if goal(name):
                    chain = [name]
                    while chain[-1] != start or len(chain) == 1:
                        chain.append(came_from[chain[-1]])
                    return chain[::-1]
                todo.append(name)
    return None


def chains(starts: list[str], forbidden) -> list[str]:
    """For each existing start that reaches a forbidden module, the chain that does, as text."""
    found = [path_to(start, forbidden) for start in starts if start in MODULES]
    return [" -> ".join(chain) for chain in found if chain]


def is_room(name: str) -> bool:
    return name != "picochat.evaluation.bpb" and name.startswith(tuple(ROOMS))


def test_no_import_cycles_even_at_run_time():
    cycles = {}
    for module in sorted(MODULES):
        chain = path_to(module, lambda name, module=module: name == module)
        if chain and frozenset(chain) not in cycles:
            cycles[frozenset(chain)] = " -> ".join(chain)
    assert not cycles, "import cycles:\n" + "\n".join(cycles.values())


def test_the_core_never_imports_a_room():
    assert all(module in MODULES for module in CORE), [module for module in CORE if module not in MODULES]
    found = chains(CORE, is_room)
    assert not found, "the core imports a room:\n" + "\n".join(found)


def test_a_stage_never_imports_another_stage():
    for stage in STAGES:
        found = chains([stage], lambda name, stage=stage: name in STAGES and name != stage)
        assert not found, "\n".join(found)


def test_the_engine_never_imports_its_users_and_the_server_not_the_terminal_chat():
    users = ("picochat.serve", "picochat.evaluation", "picochat.rl")
    found = chains(["picochat.engine", "picochat.decode"], lambda name: name.startswith(users))
    servers = [module for module in MODULES if module.startswith("picochat.serve")]
    found += chains(servers, lambda name: name == "picochat.chat_cli")
    assert not found, "\n".join(found)


def test_settings_and_the_training_commands_import_no_torch():
    code = "import sys, picochat.settings, picochat.commands.pretrain, picochat.commands.sft; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
