"""ONNX and QONNX graphs: read with the onnx package (nothing executed), rewritten by passes (constant folding,
batch transposes cancelled, QCDQ and MatMul + Add fusion, reshape merging, layout tracking), one handler per op
type (``ops.py``, ``conv_ops.py``, ``shape_ops.py``, ``quant_ops.py``)."""

from __future__ import annotations

from . import conv_ops, ops, quant_ops, shape_ops  # noqa: F401  (they register the op handlers)
from .reader import read_onnx
from .registry import OPS

OPS.freeze()
SUFFIXES = ('.onnx',)

__all__ = ['OPS', 'SUFFIXES', 'read_onnx']
