"""`python -m heatsync`: prints the KPI table, writes it atomically, rejects bad scenarios."""

from __future__ import annotations

from heatsync.__main__ import main


def test_cli__writes_kpi_table(tmp_path, capsys):
    assert main(["sync-swings", "--steps", "5", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "simulate_sync-swings.md").read_text()
    assert "`energy_balance_rel_error`" in text
    assert "`band_share`" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_cli__unknown_scenario_exits_2_with_message(capsys):
    assert main(["no-such"]) == 2
    assert "unknown scenario 'no-such'" in capsys.readouterr().err
