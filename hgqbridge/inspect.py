"""Look inside an HGQ2 model: the fixed-point format of every quantizer, what each layer does, EBOPs per layer.

Everything that reaches into Keras's or HGQ2's private state lives here, in one place (``_keras_history``,
``_inbound_nodes``, the quantizers' ``_k``/``_i``/``_f``, ``_beta``, ``_flatten_layers``), so that an upgrade breaks
one module. ``LAYER_KINDS`` says what each HGQ2 / Keras class does to values: the deployability rules and the
firmware input port read it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .fixed import FixedFormat

#: What an HGQ2 / Keras layer class does: ``arithmetic`` layers multiply and sum (their input must be quantized,
#: their sums may outgrow float32); ``move`` layers only move values (a quantizer commutes with them).
LAYER_KINDS: dict[str, str] = {
    **dict.fromkeys(
        (
            'QDense',
            'QConv1D',
            'QConv2D',
            'QConv3D',
            'QBatchNormalization',
            'QBatchNormDense',
            'QEinsumDense',
            'Dense',
            'Conv1D',
            'Conv2D',
        ),
        'arithmetic',
    ),
    **dict.fromkeys(
        ('Flatten', 'Reshape', 'Dropout', 'MaxPooling1D', 'MaxPooling2D', 'ZeroPadding1D', 'ZeroPadding2D', 'Permute'), 'move'
    ),
}


def kind(layer: Any) -> str:
    """'arithmetic', 'move' or '' for a layer object."""
    return LAYER_KINDS.get(type(layer).__name__, '')


@dataclass
class QuantizerInfo:
    """The formats one quantizer applies: uniform (one FixedFormat) or heterogeneous (per element)."""

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    round: str
    overflow: str
    affine: tuple[float, float] | None = None  # applied after quantizing (hard-sigmoid emulation)

    @property
    def width(self) -> np.ndarray:
        return np.maximum(self.k + self.i + self.f, 0)

    @property
    def uniform(self) -> bool:
        return all(np.all(a == a.flat[0]) for a in (self.k, self.i, self.f))

    def widest(self) -> FixedFormat:
        """The smallest single format that holds every element's format."""
        return FixedFormat(int(self.k.max()), int(self.i.max()), int(self.f.max()), _round(self.round), self.overflow)

    def describe(self) -> str:
        affine = f', then x*{self.affine[0]:g}+{self.affine[1]:g}' if self.affine else ''
        if self.uniform:
            return (
                str(FixedFormat(int(self.k.flat[0]), int(self.i.flat[0]), int(self.f.flat[0]), _round(self.round), self.overflow))
                + affine
            )
        w = self.width
        return f'heterogeneous {self.round}/{self.overflow}: width {int(w.min())}..{int(w.max())} (mean {float(w.mean()):.2f}) over {w.size}'


def _round(mode: str) -> str:
    return mode if mode in ('TRN', 'RND', 'RND_CONV') else 'RND_CONV' if mode.endswith('RND_CONV') else 'RND'


def quantizer_info(q: Any) -> QuantizerInfo | None:
    """k, i, f arrays of an ``hgq`` Quantizer layer, or None for a float (dummy) quantizer."""
    from hgq.quantizer.internal import FixedPointQuantizerBase

    inner = getattr(q, 'quantizer', None)
    if not isinstance(inner, FixedPointQuantizerBase):
        return None
    k, i, f = (np.asarray(x).astype(np.int64) for x in (np.asarray(v) for v in inner.kif))
    k, i, f = np.broadcast_arrays(k, i, f)
    affine = getattr(q, 'affine', None)
    return QuantizerInfo(k, i, f, inner.round_mode, inner.overflow_mode, tuple(affine) if affine else None)


def layer_quantizers(layer: Any) -> dict[str, Any]:
    """The quantizers of an HGQ2 layer by role: input, kernel, bias, output (Quantizer layers: 'self')."""
    from hgq.layers import Quantizer
    from hgq.layers.core.base import MultipleQuantizers

    if isinstance(layer, Quantizer):
        return {'self': layer}
    out: dict[str, Any] = {}
    multi = getattr(layer, '_iq', None) if getattr(layer, 'enable_iq', False) else None
    if isinstance(multi, MultipleQuantizers):  # one input quantizer per input of a merge layer
        out.update({f'input{n}': q for n, q in enumerate(multi)})
    for role, attr in (('input', 'iq'), ('kernel', 'kq'), ('bias', 'bq'), ('output', 'oq')):
        if getattr(layer, f'enable_{attr}', True) is False:
            continue
        q = getattr(layer, f'_{attr}', None) or (getattr(layer, attr, None) if attr in ('kq', 'bq') else None)
        if q is None and attr in ('iq', 'oq') and getattr(layer, f'enable_{attr}', False):
            q = getattr(layer, attr, None)
        if q is not None and not isinstance(q, MultipleQuantizers):
            out[role] = q
    return out


def calibrate(model: Any, x: np.ndarray) -> int:
    """hgq's ``trace_minmax`` (integer bits of WRAP quantizers from data); returns the total EBOPs."""
    import warnings

    from hgq.utils import trace_minmax

    with warnings.catch_warnings():  # trace_minmax feeds a bare tensor to a model whose inputs are a list
        warnings.filterwarnings('ignore', message='The structure of `inputs`')
        return int(trace_minmax(model, x, verbose=0))


def compute_ebops(model: Any) -> dict[str, int]:
    """EBOPs of every layer that counts them, from one forward pass in HGQ2's tracing mode.

    Tracing with ``reset`` off on a zero input leaves every quantizer as it is (WRAP quantizers only widen)."""
    from hgq.utils.minmax_trace import TrainingFlagWrapper

    zeros = [np.zeros((1, *t.shape[1:]), dtype=np.float32) for t in model.inputs]
    model(zeros, training=TrainingFlagWrapper('tracing'))
    return {layer.name: int(layer.ebops) for layer in model.layers if getattr(layer, 'enable_ebops', False)}


@dataclass
class LayerFormats:
    name: str
    layer_class: str
    formats: dict[str, str] = field(default_factory=dict)
    ebops: int | None = None


def inspect_model(model: Any) -> list[LayerFormats]:
    ebops = compute_ebops(model)
    rows = []
    for layer in model.layers:
        formats = {}
        for role, q in layer_quantizers(layer).items():
            info = quantizer_info(q)
            formats[role] = info.describe() if info is not None else 'float (dummy quantizer)'
        rows.append(LayerFormats(layer.name, type(layer).__name__, formats, ebops.get(layer.name)))
    return rows


def inspect_text(model: Any) -> str:
    rows = inspect_model(model)
    lines = [f'Model {model.name!r}: per-layer fixed-point formats (ap_fixed<W,I,ROUND,OVERFLOW>) and EBOPs']
    for row in rows:
        ebops = f'{row.ebops:>10}' if row.ebops is not None else f'{"-":>10}'
        lines.append(f'  {row.name:<20} {row.layer_class:<14} EBOPs {ebops}')
        lines.extend(f'  {"":<20} {"":<14}   {role:<7} {text}' for role, text in row.formats.items())
    total = sum(r.ebops or 0 for r in rows)
    lines.append(f'Total EBOPs: {total}')
    return '\n'.join(lines)


def inspect_dict(model: Any) -> dict[str, Any]:
    rows = inspect_model(model)
    return {'model': model.name, 'layers': [asdict(r) for r in rows], 'total_ebops': sum(r.ebops or 0 for r in rows)}


def parents(layer: Any) -> list[str]:
    """Names of the layers whose outputs ``layer`` reads."""
    return [
        t._keras_history.operation.name
        for node in layer._inbound_nodes
        for t in node.input_tensors
        if hasattr(t, '_keras_history')
    ]


def producer(tensor: Any) -> Any:
    """The layer that computes a Keras tensor."""
    return tensor._keras_history.operation


def consumers(model: Any, tensor: Any) -> list[Any]:
    """The layers of ``model`` (not input layers) that read ``tensor``."""
    return [
        layer
        for layer in model.layers
        if any(
            t is tensor or getattr(t, 'name', None) == tensor.name for node in layer._inbound_nodes for t in node.input_tensors
        )
        and type(layer).__name__ != 'InputLayer'
    ]


def all_layers(model: Any) -> list[Any]:
    """Every layer, nested ones included (HGQ2's quantizers are layers inside layers)."""
    return list(model._flatten_layers())


def fixed_point_quantizers(model: Any) -> list[Any]:
    """The inner fixed-point quantizers (with ``_k``, ``_i``, ``_f`` variables) of every layer."""
    return [inner for layer in all_layers(model) if hasattr(inner := getattr(layer, 'quantizer', None), '_f')]


def set_beta(model: Any, beta: float) -> None:
    """HGQ2's EBOPs regularisation strength on every layer that has one."""
    import keras

    for layer in all_layers(model):
        if getattr(layer, '_beta', None) is not None:
            layer._beta.assign(keras.ops.convert_to_tensor(beta, dtype=layer._beta.dtype))
