"""`tanpu test` and `tanpu inspect` as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tanpu(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tanpu.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_tanpu_test_reports_every_example_and_a_closing_line():
    done = tanpu("test", "methodologies/")
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    passed, failed = last.split(", ")
    assert passed.endswith("passed") and failed == "0 failed"
    assert int(passed.split()[0]) >= 16


def test_tanpu_test_fails_on_a_wrong_example(tmp_path):
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text()
    (tmp_path / "m.tanpu").write_text(source.replace("reduction 583.75 g", "reduction 583.76 g"))
    done = tanpu("test", str(tmp_path))
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "expected reduction 583.76 g, got 583.75 g" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "3 passed, 1 failed"


def test_inspect_json_gives_the_input_schema():
    done = tanpu("inspect", "--json", "methodologies/shenzhen-public-transit.tanpu")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    schema = info["input_schema"]
    assert schema["properties"]["mode"]["enum"] == ["ebus", "metro", "diesel_bus"]
    assert schema["properties"]["distance"]["x-unit"] == "km"
    assert "distance" in schema["required"]
    (factor,) = info["parameters"]
    assert factor["periods"][0]["values"] == {"ebus": "26.9", "metro": "46.7"}
