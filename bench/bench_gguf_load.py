"""How long the bundled SmolLM2-135M-Instruct takes to load: the first conversion of its GGUF, then cache hits.

Each load runs in a fresh process with a cache of its own (a temporary $SMOLTUI_CACHE), as `smoltui info` would;
the figures are load_model's own time, after `import torch, transformers` (printed apart: every command pays it).
A fresh process's first load also imports transformers' model-loading machinery (any model source pays that),
so the same load repeated in that process is printed beside it: the difference is those imports. A cache hit
hashes nothing, since the file's digest is remembered per (path, size, mtime, inode); the last line shows what a
hit would cost if it hashed the file again.

Python may write bytecode in the children (into a temporary PYTHONPYCACHEPREFIX, even where the environment says
PYTHONDONTWRITEBYTECODE), and a warm-up conversion into a throwaway cache compiles what loading imports, as an
installed environment would have done already: otherwise every figure includes compiling transformers' sources.

Run: uv run python bench/bench_gguf_load.py   (targets: first conversion under 60 s, every later load under 5 s)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FIRST_TARGET_S = 60.0
LATER_TARGET_S = 5.0
LATER_RUNS = 3

# Runs in the child: imports, then load_model (twice for "again") with a clock on every progress message.
CHILD = """
import json, sys, time
started = time.perf_counter()
import torch, transformers
from smoltui.engine.models import load_model
imported = time.perf_counter()
steps = []
load_model("smollm2-135m-instruct", device="cpu", dtype="fp32",
           progress=lambda text: steps.append((time.perf_counter() - imported, text)))
loaded = time.perf_counter()
if sys.argv[1] == "again":
    load_model("smollm2-135m-instruct", device="cpu", dtype="fp32")
again = time.perf_counter() - loaded
print(json.dumps({"imports": imported - started, "load": loaded - imported, "again": again, "steps": steps}))
"""


def load_once(cache: Path, bytecode: Path, again: bool = False) -> dict:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env |= {"SMOLTUI_CACHE": str(cache), "PYTHONPYCACHEPREFIX": str(bytecode), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "again" if again else "once"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def verdict(seconds: float, target: float) -> str:
    return "ok" if seconds < target else f"OVER the {target:.0f} s target"


def main() -> None:
    from smoltui.engine.bundled import BUNDLED_MODELS

    if BUNDLED_MODELS["smollm2-135m-instruct"].path() is None:
        sys.exit(BUNDLED_MODELS["smollm2-135m-instruct"].missing_hint())
    with tempfile.TemporaryDirectory(prefix="bench-gguf-") as temporary:
        cache, bytecode = Path(temporary) / "cache", Path(temporary) / "bytecode"
        load_once(Path(temporary) / "warm-up", bytecode)
        first = load_once(cache, bytecode)
        print(f"imports (torch, transformers, smoltui)   {first['imports']:6.1f} s  (paid by every command)")
        print(
            f"first load, converting the GGUF          {first['load']:6.1f} s  (target < {FIRST_TARGET_S:.0f} s)  "
            f"{verdict(first['load'], FIRST_TARGET_S)}"
        )
        for at, text in first["steps"]:
            print(f"    {at:6.1f} s  {text}")
        runs = [load_once(cache, bytecode, again=True) for _ in range(LATER_RUNS)]
        later = [run["load"] for run in runs]
        median = statistics.median(later)
        print(
            f"later load, from the cache (median of {LATER_RUNS})  {median:6.1f} s  (target < {LATER_TARGET_S:.0f} s)  "
            f"{verdict(max(later), LATER_TARGET_S)}; slowest {max(later):.1f} s"
        )
        print(
            f"    the same load again in that process   {statistics.median(run['again'] for run in runs):6.1f} s  "
            "(without the first load's imports of transformers' loading code)"
        )
        shutil.rmtree(cache / "gguf" / "digests")  # forget the digests: the next hit hashes the file again
        rehashed = load_once(cache, bytecode)["load"]
        print(
            f"a cache hit that hashes the file again    {rehashed:6.1f} s  (what remembering the digest saves: "
            f"{rehashed - median:+.1f} s)"
        )


if __name__ == "__main__":
    main()
