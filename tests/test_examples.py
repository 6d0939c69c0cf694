"""Every example script runs in its --quick smoke mode and writes its figure."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_quick(script, tmp_path):
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), f"{script.name} saved no PNG:\n{out.stdout[-2000:]}"
    if script.stem == "hopfield_digits":  # the result file's documented shape
        import json

        results = json.loads((tmp_path / "hopfield_digits.json").read_text())
        assert set(results) == {"hopfield", "ppca20", "rbm", "mean_fill"}
        for row in results.values():
            assert set(row) == {"random50", "bottom_half"}
            assert all(0.0 < v < 1.0 for v in row.values())
