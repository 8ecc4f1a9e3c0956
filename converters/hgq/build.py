"""Build the HGQ2 model for a source graph from one spec per source layer.

Problems a spec finds while building (a shape it cannot convert, a quantizer that does not hold 1/area) are
``LayerProblem``s: collected for every layer, then raised once with the parse-time ones' format. Keras refusing a
shape the saved config implies is a problem too (the file does not describe a consistent model). Every layer's
input and output sizes are checked against the ``elements`` budget as the model grows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .specs import Spec
from .tensors import BuildContext, Tensor, TensorRef, materialize


def _elements(tensor: Any) -> float:
    """Values per sample of a symbolic Keras tensor (its batch axis left out)."""
    return float(np.prod([d for d in tuple(tensor.shape)[1:] if d is not None], dtype=np.float64))


def build_model(graph: Any, specs: dict[str, Spec], ctx: BuildContext) -> Any:
    """The HGQ2 functional model for ``graph`` (a SourceGraph) given one spec per source layer; every layer that
    cannot be built is a Problem (layers downstream of it are not tried), raised together at the end."""
    import keras

    from hgqbridge.errors import LayerProblem, Problem, UnsupportedError

    tensors: dict[str, Tensor] = {}
    problems: list[Problem] = []
    for layer in graph.layers:
        where = f'{graph.name}/{layer.name} ({layer.class_name})'
        if any(n not in tensors for n in layer.inbound):
            continue  # an input failed to build: already reported
        inputs = [tensors[n] for n in layer.inbound]
        for t in inputs:  # a per-element input quantizer allocates as many values as its input has
            ctx.limits.check(
                'elements', _elements(t.value), f'the input of this layer ({tuple(t.value.shape)})', f'{graph.path}:{where}'
            )
        try:
            tensors[layer.name] = specs[layer.name].build(layer.name, inputs, ctx)
        except LayerProblem as err:
            problems.append(Problem(where, err.reason, err.fix))
            continue
        except (ValueError, TypeError) as err:  # Keras/HGQ2 refusing a shape or argument the saved config implies
            problems.append(
                Problem(
                    where,
                    f'it cannot be built from its saved config (its shapes or arguments do not fit the graph): '
                    f'{" ".join(str(err).split())[:300]}',
                    'check that the file is an unmodified model saved by its framework',
                )
            )
            continue
        except RecursionError:
            problems.append(Problem(where, 'the model is too deep for Keras to build', 'split it, or lower the number of layers'))
            break
        ctx.limits.check(
            'elements',
            _elements(tensors[layer.name].value),
            f'the output of this layer ({tuple(tensors[layer.name].value.shape)})',
            f'{graph.path}:{where}',
        )
    if problems:
        raise UnsupportedError('the model cannot be converted exactly', problems, where=str(graph.path))
    outputs = [materialize(tensors[n], ctx) for n in graph.outputs]
    for name, t in zip(graph.outputs, outputs):
        ctx.ref(name, ctx.refs.get(t.source, TensorRef(t.source)))
    inputs = [tensors[n].value for n in graph.inputs]
    return keras.Model(inputs, [t.value for t in outputs], name=graph.name)
