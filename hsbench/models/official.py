"""Load the authors' released HyperSeg checkpoints (YuvalNirkin/hyperseg, release v1.0) into hsbench.

A release checkpoint is ``{'state_dict': ..., 'arch': str, ...}`` where ``arch``
is the Python call that rebuilt the model in the authors' code (which ran it
with ``eval``), e.g.::

    hyperseg.models.hyperseg_v1_0.hyperseg_efficientnet('efficientnet-b1', pretrained=False,
        levels=2, kernel_sizes=(1,1,1,3,3), level_channels=[64,32,16,16,16], expand_ratio=2,
        ..., weight_groups=[64,32,32,16,8], coords_res=[(576,576),(576,768)], num_classes=12)

hsbench never executes it: :func:`parse_arch` reads it with :mod:`ast`, accepts
only a call of one of the release's three builders (:data:`BUILDERS`) whose
arguments are literals, and :func:`match_template` finds the Table S1 template
whose release configuration (``configs/train/*.py``) it is. The model is then
built with ``semantics="release"`` (:mod:`hsbench.models.config`) and every
tensor is mapped by name (:func:`release_key_map`), strictly: every release
parameter and BN buffer is used, every hsbench parameter and buffer is filled,
shapes are equal. The cached positional coordinates ``decoder.coord{h}_{w}`` are
checked against :func:`~hsbench.models.meta_block.release_coordinates` and
dropped (hsbench computes them).

The four released checkpoints (camvid-s, cityscapes-m, cityscapes-s, voc-l) are
listed in the release's README; camvid-l is trained by the release's config but
was not published (its checkpoints load the same way).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from hsbench.errors import WeightsError
from hsbench.models.config import ModelConfig
from hsbench.models.hyperseg import HyperSeg, build_model
from hsbench.models.meta_block import release_coordinates
from hsbench.models.templates import TEMPLATES, Template

#: The release's model builders an ``arch`` may call (module -> function name).
BUILDERS: dict[str, str] = {
    "hyperseg.models.hyperseg_v1_0.hyperseg_efficientnet": "hyperseg_v1_0",
    "hyperseg.models.hyperseg_v1_0_unify.hyperseg_efficientnet": "hyperseg_v1_0_unify",
    "hyperseg.models.hyperseg_v0_1.hyperseg_efficientnet": "hyperseg_v0_1",
}

#: Builder arguments that do not change the network's tensors or its eval output on one image
#: (``inference_hflip`` acts only on image pyramids, which hsbench's evaluation does itself).
_IGNORED = {"pretrained", "weights_path", "inference_hflip", "inference_gather", "coords_res"}
_BACKBONES = {"efficientnet-b1": "efficientnet_b1", "efficientnet-b3": "efficientnet_b3"}
_COORD_KEY = re.compile(r"^decoder\.coord(\d+)_(\d+)$")


@dataclass(frozen=True)
class ReleaseArch:
    """A parsed ``arch``: the builder's module and its literal arguments."""

    module: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def parse_arch(arch: object) -> ReleaseArch:
    """Read a release ``arch`` string without executing it.

    Raises:
        WeightsError: if ``arch`` is not a string holding exactly one call of a
            name in :data:`BUILDERS` with literal arguments; the message names
            what was found instead.
    """
    if not isinstance(arch, str):
        raise WeightsError(f"the checkpoint's 'arch' is a {type(arch).__name__}, not the release's call string")
    try:
        tree = ast.parse(arch.strip(), mode="eval")
    except SyntaxError as exc:
        raise WeightsError(f"the checkpoint's 'arch' is not a Python expression ({exc.msg}): {arch[:80]!r}") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise WeightsError(f"the checkpoint's 'arch' is a {type(call).__name__} expression, not a call of a known builder: {arch[:80]!r}")
    name = _dotted(call.func)
    if name not in BUILDERS:
        raise WeightsError(
            f"the checkpoint's 'arch' calls {name or ast.unparse(call.func)!r}, which is not one of the release's "
            f"builders ({', '.join(BUILDERS)}); refusing it (nothing was executed)"
        )
    try:
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except ValueError:
        raise WeightsError(
            f"the checkpoint's 'arch' passes an argument that is not a literal to {name}; refusing it (nothing was executed)"
        ) from None
    if any(kw.arg is None for kw in call.keywords):
        raise WeightsError(f"the checkpoint's 'arch' passes **kwargs to {name}; only literal arguments are accepted")
    return ReleaseArch(BUILDERS[name], args, kwargs)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def release_arguments(tpl: Template) -> dict[str, Any]:
    """The arguments of ``tpl``'s release builder that fix its architecture (configs/train/*.py).

    Keys: ``module``, ``model_name``, ``levels``, ``kernel_sizes``,
    ``level_channels`` (all but the finest level, whose width is the class
    count), ``expand_ratio``, ``weight_groups``, ``out_feat_scale`` (as
    fractions), ``unify_level``.
    """
    levels = range(5, 5 - tpl.num_levels, -1)
    return {
        "module": tpl.release_module,
        "model_name": {v: k for k, v in _BACKBONES.items()}[tpl.backbone],
        "levels": tpl.context_levels,
        "kernel_sizes": [3 if tpl.full_block(level) else 1 for level in levels],
        "level_channels": list(tpl.level_channels[:-1]),
        "expand_ratio": tpl.expand_ratio,
        "weight_groups": list(tpl.weight_groups),
        "out_feat_scale": [Fraction(r).limit_denominator(6) for r in tpl.reductions],
        "unify_level": tpl.release_unify_level,
    }


def release_arch(template: str, num_classes: int | None = None) -> str:
    """The ``arch`` string the release's train.py stores for ``template`` (its configs/train/*.py).

    Used to write release-layout files for tests and to show what a checkpoint
    of a template looks like; ``num_classes`` defaults to the release's count.
    """
    tpl = TEMPLATES[template]
    a = release_arguments(tpl)
    k = num_classes if num_classes is not None else (tpl.release_num_classes or tpl.num_classes)
    parts = [repr(a["model_name"]), "pretrained=False", f"levels={a['levels']}"]
    if tpl.release_module != "hyperseg_v0_1":
        scales = [float(f) for f in a["out_feat_scale"]]
        if scales != [0.25] * 5:
            parts.append(f"out_feat_scale={scales}")
        parts += [f"kernel_sizes={tuple(a['kernel_sizes'])}", f"level_channels={a['level_channels'] + [16]}"]
        parts += [f"expand_ratio={a['expand_ratio']}", f"weight_groups={a['weight_groups']}"]
        if a["unify_level"] is not None:
            parts.append(f"unify_level={a['unify_level']}")
    else:
        parts += [f"kernel_sizes={tuple(a['kernel_sizes'])}", f"expand_ratio={a['expand_ratio']}"]
        parts.append(f"weight_groups={a['weight_groups'][0]}")
    parts += ["inference_hflip=True", "with_out_fc=False", "decoder_dropout=None", f"num_classes={k}"]
    return f"hyperseg.models.{tpl.release_module}.hyperseg_efficientnet({', '.join(parts)})"


def _found_arguments(arch: ReleaseArch) -> dict[str, Any]:
    """The same keys as :func:`release_arguments`, read from a parsed ``arch``."""
    kw = dict(arch.kwargs)
    args = list(arch.args)
    if args:
        kw.setdefault("model_name", args.pop(0))
    if args:
        raise WeightsError(f"the checkpoint's 'arch' has {len(args)} unexpected positional argument(s) {args}")
    unsupported = [
        f"{key}={kw[key]!r}"
        for key, allowed in (("with_out_fc", (False,)), ("decoder_groups", (1,)), ("groups", (1,)),
                             ("level_layers", (1,)), ("in_nc", (3,)), ("down_groups", (1,)),
                             ("flat_groups", (1,)), ("avg_pool", (True,)))
        if key in kw and kw[key] not in allowed
    ]
    if unsupported:
        raise WeightsError(f"the checkpoint's 'arch' sets {', '.join(unsupported)}, which no released model uses; hsbench cannot build it")
    known = _IGNORED | {"model_name", "levels", "kernel_sizes", "level_channels", "expand_ratio", "weight_groups",
                        "out_feat_scale", "unify_level", "num_classes", "with_out_fc", "decoder_groups",
                        "decoder_dropout", "groups", "level_layers", "in_nc", "down_groups", "flat_groups", "avg_pool"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise WeightsError(f"the checkpoint's 'arch' has argument(s) {unknown} that hsbench does not know; it cannot build this model")
    scale = kw.get("out_feat_scale", 0.25)
    scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * 5
    n_levels = len(kw.get("kernel_sizes", ()))
    groups = kw.get("weight_groups", 1)
    kernel_sizes = list(kw.get("kernel_sizes", ()))
    return {
        "module": arch.module,
        "model_name": kw.get("model_name"),
        "levels": kw.get("levels", 3),
        "kernel_sizes": kernel_sizes,
        "level_channels": list(kw["level_channels"][:-1]) if "level_channels" in kw else None,
        "expand_ratio": kw.get("expand_ratio", 1),
        "weight_groups": list(groups) if isinstance(groups, (list, tuple)) else [groups] * n_levels,
        "out_feat_scale": [Fraction(s).limit_denominator(6) for s in scales],
        "unify_level": kw.get("unify_level"),
    }


def match_template(arch: ReleaseArch) -> tuple[Template, int]:
    """The Table S1 template whose release configuration ``arch`` is, and its class count.

    Raises:
        WeightsError: if no template matches, naming the closest one and the
            arguments that differ, or if ``num_classes`` is missing.
    """
    found = _found_arguments(arch)
    num_classes = arch.kwargs.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise WeightsError(f"the checkpoint's 'arch' has no positive int num_classes (got {num_classes!r})")
    best: tuple[int, str, list[str]] | None = None
    for name, tpl in TEMPLATES.items():
        expected = release_arguments(tpl)
        if tpl.release_module == "hyperseg_v0_1":  # v0_1 takes its level widths from the backbone
            expected["level_channels"] = found["level_channels"]
        differ = [k for k, v in expected.items() if found[k] != v]
        if not differ:
            return tpl, num_classes
        if best is None or len(differ) < best[0]:
            best = (len(differ), name, differ)
    assert best is not None
    _, name, differ = best
    detail = ", ".join(f"{k}={found[k]!r} (template: {release_arguments(TEMPLATES[name])[k]!r})" for k in differ)
    raise WeightsError(f"the checkpoint's 'arch' matches no HyperSeg template; closest is {name}, which differs in {detail}")


def release_key_map(model: HyperSeg) -> dict[str, str]:
    """hsbench state-dict key -> release state-dict key, for a ``semantics="release"`` model.

    Covers every key of ``model.state_dict()`` (parameters and buffers).

    Raises:
        WeightsError: for a model that is not an EfficientNet-B1/B3 release-semantics model.
    """
    tpl, cfg = model.template, model.config
    if cfg.semantics != "release" or cfg.backbone not in _BACKBONES.values() or not cfg.dynamic:
        raise WeightsError("only dynamic, semantics='release' EfficientNet-B1/B3 models map onto the release's checkpoints")
    module = tpl.release_module
    out: dict[str, str] = {}
    block_names: dict[str, str] = {}
    n = 0
    for s, stage in enumerate(model.backbone.features.blocks):
        for i, blk in enumerate(stage):
            inverted = hasattr(blk, "conv_pwl")
            sub = (
                {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                 "conv_pwl": "_project_conv", "bn3": "_bn2"}
                if inverted
                else {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
            )
            sub.update({"se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand"})
            for a, b in sub.items():
                block_names[f"backbone.features.blocks.{s}.{i}.{a}."] = f"backbone._blocks.{n}.{b}."
            n += 1
    prefixes = {
        "backbone.features.conv_stem.": "backbone._conv_stem.",
        "backbone.features.bn1.": "backbone._bn0.",
        "backbone.signal_head.0.": "backbone._conv_head.",
        "backbone.signal_head.1.": "backbone._bn1.",
        **block_names,
    }
    levels = len(model.blocks)
    dec = "decoder.level_blocks." if module == "hyperseg_v1_0_unify" else "decoder.level_"
    for i in range(5):
        prefixes[f"reduce.{i}."] = f"backbone._feat_fc_{i}."
    for lv in range(levels):
        block = model.blocks[lv]
        for k in range(len(block.specs)):
            if not block.full:
                target = f"{dec}{lv}.0.1."
            elif module == "hyperseg_v0_1":
                target = f"{dec}{lv}.0.conv.{k}.1."
            else:
                target = f"{dec}{lv}.0.bn{k + 1}."
            prefixes[f"blocks.{lv}.bns.{k}."] = target
        if module == "hyperseg_v0_1":
            prefixes[f"blocks.{lv}.mapper.conv."] = f"weight_mapper.out_conv.conv_{lv}."
        elif module == "hyperseg_v1_0_unify":
            prefixes[f"blocks.{lv}.mapper.conv."] = f"decoder.weight_blocks.{lv}.signal2weights."
        else:
            inner = ".0" if not block.full else ""  # a 1x1 level is a (conv, BN, ReLU) sequence
            prefixes[f"blocks.{lv}.mapper.conv."] = f"decoder.level_{lv}.0{inner}.signal2weights."
    if model.unified_mapper is not None:
        prefixes["unified_mapper.conv."] = f"decoder.weight_blocks.{model.unified_from}.signal2weights."
    for lv in range(tpl.context_levels - 1):
        if module == "hyperseg_v0_1":
            prefixes[f"context_head.down.{lv}."] = f"weight_mapper.down_{lv}."
            prefixes[f"context_head.up.{lv}."] = f"weight_mapper.flat_{lv}."
        else:
            prefixes[f"context_head.down.{lv}."] = f"weight_mapper.down_blocks.{lv}."
            prefixes[f"context_head.up.{lv}."] = f"weight_mapper.up_blocks.{lv}."
    prefixes["context_head.inp."] = "weight_mapper.in_conv."
    for key in model.state_dict():
        for a, b in prefixes.items():
            if key.startswith(a):
                out[key] = b + key[len(a) :]
                break
        else:  # pragma: no cover - guards a model change
            raise WeightsError(f"hsbench key {key!r} has no counterpart in the release's layout")
    return out


def convert_state_dict(model: HyperSeg, release_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's state dict renamed to ``model``'s keys, strictly (module docstring).

    Raises:
        WeightsError: naming the first key that is missing, unused, of another
            shape, or a coordinate buffer with unexpected values.
    """
    mapping = release_key_map(model)
    own = model.state_dict()
    used: set[str] = set()
    out: dict[str, torch.Tensor] = {}
    for key, rkey in mapping.items():
        if rkey not in release_state:
            raise WeightsError(f"the release checkpoint lacks {rkey!r} (hsbench {key!r}); is it a {model.template.name} model?")
        value = release_state[rkey]
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsError(
                f"release tensor {rkey!r} has shape {tuple(value.shape)}, hsbench {key!r} needs {tuple(own[key].shape)}"
            )
        out[key] = value
        used.add(rkey)
    for rkey, value in release_state.items():
        if rkey in used:
            continue
        m = _COORD_KEY.match(rkey)
        if m is None:
            raise WeightsError(f"the release checkpoint has a tensor hsbench does not use: {rkey!r} {tuple(value.shape)}")
        h, w = int(m.group(1)), int(m.group(2))
        if tuple(value.shape) != (1, 2, h, w) or not torch.allclose(value.float(), release_coordinates(h, w), atol=1e-6):
            raise WeightsError(f"the release's cached coordinates {rkey!r} are not the [x, y] grid in [-1, 1] hsbench computes")
    return out


def load_official_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> HyperSeg:
    """Build the hsbench model of a released checkpoint and load its weights (eval mode).

    Args:
        path: a checkpoint of the authors' release (``{'state_dict', 'arch', ...}``).
        map_location: where tensors are loaded (``torch.load``'s argument).

    Returns:
        A :class:`HyperSeg` with ``semantics="release"``: images (B, 3, H, W) ->
        logits (B, num_classes, H, W), equal to the release's eval logits
        (max |diff| <= 1e-4 in fp32 on CPU; tests/test_official.py).

    Raises:
        WeightsError: the file is missing or not a weights-only checkpoint of
            this layout, ``arch`` is not a literal call of a known builder
            (nothing in it is executed), it matches no template, or a tensor
            does not fit (the message names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise WeightsError(f"cannot read {str(path)!r} with torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        keys = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise WeightsError(f"{str(path)!r} is not a release checkpoint: expected keys 'state_dict' and 'arch', found {keys}")
    return model_from_release(ckpt["arch"], ckpt["state_dict"])


def model_from_release(arch: object, state_dict: dict[str, torch.Tensor]) -> HyperSeg:
    """:func:`load_official_checkpoint` on an already loaded ``arch`` string and state dict.

    Raises:
        WeightsError: as :func:`load_official_checkpoint`.
    """
    parsed = parse_arch(arch)
    tpl, num_classes = match_template(parsed)
    cfg = ModelConfig(template=tpl.name, semantics="release", num_classes=num_classes)
    model = build_model(cfg)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise WeightsError("the checkpoint's 'state_dict' is not a dict of tensors")
    model.load_state_dict(convert_state_dict(model, state_dict), strict=True)
    return model.eval()


__all__ = [
    "BUILDERS",
    "ReleaseArch",
    "convert_state_dict",
    "load_official_checkpoint",
    "match_template",
    "model_from_release",
    "parse_arch",
    "release_arch",
    "release_arguments",
    "release_key_map",
]
