"""What README quotes is what the code and the result files hold."""

import re
from pathlib import Path

import yaml

from grail.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_field_with_its_default():
    """README's 'Configuration' block is the defaults a user reads: it must be RunConfig's, field for field."""
    block = re.search(r"## Configuration\n.*?```yaml\n(.*?)```", README, re.S).group(1)
    assert yaml.safe_load(block) == RunConfig().to_dict()


def test_readme_quotes_the_regenerated_results():
    """README's results block is benchmarks/results.py's output (docs/results/default/readme.md), unedited."""
    block = re.search(r"<!-- results:begin[^>]*-->\n(.*?)<!-- results:end -->", README, re.S)
    assert block, "README.md lost its results block"
    assert block.group(1) == (ROOT / "docs" / "results" / "default" / "readme.md").read_text()


def test_results_quote_the_regenerated_comparison():
    """RESULTS.md's utility-matched block is benchmarks/results.py's (docs/results/utility-matched/)."""
    results = (ROOT / "RESULTS.md").read_text()
    block = re.search(r"<!-- compare:begin[^>]*-->\n(.*?)<!-- compare:end -->", results, re.S)
    assert block, "RESULTS.md lost its comparison block"
    assert block.group(1) == (ROOT / "docs" / "results" / "utility-matched" / "results-block.md").read_text()
