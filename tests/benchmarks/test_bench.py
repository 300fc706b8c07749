"""The benchmark script on the tiny model: it runs, its naive baselines agree with grail, it writes its report."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def test_benchmark_script_checks_agreement_and_writes_its_report(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--layers", "1", "--repeats", "1",
                           "--examples", "8", "--steps", "2", "--skip-end-to-end", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["stage1"]["max_relative_difference"] < 1e-4  # the batched scores are the loop's
    assert results["stage2"]["identical_masks"] and results["stage2"]["entries"] == 624_640  # one LLaMA-2-7B layer
    assert results["stage3"]["steps"] == 2 and 0 < results["stage3"]["frozen_fraction"] < 1
    text = out.read_text()
    assert "stage 1" in text and "stage 2" in text and "stage 3" in text and "--model tiny" in text
