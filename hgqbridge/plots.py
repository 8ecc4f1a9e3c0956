"""PNG pictures for people: the fine-tuning trajectory with its Pareto front, and bit-width distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def pareto_png(result: Any, path: Path) -> Path:
    """EBOPs vs validation metric per epoch, the Pareto front, the imported model and the chosen epoch."""
    plt = _pyplot()
    ebops = [r.ebops for r in result.history]
    metric = [r.val_metric for r in result.history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.scatter(ebops, metric, c=range(len(ebops)), cmap='viridis', s=18, label='epochs (colour: epoch)')
    front = sorted((r for r in result.history if r.pareto), key=lambda r: r.ebops)
    ax.plot([r.ebops for r in front], [r.val_metric for r in front], 'k--', lw=1, label='Pareto front')
    ax.scatter([result.baseline_ebops], [result.baseline_metric], marker='*', s=160, c='red', label='imported model')
    if result.chosen is not None:
        ax.scatter(
            [result.chosen.ebops],
            [result.chosen.val_metric],
            marker='o',
            s=120,
            facecolors='none',
            edgecolors='red',
            label='chosen',
        )
    ax.set_xscale('log')
    ax.set_xlabel('EBOPs')
    ax.set_ylabel(f'validation {result.metric}')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def bit_widths(model: Any) -> dict[str, np.ndarray]:
    """Every weight's and every activation feature's bit width (k + i + f), from the model's quantizers."""
    from .inspect import layer_quantizers, quantizer_info

    widths: dict[str, list[np.ndarray]] = {'weights': [], 'activations': []}
    for layer in model.layers:
        for role, q in layer_quantizers(layer).items():
            info = quantizer_info(q)
            if info is not None:
                widths['weights' if role in ('kernel', 'bias') else 'activations'].append(info.width.ravel())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in widths.items()}


def bit_widths_png(before: Any, after: Any, path: Path) -> Path:
    """Histograms of weight and activation bit widths before and after fine-tuning."""
    plt = _pyplot()
    b, a = bit_widths(before), bit_widths(after)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
    for ax, kind in zip(axes, ('weights', 'activations')):
        top = int(max([1, *(x.max() for x in (b[kind], a[kind]) if x.size)]))
        bins = np.arange(-0.5, top + 1.5)
        ax.hist(b[kind], bins=bins, alpha=0.6, label=f'imported (mean {b[kind].mean() if b[kind].size else 0:.2f})')
        ax.hist(a[kind], bins=bins, alpha=0.6, label=f'fine-tuned (mean {a[kind].mean() if a[kind].size else 0:.2f})')
        ax.set_title(f'{kind}: bit width per {"weight" if kind == "weights" else "feature"}')
        ax.set_xlabel('bits (k + i + f)')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
