"""The conversion driver: one handler per source layer, every problem collected, then one HGQ2 model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hgqbridge.errors import LayerProblem, Problem, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits
from hgqbridge.registry import Registry, find
from hgqbridge.report import ConversionReport, LayerNote

from .build import build_model
from .policy import FloatPolicy
from .specs import Spec
from .tensors import DEFAULT_INPUT_FORMAT, BuildContext, TensorRef


@dataclass
class Conversion:
    """The converted HGQ2 model and what verification and the reports need to know about it."""

    model: Any  # keras.Model made of hgq.layers
    graph: SourceGraph
    refs: dict[str, TensorRef]
    inexact: dict[str, str]  # layer -> why it cannot match the source bit for bit
    report: ConversionReport
    raw_input_format: FixedFormat | None = None  # what the HGQ2 model rounds a raw model input to (the source does not)
    exact_below: dict[str, float] | None = None  # layer -> the |input| below which the source itself is exact


def parse_all(graph: SourceGraph, registries: tuple[Registry, ...]) -> dict[str, Spec]:
    """Run every handler; raise one UnsupportedError listing every layer that cannot be converted."""
    specs: dict[str, Spec] = {}
    problems: list[Problem] = []
    for layer in graph:
        where = f'{graph.name}/{layer.name} ({layer.class_name})'
        found = find(registries, layer.class_name)
        if found is None:
            refusal = next((r for reg in registries if (r := reg.refusal(layer.class_name)) is not None), None)
            what = ' or '.join(reg.what for reg in registries)
            reason = refusal.reason if refusal else f'{what} {layer.class_name!r} is not supported'
            problems.append(Problem(where, reason, refusal.fix if refusal else 'see `hgqbridge support` for what converts'))
            continue
        try:
            specs[layer.name] = found[1].handler(layer)
        except LayerProblem as err:
            problems.append(Problem(where, err.reason, err.fix))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:  # a config no handler foresaw
            problems.append(
                Problem(
                    where,
                    f'its saved config cannot be read ({type(err).__name__}: {" ".join(str(err).split())[:200]})',
                    'check that the file is an unmodified model saved by its framework',
                )
            )
    if problems:
        raise UnsupportedError('the model cannot be converted exactly', problems, where=str(graph.path))
    return specs


def framework_of(graph: SourceGraph, registries: tuple[Registry, ...]) -> str:
    """The source framework a graph belongs to: that of a quantizing layer's registry if it has one (QKeras,
    HGQ1, QONNX), else that of its registries' first (Keras, ONNX)."""
    entries = [found for layer in graph if (found := find(registries, layer.class_name)) is not None]
    quantizing = [registry.framework for registry, entry in entries if entry.quantizes]
    return quantizing[0] if quantizing else registries[0].framework


def is_float_graph(graph: SourceGraph, registries: tuple[Registry, ...]) -> bool:
    """True when no layer carries the source's own quantizers (a plain Keras or ONNX model)."""
    return not any(found[1].quantizes for layer in graph if (found := find(registries, layer.class_name)) is not None)


def convert_graph(
    graph: SourceGraph,
    registries: tuple[Registry, ...],
    input_format: FixedFormat | None = None,
    policy: FloatPolicy | None = None,
    limits: Limits = Limits(),
) -> Conversion:
    specs = parse_all(graph, registries)
    ctx = BuildContext(input_format or DEFAULT_INPUT_FORMAT, policy, limits)
    for removed, kept in graph.aliases.items():  # layers a pass removed: their tensor is another's
        ctx.ref(removed, TensorRef(kept, 'alias'))
    model = build_model(graph, specs, ctx)
    notes = [
        LayerNote(
            layer.name, layer.class_name, _target(model, layer.name, ctx.refs.get(layer.name)), ctx.notes.get(layer.name, [])
        )
        for layer in graph
    ]
    notes += [LayerNote(removed, '(removed)', f"removed (its tensor is {kept}'s)", []) for removed, kept in graph.aliases.items()]
    report = ConversionReport(
        str(graph.path),
        framework_of(graph, registries),
        model.name,
        notes,
        [layer.name for layer in model.layers],
        list(graph.notes),
    )
    raw = ctx.input_format if ctx.rounds_raw_input else None
    return Conversion(model, graph, ctx.refs, ctx.inexact, report, raw, ctx.exact_below)


def _target(model: Any, name: str, ref: TensorRef | None) -> str:
    """What the source layer became: an HGQ2 layer's class path, or where its tensor went."""
    for layer in model.layers:
        if layer.name == name:
            module = type(layer).__module__
            return f'{"keras" if module.startswith("keras.") else module}.{type(layer).__name__}'
    if ref is not None and ref.via == 'iq':
        return f'input quantizer (iq) of {ref.layer}'
    if ref is not None and ref.via == 'quantized-input':
        return f"moved past {ref.layer} into the next layer's input quantizer"
    if ref is not None and ref.via == 'alias':
        return f"removed (its tensor is {ref.layer}'s)"
    return 'removed'
