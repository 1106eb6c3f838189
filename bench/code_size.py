"""How big and how tangled the package is: the figures docs/architecture.md tracks.

    python bench/code_size.py            # whole package, the core path, long functions, in-function imports

Lines are physical lines of the .py files (blank lines and comments included), the way `wc -l` counts.
The core is the reading path listed in docs/architecture.md (CORE below).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "picochat"

# The core in reading order; a folder counts every module under it.
CORE = [
    "equations.py",
    "tokenizer/tokenizer.py",
    "tokenizer/training.py",
    "tokenizer/chat.py",
    "model.py",
    "optim.py",
    "schedule.py",
    "settings.py",
    "checkpoint.py",
    "training.py",
    "pretrain.py",
    "sft.py",
    "rl.py",
    "engine.py",
    "chat_cli.py",
]


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_functions(path: Path, limit: int = 50) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((f"{path.relative_to(PACKAGE)}:{node.name}", length))
    return found


def function_imports(path: Path) -> tuple[int, int]:
    """Imports inside function bodies: (all, those of picochat's own modules)."""
    total = internal = 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    total += 1
                    name = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
                    internal += bool(
                        (isinstance(inner, ast.ImportFrom) and inner.level > 0)
                        or (name or "").startswith("picochat")
                    )
    return total, internal


def main() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    core = [
        p
        for name in CORE
        for p in ([PACKAGE / name] if name.endswith(".py") else sorted((PACKAGE / name).rglob("*.py")))
    ]
    missing = [p for p in core if not p.exists()]
    if missing:
        sys.exit(f"core modules missing: {missing}")
    longs = sorted((f for p in files for f in long_functions(p)), key=lambda f: -f[1])
    imports = [function_imports(p) for p in files]
    skips = sum(p.read_text().count("# fmt: skip") for p in files)
    print(f"package: {sum(map(lines, files))} lines in {len(files)} files")
    print(f"core path: {sum(map(lines, core))} lines in {len(core)} files")
    print(f"functions over 50 lines: {len(longs)}")
    for name, length in longs:
        print(f"  {length:4d}  {name}")
    print(
        f"imports inside functions: {sum(a for a, _ in imports)} ({sum(b for _, b in imports)} of picochat's own)"
    )
    print(f"'# fmt: skip' markers: {skips}")


if __name__ == "__main__":
    main()
