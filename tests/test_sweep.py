import csv

import pytest
import yaml
from typer.testing import CliRunner

from sandbank.cli import app
from sandbank.lab.scenario import ScenarioError
from sandbank.lab.sweep import LocalBackend, SerialBackend, load_sweep, run_sweep

SCENARIO = {
    "name": "tiny", "seed": 1, "ticks": 6, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD"}],
    "endowment": {"CRD": 100_000, "WGT": 100},
    "population": [{"policy": "zi_trader", "count": 6}],
}


def files(tmp_path, grid, **extra):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SCENARIO))
    sweep = {"scenario": "s.yaml", "seeds": [1, 2], "grid": grid, **extra}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path / "w.yaml"


def test_a_sweep_runs_every_configuration_and_seed_into_one_table(tmp_path):
    sw = load_sweep(files(tmp_path, {"policy.trade_fee_bps": [0, 50],
                                     "markets.0.band_bps": [0, 500]},
                          metrics=["fills", "gini_wealth"]))
    rows = run_sweep(sw, tmp_path / "out", SerialBackend())
    assert len(rows) == 4 * 2 and all(r["verified"] for r in rows)
    table = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert {(r["policy.trade_fee_bps"], r["markets.0.band_bps"], r["seed"]) for r in table} == {
        (f, b, s) for f in ("0", "50") for b in ("0", "500") for s in ("1", "2")}
    assert "fills" in table[0]
    page = (tmp_path / "out" / "comparison.html").read_text()
    assert page.count("<svg") == 2 * 2  # per metric: bars per configuration and mean series
    assert all(f"{i}: markets.0.band_bps=" in page for i in range(4))
    # each bar is labelled with its parameter values and links to its run's report
    assert 'href="config3-seed1/report.html"' in page and 'href="config3-seed2/report.html"' in page
    assert ">band_bps=500</tspan>" in page and ">trade_fee_bps=50</tspan>" in page
    same = [r["root"] for r in rows if r["seed"] == 1 and r["config"] == 0]
    again = run_sweep(sw, tmp_path / "again", SerialBackend(),  # the same key file
                      key_file=tmp_path / "out" / "run.key")
    assert same == [r["root"] for r in again if r["seed"] == 1 and r["config"] == 0]


def test_the_process_pool_gives_the_same_results_as_a_serial_run(tmp_path):
    sw = load_sweep(files(tmp_path, {"policy.trade_fee_bps": [0, 30]}))
    serial = run_sweep(sw, tmp_path / "s", SerialBackend())
    pooled = run_sweep(sw, tmp_path / "p", LocalBackend(2), key_file=tmp_path / "s" / "run.key")
    assert [r["root"] for r in serial] == [r["root"] for r in pooled]


@pytest.mark.parametrize("grid, message", [
    ({"markets.3.band_bps": [1]}, "no item 3"),
    ({"marketz.0.band_bps": [1]}, "no 'marketz'"),
    ({"policy.trade_fee_bpz": [1]}, "unknown policy parameter 'trade_fee_bpz'"),
    ({"policy.trade_fee_bps": []}, "non-empty lists"),
])
def test_a_bad_grid_fails_before_running(tmp_path, grid, message):
    with pytest.raises(ScenarioError, match=message):
        load_sweep(files(tmp_path, grid))
    res = CliRunner().invoke(app, ["sweep", str(tmp_path / "w.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and not (tmp_path / "o").exists()


def test_a_sweep_compares_oversight_on_and_off(tmp_path):
    sw = load_sweep(files(tmp_path, {"oversight.enabled": [True, False],
                                     "oversight.breakers.pause_bps": [1500]},
                          metrics=["fills"]))
    rows = run_sweep(sw, tmp_path / "out", SerialBackend())
    assert {r["oversight.enabled"] for r in rows} == {True, False}
