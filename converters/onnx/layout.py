"""How an ONNX tensor is held in the channels-last HGQ2 model, and the shapes of reshape-like nodes.

A tensor's layout is ``'cf'`` (ONNX channels-first NCW / NCHW, held channels-last: held axis ``j`` is ONNX axis
``perm[j]`` with ``perm = [0, 2, ..., r-1, 1]``) or ``'same'`` (held exactly as ONNX has it). Only ranks 3 and 4
have two layouts; every other rank is ``'same'``. A reshape that only inserts or removes unit axes keeps the
order of the values, so in the HGQ2 model it is a Keras ``Reshape`` whenever the held order of the other axes is
the same before and after (``unit_reshape_compatible``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Shape = list[int | None]
RESHAPES = ('Reshape', 'Unsqueeze', 'Squeeze', 'Flatten')


def to_channels_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def to_channels_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def perm(layout: str, rank: int) -> list[int]:
    """Held axis j of a rank-``rank`` tensor is ONNX axis ``perm[j]``."""
    return to_channels_last(rank) if layout == 'cf' and rank in (3, 4) else list(range(rank))


def held_axis(layout: str, rank: int, axis: int) -> int:
    """The held axis of ONNX axis ``axis`` (negative counts from the end)."""
    return perm(layout, rank).index(axis % rank)


def held_shape(layout: str, shape: Shape) -> Shape:
    return [shape[a] for a in perm(layout, len(shape))]


def to_held(layout: str, rank: int, value: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against a rank-``rank`` ONNX tensor, rearranged to broadcast against the held one
    (ONNX broadcasting aligns trailing axes, so it is first given the tensor's rank)."""
    value = np.asarray(value)
    value = value.reshape((1,) * (rank - value.ndim) + value.shape)
    return np.transpose(value, perm(layout, rank))


def _non_unit(shape: Shape) -> list[int]:
    """Axes 1.. whose size is not 1 (the batch axis is never a unit axis here)."""
    return [a for a in range(1, len(shape)) if shape[a] != 1]


def unit_reshape_compatible(in_shape: Shape, in_layout: str, out_shape: Shape, out_layout: str) -> bool:
    """Whether a reshape from ``in_shape`` to ``out_shape`` that only inserts or removes unit axes (apart from the
    batch) keeps the held order of the values: the k-th non-unit input axis becomes the k-th non-unit output
    axis, and the held layouts must list them in the same order."""
    a, b = _non_unit(in_shape), _non_unit(out_shape)
    if [in_shape[x] for x in a] != [out_shape[x] for x in b] or None in [in_shape[x] for x in a]:
        return False
    rank_in = {axis: k for k, axis in enumerate(a)}
    rank_out = {axis: k for k, axis in enumerate(b)}
    held_in = [rank_in[x] for x in perm(in_layout, len(in_shape)) if x in rank_in]
    held_out = [rank_out[x] for x in perm(out_layout, len(out_shape)) if x in rank_out]
    return held_in == held_out


def _axes(node: Any, consts: dict[str, np.ndarray]) -> list[int] | None:
    """Unsqueeze / Squeeze axes: the ``axes`` attribute (opset < 13) or the constant second input."""
    if len(node.inputs) > 1 and node.inputs[1]:
        value = consts.get(node.inputs[1])
        return None if value is None else [int(x) for x in np.asarray(value).ravel()]
    axes = node.attrs.get('axes')
    return None if axes is None and node.op == 'Unsqueeze' else [int(x) for x in (axes or [])]


def _size(dims: Shape) -> int | None:
    """The number of values of a shape (None when a dimension is unknown)."""
    known = [d for d in dims if d is not None]
    return int(np.prod(known, dtype=np.int64)) if len(known) == len(dims) else None


def reshape_out_shape(node: Any, in_shape: Shape, consts: dict[str, np.ndarray]) -> Shape | None:
    """The output shape (batch kept symbolic) of a Reshape / Unsqueeze / Squeeze / Flatten node, or None when it
    cannot be known from its constant inputs, or it would move the batch axis."""
    rank = len(in_shape)
    if node.op == 'Flatten':
        axis = int(node.attrs.get('axis', 1)) % max(rank, 1)
        if axis != 1:
            return None
        return [in_shape[0], _size(in_shape[1:])]
    if node.op in ('Unsqueeze', 'Squeeze'):
        axes = _axes(node, consts)
        if axes is None:
            return None
        if node.op == 'Unsqueeze':
            out_rank = rank + len(axes)
            spots = sorted(a % out_rank for a in axes)
            if 0 in spots:
                return None
            source = iter(in_shape)
            return [1 if a in spots else next(source) for a in range(out_rank)]
        drop = sorted(a % rank for a in axes) if axes else [a for a in range(1, rank) if in_shape[a] == 1]
        if 0 in drop or any(in_shape[a] != 1 for a in drop):
            return None
        return [d for a, d in enumerate(in_shape) if a not in drop]
    target = consts.get(node.inputs[1]) if len(node.inputs) > 1 else None
    if target is None or None in in_shape[1:]:
        return None
    dims = [int(x) for x in np.asarray(target).ravel()]
    if not dims or not (dims[0] == -1 or (dims[0] == 0 and not node.attrs.get('allowzero', 0)) or dims[0] == in_shape[0]):
        return None  # the batch axis must stay the first one
    rest = [
        in_shape[k + 1] if d == 0 and not node.attrs.get('allowzero', 0) and k + 1 < rank else d for k, d in enumerate(dims[1:])
    ]
    total = _size(in_shape[1:]) or 0
    if rest.count(-1) > 1 or any(d is None or d < -1 for d in rest):
        return None
    if -1 in rest:
        fixed = _size([d for d in rest if d != -1]) or 0
        rest = [total // fixed if d == -1 and fixed else d for d in rest]
    if _size(rest) != total:
        return None
    return [in_shape[0], *rest]
