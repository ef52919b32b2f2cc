"""collect_provenance: every key present, JSON-serialisable, never fails."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

import hsbench
from hsbench.measure import provenance
from hsbench.measure.provenance import PROVENANCE_KEYS, collect_provenance


def test_keys_present_and_json_serialisable():
    info = collect_provenance()
    assert set(PROVENANCE_KEYS) <= set(info)
    assert json.loads(json.dumps(info)) == info
    assert info["hsbench_version"] == hsbench.__version__
    assert info["python_version"] and info["hostname"] is not None
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", info["date_utc"])
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", info["git_commit"])
    import torch

    assert info["torch_version"] == torch.__version__
    if not torch.cuda.is_available():
        assert info["cuda_available"] is False and info["gpu_name"] is None and info["gpu_count"] == 0


def test_never_fails_without_git_or_tools(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no such program")

    monkeypatch.setattr(subprocess, "run", broken)
    info = collect_provenance()
    assert info["git_commit"] is None and info["git_dirty"] is None
    assert json.dumps(info)


def test_not_a_git_checkout(tmp_path, monkeypatch):
    fake_pkg = tmp_path / "hsbench"
    fake_pkg.mkdir()
    (fake_pkg / "__init__.py").write_text("")
    monkeypatch.setattr(hsbench, "__file__", str(fake_pkg / "__init__.py"))
    assert provenance.git_commit() == (None, None)


def test_a_foreign_repository_is_not_hsbench(tmp_path, monkeypatch):
    """An install inside somebody else's git repository must not report that repository's commit."""
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:  # pragma: no cover
        pytest.skip("git missing")
    repo = tmp_path / "other"
    pkg = repo / "site-packages" / "hsbench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setattr(hsbench, "__file__", str(pkg / "__init__.py"))
    assert provenance.git_commit() == (None, None)


def test_cpu_model_is_a_string_or_none():
    name = provenance.cpu_model()
    assert name is None or (isinstance(name, str) and name)
