"""QKeras models (Keras-2 .h5/.json, QKeras-v3 .keras): read with h5py/json/zipfile, convert layer by layer to HGQ2."""

from __future__ import annotations

from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits

from ..hgq.build import FloatPolicy
from ..hgq.driver import Conversion
from ..hgq.driver import convert_graph as _convert
from .layers import LAYERS
from .quantizers import QUANTIZERS
from .fold import fold_batchnorm
from .keras3_reader import read_keras
from .reader import read_h5, read_json
from .savedmodel_reader import read_savedmodel

__all__ = ['LAYERS', 'QUANTIZERS', 'convert_graph', 'fold_batchnorm', 'read_h5', 'read_json', 'read_keras', 'read_savedmodel']


def convert_graph(graph: SourceGraph, input_format: FixedFormat | None = None, policy: FloatPolicy | None = None,
                  limits: Limits = Limits()) -> Conversion:
    return _convert(graph, LAYERS, input_format, policy, limits)
