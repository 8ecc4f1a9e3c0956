"""The support matrix, generated from the registries (the README's table is this output)."""

from __future__ import annotations


def _status(handler: object) -> str:
    """A handler's docstring says how exact its conversion is when that needs saying; else it is exact."""
    doc = (getattr(handler, '__doc__', None) or '').strip()
    return doc.splitlines()[0].rstrip('.') if doc else 'converted exactly'


def support_markdown() -> str:
    from .converters.da4ml.rules import SUPPORTED as DA4ML
    from .converters.da4ml.rules import VERIFIED as DA4ML_VERIFIED
    from .converters.hls4ml.rules import SUPPORTED as HLS4ML
    from .converters.hls4ml.rules import VERIFIED as HLS4ML_VERIFIED
    from .converters.qkeras import LAYERS, QUANTIZERS

    lines = ['| QKeras / Keras layer | status |', '|---|---|']
    lines += [f'| `{name}` | {_status(LAYERS.get(name))} |' for name in LAYERS.names()]
    lines += [f'| `{name}` | refused: {r.reason} |' for name, r in LAYERS.refused()]
    lines += ['', '| QKeras quantizer | status |', '|---|---|']
    lines += [f'| `{name}` | exact: {QUANTIZERS.get(name).MAPPING} |' for name in QUANTIZERS.names()]
    lines += [f'| `{name}` | refused: {r.reason} |' for name, r in QUANTIZERS.refused()]
    from .converters.onnx import OPS

    lines += ['', '| ONNX / QONNX op | status |', '|---|---|']
    lines += [f'| `{name}` | {_status(OPS.get(name))} |' for name in OPS.names()]
    lines += [f'| `{name}` | refused: {r.reason} |' for name, r in OPS.refused()]
    lines += ['', '| HGQ2 / Keras layer | hls4ml | da4ml |', '|---|---|---|']

    def cell(name: str, accepted: tuple, verified: tuple) -> str:
        return 'proven bit-exact' if name in verified else 'accepted (upstream table)' if name in accepted else 'no'

    for name in sorted(set(HLS4ML) | set(DA4ML)):
        lines.append(f'| `{name}` | {cell(name, HLS4ML, HLS4ML_VERIFIED)} | {cell(name, DA4ML, DA4ML_VERIFIED)} |')
    return '\n'.join(lines)
