"""ONNX and QONNX graphs: read with the onnx package (nothing executed), one handler per op type."""

from __future__ import annotations

from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits

from ..hgq.build import FloatPolicy
from ..hgq.driver import Conversion
from ..hgq.driver import convert_graph as _convert
from .ops import OPS
from .reader import read_onnx

__all__ = ['OPS', 'convert_graph', 'read_onnx']


def convert_graph(graph: SourceGraph, input_format: FixedFormat | None = None, policy: FloatPolicy | None = None,
                  limits: Limits = Limits()) -> Conversion:
    return _convert(graph, OPS, input_format, policy, limits)
