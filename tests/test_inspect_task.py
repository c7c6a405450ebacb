"""The Inspect AI task (lab/inspect_task.py): a model served by the local test LLM server,
through Inspect's eval() with an OpenAI-compatible model, plays a group of a scenario, and
the scorecard judges the run."""

import pytest

pytest.importorskip("inspect_ai")
pytest.importorskip("openai")

from inspect_ai import eval as inspect_eval  # noqa: E402

from llm_server import Server, app  # noqa: E402
from sandbank.lab.inspect_task import sandbank_scorecard  # noqa: E402

SCENARIO = {
    "name": "inspect_market", "seed": 2, "ticks": 4, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD"}],
    "endowment": {"CRD": 100_000, "WGT": 100},
    "population": [{"policy": "market_maker", "count": 1},
                   {"policy": "zi_trader", "count": 2},
                   {"policy": "zi_trader", "name": "model", "count": 2}],
    "success": {"min_trades": 1},
    "redteam": {"honest": True, "max_alert_rate": 1000, "seeds": [2]},
}


def test_a_model_plays_a_scenario_and_the_scorecard_judges_it(tmp_path, monkeypatch):
    with Server() as srv:
        monkeypatch.setenv("LOCAL_BASE_URL", srv.url)
        monkeypatch.setenv("LOCAL_API_KEY", "test")
        before = app.state.requests
        logs = inspect_eval(sandbank_scorecard(scenario=SCENARIO, group="model"),
                            model="openai-api/local/trader", log_dir=str(tmp_path),
                            display="none")
        calls = app.state.requests - before
    (log,) = logs
    assert log.status == "success", log.error
    (sample,) = log.samples
    score = next(iter(sample.scores.values()))
    assert score.value == "C", score.explanation
    assert score.metadata["seed"] == 2 and score.metadata["alerts"] >= 0
    # the run met its criteria: trades, and (implicit with model agents) a model call that
    # worked — the model's tool calls became the agents' actions
    assert score.metadata["success_on"]
    assert calls == 2 * 4  # two model-driven agents, four ticks: every call through Inspect
    assert sum(1 for e in sample.events if e.event == "model") == calls


def test_a_group_the_scenario_does_not_have_is_an_error():
    with pytest.raises(ValueError, match="no population group 'nobody'"):
        sandbank_scorecard(scenario=SCENARIO, group="nobody")
