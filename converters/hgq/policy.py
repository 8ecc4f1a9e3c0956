"""How the float parts of a source model are quantized (a plain Keras or ONNX model has nothing to reproduce bit for
bit, so the bridge chooses its formats), calibrated from data, and compared with the float model.

A float model is converted twice when data is given: with HGQ2 dummy quantizers (which compute the float model
itself) and with ``bits``-bit quantizers whose activation integer bits come from the data (hgq's
``trace_minmax``, then the fractional bits set so each activation keeps ``bits`` bits in all). The report shows
both models' accuracy (or error) side by side.
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

    def weight_format(self, values: np.ndarray) -> FormatArray:
        """Per output channel (last axis): signed, integer bits covering max |w|, ``bits`` bits in all."""
        v = np.abs(np.asarray(values, dtype=np.float64))
        peak = v.reshape(-1, v.shape[-1]).max(axis=0) if v.ndim > 1 else v
        i = np.where(peak > 0, np.floor(np.log2(np.maximum(peak, 1e-30))) + 1, 0).astype(np.int64)
        shape = (1,) * (v.ndim - 1) + (peak.size,) if v.ndim > 1 else (peak.size,)
        i = i.reshape(shape)
        return FormatArray(np.ones_like(i), i, self.bits - 1 - i, 'RND', 'SAT')

    def activation_format(self) -> FixedFormat:
        """Before calibration: signed, 3 integer bits (range +-8)."""
        return FixedFormat(1, 3, self.bits - 4, 'RND', 'WRAP')


def calibrate_policy(model: Any, x: np.ndarray, policy: FloatPolicy) -> None:
    """Integer bits of every WRAP (policy) activation quantizer from ``x``, then f = bits - k - i."""
    calibrate(model, x)
    for layer in model.layers:
        for quantizer in layer_quantizers(layer).values():
            inner = getattr(quantizer, 'quantizer', None)
            if inner is None or getattr(inner, 'overflow_mode', None) != 'WRAP' or not hasattr(inner, '_f'):
                continue
            k, i = np.asarray(inner._k, dtype=np.float64), np.asarray(inner._i, dtype=np.float64)
            inner._f.assign(np.broadcast_to(policy.bits - k - i, inner._f.shape).astype(inner._f.dtype))


def policy_summary(policy: FloatPolicy, n_calibration: int | None) -> list[str]:
    if policy.dummy:
        return ['float model: HGQ2 dummy quantizers everywhere, so the HGQ2 model computes the float model itself']
    lines = [
        f"float model: {policy.bits}-bit weights (per output channel, integer bits covering each channel's range)"
        f' and {policy.bits}-bit activations'
    ]
    if n_calibration:
        lines.append(f'activation integer bits from calibration data ({n_calibration} samples, hgq trace_minmax)')
    else:
        fmt = policy.activation_format()
        lines.append(
            f'no calibration data: every activation starts at {fmt} (range +-{2.0**fmt.i:g}); pass --calibration data.npz'
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


def comparison(float_model: Any, quantized: Any, x: np.ndarray, y: np.ndarray | None) -> list[str]:
    """The float and the quantized model side by side on (x, y): their metric, and how far the outputs are apart."""
    ref = np.asarray(float_model.predict(x, batch_size=256, verbose=0))
    got = np.asarray(quantized.predict(x, batch_size=256, verbose=0))
    spread = float(np.max(np.abs(ref))) or 1.0
    lines = [
        f'quantized vs float outputs on {len(x)} samples: max |difference| {np.max(np.abs(got - ref)):.4g} '
        f'({np.max(np.abs(got - ref)) / spread:.3%} of the float output range)'
    ]
    a, b = _score(ref, y), _score(got, y)
    if a is not None and b is not None:
        lines.append(f'{a[0]}: float model {a[1]:.4f} | quantized model {b[1]:.4f}')
    return lines
