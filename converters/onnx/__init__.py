"""ONNX and QONNX graphs: read with the onnx package (nothing executed), rewritten by passes (constant folding,
MatMul + Add fusion, layout tracking), one handler per op type."""

from __future__ import annotations

from . import ops  # noqa: F401  (it registers the op handlers)
from .reader import read_onnx
from .registry import OPS

OPS.freeze()
SUFFIXES = ('.onnx',)

__all__ = ['OPS', 'SUFFIXES', 'read_onnx']
