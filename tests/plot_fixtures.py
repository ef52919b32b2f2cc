"""Small fixed results databases for the plot tests, built through the public Store API.

``fill_quickstart``: the quickstart study as the README measured it (CamVid
480x360 SegNet copy, two camvid-s variants, FPS on a CPU with its bootstrap
interval over timing repeats, one seed).
``fill_two_datasets``: that plus a Cityscapes grid-size study (grid 1, 4, 8,
16; three seeds each, FPS on a CUDA GPU), a Cityscapes weight-mapper groups
study, and one CamVid run on the paper's 960x720 version.
"""

from __future__ import annotations

import recordkit as rk

from hsbench.store import Store

CAMVID_SEGNET = "CamVid 480x360 (SegNet layout)"
CAMVID_FULL = "CamVid 960x720 (full-resolution release, 32->11 SegNet grouping)"
CITYSCAPES = "Cityscapes gtFine 1024x512 (labelIds -> 19 trainIds, cityscapesscripts)"
CPU = {"device": "cpu", "device_name": "AMD EPYC 7B13", "fps_ci_low": 0.97, "fps_ci_high": 1.02}
GPU = {"device": "cuda", "device_name": "NVIDIA H200"}


def _run(store: Store, study: str, vid: str, model: dict, *, label: str, seed: int = 0,
         dataset: str, version: str, resolution: str, budget: int, miou: float,
         gmacs: float, params: float, fps: float, device: dict) -> None:
    store.upsert_variant(vid, {"model": model, "data": {"dataset": dataset}}, study=study,
                         label=label)
    rid = store.start_run(vid, study=study, seed=seed, budget_iters=budget, dataset=dataset,
                          dataset_version=version, resolution=resolution)
    store.finish_run(rid, rk.record(
        vid, seed, metrics=rk.metrics(miou=miou, split="test" if dataset == "camvid" else "val"),
        complexity=rk.complexity(params_learned=int(params * 1e6), gmacs_thop=gmacs),
        speed=rk.speed(fps=fps, **{k: fps * v if k.startswith("fps_ci") else v for k, v in device.items()})))


def fill_quickstart(store: Store) -> None:
    """The quickstart study: native grid vs 1x1 grid on the SegNet CamVid copy, CPU FPS."""
    store.upsert_study("quickstart", paper_table="4")
    base = {"template": "camvid-s", "backbone": "tf_efficientnet_lite1", "dynamic": True,
            "positional_encoding": True}
    for vid, label, grid, miou, gmacs, params, fps in (
        ("qs-native", "camvid-s-lite1-native-grid", "native", 0.272, 2.33, 7.57, 8.16),
        ("qs-grid1", "camvid-s-lite1-grid1", 1, 0.059, 2.04, 4.29, 8.81),
    ):
        _run(store, "quickstart", vid, {**base, "grid_size": grid}, label=label,
             dataset="camvid", version=CAMVID_SEGNET, resolution="480x360", budget=50,
             miou=miou, gmacs=gmacs, params=params, fps=fps, device=CPU)


def fill_two_datasets(store: Store) -> None:
    """Quickstart plus Cityscapes grid and groups studies (GPU) and a full-size CamVid run."""
    fill_quickstart(store)
    store.upsert_study("grid_cs")
    base = {"template": "cityscapes-m", "backbone": "efficientnet_b1", "dynamic": True,
            "positional_encoding": True}
    for grid, miou, gmacs, params, fps in ((1, 0.70, 6.1, 8.9, 52.0), (4, 0.725, 6.9, 10.1, 44.0),
                                           (8, 0.738, 7.2, 10.1, 41.0),
                                           (16, 0.741, 7.5, 10.1, 38.5)):
        for seed, d in enumerate((-0.006, 0.0, 0.007)):
            _run(store, "grid_cs", f"cs-grid{grid}", {**base, "grid_size": grid},
                 label=f"grid{grid}", seed=seed, dataset="cityscapes", version=CITYSCAPES,
                 resolution="1024x512", budget=2000, miou=miou + d, gmacs=gmacs,
                 params=params, fps=fps * (1 + d), device=GPU)
    store.upsert_study("groups_cs", paper_table="S3")
    for g1, miou, gmacs, params, fps in ((1, 0.731, 18.0, 11.0, 20.0), (4, 0.742, 16.9, 10.1, 22.5),
                                         (16, 0.735, 16.6, 9.9, 23.1)):
        groups = [g1 * m for m in (8, 4, 4, 2, 1)]
        _run(store, "groups_cs", f"cs-groups{g1}", {**base, "weight_groups": groups},
             label=f"groups{g1}", dataset="cityscapes", version=CITYSCAPES,
             resolution="1536x768", budget=2000, miou=miou, gmacs=gmacs, params=params,
             fps=fps, device=GPU)
    store.upsert_study("camvid_full", paper_table="4")
    _run(store, "camvid_full", "cv-full", {"template": "camvid-s", "backbone": "efficientnet_b1",
                                           "dynamic": True, "grid_size": "native"},
         label="camvid-s-b1", dataset="camvid", version=CAMVID_FULL, resolution="768x576",
         budget=2000, miou=0.701, gmacs=6.0, params=9.9, fps=31.0, device=GPU)
