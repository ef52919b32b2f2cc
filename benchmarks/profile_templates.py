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
from hsbench.models.templates import TEMPLATES as TEMPLATE_S1
from hsbench.reporting.paper import TABLES, template_row

warnings.filterwarnings("ignore")
torch.set_num_threads(2)

# The paper's figures, read from hsbench.reporting.paper (each row cites its table and row).
TEMPLATES = [(name, template_row(name)) for name in TEMPLATE_S1]
BACKBONES = [  # Table 4's backbone and w/o DPWConv rows
    r for r in TABLES["4"].hyperseg_rows
    if r.match["backbone"] != get_template(r.match["template"]).backbone or not r.match["dynamic"]
]
S3 = TABLES["S3"].rows  # g_w1..g_w5 as printed (fine to coarse)


def pct(measured, paper):
    return f"{100 * (measured - paper) / paper:+.1f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fvcore", action="store_true", help="also run fvcore (slow)")
    args = ap.parse_args()
    counters = ("thop", "fvcore") if args.fvcore else ("thop",)
    rows = []
    for name, prow in TEMPLATES:
        params, gflops, src = prow.values["params"], prow.values.get("gmacs"), prow.cite()
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
    for prow in BACKBONES:
        name, backbone, dyn, params = (prow.match["template"], prow.match["backbone"], prow.match["dynamic"],
                                       prow.values["params"])
        m = build_model(ModelConfig(template=name, backbone=backbone, dynamic=dyn))
        p = sum(x.numel() for x in m.parameters()) / 1e6
        rows.append([name, backbone, "yes" if dyn else "no (w/o DPWConv)", prow.cite(), params,
                     f"{p:.2f} ({pct(p, params)})"])
    print("\nTable 4 backbone and w/o DPWConv variants\n")
    print(tabulate(rows, headers=["template", "backbone", "DPWConv", "paper row", "paper Params (M)", "measured Params (M)"], tablefmt="github"))
    rows = []
    for prow in S3:
        groups = prow.match["groups"]
        gflops, theta, params = prow.values["gmacs"], prow.values["theta_w"], prow.values["params"]
        m = build_model(ModelConfig(template="cityscapes-m", weight_groups=tuple(reversed(groups))))
        c = complexity(m, (1536, 768), counters=("thop",))
        rows.append([", ".join(map(str, groups)), gflops, f"{c.gmacs_thop:.2f}", theta, f"{c.params_weight_mapper / 1e6:.2f}",
                     params, f"{c.params_learned / 1e6:.2f}"])
    print("\nTable S3: cityscapes-m at 1536x768, weight groups g_w1..g_w5\n")
    print(tabulate(rows, headers=["g_w1..g_w5", "paper GFLOPs", "measured GMACs (thop)", "paper |theta^w| (M)",
                                  "measured |theta^w| (M)", "paper Params (M)", "measured Params (M)"], tablefmt="github"))


if __name__ == "__main__":
    main()
