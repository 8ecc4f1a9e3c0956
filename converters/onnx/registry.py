"""The registry of ONNX / QONNX op handlers; ``ops.py`` fills it."""

from __future__ import annotations

from collections.abc import Callable

from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

OPS: Registry[Callable[[SourceLayer], object]] = Registry('ONNX op', 'ONNX')
