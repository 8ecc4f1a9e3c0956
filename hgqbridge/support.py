"""The support matrix, generated from the registries (the README's table is this output)."""

from __future__ import annotations


def support_markdown() -> str:
    from .converters.da4ml.rules import SUPPORTED as DA4ML
    from .converters.hls4ml.rules import SUPPORTED as HLS4ML
    from .converters.qkeras import LAYERS, QUANTIZERS

    lines = ['| QKeras / Keras-2 layer | status |', '|---|---|']
    lines += [f'| `{name}` | converted exactly |' for name in LAYERS.names()]
    lines += [f'| `{name}` | refused: {r.reason} |' for name, r in LAYERS.refused()]
    lines += ['', '| QKeras quantizer | status |', '|---|---|']
    lines += [f'| `{name}` | converted exactly (see the mapping above) |' for name in QUANTIZERS.names()]
    lines += [f'| `{name}` | refused: {r.reason} |' for name, r in QUANTIZERS.refused()]
    lines += ['', '| HGQ2 / Keras layer | hls4ml | da4ml |', '|---|---|---|']
    for name in sorted(set(HLS4ML) | set(DA4ML)):
        lines.append(f'| `{name}` | {"yes" if name in HLS4ML else "no"} | {"yes" if name in DA4ML else "no"} |')
    return '\n'.join(lines)
