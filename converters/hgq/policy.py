"""How the float parts of a source model are quantized (a plain Keras or ONNX model has nothing to reproduce bit for
bit, so the bridge chooses its formats), calibrated from data, and compared with the float model.

With data, a float model is converted three times: with ``bits``-bit WRAP activation quantizers that hgq's
``trace_minmax`` calibrates (the tracer), with saturating (SAT) quantizers that receive the tracer's integer bits
(the model handed back: a value beyond the calibrated range saturates instead of wrapping around), and with HGQ2
dummy quantizers (the float model itself, for the side-by-side comparison). Formats are kept in a range a
float32 Keras model and the firmware compute identically: an activation element keeps at most ``SPREAD`` more
fractional bits than its quantizer's widest element, a weight channel at most ``SPREAD`` more than its layer's
widest channel, and a bias no more fractional bits than the products it is added to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.inspect import calibrate, layer_quantizers


@dataclass(frozen=True)
class FloatPolicy:
    """How float parts of a source model are quantized: ``dummy`` keeps them float (HGQ2 dummy quantizers, the
    float model to the last digit); otherwise weights get ``bits``-bit per-channel formats covering their range
    and activations ``bits``-bit WRAP quantizers whose integer bits calibration sets from data."""

    bits: int = 8
    dummy: bool = False
    overflow: str = 'SAT'  # activations: SAT in the model handed back, WRAP in the calibration tracer
    uniform: bool = False  # activations: one format per tensor (the union of its elements' ranges), not one each

    def weight_format(self, values: np.ndarray) -> FormatArray:
        """Per output channel (last axis): signed, integer bits covering max |w| (at least the layer's widest
        channel's minus ``SPREAD``), ``bits`` bits in all."""
        v = np.abs(np.asarray(values, dtype=np.float64))
        peak = v.reshape(-1, v.shape[-1]).max(axis=0) if v.ndim > 1 else v
        i = np.where(peak > 0, np.floor(np.log2(np.maximum(peak, 1e-30))) + 1, -(1 << 20)).astype(np.int64)
        top = int(i.max()) if i.size and peak.max() > 0 else 0
        i = np.maximum(i, top - SPREAD)
        shape = (1,) * (v.ndim - 1) + (peak.size,) if v.ndim > 1 else (peak.size,)
        i = i.reshape(shape)
        return FormatArray(np.ones_like(i), i, self.bits - 1 - i, 'RND', 'SAT')

    def activation_format(self) -> FixedFormat:
        """Before calibration (and without data): signed, 3 integer bits (range +-8), ``overflow``."""
        return FixedFormat(1, 3, self.bits - 4, 'RND', self.overflow)


#: How many more fractional bits than its quantizer's (or layer's) widest element an element may keep.
SPREAD = 4


def traced_formats(tracer: Any, x: np.ndarray, policy: FloatPolicy) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Calibrate the tracer (WRAP activation quantizers) on ``x``: (layer, role) -> per-element (k, i), the
    integer bits clamped to at least the quantizer's widest element's minus ``SPREAD`` (an element that is
    always 0 gets the widest element's minus ``SPREAD``); with ``policy.uniform`` every element gets the union of
    the elements' ranges (the largest k and i)."""
    calibrate(tracer, x)
    formats = {}
    for layer in tracer.layers:
        for role, quantizer in layer_quantizers(layer).items():
            inner = getattr(quantizer, 'quantizer', None)
            if inner is None or getattr(inner, 'overflow_mode', None) != 'WRAP' or not hasattr(inner, '_f'):
                continue
            k = np.asarray(inner._k, dtype=np.float64)
            i = np.asarray(inner._i, dtype=np.float64)
            top = float(i.max()) if i.size and i.max() > -1e6 else 0.0
            if policy.uniform:
                k = np.full_like(k, k.max() if k.size else 0.0)
                i = np.full_like(i, top)
            formats[layer.name, role] = (k, np.maximum(i, top - SPREAD))
    return formats


def saturate(model: Any, formats: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], policy: FloatPolicy) -> None:
    """Give the SAT model's activation quantizers the traced integer bits (f = bits - k - i), then cap every
    bias's fractional bits at those of the products it is added to (input plus kernel channel)."""
    for layer in model.layers:
        quantizers = layer_quantizers(layer)
        for role, quantizer in quantizers.items():
            if (layer.name, role) not in formats:
                continue
            k, i = formats[layer.name, role]
            inner = quantizer.quantizer
            for var, value in ((inner._k, k), (inner._i, i), (inner._f, policy.bits - k - i)):
                var.assign(np.broadcast_to(value, var.shape).astype(var.dtype))
        _cap_bias(quantizers)


def _cap_bias(quantizers: dict[str, Any]) -> None:
    from hgqbridge.inspect import quantizer_info

    infos = {role: quantizer_info(quantizers[role]) for role in ('input', 'kernel', 'bias') if role in quantizers}
    x, w, b = infos.get('input'), infos.get('kernel'), infos.get('bias')
    if x is None or w is None or b is None:
        return
    w_f = w.f.reshape(-1, w.f.shape[-1]).max(axis=0) if w.f.ndim > 1 else w.f
    cap = int(x.f.max()) + w_f
    inner = quantizers['bias'].quantizer
    f = np.asarray(inner._f, dtype=np.float64)
    capped = np.minimum(f, np.reshape(cap, (-1,))[: f.shape[-1]] if f.ndim else cap.max())
    inner._f.assign(capped.astype(inner._f.dtype))


def policy_summary(policy: FloatPolicy, n_calibration: int | None) -> list[str]:
    if policy.dummy:
        return ['float model: HGQ2 dummy quantizers everywhere, so the HGQ2 model computes the float model itself']
    lines = [
        f"float model: {policy.bits}-bit weights (per output channel, integer bits covering each channel's range)"
        f' and {policy.bits}-bit saturating (SAT) activations' + (' (one format per tensor)' if policy.uniform else '')
    ]
    if n_calibration:
        lines.append(
            f'activation integer bits from calibration data ({n_calibration} samples, hgq trace_minmax): each covers its '
            'calibrated maximum rounded up to a power of two; beyond it values saturate (SAT), never wrap'
        )
    else:
        fmt = policy.activation_format()
        lines.append(
            f'no calibration data: every activation is {fmt} (range +-{2.0**fmt.i:g}, saturating); expected accuracy impact: '
            'unknown and possibly severe (any activation beyond +-8 saturates, small ones keep few bits); '
            'pass --calibration data.npz'
        )
    return lines


def _score(pred: np.ndarray, y: np.ndarray | None) -> tuple[str, float] | None:
    if y is None or len(y) != len(pred):
        return None
    if y.ndim == pred.ndim and pred.ndim == 2 and pred.shape[-1] > 1 and y.shape == pred.shape:
        return 'accuracy', float(np.mean(pred.argmax(-1) == y.argmax(-1)))
    if y.ndim == 1 and pred.ndim == 2 and pred.shape[-1] > 1:
        return 'accuracy', float(np.mean(pred.argmax(-1) == y))
    return 'mse', float(np.mean((pred.reshape(len(pred), -1) - y.reshape(len(y), -1)) ** 2))


def comparison(float_model: Any, quantized: Any, x: np.ndarray, y: np.ndarray | None, what: str = 'data') -> list[str]:
    """The float and the quantized model side by side on (x, y): their metric, how often they pick the same
    class, and how far the outputs are apart."""
    ref = np.asarray(float_model.predict(x, batch_size=256, verbose=0))
    got = np.asarray(quantized.predict(x, batch_size=256, verbose=0))
    spread = float(np.max(np.abs(ref))) or 1.0
    worst = float(np.max(np.abs(got - ref)))
    line = f'{what} ({len(x)} samples): quantized vs float outputs max |difference| {worst:.4g} ({worst / spread:.3%} of the float output range)'
    if ref.ndim == 2 and ref.shape[-1] > 1:
        line += f', same top class on {np.mean(ref.argmax(-1) == got.argmax(-1)):.2%}'
    lines = [line]
    a, b = _score(ref, y), _score(got, y)
    if a is not None and b is not None:
        lines.append(f'{what}: {a[0]} float model {a[1]:.4f} | quantized model {b[1]:.4f}')
    return lines
