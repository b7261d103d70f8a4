"""Layering of the `lsr` package, checked statically by walking every import with `ast`.

Why: the index and data layers must stay usable (and fast to import) without torch, and the
higher layers (encoders, retrieval, service, CLI...) must build on the lower ones, never the
other way round, so that each layer can be tested, benchmarked and reused on its own.

A module in unit A (a first-level module or subpackage of `lsr`) may import unit B only if
rank(B) < rank(A), or A == B. `lsr/__init__.py` is the public facade: it may import anything
(lazily), and nothing inside the package may import `lsr` itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "lsr"

# Rank of every unit: a unit may import only units of a strictly lower rank (or itself), so units
# sharing a rank (encoders / index, service / evaluation...) may not import each other. The
# pipeline writes collections (retrieval layer) from corpora, so it sits just above retrieval.
# distributed (sharded build and search on Ray) builds on the pipeline and the retriever beside
# the service; the benchmarks measure it and the CLI (which also hands it to the service) runs it.
LAYERS: dict[str, int] = {
    "errors": 0,
    "version": 0,
    "util": 0,
    "data": 1,
    "encoders": 2,
    "index": 2,
    "retrieval": 3,
    "pipeline": 4,
    "service": 5,
    "evaluation": 5,
    "training": 5,
    "integrations": 5,
    "distributed": 5,
    "bench": 6,
    "cli": 7,
}

# Units that must never import these third-party packages, at any nesting level (function-local,
# TYPE_CHECKING, ...): they are the torch-free core.
HEAVY = frozenset({"torch", "transformers", "sentence_transformers"})
TORCH_FREE = frozenset({"index", "data", "util", "errors", "version"})


def _module_name(path: Path, package_root: Path) -> tuple[str, bool]:
    """Dotted name of a source file and whether it is a package `__init__`."""
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts.pop()
    return ".".join(parts), is_pkg


def _is_module(dotted: str, package_root: Path) -> bool:
    """Whether `dotted` names a module or (namespace) package inside the tree."""
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = package_root / rel
    return base.with_suffix(".py").is_file() or base.is_dir()


def _imports(tree: ast.AST, module: str, is_pkg: bool, package_root: Path):
    """Yield (line, imported module) for every import anywhere in the tree.

    Covers `import x`, `from x import y` (absolute and relative, resolved against the module's
    package) and `importlib.import_module("x")` / `__import__("x")` with a literal name. For
    `from pkg import name`, the target is `pkg.name` when that is a module in the tree (so
    `from lsr import index` is an import of `lsr.index`), else `pkg` (so `from lsr import
    __version__` is an import of the facade). A relative import climbing above the top-level
    package yields `None`.
    """
    package = module if is_pkg else module.rpartition(".")[0]
    top = package_root.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    yield node.lineno, None
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if base.split(".")[0] == top and alias.name != "*" and _is_module(sub, package_root):
                    yield node.lineno, sub
                else:
                    yield node.lineno, base
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                yield node.lineno, arg.value


def violations(package_root: Path) -> list[str]:
    """Every layering violation under `package_root` (the `lsr` directory), one line each.

    Lines read `file:line: A imports B — reason`, plus one line per unit missing from LAYERS and
    per file that does not parse.
    """
    top = package_root.name
    out: list[str] = []
    unknown: dict[str, str] = {}

    def unit_of(dotted: str) -> str | None:
        parts = dotted.split(".")
        return parts[1] if len(parts) > 1 else None  # None: the facade `lsr` itself

    for path in sorted(package_root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package_root.parent).as_posix()
        module, is_pkg = _module_name(path, package_root)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        except (SyntaxError, UnicodeDecodeError) as e:
            out.append(f"{rel}: cannot be parsed ({e})")
            continue
        src = unit_of(module)
        if src is None:
            continue  # the facade may import anything
        if src not in LAYERS:
            unknown.setdefault(src, rel)
            continue
        edges = set(_imports(tree, module, is_pkg, package_root))  # `from m import a, b`: once
        for line, target in sorted(edges, key=lambda e: (e[0], e[1] or "")):
            where = f"{rel}:{line}: {module} imports"
            if target is None:
                out.append(f"{where} a module above the top-level package (relative import too deep)")
                continue
            first = target.split(".")[0]
            if first != top:
                if first in HEAVY and src in TORCH_FREE:
                    out.append(f"{where} {target} — {top}.{src} must stay free of torch/transformers")
                continue
            dst = unit_of(target)
            if dst is None:
                out.append(f"{where} {target} — nothing inside the package may import the facade `{top}`; "
                           f"import the defining module (e.g. {top}.version for __version__)")
            elif dst == src:
                continue
            elif dst not in LAYERS:
                out.append(f"{where} {target} — unit {top}.{dst} is not in the layer table; place it in LAYERS "
                           f"in tests/test_architecture.py")
            elif LAYERS[dst] >= LAYERS[src]:
                out.append(f"{where} {target} — {top}.{src} (rank {LAYERS[src]}) may only import lower ranks, "
                           f"{top}.{dst} is rank {LAYERS[dst]}")
    for name, rel in sorted(unknown.items()):
        out.append(f"{rel}: unit {top}.{name} is not in the layer table; place it in LAYERS in "
                   f"tests/test_architecture.py")
    return out


def test_layering():
    """The real tree respects the layer table."""
    found = violations(PACKAGE_ROOT)
    assert not found, f"{len(found)} layering violation(s):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "import sys, lsr.index, lsr.data",
        "import sys, lsr",  # the facade must be lazy: importing it loads no heavy dependency
    ],
)
def test_torch_free_import(code: str):
    """Importing the torch-free core (or the bare facade) loads none of the heavy packages.

    Catches what the static check cannot: transitive imports, e.g. through `lsr/__init__.py`.
    """
    check = " and ".join(f"{m!r} not in sys.modules" for m in sorted(HEAVY))
    loaded = "[m for m in {!r} if m in sys.modules]".format(sorted(HEAVY))
    script = f"{code}; assert {check}, {loaded}"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE_ROOT.parent)
    assert proc.returncode == 0, f"{script!r} exited {proc.returncode}:\n{proc.stderr}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A synthetic `lsr` package under tmp_path with the given files (plus empty __init__s)."""
    root = tmp_path / "lsr"
    for rel, body in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(body))
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        pytest.param(
            {"lsr/index/x.py": "def f():\n    from lsr.retrieval import y\n", "lsr/retrieval/y.py": ""},
            "lsr/index/x.py:2: lsr.index.x imports lsr.retrieval.y",
            id="upward-import-in-function",
        ),
        pytest.param(
            {"lsr/data/x.py": "def f():\n    import torch\n"},
            "lsr/data/x.py:2: lsr.data.x imports torch",
            id="torch-in-data-function",
        ),
        pytest.param(
            {"lsr/index/kernels/topk.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                          "    from ...encoders import Enc\n"},
            "lsr/index/kernels/topk.py:3: lsr.index.kernels.topk imports lsr.encoders",
            id="same-rank-relative-type-checking",
        ),
        pytest.param(
            {"lsr/cli.py": "from lsr import __version__\n"},
            "lsr/cli.py:1: lsr.cli imports lsr — nothing inside",
            id="facade-import",
        ),
        pytest.param(
            {"lsr/foo/a.py": "import lsr.errors\n"},
            "lsr/foo/__init__.py: unit lsr.foo is not in the layer table",
            id="unknown-unit",
        ),
        pytest.param(
            {"lsr/util.py": "import importlib\ndef f():\n    return importlib.import_module('transformers')\n"},
            "lsr/util.py:3: lsr.util imports transformers",
            id="import-module-call",
        ),
    ],
)
def test_checker_reports(tmp_path: Path, files: dict[str, str], expected: str):
    """The checker is not vacuous: each synthetic violation is reported with file and line."""
    found = violations(_tree(tmp_path, files))
    assert any(v.startswith(expected) for v in found), found


def test_checker_accepts_clean_tree(tmp_path: Path):
    """Allowed imports (lower ranks, own unit, relative, facade, third party) raise nothing."""
    root = _tree(tmp_path, {
        "lsr/__init__.py": "def __getattr__(name):\n    import lsr.cli\n",
        "lsr/version.py": "__version__ = '0'\n",
        "lsr/errors.py": "",
        "lsr/util.py": "import numpy as np\n",
        "lsr/data/vectors.py": "import numpy\nfrom ..util import offsets\nfrom lsr import errors\n",
        "lsr/index/kernels/topk.py": "from .. import build\nfrom ...data import vectors\nimport numba\n",
        "lsr/encoders/splade.py": "import torch\nfrom lsr.version import __version__\n",
        "lsr/cli.py": "def main():\n    from lsr.retrieval import search\n    from lsr.bench import run\n",
    })
    assert violations(root) == []
