"""The bundled HyperSeg (paper Sec. 3; supplement Sec. A, B, E) with every ablation knob.

Entry point: :func:`build_model` with a :class:`ModelConfig`.
"""

from hsbench.models.config import BACKBONES, ModelConfig
from hsbench.models.hyperseg import HyperSeg, build_model, resolve
from hsbench.models.official import load_official_checkpoint
from hsbench.models.templates import TEMPLATES, Template, get_template
from hsbench.models.weight_mapper import divide_channels
from hsbench.models.weights import load_weights, save_weights

__all__ = [
    "BACKBONES",
    "HyperSeg",
    "ModelConfig",
    "TEMPLATES",
    "Template",
    "build_model",
    "divide_channels",
    "get_template",
    "load_official_checkpoint",
    "load_weights",
    "resolve",
    "save_weights",
]
