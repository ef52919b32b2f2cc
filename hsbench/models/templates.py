"""The five HyperSeg models of the supplement's Table S1, by name.

Every decoder list below runs **coarse to fine**, ``m_n`` first: index 0 is the
meta block at stride 32 (``m_5``), the last is the finest level the template has
(``m_1`` at stride 2 for the S and M models, ``m_0`` at stride 1 for L).

How Table S1 was read (the printed table has known slips; each reading below
was checked against the m_i channel rows, which are exact: every
``C_in = reduced F_i + output of the coarser level + 2`` positional channels):

* ``m_i channels``: taken as printed, except the output of the finest level,
  which is the number of classes of the dataset hsbench trains on. Table S1
  prints 12 for both CamVid models because the authors' code also predicted the
  void label; hsbench ignores void and predicts the 11 classes of the SegNet
  protocol (a few hundred parameters fewer).
* ``r_1..r_5``: printed coarse-first for Cityscapes-S ("-, 2/5, 1/4, 1/5, 1/6"
  reads F_5..F_1 with "-" = no reduction of F_1); the m_i rows give
  F_1..F_5 = 1, 1/6, 1/5, 1/4, 2/5 for Cityscapes-S and 1, 1/4, 1/4, 1/4, 1/4 for
  Cityscapes-M (its m_1 row, 34 -> 68 -> 19, needs the unreduced 16 channels of
  F_1). All others reduce every F_i by 1/4.
* ``g_w0..g_w5``: printed finest-first ("-" = the level is absent). Cityscapes
  reads g_w1..g_w5 = 4, 16, 8, 16, 32 in Table S1 but 4, 8, 16, 16, 32 in the
  middle row of Table S3, which reports the same 10.1 M model; hsbench keeps
  Table S1 (Table S3 is reproduced by setting ``weight_groups``).
* "Only a 1x1 DPWConv for patches smaller than 8x8 (4x4 in voc-l)" (paper
  Sec. 3.2) is evaluated at the native grid (one patch per stride-32 pixel, so
  a level at stride s has patches of 32/s pixels): levels m_5..m_3 of the small
  models and m_5, m_4 of voc-l are single 1x1 convolutions, as the single
  arrows of Table S1 say. The block structure is a property of the template;
  the ``grid_size`` knob changes only how many weight sets there are.
* The context head's depth and width are not in the paper; 2 half-width
  levels for the CamVid and Cityscapes models and 3 full-width levels for
  voc-l (the authors' earlier design) reproduce the paper's parameter counts.
* Only Cityscapes-S halves the m_i widths; CamVid-S keeps Cityscapes-M's
  widths and differs from CamVid-L by resolution and the missing m_0.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from hsbench.errors import ConfigError


@dataclass(frozen=True)
class Template:
    """One column of supplement Table S1.

    Attributes:
        name: template name used by hsbench (``camvid-s``, ...).
        paper_name: the paper's name, e.g. "HyperSeg-S (CamVid)".
        backbone: default backbone (a :data:`hsbench.models.config.BACKBONES` name).
        resolution: (W, H) in pixels at which the paper evaluates it.
        num_classes: classes of the dataset it is trained on.
        dataset: ``voc``, ``cityscapes`` or ``camvid``.
        reductions: r_1..r_5, the channel reduction of F_1..F_5 (paper Sec. 3.1).
        level_channels: output channels of each meta block, coarse to fine; the
            last entry is ``None`` and means ``num_classes``.
        weight_groups: g_w of each meta block, coarse to fine.
        full_block_min_patch: patch side (pixels, at the native grid) from which
            a level uses the full inverted residual instead of a single 1x1
            DPWConv (8 for the small models, 4 for voc-l; paper Sec. 3.2).
        context_levels: depth of the context head's U-Net (Sec. 3.1).
        expand_ratio: hidden width / C_in of the inverted residual (Table S1: 2).
        context_full_width: the context head keeps all C_n channels (voc-l, see
            :class:`hsbench.models.context_head.ContextHead`).
        release_module: the authors' model file that builds this template
            (``hyperseg_v1_0``, ``hyperseg_v1_0_unify`` or ``hyperseg_v0_1``;
            their ``configs/train/*.py``); decides the border rule under
            ``semantics="release"``.
        release_unify_level: ``unify_level`` of the release's config: the
            levels from index ``unify_level - 1`` (coarse to fine) on share one
            weight-mapper layer (cityscapes-s: 4); ``None`` = one per level.
        release_num_classes: classes the release predicts (CamVid: 12, void
            included); ``None`` = ``num_classes``.
    """

    name: str
    paper_name: str
    backbone: str
    resolution: tuple[int, int]
    num_classes: int
    dataset: str
    reductions: tuple[Fraction, ...]
    level_channels: tuple[int | None, ...]
    weight_groups: tuple[int, ...]
    full_block_min_patch: int
    context_levels: int
    expand_ratio: int = 2
    context_full_width: bool = False
    release_module: str = "hyperseg_v1_0"
    release_unify_level: int | None = None
    release_num_classes: int | None = None

    @property
    def num_levels(self) -> int:
        """Decoder levels: 5 (m_5..m_1, the S and M models) or 6 (m_5..m_0, L)."""
        return len(self.level_channels)

    def full_block(self, level: int) -> bool:
        """Whether decoder level ``level`` (stride 2**level) is a full inverted residual."""
        return 2 ** (5 - level) >= self.full_block_min_patch


_Q = Fraction(1, 4)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            name="voc-l",
            paper_name="HyperSeg-L (PASCAL VOC)",
            backbone="efficientnet_b3",
            resolution=(512, 512),
            num_classes=21,
            dataset="voc",
            reductions=(_Q,) * 5,
            level_channels=(96, 34, 12, 8, 6, None),
            weight_groups=(16,) * 6,
            full_block_min_patch=4,
            context_levels=3,
            context_full_width=True,
            release_module="hyperseg_v0_1",
        ),
        Template(
            name="cityscapes-s",
            paper_name="HyperSeg-S (Cityscapes)",
            backbone="efficientnet_b1",
            resolution=(1536, 768),
            num_classes=19,
            dataset="cityscapes",
            reductions=(Fraction(1), Fraction(1, 6), Fraction(1, 5), Fraction(1, 4), Fraction(2, 5)),
            level_channels=(32, 16, 8, 8, None),
            weight_groups=(32, 16, 8, 16, 4),
            full_block_min_patch=8,
            context_levels=2,
            release_module="hyperseg_v1_0_unify",
            release_unify_level=4,
        ),
        Template(
            name="cityscapes-m",
            paper_name="HyperSeg-M (Cityscapes)",
            backbone="efficientnet_b1",
            resolution=(1024, 512),
            num_classes=19,
            dataset="cityscapes",
            reductions=(Fraction(1), _Q, _Q, _Q, _Q),
            level_channels=(64, 32, 16, 16, None),
            weight_groups=(32, 16, 8, 16, 4),
            full_block_min_patch=8,
            context_levels=2,
        ),
        Template(
            name="camvid-s",
            paper_name="HyperSeg-S (CamVid)",
            backbone="efficientnet_b1",
            resolution=(768, 576),
            num_classes=11,
            dataset="camvid",
            reductions=(_Q,) * 5,
            level_channels=(64, 32, 16, 16, None),
            weight_groups=(64, 32, 32, 16, 8),
            full_block_min_patch=8,
            context_levels=2,
            release_num_classes=12,
        ),
        Template(
            name="camvid-l",
            paper_name="HyperSeg-L (CamVid)",
            backbone="efficientnet_b1",
            resolution=(1024, 768),
            num_classes=11,
            dataset="camvid",
            reductions=(_Q,) * 5,
            level_channels=(64, 32, 16, 16, 16, None),
            weight_groups=(64, 32, 32, 16, 8, 8),
            full_block_min_patch=8,
            context_levels=2,
            release_num_classes=12,
        ),
    )
}


def get_template(name: str) -> Template:
    """The Table S1 template called ``name``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(
            f"template={name!r} is not a HyperSeg template; allowed: {', '.join(TEMPLATES)}"
        ) from None
