"""`tanpu check`: the acceptance test of the language issue.

A file with several mistakes (a unit error, a typo in a name, then a syntax error) is
reported in full, each mistake at its line and column, with exit code 1; `--format json`
says the same as JSON; the clean Shenzhen file exits 0; a missing path exits 2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tanpu.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHENZHEN = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"

BROKEN = """\
methodology t.broken "三处错误 / three mistakes" version 1.0.0 {
  covers transit_trip
  effective from 2024-01-01
  timezone Asia/Shanghai
}
input distance: quantity [km] label "距离"
input load: quantity [kg]
let total = distance + load
reduction = 26.9 g/km * distanse
points = floor(reduction / 1 g)
let broken = (1 +
"""

# (code, line, column) of each mistake, in the order they are reported
EXPECTED = [("E0302", 8, 22), ("E0201", 9, 25), ("E0103", 11, 17)]


def run(*args):
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    return result.exit_code, result.output


@pytest.fixture
def broken(tmp_path) -> Path:
    path = tmp_path / "broken.tanpu"
    path.write_text(BROKEN, encoding="utf-8")
    return path


def test_every_mistake_is_reported_with_exit_1(broken):
    code, out = run(broken)
    assert code == 1
    heads = re.findall(r"^(error|warning)\[(\w+)\]", out, flags=re.M)
    assert [c for _, c in heads] == [c for c, _, _ in EXPECTED]
    for c, line, column in EXPECTED:
        assert f"{broken}:{line}:{column}" in out, (c, out)
    assert out.rstrip().endswith("checked 1 file(s): 3 error(s), 0 warning(s)")


def test_each_caret_is_under_its_mistake(broken):
    _, out = run(broken)
    lines = out.splitlines()
    source = BROKEN.splitlines()
    for c, line, column in EXPECTED:
        shown = next(i for i, text in enumerate(lines) if text.startswith(f"{line} | ")
                     or text.startswith(f" {line} | "))
        assert lines[shown].split(" | ", 1)[1] == source[line - 1]
        carets = lines[shown + 1].split(" | ", 1)[1]
        assert carets.index("^") == column - 1, (c, lines[shown:shown + 2])
    assert "did you mean `distance`?" in out


def test_json_has_the_same_diagnostics(broken):
    code, out = run("--format", "json", broken)
    assert code == 1
    (entry,) = json.loads(out)
    assert entry["file"] == str(broken)
    assert entry["ok"] is False and entry["content_hash"] is None
    found = [(d["code"], d["line"], d["column"]) for d in entry["diagnostics"]]
    assert found == EXPECTED
    assert all(d["file"] == str(broken) and d["severity"] == "error"
               for d in entry["diagnostics"])
    _, text = run(broken)
    for d in entry["diagnostics"]:
        assert f"error[{d['code']}]: {d['message']}" in text


def test_the_shenzhen_file_is_clean():
    code, out = run(SHENZHEN)
    assert code == 0
    assert out.strip() == "checked 1 file(s): 0 error(s), 0 warning(s)"
    code, out = run("--format", "json", SHENZHEN)
    (entry,) = json.loads(out)
    assert code == 0 and entry["ok"] and entry["diagnostics"] == []
    assert entry["id"] == "cn.shenzhen.public-transit" and entry["version"] == "1.0.0"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry["content_hash"])


def test_a_missing_path_is_a_usage_error(tmp_path):
    code, out = run(tmp_path / "nowhere.tanpu")
    assert code == 2
    assert "no such file or folder" in out


def test_warnings_alone_exit_0(tmp_path):
    path = tmp_path / "w.tanpu"
    path.write_text(SHENZHEN.read_text(encoding="utf-8") + "\nlet spare = 1\n", encoding="utf-8")
    code, out = run(path)
    assert code == 0
    assert "warning[W0102]" in out and "0 error(s), 1 warning(s)" in out


def test_a_folder_is_checked_file_by_file(tmp_path, broken):
    (tmp_path / "ok.tanpu").write_text(SHENZHEN.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a methodology")
    code, out = run("--format", "json", tmp_path)
    assert code == 1
    entries = {Path(e["file"]).name: e for e in json.loads(out)}
    assert set(entries) == {"broken.tanpu", "ok.tanpu"}
    assert entries["ok.tanpu"]["ok"] and not entries["broken.tanpu"]["ok"]


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.tanpu"
    path.write_bytes('methodology t "é" version 1.0.0 {}'.encode("latin-1"))
    code, out = run(path)
    assert code == 1
    assert "error[E0001]" in out and f"{path}:1:16" in out  # é is byte 16


def test_the_installed_command(broken):
    """The real entry point, in a process of its own (the others use click's runner)."""
    tanpu = Path(sys.executable).with_name("tanpu")
    if not tanpu.exists():
        pytest.skip("the tanpu script is not installed next to this Python")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    done = subprocess.run([str(tanpu), "check", str(broken), str(SHENZHEN)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert re.findall(r"\[(E\d{4})\]", done.stdout) == [c for c, _, _ in EXPECTED]
    assert "checked 2 file(s): 3 error(s), 0 warning(s)" in done.stdout
