"""QKeras recurrent layers: one handler per source class name.

QSimpleRNN maps onto HGQ2's QSimpleRNN (its pre-activation quantizer is QKeras's quantizer activation, its
state quantizer QKeras's state_quantizer). QGRU (QKeras's gates are float hard sigmoids, reset_after=False)
and QLSTM are refused with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer

from ..hgq.composite_specs import SimpleRNNSpec
from ..hgq.specs import Spec
from .quantizers import FloatActivation, parse_quantizer, weight_plan
from .registry import LAYERS

LAYERS.refuse(
    'QGRU',
    "QKeras's GRU gates are float hard sigmoids (z * h + (1 - z) * h~ in float32), which no HGQ2 QGRU reproduces bit for bit",
    'replace it by a QSimpleRNN, or keep the layer in QKeras',
)


def _weight(layer: SourceLayer, name: str, shape: tuple[int, ...]) -> np.ndarray:
    value = layer.weight(name)
    if value is None or value.shape != shape:
        raise LayerProblem(
            f'expected {name} of shape {shape}, got {None if value is None else value.shape}',
            'pass the weights saved with this model',
        )
    if not np.all(np.isfinite(value)):
        raise LayerProblem(f'{name} contains NaN or Inf', 're-train or re-save the model')
    return value


@LAYERS.register(
    'QSimpleRNN',
    status='exact: HGQ2 QSimpleRNN, the activation quantizer as its pre-activation quantizer; refused: a float '
    "activation ('relu', 'tanh': the state is not one fixed-point format) and a state_quantizer that does not hold "
    'every activation value (HGQ2 0.2.0 drops a state quantizer when the model is saved)',
    builds=('QSimpleRNN',),
    quantizes=True,
)
def q_simple_rnn(layer: SourceLayer) -> Spec:
    cfg = layer.config
    units = cfg.get('units')
    if not isinstance(units, int) or units < 1:
        raise LayerProblem(f'units must be a positive integer, got {units!r}', 're-save the model')
    for flag in ('stateful', 'return_state'):
        if cfg.get(flag):
            raise LayerProblem(f'{flag}=True is not converted', f'save the model with {flag}=False')
    kernel = layer.weight('kernel')
    if kernel is None or kernel.ndim != 2:
        raise LayerProblem('the weights file has no 2-D kernel for this layer', 'pass the weights saved with this model')
    kernel = _weight(layer, 'kernel', (kernel.shape[0], units))
    recurrent = _weight(layer, 'recurrent_kernel', (units, units))
    bias = _weight(layer, 'bias', (units,)) if cfg.get('use_bias', True) else None
    plans: dict[str, Any] = {}
    for position, values in (('kernel', kernel), ('recurrent', recurrent), ('bias', bias)):
        q = parse_quantizer(cfg.get(f'{position}_quantizer'))
        plans[position] = weight_plan(q, values, position) if values is not None else (None, None)
    act = parse_quantizer(cfg.get('activation', 'quantized_tanh'))
    if act is None or isinstance(act, FloatActivation) or act.two_step() is not None:
        raise LayerProblem(
            f'QSimpleRNN with activation={cfg.get("activation")!r} is not converted: its state would not be one fixed-point format',
            'use a quantizer activation such as quantized_tanh(8) or quantized_relu(6, 2)',
        )
    act_fmt, affine = act.activation_plan()
    if affine is not None:
        raise LayerProblem(
            'a QSimpleRNN activation with an affine transform (quantized_sigmoid) is not converted',
            'use quantized_tanh or quantized_relu',
        )
    state = parse_quantizer(cfg.get('state_quantizer'))
    state_fmt = state.fixed_format('state') if state is not None and not isinstance(state, FloatActivation) else None
    if state_fmt is not None and state_fmt.holds(act_fmt):
        state_fmt = None  # every state value already lies in the state quantizer's format: it changes nothing
    elif state_fmt is not None:
        raise LayerProblem(
            f"state_quantizer {state_fmt} re-quantizes the state, and HGQ2 0.2.0 loses a QSimpleRNN's state "
            'quantizer when the model is saved (its get_config has no enable_sq), so the saved model would compute something else',
            'use a state_quantizer that holds every activation value (or none)',
        )
    return SimpleRNNSpec(
        units,
        plans['kernel'][0],
        plans['recurrent'][0],
        plans['bias'][0],
        plans['kernel'][1],
        plans['recurrent'][1],
        plans['bias'][1],
        act_fmt,
        state_fmt,
        bool(cfg.get('return_sequences', False)),
        bool(cfg.get('go_backwards', False)),
    )
