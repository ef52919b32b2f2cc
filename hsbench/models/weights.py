"""Trained weights in and out of hsbench: the release's checkpoints, hsbench's own weights files, run checkpoints.

* :func:`load_weights` reads any of them and returns the model it describes.
* :func:`save_weights` writes hsbench's format, ``{'format': 'hsbench-weights',
  'version': 1, 'model_config': ModelConfig.to_dict() with every field,
  'state_dict': ..., 'source': {'file', 'sha256'}}``, read with
  ``torch.load(weights_only=True)`` like every other file here.
* :func:`file_sha256` is the digest a run records for the weights it evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch

from hsbench.errors import WeightsError
from hsbench.models.config import ModelConfig
from hsbench.models.hyperseg import HyperSeg, build_model

FORMAT = "hsbench-weights"
VERSION = 1


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(model: HyperSeg, path: str | os.PathLike, *, source: dict | None = None) -> Path:
    """Write ``model``'s config and state dict in hsbench's format (atomically: temp file, then rename).

    Args:
        model: the network (its ``config`` must be resolved, as :func:`build_model` leaves it).
        path: output file (``.pt``); its folder is created.
        source: where the weights came from, e.g. ``{"file": ..., "sha256": ...}``.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": {f.name: getattr(model.config, f.name) for f in dataclasses.fields(model.config)},
        "state_dict": model.state_dict(),
        "source": dict(source or {}),
    }
    if payload["model_config"]["weight_groups"] is not None:
        payload["model_config"]["weight_groups"] = list(payload["model_config"]["weight_groups"])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_weights(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> HyperSeg:
    """The model a weights file describes, with its weights, in eval mode.

    Accepts the authors' release checkpoints (``{'state_dict', 'arch'}``, see
    :func:`hsbench.models.official.load_official_checkpoint`), hsbench's
    weights files (:func:`save_weights`) and hsbench's run checkpoints
    (``checkpoint.pt`` of a run folder). Nothing is unpickled beyond tensors and
    plain containers (``weights_only=True``).

    Raises:
        WeightsError: the file is missing, unreadable, of none of these
            layouts, or its tensors do not fit the model it names.
    """
    from hsbench.models.official import model_from_release

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist; give an existing file (or set --weights-root / HSBENCH_WEIGHTS)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise WeightsError(f"cannot read {str(path)!r} with torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict):
        raise WeightsError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a weights dict")
    if "arch" in ckpt and "state_dict" in ckpt:
        return model_from_release(ckpt["arch"], ckpt["state_dict"])
    if ckpt.get("format") == FORMAT:
        if ckpt.get("version") != VERSION:
            raise WeightsError(f"{str(path)!r} is hsbench weights version {ckpt.get('version')}; this hsbench reads version {VERSION}")
        cfg_dict, state = ckpt["model_config"], ckpt["state_dict"]
    elif isinstance(ckpt.get("model"), dict) and isinstance(ckpt.get("meta"), dict) and "configs" in ckpt["meta"]:
        cfg_dict, state = ckpt["meta"]["configs"]["model"], ckpt["model"]  # a run's checkpoint.pt
    else:
        raise WeightsError(
            f"{str(path)!r} is neither a release checkpoint ('state_dict' + 'arch'), an hsbench weights file "
            f"(hsbench import-weights) nor a run checkpoint; found keys {sorted(ckpt)[:6]}"
        )
    cfg = ModelConfig.from_dict({k: v for k, v in cfg_dict.items() if k != "weights"})
    model = build_model(cfg.replace(pretrained=False, backbone_weights=None))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unused = sorted(set(state) - set(own))
    if missing or unused:
        raise WeightsError(
            f"{str(path)!r} does not fit its own model config: missing {missing[:3]}, unused {unused[:3]}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(f"{str(path)!r}: tensor {key!r} has shape {tuple(value.shape)}, the model needs {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["FORMAT", "VERSION", "file_sha256", "load_weights", "save_weights"]
