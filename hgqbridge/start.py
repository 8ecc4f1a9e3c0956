"""Where a fine-tuning run starts: the imported quantized model, or a float model that learns its bit widths.

A model converted with ``--dummy`` (HGQ2 ``dummy`` quantizers: the float network itself) starts the HGQ way:
every dummy quantizer becomes HGQ2's default trainable one (weights kbi 8 bits, activations kif with integer
bits traced from data) and training learns the widths from there. A model with no trainable bit width at all
(no HGQ2 quantizer, or only constant ones) is refused with the reason, instead of "training" to EBOPs 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _replace_quantizers(model: Any, q_type: str) -> Any:
    """The same network with every QuantizerConfig replaced by HGQ2's ``q_type`` one for its place; every other
    weight (kernel, bias, batch-norm statistics) copied by its path."""
    import keras

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get('class_name') == 'QuantizerConfig':
                place = value.get('config', {}).get('place', 'datalane')
                return {**value, 'config': {'q_type': q_type, 'place': place}}
            return {k: swap(v) for k, v in value.items()}
        return value

    def clone(layer: Any) -> Any:
        return type(layer).from_config(swap(layer.get_config()))

    out = keras.models.clone_model(model, clone_function=clone)
    for src, dst in zip(model.layers, out.layers):
        own = {v.path: v for v in src.weights}
        for var in dst.weights:
            match = own.get(var.path)
            if match is not None and tuple(match.shape) == tuple(var.shape):
                var.assign(np.asarray(match))
    return out


def dummy_copy(model: Any) -> Any:
    """The same network with every quantizer replaced by HGQ2's ``dummy`` (float) quantizer."""
    return _replace_quantizers(model, 'dummy')


def has_float_quantizers(model: Any) -> bool:
    from .inspect import all_layers, layer_quantizers, quantizer_info

    return any(quantizer_info(q) is None for layer in all_layers(model) for q in layer_quantizers(layer).values())


def trainable_bits(model: Any) -> int:
    """How many fixed-point quantizers have a trainable bit width."""
    from .inspect import fixed_point_quantizers

    return sum(1 for q in fixed_point_quantizers(model) if q.trainable_weights)


def training_start(model: Any) -> tuple[Any, str]:
    """(the model to train, 'imported' | 'float'); refuses a model that has no bit width to learn."""
    from .errors import HGQBridgeError
    from .inspect import fixed_point_quantizers
    from .models import copy_model

    if not fixed_point_quantizers(model) and has_float_quantizers(model):
        work, kind = _replace_quantizers(model, 'default'), 'float'
    else:
        work, kind = copy_model(model), 'imported'
    if trainable_bits(work) == 0:
        found = len(fixed_point_quantizers(work))
        raise HGQBridgeError(
            'the model has no trainable bit widths, so fine-tuning cannot make it smaller',
            where=model.name,
            received=f'{found} fixed-point quantizers, none trainable' if found else 'no HGQ2 quantizer in any layer',
            fix='convert the source with hgqbridge convert (QKeras, or a float model with --bits N or --dummy) and fine-tune that',
        )
    return work, kind
