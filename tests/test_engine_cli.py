"""``hsbench train`` (hsbench.train_cli): options reach run_variant; errors are one line."""

import json

import torch
import typer
from torch import nn
from typer.testing import CliRunner

from hsbench import train_cli as cli
from hsbench.engine import run as run_mod

torch.set_num_threads(1)


def _app():
    app = typer.Typer()
    cli.register(app)

    @app.callback()
    def _root():
        pass

    return app


class Tiny(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.conv = nn.Conv2d(3, cfg.num_classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_train_command_runs_and_prints_json(tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "build_model", Tiny)
    r = CliRunner().invoke(_app(), [
        "train", "--run-dir", str(tmp_path / "r"), "--dataset", "synthetic", "--iterations", "3",
        "--batch-size", "2", "--crop", "24x16", "--eval-resolution", "32x32", "--device", "cpu", "--json",
    ])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["iterations_done"] == 3 and out["configs"]["train"]["batch_size"] == 2
    assert out["configs"]["data"]["crop_size"] == [16, 24]  # WIDTHxHEIGHT on the command line
    assert out["protocol"]["eval_resolution"] == [32, 32]
    assert (tmp_path / "r" / "result.json").exists()


def test_bad_size_is_a_config_error(capsys):
    from hsbench.cli import main

    assert main(["train", "--run-dir", "unused", "--crop", "320by240"]) == 2
    err = capsys.readouterr().err
    assert "--crop '320by240'" in err and "WIDTHxHEIGHT" in err
