"""The built-in corpus builtin:pydocs: the docstrings of the standard library, one document per module."""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from smoltui.engine.workspace import ensure_private_dir, write_atomically

# Standard-library parts left out: jokes, GUI toolkits, scripts and test suites (whose files include
# deliberately broken Python).
_PYDOCS_SKIPPED = {"__main__", "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}
_PYDOCS_SKIPPED_FOLDERS = {"test", "tests", "idle_test"}
_CACHE_FORMAT = 1


def pydocs_documents(cache_dir: Path | None) -> list[str]:
    """One document per standard-library module: its docstrings and those of its classes and functions."""
    key = hashlib.sha256(f"{_CACHE_FORMAT}|{sys.version}|{sysconfig.get_paths()['stdlib']}".encode()).hexdigest()
    cached = cache_dir / f"pydocs-{key[:16]}.json" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    # Parsing makes millions of short-lived AST nodes (no reference cycles); with torch loaded, the full
    # collections they trigger scan all of torch's objects too and triple the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        documents = [document for module, file in _stdlib_sources() if (document := _module_docs(module, file))]
    finally:
        if gc_was_enabled:
            gc.enable()
    if cached is not None:
        ensure_private_dir(cached.parent)
        write_atomically(cached, lambda out: out.write(json.dumps(documents).encode("utf-8")))
    return documents


def _module_docs(module: str, file: Path) -> str:
    try:
        tree = ast.parse(file.read_bytes())
    except (SyntaxError, ValueError):  # a stray unparsable file must not take the built-in corpus down
        return ""
    sections = [f"module {module}\n\n{doc}"] if (doc := ast.get_docstring(tree)) else []
    for header, node in _definitions(tree.body, module):
        if doc := ast.get_docstring(node):
            sections.append(f"{header}\n" + "\n".join(f"    {line}".rstrip() for line in doc.splitlines()))
    return "\n\n".join(sections)


def _stdlib_sources() -> Iterator[tuple[str, Path]]:
    """(module name, source file) for the pure-Python standard library, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for name in sorted(sys.stdlib_module_names - _PYDOCS_SKIPPED):
        if (root / f"{name}.py").is_file():
            yield name, root / f"{name}.py"
        elif (root / name).is_dir():
            for file in sorted((root / name).rglob("*.py")):
                parts = file.relative_to(root).with_suffix("").parts
                if not _PYDOCS_SKIPPED_FOLDERS & set(parts):
                    yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), file


def _definitions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
    """Public classes, functions and methods (not functions nested in functions), with a header line each."""
    for node in body:
        if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) or (
            node.name.startswith("_") and not node.name.endswith("__")  # private helpers, but keep __init__ & co
        ):
            continue
        if isinstance(node, ast.ClassDef):
            bases = f"({', '.join(ast.unparse(base) for base in node.bases)})" if node.bases else ""
            yield f"class {prefix}.{node.name}{bases}", node
            yield from _definitions(node.body, f"{prefix}.{node.name}")
        else:
            yield f"def {prefix}.{node.name}({ast.unparse(node.args)})", node
