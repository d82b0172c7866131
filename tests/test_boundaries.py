"""The walls between layers: the engine never loads textual, and `--help`/`--version` never load torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "textual", "nnsight")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_no_textual():
    code = (
        "import importlib, pkgutil, smoltui.engine as e\n"
        "for m in pkgutil.iter_modules(e.__path__):\n"
        "    importlib.import_module('smoltui.engine.' + m.name)\n"
    )
    loaded = _modules_after(code)
    assert "smoltui.engine.device" in loaded
    assert not {m for m in loaded if m == "textual" or m.startswith("textual.")}


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_cli_start_up_loads_no_heavy_module(argv):
    code = (
        f"import sys\nsys.argv = ['smoltui', *{argv!r}]\n"
        "from smoltui.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
