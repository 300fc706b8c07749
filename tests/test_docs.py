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


def test_results_are_the_generators_whole():
    """RESULTS.md is written whole by benchmarks/results.py: its header and every section it writes are there."""
    results = (ROOT / "RESULTS.md").read_text()
    assert results.startswith("# Results\n\nWritten by `make results` (`benchmarks/results.py`)")
    for section in ("## The default over seeds", "## The default under attack, against the oracle", "## Time"):
        assert section in results


def test_the_documents_speak_of_the_product_as_it_is():
    """No development history and no machine paths in what the repository ships: dating by development rounds or
    tracker numbers goes stale, and a machine path means nothing on the reader's machine."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r"\bsessions? \d|\bstop \d\d|\bissue #?\d|/work/|/home/\w|\bround \d")
    shipped = [name for name in tracked if name.endswith((".md", ".py", ".yaml", ".toml"))
               and (ROOT / name).is_file() and not name.endswith("test_docs.py")]
    found = [f"{name}:{i}: {line.strip()}" for name in shipped
             for i, line in enumerate((ROOT / name).read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
