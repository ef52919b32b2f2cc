"""The bundled HyperSeg (paper Sec. 3; supplement Sec. A, B, E) with every ablation knob.

Entry point: :func:`build_model` with a :class:`ModelConfig`.
"""

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
