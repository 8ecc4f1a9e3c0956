"""The machine a benchmark ran on, for its JSON: Python, platform, CPU model, cores, memory, load, and the versions
of the packages whose numbers it reports."""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path


def machine(*packages: str) -> dict:
    """Facts about this machine now, with ``package: version`` for each name in ``packages`` (each must import)."""
    cpu = next((ln.split(':', 1)[1].strip() for ln in _lines('/proc/cpuinfo') if ln.startswith('model name')), '?')
    memory = next((ln.split()[1] for ln in _lines('/proc/meminfo') if ln.startswith('MemTotal')), '0')
    info: dict = {
        'python': sys.version.split()[0],
        'platform': platform.platform(),
        'cpu': cpu if cpu != '?' else platform.processor() or platform.machine(),
        'cpus': os.cpu_count(),
        'memory MiB': int(memory) // 1024,
        'load average at start': os.getloadavg(),
    }
    for name in packages:
        module = importlib.import_module(name)
        info['hgq2' if name == 'hgq' else name] = getattr(module, '__version__', '?')
    return info


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []
