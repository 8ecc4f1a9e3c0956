"""An ONNX graph as the passes see it: nodes with their attributes, the constants known so far, the exact formats
of quantized constants, and the static shapes. The reader makes one from the protobuf; the passes
(``passes.py``) rewrite it; ``reader.source_graph`` turns it into a SourceGraph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Node:
    """One ONNX node: its op type, domain, name, input and output tensor names and attributes (plain values)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ''


@dataclass(frozen=True)
class WeightProblem:
    """A constant that a weight quantizer could not quantize exactly: the consumer's handler reports it, so it
    joins the list of every problem instead of stopping the read at the first one."""

    reason: str
    fix: str


@dataclass
class OnnxGraph:
    name: str
    nodes: list[Node]
    inputs: list[tuple[str, list[int | None]]]  # graph inputs that are not constants: name, dims
    outputs: list[str]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    formats: dict[str, Any] = field(default_factory=dict)  # constant tensor -> FixedFormat / FormatArray / WeightProblem
    shapes: dict[str, list[int | None]] = field(default_factory=dict)
    layout: dict[str, str] = field(default_factory=dict)  # tensor -> 'cf' (ONNX channels-first, held channels-last) or 'same'
    layout_change: set[str] = field(default_factory=set)  # nodes (by first output) that only change the layout
    dtypes: dict[str, str] = field(default_factory=dict)  # constant tensor -> its numpy dtype in the file (int8, ...)
    opset: int = 13  # the standard domain's opset version

    def users(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for tensor in node.inputs:
                counts[tensor] = counts.get(tensor, 0) + 1
        return counts
