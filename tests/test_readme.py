"""README stays true: the two commands at its top, and every KPI and series key documented."""

from __future__ import annotations

from pathlib import Path

from heatsync.physics import KPI_DOC, OUTPUTS, SERIES_STATE

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme__documents_every_kpi_and_series_key():
    for key in [*KPI_DOC, *OUTPUTS, *SERIES_STATE, "p_grid_sub_w"]:
        assert f"`{key}`" in README, key


def test_ci__runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = README.split("```bash")
    test_cmd = blocks[2].split("```")[0].strip()
    assert "pytest" in test_cmd
    assert test_cmd in ci


def test_readme__every_test_it_cites_exists():
    """The guarantee and bad-input tables cite tests as ``file.py::name...`` (a prefix)."""
    import re

    cited = re.findall(r"`(?:tests/)?(test_\w+\.py)(?:::(test_\w+?)(?:\.\.\.|\[|`))?", README)
    assert len(cited) > 10
    for file, name in cited:
        path = ROOT / "tests" / file
        assert path.is_file(), file
        if name:
            assert re.search(rf"^def {re.escape(name)}", path.read_text(), re.M), (file, name)
