"""The conversion driver: one handler per source layer, every problem collected, then one HGQ2 model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hgqbridge.errors import LayerProblem, Problem, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits
from hgqbridge.registry import Registry
from hgqbridge.report import ConversionReport, LayerNote

from .build import DEFAULT_INPUT_FORMAT, BuildContext, FloatPolicy, Spec, TensorRef, build_model


@dataclass
class Conversion:
    """The converted HGQ2 model and what verification and the reports need to know about it."""

    model: Any  # keras.Model made of hgq.layers
    graph: SourceGraph
    refs: dict[str, TensorRef]
    inexact: dict[str, str]  # layer -> why it cannot match the source bit for bit
    report: ConversionReport
    specs: dict[str, Spec] = field(default_factory=dict)


def parse_all(graph: SourceGraph, layers: Registry[Callable[..., Spec]]) -> dict[str, Spec]:
    """Run every handler; raise one UnsupportedError listing every layer that cannot be converted."""
    specs: dict[str, Spec] = {}
    problems: list[Problem] = []
    for layer in graph:
        where = f'{graph.name}/{layer.name} ({layer.class_name})'
        handler = layers.get(layer.class_name)
        if handler is None:
            refusal = layers.refusal(layer.class_name)
            reason = refusal.reason if refusal else f'{layers.what} {layer.class_name!r} is not supported'
            fix = (refusal.fix if refusal else '') or 'see `hgqbridge support` for what converts'
            problems.append(Problem(where, reason, fix))
            continue
        try:
            specs[layer.name] = handler(layer)
        except LayerProblem as err:
            problems.append(Problem(where, err.reason, err.fix))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:  # a config no handler foresaw
            problems.append(Problem(where, f'its saved config cannot be read ({type(err).__name__}: {" ".join(str(err).split())[:200]})',
                                    'check that the file is an unmodified model saved by its framework'))
    if problems:
        raise UnsupportedError('the model cannot be converted exactly', problems, where=str(graph.path))
    return specs


def convert_graph(graph: SourceGraph, layers: Registry, input_format: FixedFormat | None = None, policy: FloatPolicy | None = None,
                  limits: Limits = Limits()) -> Conversion:
    specs = parse_all(graph, layers)
    ctx = BuildContext(input_format or DEFAULT_INPUT_FORMAT, policy, limits)
    model = build_model(graph, specs, ctx)
    notes = [
        LayerNote(layer.name, layer.class_name, _target(model, layer.name, ctx.refs.get(layer.name)), ctx.notes.get(layer.name, []))
        for layer in graph
    ]
    report = ConversionReport(str(graph.path), graph.framework, model.name, notes, [l.name for l in model.layers])
    return Conversion(model, graph, ctx.refs, ctx.inexact, report, specs)


def _target(model: Any, name: str, ref: TensorRef | None) -> str:
    """What the source layer became: an HGQ2 layer's class path, or where its tensor went."""
    for layer in model.layers:
        if layer.name == name:
            module = type(layer).__module__
            return f'{"keras" if module.startswith("keras.") else module}.{type(layer).__name__}'
    if ref is not None and ref.via == 'iq':
        return f'input quantizer (iq) of {ref.layer}'
    if ref is not None and ref.via == 'quantized-input':
        return f'moved past {ref.layer} into the next layer\'s input quantizer'
    if ref is not None and ref.via == 'alias':
        return f'removed (its tensor is {ref.layer}\'s)'
    return 'removed'
