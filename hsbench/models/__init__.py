"""The bundled HyperSeg (paper Sec. 3; supplement Sec. A, B, E) with every ablation knob.

Entry point: :func:`build_model` with a :class:`ModelConfig`.
"""


from hsbench.lazy import lazy_exports

#: Public name -> the submodule that defines it, imported on first use (PEP 562) so that
#: ``import hsbench.<pkg>.config`` and the CLI stay torch-free.
_EXPORTS = {
    "BACKBONES": "config",
    "ModelConfig": "config",
    "HyperSeg": "hyperseg",
    "build_model": "hyperseg",
    "resolve": "hyperseg",
    "TEMPLATES": "templates",
    "Template": "templates",
    "get_template": "templates",
    "divide_channels": "weight_mapper",
    "load_official_checkpoint": "official",
    "load_weights": "weights",
    "save_weights": "weights",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


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
