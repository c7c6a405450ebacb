"""Ray, for users who outgrow one machine: a sweep on a local Ray instance gives the process
pool's results table, and a run with Ray hosts the in-process run's log."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sandbank.lab.runner import run_scenario  # noqa: E402
from sandbank.lab.scenario import parse_scenario  # noqa: E402
from sandbank.lab.sweep import LocalBackend, RayBackend, load_sweep, run_sweep  # noqa: E402
from tests.test_hosts import PATHS, entries, scenario  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=80 << 20, include_dashboard=False,
             log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_a_run_with_ray_hosts_gives_the_in_process_log(tmp_path, local_ray):
    key = tmp_path / "k.key"
    extra = [{"policy": "byo.traders:Quoter", "count": 2, "owner": "mallory"}]
    base = run_scenario(parse_scenario(scenario(extra, agents={"hosts": 0}), "<t>", paths=PATHS),
                        tmp_path / "in", overwrite=True, key_file=key)
    r = run_scenario(parse_scenario(scenario(extra, agents={"hosts": 2, "backend": "ray"}), "<t>",
                                    paths=PATHS), tmp_path / "ray", overwrite=True, key_file=key)
    ran = r.summary["agents_ran"]
    assert ran["backend"] == "ray" and ran["hosted"] == 8 and len(ran["hosts"]) == 2
    assert all(h["status"] == "ok" for h in ran["hosts"]), ran["hosts"]
    assert ran["containment"]["network"].startswith("NOT contained")  # and says so
    assert any("NOT contained: Ray" in w for w in r.summary["warnings"])
    assert r.summary["root"] == base.summary["root"]
    assert entries(tmp_path / "ray") == entries(tmp_path / "in")


def test_a_sweep_on_ray_gives_the_process_pool_table(tmp_path, local_ray):
    (tmp_path / "sc.yaml").write_text(json.dumps(scenario(
        [{"policy": "byo.traders:Quoter", "count": 2, "owner": "mallory"}], ticks=6)))
    (tmp_path / "sw.yaml").write_text(json.dumps(
        {"scenario": "sc.yaml", "seeds": [1, 2], "grid": {"population.1.params.width": [2, 8]}}))
    sw = load_sweep(tmp_path / "sw.yaml", paths=PATHS)
    key = tmp_path / "k.key"
    pool = run_sweep(sw, tmp_path / "pool", LocalBackend(2), key_file=key)
    on_ray = run_sweep(sw, tmp_path / "ray", RayBackend(), key_file=key)
    assert [r["root"] for r in on_ray] == [r["root"] for r in pool]

    def table(folder: Path) -> list[dict]:
        with open(folder / "results.csv") as f:
            return [{k: v for k, v in row.items() if k != "run"} for row in csv.DictReader(f)]

    assert len(pool) == 4 and all(r["ok"] for r in pool)
    assert table(tmp_path / "pool") == table(tmp_path / "ray")
