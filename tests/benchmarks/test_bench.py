"""The benchmark script on the tiny model: it runs, its naive baselines agree with grail, it times a whole run,
it writes its report."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def test_benchmark_script_checks_agreement_and_writes_its_report(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny", "--layers", "1", "--repeats", "1",
                           "--examples", "8", "--steps", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["stage1"]["max_relative_difference"] < 1e-4  # the batched scores are the loop's
    assert results["stage2"]["sets_torch_identical_masks"] and results["stage2"]["sets_python_identical_masks"]
    assert results["stage2"]["entries"] == 624_640  # one LLaMA-2-7B layer
    assert results["stage3"]["steps"] == 2 and 0 < results["stage3"]["frozen_fraction"] < 1
    *steps, inside = results["end_to_end"]  # the smoke preset, one process per command
    assert [r["step"] for r in steps] == ["grail finetune", "grail localize", "grail unlearn", "grail evaluate"]
    assert all(100 < r["peak_rss_mib"] < 4000 and r["seconds"] > 0 for r in steps)
    assert "stage1_gradients" in inside["timings"]
    text = out.read_text()
    assert "stage 1" in text and "stage 2" in text and "stage 3" in text and "--model tiny" in text
