"""The PettingZoo adapter (lab/pettingzoo.py): the API, determinism, and actions that really
go through the kernel — executed when they can be, refused visibly when not."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import parallel_api_test  # noqa: E402

from sandbank.audit.verify import verify_log  # noqa: E402
from sandbank.extras import MissingExtra  # noqa: E402
from sandbank.lab.pettingzoo import OBS_FIELDS, SandbankParallelEnv  # noqa: E402

SMALL = {
    "name": "rl_small", "seed": 3, "ticks": 8, "assets": ["CRD", "WGT"],
    "markets": [{"asset": "WGT", "quote": "CRD"}],
    "endowment": {"CRD": 100_000, "WGT": 50},
    "owners": [{"name": "ada", "kind": "human"}, {"name": "lab", "kind": "organisation"}],
    "population": [
        {"policy": "zi_trader", "count": 3, "owner": "ada"},
        {"policy": "market_maker", "count": 1, "owner": "ada", "params": {"spread": 4, "size": 5}},
        # the RL-controlled agents: a small budget, so an order can be over it
        {"policy": "zi_trader", "name": "learner", "count": 2, "owner": "lab",
         "endowment": {"CRD": 300}},
    ],
}
HOLDINGS = OBS_FIELDS.index("holdings")


def env_of(**kw):
    return SandbankParallelEnv(SMALL, agents=kw.pop("agents", "learner"), **kw)


def test_parallel_api():
    env = env_of(ticks=5)
    try:
        parallel_api_test(env, num_cycles=10)
    finally:
        env.close()
    default = SandbankParallelEnv(SMALL, ticks=2)  # default: every zi_trader agent
    assert default.possible_agents == ["zi_trader-0", "zi_trader-1", "zi_trader-2",
                                       "learner-0", "learner-1"]
    assert env_of(agents=[5, "learner-1"]).possible_agents == ["learner-0", "learner-1"]


def rollout(env, seed, steps):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [sorted((a, o.tolist()) for a, o in obs.items())]
    for _ in range(steps):
        actions = {a: rng.integers(0, env.action_space(a).nvec) for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        trace.append((sorted((a, o.tolist()) for a, o in obs.items()), sorted(rewards.items()),
                      sorted(terms.items()), sorted(truncs.items()),
                      sorted((a, i["refused"], i["action"]) for a, i in infos.items())))
    return trace


def test_deterministic():
    a, b = env_of(ticks=6), env_of(ticks=6)
    try:
        first = rollout(a, 11, 6)
        assert first == rollout(b, 11, 6)  # two environments, same seed and actions
        assert first == rollout(a, 11, 6)  # and a reset of the same one
        assert any(r != 0 for step in first[1:] for _, r in step[1])  # something happened
    finally:
        a.close()
        b.close()


def test_actions_go_through_the_kernel():
    env = env_of(offsets=60)
    try:
        obs, _ = env.reset(seed=3)
        aid = env.ids["learner-0"]
        ledger = env.kernel.state.ledger
        before = ledger.account_of(aid, "WGT").balance
        assert obs["learner-0"][HOLDINGS] == before == 50
        env.step({})  # everyone else quotes; the learners hold
        bought = None
        for _ in range(5):  # a buy 60 above the mid crosses the spread: it fills
            obs, _, _, _, infos = env.step({"learner-0": [1, 120, 0], "learner-1": None})
            held = ledger.account_of(aid, "WGT").balance
            if held > before:
                bought = infos["learner-0"]
                break
        assert bought is not None, "the learner's buy never filled"
        assert obs["learner-0"][HOLDINGS] == held
        placed = [d for d in bought["entries"] if d["kind"] == "order_placed"]
        assert placed and placed[0]["actor"] == aid and placed[0]["fills"]
        assert bought["feedback"][-1] == ("place_order", "ok")

        # over budget: 10 units at ~100 with 300 CRD — the kernel refuses, and says why
        _, _, _, _, infos = env.step({"learner-1": [1, 60, 9]})
        refused = infos["learner-1"]["refused"]
        assert refused and refused[0]["action"] == "place_order" and refused[0]["reason"]
        assert any(d["kind"] == "rejected" for d in infos["learner-1"]["entries"])
        assert ledger.account_of(env.ids["learner-1"], "WGT").balance == 50

        # malformed: refused by the environment, never dropped in silence
        _, _, _, _, infos = env.step({"learner-0": [9, 0, 0], "learner-1": [1, 2]})
        for agent, why in (("learner-0", "kind 9"), ("learner-1", "shape")):
            (r,) = infos[agent]["refused"]
            assert r["reason"] == "malformed_action" and why in r["message"]
            assert infos[agent]["action"] is None
        env.kernel.state.check_invariants()
        assert verify_log(env.kernel.store).ok  # every action signed, logged, verifiable
    finally:
        env.close()


def test_episode_ends():
    frozen = {**SMALL, "interventions": [{"tick": 2, "kind": "set_agent_status", "group": "learner",
                                           "status": "frozen", "reason": "test"}]}
    env = SandbankParallelEnv(frozen, agents="learner", terminate_on=("frozen",))
    try:
        env.reset()
        _, _, terms, _, _ = env.step({})
        assert not any(terms.values()) and len(env.agents) == 2
        _, _, terms, truncs, _ = env.step({})
        assert all(terms.values()) and not any(truncs.values()) and env.agents == []
        with pytest.raises(RuntimeError, match="reset"):
            env.step({})
        env.reset()  # a fresh economy
        assert len(env.agents) == 2
    finally:
        env.close()
    env = env_of(ticks=2)
    try:
        env.reset()
        env.step({})
        with pytest.raises(ValueError, match="no agent 'nobody'"):
            env.step({"nobody": [0, 0, 0]})
        _, _, _, truncs, _ = env.step({})
        assert all(truncs.values()) and env.agents == []
    finally:
        env.close()


def test_bad_input():
    with pytest.raises(ValueError, match="neither a group"):
        env_of(agents="nobody")
    with pytest.raises(ValueError, match="no agent with id 99"):
        env_of(agents=99)
    with pytest.raises(ValueError, match="no market in 'XYZ'"):
        env_of(asset="XYZ")
    with pytest.raises(ValueError, match="max_qty"):
        env_of(max_qty=0)
    with pytest.raises(ValueError, match="render_mode"):
        env_of(render_mode="video")


def test_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pettingzoo", None)
    with pytest.raises(MissingExtra, match=r"sandbank\[rl\]"):
        env_of()


def test_lab_does_not_import_pettingzoo():
    code = ("import sys, sandbank, sandbank.lab.runner, sandbank.lab.api, sandbank.cli; "
            "assert 'pettingzoo' not in sys.modules and 'gymnasium' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
