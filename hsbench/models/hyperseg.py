"""HyperSeg (paper Sec. 3, Eq. 1-4): backbone b, context head h, weight mapper w, decoder d.

    F_1..F_n = b(I)                 backbone, strides 2..32       (Eq. 1)
    phi = h(F_n)                    context head, stride 32        (Eq. 2)
    theta^{m_i} = w_i(phi_i)        weight mapper per meta block   (Eq. 3, 5-7)
    S = d({F_i}, {P_i} | {theta})   decoder of meta blocks         (Eq. 4)

:func:`build_model` is the one entry point: it takes a
:class:`~hsbench.models.config.ModelConfig`, fills the template's values in,
checks every knob and returns a :class:`HyperSeg`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hsbench.errors import ConfigError
from hsbench.models.aggregation import LevelFusion
from hsbench.models.backbones import Backbone
from hsbench.models.config import BACKBONES, FUSIONS, SEMANTICS, ModelConfig
from hsbench.models.context_head import ContextHead
from hsbench.models.fusion import fuse_conv_bn_
from hsbench.models.meta_block import MetaBlock, positional_encoding, release_coordinates
from hsbench.models.templates import Template, get_template
from hsbench.models.weight_mapper import WeightMapperHead, divide_channels
from hsbench.ops import check_backend, resolve_backend


def resolve(cfg: ModelConfig) -> ModelConfig:
    """Fill the template's defaults into ``cfg`` and validate every knob.

    Returns:
        A ModelConfig with ``backbone``, ``weight_groups`` and ``num_classes``
        set. A static model ("w/o DPWConv") has no weight grid, so its
        ``grid_size`` is normalised to ``"native"``: static variants that differ
        only in it are the same network and get the same variant id.

    Raises:
        ValueError: naming the knob, the value and what is allowed, for an
            unknown template or backbone, a grid size that is not ``"native"``
            or a positive int, a ``weight_groups`` list of the wrong length or
            with values that are not powers of two, ``num_classes < 1``, an
            unknown ``semantics`` or an unknown ``fusion``.
    """
    tpl = get_template(cfg.template)
    if cfg.semantics not in SEMANTICS:
        raise ConfigError(f"semantics={cfg.semantics!r} is not allowed; use one of: {', '.join(SEMANTICS)}")
    backbone = cfg.backbone or tpl.backbone
    if backbone not in BACKBONES:
        raise ConfigError(f"backbone={backbone!r} is not supported; allowed: {', '.join(BACKBONES)}")
    grid = cfg.grid_size
    if isinstance(grid, bool) or not (grid == "native" or (isinstance(grid, int) and grid >= 1)):
        raise ConfigError(f"grid_size={grid!r} is not allowed; use \"native\" or a positive int such as 1, 4, 8, 16")
    groups = tuple(cfg.weight_groups) if cfg.weight_groups is not None else tpl.weight_groups
    if len(groups) != tpl.num_levels:
        raise ConfigError(
            f"weight_groups={list(groups)} has {len(groups)} entries; template {tpl.name} has "
            f"{tpl.num_levels} decoder levels, so give {tpl.num_levels} (coarse to fine, m_5 first)"
        )
    for g in groups:
        if isinstance(g, bool) or not isinstance(g, int) or g < 1 or g & (g - 1):
            raise ConfigError(f"weight_groups={list(groups)}: {g!r} is not a power of two (1, 2, 4, ...)")
    default_classes = tpl.num_classes
    if cfg.semantics == "release" and tpl.release_num_classes is not None:
        default_classes = tpl.release_num_classes
    num_classes = cfg.num_classes if cfg.num_classes is not None else default_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} must be a positive int")
    if cfg.fusion not in FUSIONS:
        raise ConfigError(f"fusion={cfg.fusion!r} is not supported; allowed: {', '.join(FUSIONS)}")
    if not cfg.dynamic:
        grid = "native"
    return cfg.replace(backbone=backbone, grid_size=grid, weight_groups=groups, num_classes=num_classes)


class HyperSeg(nn.Module):
    """The full network: images (B, 3, H, W) -> logits (B, num_classes, H, W).

    Accepts any input of at least 64x64 pixels, including sizes that are not
    multiples of 32 (e.g. CamVid's 480x360): skips are resized to each other's
    exact sizes and the patch grid handles uneven patches.

    Args:
        cfg: a resolved config (see :func:`resolve`; :func:`build_model` does both).

    Attributes:
        config: the resolved :class:`ModelConfig`.
        template: the Table S1 :class:`Template`.
        levels: the stride exponent of each decoder level, coarse to fine.
        signal_split: C_phi_i per weight-mapper layer (Eq. 5), coarse to fine;
            empty if static. One per meta block, except that under
            ``semantics="release"`` cityscapes-s's finest blocks share one.
        signal_offsets: first channel of phi that each weight-mapper layer
            reads: the running sum of ``signal_split``, except under
            ``semantics="release"`` for hyperseg_v1_0 templates (camvid-s,
            camvid-l, cityscapes-m), where the release's ``init_signal2weights``
            never advances its index across levels, so every layer reads phi's
            *first* C_phi_i channels (overlapping parts).
        unified_mapper: the weight-mapper layer shared by the blocks from
            ``unified_from`` on (release's ``unify_level``), or None.
        void_logit: the last logit is the release's CamVid "Void" class, which
            hsbench's evaluation leaves out (it scores the template's classes).
        fusions: one :class:`~hsbench.models.aggregation.LevelFusion` per level
            below the coarsest (m_{n-1}..m_0): how the skip meets the coarser
            output (``cfg.fusion``).

    Raises:
        ValueError: if a weight group count does not divide its signal part.
    """

    MIN_SIZE = 64

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        tpl = get_template(cfg.template)
        self.config = cfg
        self.template: Template = tpl
        release = cfg.semantics == "release"
        self.backbone = Backbone(cfg.backbone, with_signal_head=cfg.dynamic, semantics=cfg.semantics)
        reduced = [max(1, round(c * r)) for c, r in zip(self.backbone.channels, tpl.reductions)]
        bn_args = {"eps": 1e-3, "momentum": 0.01} if release else {}  # the release's TF-style backbone BNs
        self.reduce = nn.ModuleList(
            nn.Identity()
            if r == 1
            else nn.Sequential(nn.Conv2d(c, rc, 1, bias=False), nn.BatchNorm2d(rc, **bn_args))
            for c, rc, r in zip(self.backbone.channels, reduced, tpl.reductions)
        )
        v0_1 = tpl.release_module == "hyperseg_v0_1"
        border = "release" if release and not v0_1 else "paper"
        padding_mode = "reflect" if release else "zeros"
        self.void_logit = bool(
            release and tpl.release_num_classes is not None and cfg.num_classes == tpl.release_num_classes
            and tpl.release_num_classes == tpl.num_classes + 1
        )
        skip_channels = [3] + reduced  # index = stride exponent: image, F_1..F_5
        self.levels = list(range(5, 5 - tpl.num_levels, -1))
        pe = 2 if cfg.positional_encoding else 0
        blocks, fusions, prev = [], [], 0
        for level, out in zip(self.levels, tpl.level_channels):
            out = cfg.num_classes if out is None else out
            fused = skip_channels[level]
            if prev:
                fusions.append(LevelFusion(cfg.fusion, skip_channels[level], prev))
                fused = fusions[-1].out_channels
            blocks.append(
                MetaBlock(
                    fused + pe,
                    out,
                    full=tpl.full_block(level),
                    expand_ratio=tpl.expand_ratio,
                    dynamic=cfg.dynamic,
                    border=border,
                    padding_mode=padding_mode,
                )
            )
            prev = out
        self.blocks = nn.ModuleList(blocks)
        self.fusions = nn.ModuleList(fusions)
        self.dpw_backend = "auto"
        self.context_head: ContextHead | None = None
        self.signal_split: list[int] = []
        self.unified_mapper: WeightMapperHead | None = None
        self.unified_from = len(blocks)
        self.signal_offsets: list[int] = []
        if cfg.dynamic:
            c_n = self.backbone.signal_channels
            if cfg.grid_size != 1:
                self.context_head = ContextHead(
                    c_n, tpl.context_levels, full_width=tpl.context_full_width, last_relu=not (release and v0_1)
                )
            groups = list(cfg.weight_groups)
            if release and tpl.release_unify_level is not None:
                self.unified_from = tpl.release_unify_level - 1
            layer_weights = [b.num_weights for b in blocks[: self.unified_from]]
            if self.unified_from < len(blocks):
                layer_weights.append(sum(b.num_weights for b in blocks[self.unified_from :]))
            if release and v0_1:  # the release's v0_1 splits by the group-rounded output widths
                layer_weights = [-(-w // g) * g for w, g in zip(layer_weights, groups)]
            try:
                self.signal_split = divide_channels(c_n, max(groups), layer_weights, equal_shares=release)
            except ValueError as exc:
                raise ConfigError(
                    f"weight_groups={groups}: the {c_n} signal channels cannot be split into units of "
                    f"max(g_w)={max(groups)} ({exc}); use smaller groups"
                ) from None
            starts = [sum(self.signal_split[:i]) for i in range(len(self.signal_split))]
            self.signal_offsets = [0] * len(starts) if release and tpl.release_module == "hyperseg_v1_0" else starts
            for block, channels, g in zip(blocks[: self.unified_from], self.signal_split, groups):
                block.attach_mapper(channels, g)
            if self.unified_from < len(blocks):
                shared = blocks[self.unified_from :]
                fan_in = sum(
                    s.c_in // s.groups * s.kernel**2 * s.num_weights for b in shared for s in b.specs
                ) / layer_weights[-1]
                self.unified_mapper = WeightMapperHead(
                    self.signal_split[-1], layer_weights[-1], groups[self.unified_from], fan_in=fan_in
                )

    # ----------------------------------------------------------------- forward
    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """(N_h, N_w) of the weight grid for an input of ``height`` x ``width`` pixels.

        Raises:
            ValueError: if an int grid is larger than the stride-32 feature map.
        """
        h5, w5 = self.backbone.stride32_size(height, width)
        grid = self.config.grid_size
        if grid == "native":
            return h5, w5
        if grid > min(h5, w5):
            raise ConfigError(
                f"grid_size={grid} needs a stride-32 feature map of at least {grid}x{grid}; "
                f"a {width}x{height} input gives {w5}x{h5}: use a larger input or a smaller grid"
            )
        return grid, grid

    def signal(self, f5: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """phi on the weight grid: (B, C_n, N_h, N_w) from F_5 (B, C_5, h, w)."""
        s = self.backbone.signal(f5)
        if self.context_head is None:  # grid 1x1: one weight set per image, h removed (Table S2)
            return s.mean(dim=(2, 3), keepdim=True)
        phi = self.context_head(s)
        if tuple(phi.shape[-2:]) != grid:
            phi = F.adaptive_avg_pool2d(phi, grid)
        return phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), H, W >= 64 -> logits (B, num_classes, H, W).

        Raises:
            ValueError: for an input that is not (B, 3, H, W) or smaller than 64x64.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"HyperSeg expects images of shape (B, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if min(height, width) < self.MIN_SIZE:
            raise ValueError(f"input {width}x{height} is smaller than the minimum {self.MIN_SIZE}x{self.MIN_SIZE}")
        feats = self.backbone(x)
        skips = [x] + [red(f) for red, f in zip(self.reduce, feats)]
        phis: list[torch.Tensor | None] = [None] * len(self.blocks)
        thetas: list[torch.Tensor | None] = [None] * len(self.blocks)
        if self.config.dynamic:
            phi = self.signal(feats[-1], self.grid_shape(height, width))
            parts_phi = [phi[:, a : a + c] for a, c in zip(self.signal_offsets, self.signal_split)]
            phis[: self.unified_from] = parts_phi[: self.unified_from]
            if self.unified_mapper is not None:
                shared = self.blocks[self.unified_from :]
                chunks = torch.split(self.unified_mapper(parts_phi[-1]), [b.num_weights for b in shared], dim=1)
                thetas[self.unified_from :] = chunks
        release = self.config.semantics == "release"
        y = None
        for i, (level, block, phi_i, theta_i) in enumerate(zip(self.levels, self.blocks, phis, thetas)):
            skip = skips[level]
            parts = [skip if y is None else self.fusions[i - 1](skip, y)]
            if self.config.positional_encoding:
                coords = release_coordinates if release else positional_encoding
                pe = coords(*skip.shape[-2:], device=skip.device, dtype=skip.dtype).expand(skip.shape[0], -1, -1, -1)
                parts = [pe, *parts] if release else [*parts, pe]  # the release prepends [x, y]
            y = block(torch.cat(parts, dim=1), phi_i, theta=theta_i)
        if y.shape[-2:] != x.shape[-2:]:  # S and M models stop at stride 2 (Sec. 4)
            y = F.interpolate(y, (height, width), mode="bilinear", align_corners=False)
        return y

    # --------------------------------------------------------------- DPWConv backend
    def set_dpw_backend(self, backend: str = "auto") -> HyperSeg:
        """Run every DPWConv with ``backend`` (``"auto"``, ``"reference"``, ``"torch"``, ``"triton"``).

        See :mod:`hsbench.ops.backends`; ``"auto"`` defers to
        ``$HSBENCH_DPW_BACKEND``, then to the fastest exact path for the device.
        Returns ``self``.

        Raises:
            ValueError: for an unknown name.
        """
        for block in self.blocks:
            block.set_dpw_backend(backend)
        self.dpw_backend = check_backend(backend)
        return self

    def dpw_backend_for(self, device_type: str, *, needs_grad: bool = False) -> str:
        """The concrete backend the DPWConvs run with on ``device_type``; ``"none"`` for a static model.

        What speed measurements record beside every FPS figure.

        Raises:
            ValueError: as :func:`hsbench.ops.resolve_backend` (unknown name, Triton unusable here).
        """
        if not self.config.dynamic:
            return "none"
        return resolve_backend(self.dpw_backend, device_type=device_type, needs_grad=needs_grad)

    # --------------------------------------------------------------- utilities
    def weight_mapper_heads(self) -> list[WeightMapperHead]:
        """Every weight-mapper layer w_i, coarse to fine (the shared one last)."""
        heads = [b.mapper for b in self.blocks if b.mapper is not None]
        return heads + ([self.unified_mapper] if self.unified_mapper is not None else [])

    def weight_mapper_parameters(self) -> int:
        """|theta^w|: learned parameters of all weight mapper heads w_i (Eq. 6, Table S3)."""
        return sum(p.numel() for head in self.weight_mapper_heads() for p in head.parameters())

    def fusion_parameters(self) -> int:
        """Learned parameters of the decoder fusions (projections + aggregation operations; 0 for concat)."""
        return sum(p.numel() for p in self.fusions.parameters() if p.requires_grad)

    def generated_weights(self, height: int, width: int) -> int:
        """Dynamic weights generated per image: sum_i |theta^{m_i}| * N_h * N_w."""
        if not self.config.dynamic:
            return 0
        n_h, n_w = self.grid_shape(height, width)
        return sum(b.num_weights for b in self.blocks) * n_h * n_w

    def fuse_bn(self) -> HyperSeg:
        """An eval-mode copy with every BatchNorm folded away (supplement Sec. E).

        Convolution + BN pairs of the backbone, reductions, context head and
        static decoder fold into the convolution (Eq. 4); the BN after each
        DPWConv folds into its weight mapper head and a static bias (Eq. 5).
        The copy's logits equal this model's eval logits (tested, rtol 1e-4).
        """
        fused = copy.deepcopy(self).eval()
        offset = 0
        for i, block in enumerate(fused.blocks):
            if i < fused.unified_from or fused.unified_mapper is None:
                block.fuse_bn_()
            else:
                block.fuse_bn_(fused.unified_mapper.conv.weight[offset : offset + block.num_weights])
                offset += block.num_weights
        fuse_conv_bn_(fused)
        return fused


def build_model(cfg: ModelConfig | None = None, *, dpw_backend: str = "auto", **overrides) -> HyperSeg:
    """Build HyperSeg from a config (or the ``camvid-s`` default) plus keyword overrides.

    Example: ``build_model(ModelConfig(template="cityscapes-m"), grid_size=1)``.
    ``dpw_backend`` picks the DPWConv implementation (:meth:`HyperSeg.set_dpw_backend`);
    it is not part of the config (it does not change the network).
    ImageNet weights are loaded when ``pretrained`` or ``backbone_weights`` is set
    (:func:`hsbench.models.pretrained.backbone_state_dict`).

    Raises:
        ValueError: for bad knob values (see :func:`resolve`) or unknown overrides.
        hsbench.errors.ConfigError: when requested ImageNet weights cannot be had.
    """
    cfg = cfg or ModelConfig()
    if overrides:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides})
    cfg = resolve(cfg)
    model = HyperSeg(cfg).set_dpw_backend(dpw_backend)
    if cfg.pretrained or cfg.backbone_weights:
        from hsbench.models.pretrained import backbone_state_dict

        state = backbone_state_dict(
            model.backbone.spec.timm_name, pretrained=cfg.pretrained, weights_path=cfg.backbone_weights
        )
        if state is not None:
            model.backbone.load_imagenet(state)
    return model
