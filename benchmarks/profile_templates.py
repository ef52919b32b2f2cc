"""Print the complexity tables of README.md: Table S1 templates, Table 4 backbones, Table S3 groups.

Usage: python benchmarks/profile_templates.py [--fvcore]   (CPU; a few minutes)
Paper figures are cited with their table and row; measured ones are from
``hsbench.measure.complexity`` at the stated resolution (counts do not depend on the device).
"""

import argparse
import warnings

import torch
from tabulate import tabulate

from hsbench.measure.complexity import complexity
from hsbench.models import ModelConfig, build_model, get_template

warnings.filterwarnings("ignore")
torch.set_num_threads(2)

TEMPLATES = [  # template, paper Params (M), paper GFLOPs (thop MACs), source
    ("voc-l", 39.6, 8.21, "Table 2, HyperSeg-L"),
    ("cityscapes-m", 10.1, 7.5, "Table 3, HyperSeg-M"),
    ("cityscapes-s", 10.2, 17.0, "Table 3, HyperSeg-S"),
    ("camvid-s", 9.9, None, "Table 4, HyperSeg-S EfficientNet-B1"),
    ("camvid-l", 10.2, None, "Table 4, HyperSeg-L EfficientNet-B1"),
]
BACKBONES = [  # template, backbone, dynamic, paper Params (M), Table 4 row
    ("camvid-s", "resnet18", True, 16.2, "HyperSeg-S ResNet18"),
    ("camvid-l", "resnet18", True, 16.7, "HyperSeg-L ResNet18"),
    ("camvid-s", "pspnet18", True, 17.2, "HyperSeg-S PSPNet18"),
    ("camvid-l", "pspnet18", True, 17.6, "HyperSeg-L PSPNet18"),
    ("camvid-s", "pspnet50", True, 57.6, "HyperSeg-S PSPNet50"),
    ("camvid-l", "pspnet50", True, 67.9, "HyperSeg-L PSPNet50"),
    ("camvid-s", "efficientnet_b1", False, 9.9, "HyperSeg-S w/o DPWConv"),
    ("camvid-l", "efficientnet_b1", False, 10.3, "HyperSeg-L w/o DPWConv"),
]
S3 = [  # g_w1..g_w5 as printed, paper GFLOPs, theta^w (M), Params (M)
    ((1, 2, 4, 4, 8), 18.0, 1.2, 11.1),
    ((2, 4, 8, 8, 16), 17.3, 0.6, 10.4),
    ((4, 8, 16, 16, 32), 16.9, 0.3, 10.1),
    ((8, 16, 32, 32, 64), 16.7, 0.1, 10.0),
    ((16, 32, 64, 64, 128), 16.6, 0.1, 9.9),
]


def pct(measured, paper):
    return f"{100 * (measured - paper) / paper:+.1f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fvcore", action="store_true", help="also run fvcore (slow)")
    args = ap.parse_args()
    counters = ("thop", "fvcore") if args.fvcore else ("thop",)
    rows = []
    for name, params, gflops, src in TEMPLATES:
        res = get_template(name).resolution
        c = complexity(build_model(ModelConfig(template=name)), res, counters=counters)
        rows.append([
            name, f"{res[0]}x{res[1]}", src, params, f"{c.params_learned / 1e6:.2f} ({pct(c.params_learned / 1e6, params)})",
            gflops if gflops else "-",
            f"{c.gmacs_thop:.2f}" + (f" ({pct(c.gmacs_thop, gflops)})" if gflops else ""),
            f"{c.gmacs_thop - c.gmacs_dpwconv:.2f}", f"{c.gmacs_fvcore:.2f}" if args.fvcore else "-",
            f"{c.params_weight_mapper / 1e6:.3f}",
        ])
    print("Templates (supplement Table S1) at their paper resolution\n")
    print(tabulate(rows, headers=["template", "resolution", "paper row", "paper Params (M)", "measured Params (M)",
                                  "paper GFLOPs (thop MACs)", "measured GMACs (thop)", "GMACs without DPWConv",
                                  "GMACs (fvcore)", "|theta^w| (M)"], tablefmt="github"))
    rows = []
    for name, backbone, dyn, params, row in BACKBONES:
        m = build_model(ModelConfig(template=name, backbone=backbone, dynamic=dyn))
        p = sum(x.numel() for x in m.parameters()) / 1e6
        rows.append([name, backbone, "yes" if dyn else "no (w/o DPWConv)", f"Table 4, {row}", params, f"{p:.2f} ({pct(p, params)})"])
    print("\nTable 4 backbone and w/o DPWConv variants\n")
    print(tabulate(rows, headers=["template", "backbone", "DPWConv", "paper row", "paper Params (M)", "measured Params (M)"], tablefmt="github"))
    rows = []
    for groups, gflops, theta, params in S3:
        m = build_model(ModelConfig(template="cityscapes-m", weight_groups=tuple(reversed(groups))))
        c = complexity(m, (1536, 768), counters=("thop",))
        rows.append([", ".join(map(str, groups)), gflops, f"{c.gmacs_thop:.2f}", theta, f"{c.params_weight_mapper / 1e6:.2f}",
                     params, f"{c.params_learned / 1e6:.2f}"])
    print("\nTable S3: cityscapes-m at 1536x768, weight groups g_w1..g_w5\n")
    print(tabulate(rows, headers=["g_w1..g_w5", "paper GFLOPs", "measured GMACs (thop)", "paper |theta^w| (M)",
                                  "measured |theta^w| (M)", "paper Params (M)", "measured Params (M)"], tablefmt="github"))


if __name__ == "__main__":
    main()
