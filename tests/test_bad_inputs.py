"""The nine groups of bad input of issue 8, tried as a new user would.

Each test uses the shared ``refused`` check (tests/conftest.py): one ``error:``
line, non-zero exit, no traceback, the results database byte-identical, no new
file in the working directory. Tests are named ``test_bad_input_<group>_...``
after the issue's list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_STUDY

# --------------------------------------------------------------------------- 1: output onto the database


@pytest.mark.parametrize("side", ["", "-wal", "-shm", "-journal"])
def test_bad_input_1_report_out_is_the_database(cli_env, refused, side):
    out = f"{cli_env.db_path}{side}"
    refused(["report", "--table", "4", "--db", cli_env.db, "--out", out], "--out", "results database")


def test_bad_input_1_report_out_same_file_by_another_name(cli_env, refused):
    (cli_env.cwd / "alias.db").symlink_to(cli_env.db_path)
    try:
        refused(["report", "--table", "4", "--db", cli_env.db, "--out", "alias.db"], "results database")
    finally:
        (cli_env.cwd / "alias.db").unlink()


def test_bad_input_1_plot_out_is_the_database_even_with_a_plot_suffix(tmp_path, monkeypatch, capsys):
    from hsbench.cli import main

    from conftest import _make_results_db, db_snapshot

    monkeypatch.chdir(tmp_path)
    db = _make_results_db(tmp_path / "results.png")  # a database that happens to end in .png
    before = db_snapshot(db)
    code = main(["plot", "fps-vs-miou", "--db", f"sqlite:///{db}", "--out", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "results database" in err
    assert db_snapshot(db) == before


def test_bad_input_1_default_database_from_env(cli_env, refused, monkeypatch):
    monkeypatch.setenv("HSBENCH_DB", cli_env.db)
    refused(["report", "--table", "4", "--out", str(cli_env.db_path)], "results database")


def test_bad_input_1_report_out_is_written_atomically(cli_env, capsys, monkeypatch):
    """A failure while writing leaves the old report in place and no temporary file."""
    from hsbench.cli import main

    out = cli_env.cwd / "table4.md"
    out.write_text("old report\n")
    real = Path.write_text

    def broken(self, *a, **k):
        if self.name.startswith(".table4.md."):
            real(self, "half")
            raise OSError(28, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", broken)
    code = main(["report", "--table", "4", "--db", cli_env.db, "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1, err
    assert out.read_text() == "old report\n"
    assert sorted(p.name for p in cli_env.cwd.iterdir()) == ["table4.md"]


def test_bad_input_1_report_out_writes_a_file(cli_env, capsys):
    from hsbench.cli import main

    out = cli_env.cwd / "table4.md"
    assert main(["report", "--table", "4", "--db", cli_env.db, "--out", str(out)]) == 0
    assert "Table 4" in out.read_text()
    assert sorted(p.name for p in cli_env.cwd.iterdir()) == ["table4.md"]


# --------------------------------------------------------------------------- 2: integers above 2^63

BIG = "99999999999999999999"  # > 2^63 - 1 = 9223372036854775807


def test_bad_input_2_runs_show_huge_id(cli_env, refused):
    refused(["runs", "show", BIG, "--db", cli_env.db], "run id", "9223372036854775807")


def test_bad_input_2_run_max_iters_huge(cli_env, refused):
    f = cli_env.write(TINY_STUDY)
    refused(["run", f, "--db", cli_env.db, "--max-iters", BIG], "--max-iters")


def test_bad_input_2_study_seed_huge(cli_env, refused):
    f = cli_env.write(f"seeds = [{BIG}]\n" + TINY_STUDY)
    refused(["run", f, "--db", cli_env.db], "s.toml:1", "seeds")


def test_bad_input_2_study_iterations_huge(cli_env, refused):
    f = cli_env.write(TINY_STUDY.replace("iterations = 2", f"iterations = {BIG}"))
    refused(["run", f, "--db", cli_env.db], "base.train.iterations", "9223372036854775807")


def test_bad_input_2_huge_integer_in_an_axis(cli_env, refused):
    f = cli_env.write(TINY_STUDY + f'\n[axes]\n"train.checkpoint_every" = [0, {BIG}]\n')
    refused(["run", f, "--db", cli_env.db], 'axes."train.checkpoint_every"', "9223372036854775807")


# --------------------------------------------------------------------------- 5: too many variants

SIX_AXES = "\n[axes]\n" + "\n".join(
    f'"{key}" = [{", ".join(str(v) for v in values)}]'
    for key, values in [
        ("train.lr0", [0.001 * (i + 1) for i in range(10)]),
        ("train.weight_decay", [0.0001 * i for i in range(10)]),
        ("train.poly_power", [0.5 + 0.1 * i for i in range(10)]),
        ("train.checkpoint_every", list(range(10))),
        ("train.num_workers", list(range(10))),
        ("eval.batch_size", list(range(1, 11))),
    ]
) + "\n"


@pytest.mark.parametrize("dry_run", [False, True])
def test_bad_input_5_axes_product_counted_before_generating(cli_env, refused, dry_run):
    f = cli_env.write(TINY_STUDY + SIX_AXES)
    argv = ["run", f, "--db", cli_env.db] + (["--dry-run"] if dry_run else [])
    line = refused(argv, "1,000,000 variants", "10,000", "train.lr0 (10)", "eval.batch_size (10)")
    assert "split it" in line


def test_bad_input_5_runs_count_seeds_too(cli_env, refused):
    f = cli_env.write("seeds = [" + ", ".join(map(str, range(200))) + "]\n" + TINY_STUDY + (
        '\n[axes]\n"train.lr0" = [' + ", ".join(str(0.001 * (i + 1)) for i in range(100)) + "]\n"))
    refused(["run", f, "--db", cli_env.db, "--dry-run"], "100 variants x 200 seeds = 20,000 runs")


# --------------------------------------------------------------------------- 6: tracebacks before

def test_bad_input_6_train_run_dir_is_a_file(cli_env, refused):
    (cli_env.cwd / "taken").write_text("a file\n")
    refused(["train", "--run-dir", "taken", "--dataset", "synthetic", "--iterations", "1"],
            "--run-dir 'taken' is an existing file")


def test_bad_input_6_train_run_dir_unwritable(cli_env, refused):
    refused(["train", "--run-dir", "/proc/hsbench-run", "--dataset", "synthetic", "--iterations", "1"],
            "cannot write in --run-dir '/proc/hsbench-run'")


@pytest.mark.parametrize("scale", ["inf", "1e6", "nan", "0"])
def test_bad_input_6_bench_scale(cli_env, refused, scale):
    refused(["bench", "dpwconv", "--scale", scale, "--device", "cpu"], "--scale", "(0, 2]")


def test_bad_input_6_runs_list_to_a_full_disk(cli_env):
    import subprocess
    import sys

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    repo = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo)}
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "hsbench.cli", "runs", "list", "--db", cli_env.db],
                           stdout=full, stderr=subprocess.PIPE, text=True, env=env, cwd=cli_env.cwd)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], r.stderr


@pytest.mark.parametrize("depth", [20, 5000])
def test_bad_input_6_deeply_nested_array(cli_env, refused, depth):
    f = cli_env.write(TINY_STUDY + '\n[axes]\n"model.grid_size" = ' + "[" * depth + "4" + "]" * depth + "\n")
    refused(["run", f, "--db", cli_env.db], "nest")


# --------------------------------------------------------------------------- 7: NaN and inf

@pytest.mark.parametrize("key, value, section", [
    ("poly_power", "nan", "train"),
    ("weight_decay", "inf", "train"),
    ("mean", "[nan, 0.4, 0.4]", "data"),
    ("std", "[0.2, -inf, 0.2]", "data"),
])
def test_bad_input_7_nan_and_inf(cli_env, refused, key, value, section):
    header = f"[base.{section}]\n"
    f = cli_env.write(TINY_STUDY.replace(header, f"{header}{key} = {value}\n"))
    line = refused(["run", f, "--db", cli_env.db], f"base.{section}.{key}", "finite number")
    assert line.startswith("error: ") and "s.toml:" in line  # file and line


# --------------------------------------------------------------------------- 8: caught only at run time before

def test_bad_input_8_batch_larger_than_the_synthetic_training_set(cli_env, refused):
    f = cli_env.write(TINY_STUDY.replace("batch_size = 2", "batch_size = 64"))
    refused(["run", f, "--db", cli_env.db], "base.train.batch_size", "larger than the 4 images")


def test_bad_input_8_batch_larger_than_the_camvid_training_set(cli_env, refused):
    repo = Path(__file__).resolve().parents[1]
    roots = [p / "shared" / "data" for p in (repo.parent, repo.parent.parent)]
    root = next((r for r in roots if (r / "camvid").is_dir()), None)
    if root is None:
        pytest.skip(f"no CamVid under {', '.join(map(str, roots))}")
    f = cli_env.write(TINY_STUDY.replace('dataset = "synthetic"\nsynthetic_size = [64, 64]\nsynthetic_length = 4',
                                         'dataset = "camvid"\neval_resolution = [480, 352]')
                      .replace("batch_size = 2", "batch_size = 100000"))
    refused(["run", f, "--db", cli_env.db, "--data-root", str(root), "--dry-run"], "train.batch_size",
            "larger than the")


def test_bad_input_8_num_classes_not_the_datasets(cli_env, refused):
    f = cli_env.write(TINY_STUDY.replace('backbone = "tf_efficientnet_lite0"',
                                         'backbone = "tf_efficientnet_lite0"\nnum_classes = 100000'))
    refused(["run", f, "--db", cli_env.db], "base.model.num_classes", "synthetic has 4 classes")


# --------------------------------------------------------------------------- 9: smaller surprises

def test_bad_input_9_study_path_is_a_folder(cli_env, refused):
    (cli_env.cwd / "studies").mkdir()
    (cli_env.cwd / "studies" / "a.toml").write_text(TINY_STUDY)
    line = refused(["run", "studies", "--db", cli_env.db], "is a folder", "a.toml")
    assert "did you mean" not in line


def test_bad_input_9_utf8_bom_is_read(cli_env, capsys):
    from hsbench.cli import main

    f = cli_env.cwd / "bom.toml"
    f.write_bytes(b"\xef\xbb\xbf" + TINY_STUDY.encode())
    assert main(["run", str(f), "--db", cli_env.db, "--dry-run"]) == 0
    assert "study good" in capsys.readouterr().out


def test_bad_input_9_question_mark_in_sqlite_path(cli_env, refused):
    f = cli_env.write(TINY_STUDY)
    db = f"sqlite:///{cli_env.cwd}/res?ults.db"
    refused(["run", f, "--db", db], "'?'", "%3F")
    refused(["runs", "list", "--db", db], "'?'")


def test_bad_input_9_question_mark_options_still_work(cli_env, capsys):
    from hsbench.cli import main

    assert main(["runs", "list", "--db", f"{cli_env.db}?timeout=5"]) == 0
    assert "good" in capsys.readouterr().out


def test_bad_input_9_second_file_reusing_a_stored_study_name(cli_env, refused):
    f = cli_env.write(TINY_STUDY.replace("iterations = 2", "iterations = 3"), name="other.toml")
    refused(["run", f, "--db", cli_env.db], "other.toml", "already holds a study named 'good'", "--force")


def test_bad_input_9_same_file_edited_is_not_a_reuse():
    from hsbench.studies import StudyError, check_name_reuse, parse_study

    study = parse_study(TINY_STUDY, file="studies/good.toml")
    check_name_reuse(study, "old text", "studies/./good.toml", force=False)  # same file, grown: fine
    check_name_reuse(study, "old text", "elsewhere.toml", force=True)  # --force: fine
    with pytest.raises(StudyError, match="elsewhere.toml"):
        check_name_reuse(study, "old text", "elsewhere.toml", force=False)
