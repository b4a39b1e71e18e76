"""The sample-efficiency harness (benchmarks/sample_efficiency.py) at tiny budgets: what it records."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def harness():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        path = BENCHMARKS / "sample_efficiency.py"
        spec = importlib.util.spec_from_file_location("sample_efficiency", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["sample_efficiency"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("sample_efficiency", None)
        sys.path.remove(str(BENCHMARKS))


def _history(steps, returns):
    return [
        {"real_steps": s, "return_mean": r, "return_std": 0.0, "wall_time_s": s / 100}
        for s, r in zip(steps, returns, strict=True)
    ]


def test_a_run_reaches_the_threshold_at_its_first_evaluation_above_it(harness):
    record = harness.summarize_run(
        "cartpole", "ppo", 3, 5000, 475.0, _history([100, 110, 121, 134], [20.0, 480.0, 300.0, 500.0])
    )
    assert record["reached"] and record["real_steps"] == 110 and record["wall_time_s"] == 1.1
    assert record["previous_eval_steps"] == 100 and record["evaluations"] == 4

    missed = harness.summarize_run("cartpole", "ppo", 3, 5000, 475.0, _history([100, 110], [20.0, 30.0]))
    assert not missed["reached"] and missed["real_steps"] is None and missed["wall_time_s"] is None


def test_aggregate_counts_a_missed_run_at_its_budget(harness):
    runs = [
        harness.summarize_run("cartpole", "genrl", s, 900, 475.0, _history([s * 100 + 200], [500.0]))
        for s in range(4)
    ]
    runs.append(harness.summarize_run("cartpole", "genrl", 4, 900, 475.0, _history([900], [100.0])))
    (row,) = harness.aggregate(runs)
    assert row["seeds"] == 5 and row["reached"] == 4
    steps = [200, 300, 400, 500, 900]  # the missed run counts at its budget: a lower bound
    assert row["median_steps"] == 400.0
    assert row["iqm_steps"] == pytest.approx(np.mean([300, 400, 500]))
    low, high = row["iqm_steps_ci95"]
    assert min(steps) <= low <= row["iqm_steps"] <= high <= max(steps)
    assert row["per_seed_steps"] == [200, 300, 400, 500, None]
    assert row["worst_resolution"] == 1.0  # each hit was the first evaluation: known only up to it


def test_baseline_run_evaluates_on_a_geometric_grid(harness):
    record = harness.run_one(("cartpole", "ppo", 1, True, {}))
    steps = [row["real_steps"] for row in record["history"]]
    assert record["method"] == "ppo" and record["budget_steps"] >= harness.QUICK_BUDGET
    assert steps[0] >= harness.FIRST_EVAL and steps[-1] <= record["budget_steps"]
    # Each evaluation comes at most 10% after the one before, give or take one step of 8 envs.
    for earlier, later in zip(steps, steps[1:], strict=False):
        assert earlier < later <= math.ceil(earlier * harness.GRID_RATIO) + 8
    walls = [row["wall_time_s"] for row in record["history"]]
    assert walls == sorted(walls) and walls[0] >= 0
    first_hit = next((row for row in record["history"] if row["return_mean"] >= 475.0), None)
    assert record["reached"] == (first_hit is not None)
    if first_hit is not None:
        assert record["real_steps"] == first_hit["real_steps"] == steps[-1]  # training stopped there


def test_genrl_run_uses_the_loop_and_leaves_out_evaluation_time(harness):
    record = harness.run_one(("cartpole", "genrl", 0, True, {}))
    (row,) = record["history"]
    assert record["method"] == "genrl" and row["real_steps"] == harness.QUICK_GENRL["initial_steps"]
    assert 0 < row["wall_time_s"] < record["process_time_s"]
    assert set(row) >= {"return_mean", "return_std", "dream_return_mean"}


def test_a_genrl_hit_at_the_first_evaluation_is_resolved_by_runs_from_less_data(harness, monkeypatch):
    calls = []

    def fake_history(source, task, seed, overrides):  # succeeds from 165 random steps or more
        steps = overrides.get("initial_steps", 200)
        calls.append(steps)
        return _history([steps], [500.0 if steps >= 165 else 100.0])

    monkeypatch.setattr(harness, "_genrl_history", fake_history)
    record = harness.run_genrl("cartpole", seed=0)
    assert calls == [200, 181, 164]  # each rerun from 10% less data, until one fails
    assert record["reached"] and record["real_steps"] == 181 and record["previous_eval_steps"] == 164
    assert record["wall_time_s"] == 1.81 and len(record["probes"]) == 2

    calls.clear()
    monkeypatch.setattr(harness, "_genrl_history", lambda *_: _history([200, 220], [100.0, 500.0]))
    record = harness.run_genrl("cartpole", seed=0)
    assert record["real_steps"] == 220 and record["previous_eval_steps"] == 200 and record["probes"] == []


def test_no_preset_runs_the_bare_env_id_with_no_overrides(harness, monkeypatch):
    sources = []

    def fake_history(source, task, seed, overrides):
        sources.append((source, task, overrides))
        return _history([200, 220], [100.0, 500.0])

    monkeypatch.setattr(harness, "_genrl_history", fake_history)
    record = harness.run_genrl("pendulum", seed=0, preset=False)
    assert sources == [("Pendulum-v1", "pendulum", {})] and record["method"] == "genrl-no-preset"
    harness.run_genrl("pendulum", seed=0)
    assert sources[-1][0] == "pendulum"  # the preset, by name


def test_settings_given_with_set_reach_every_genrl_run_and_its_record(harness, monkeypatch):
    settings = harness.parse_settings(["train.iterations=60", "dream.support=null", "agent=dqn"])
    assert settings == {"train": {"iterations": 60}, "dream": {"support": None}, "agent": "dqn"}
    seen = []

    def fake_history(source, task, seed, overrides):
        seen.append(overrides)
        return _history([200], [-1000.0])  # below the threshold: no reruns from less data

    monkeypatch.setattr(harness, "_genrl_history", fake_history)
    record = harness.run_genrl("pendulum", seed=0, settings=settings)
    assert seen == [settings] and record["settings"] == settings
    with pytest.raises(SystemExit, match="--set: expected KEY=VALUE"):
        harness.parse_settings(["iterations"])


def test_targets_hold_the_median_exact_while_fewer_than_half_the_runs_missed(harness):
    def rows(missed):
        runs = [
            harness.summarize_run("pendulum", "genrl", s, 2000, -200.0, _history([800], [-150.0]))
            for s in range(5 - missed)
        ]
        runs += [
            harness.summarize_run("pendulum", "genrl", s, 2000, -200.0, _history([2000], [-300.0]))
            for s in range(5 - missed, 5)
        ]
        runs += [
            harness.summarize_run("pendulum", "sac", s, 20000, -200.0, _history([4000], [-150.0]))
            for s in range(5)
        ]
        return {c["target"]: c for c in harness.targets(harness.aggregate(runs))}

    two_missed = rows(2)
    assert two_missed["pendulum: genrl median real steps"]["met"] == "yes"  # the median is 800 either way
    assert two_missed["pendulum: sac median / genrl median"]["measured"] == "5.0"
    three_missed = rows(3)  # the median is a missed run's budget: only a lower bound
    assert three_missed["pendulum: genrl median real steps"]["met"] == "NO"
    assert three_missed["pendulum: sac median / genrl median"]["met"] == "NO"


def test_the_roofline_counts_every_matmul_of_the_dream_step(cartpole_model):
    """benchmarks/throughput.py reads the layer shapes from the model's modules: it must follow them."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("throughput", BENCHMARKS / "throughput.py")
        throughput = importlib.util.module_from_spec(spec)
        sys.modules["throughput"] = throughput  # its dataclasses look their module up there
        spec.loader.exec_module(throughput)
    finally:
        sys.modules.pop("throughput", None)
        sys.path.remove(str(BENCHMARKS))
    layers = throughput.step_matmuls(cartpole_model)
    member = cartpole_model.dynamics[0]
    linear = sum(m.in_features * m.out_features for m in member.modules() if hasattr(m, "in_features"))
    gru = member.rnn
    gates = 3 * gru.hidden_size * (gru.input_size + gru.hidden_size)
    assert sum(layer["flops"] for layer in layers) == 2 * (linear + gates)
    assert layers[0]["layer"].startswith("rnn_in") and layers[-1]["layer"].startswith("termination_head")


def test_the_largest_dream_gap_is_reported_against_its_target(harness):
    history = _history([200, 220], [-400.0, -300.0])
    history[0]["dream_return_mean"] = 800.0  # 3x the real return's magnitude away
    history[1]["dream_return_mean"] = -3_600.0  # 11x away: over the limit of 10
    runs = [harness.summarize_run("pendulum", "genrl", 0, 220, -200.0, history)]
    (row,) = harness.aggregate(runs)
    assert row["max_dream_gap"] == pytest.approx(11.0)
    [check] = [c for c in harness.targets([row]) if "dream - real" in c["target"]]
    assert check["met"] == "NO" and check["measured"] == "11.0"
    history[1]["dream_return_mean"] = -400.0
    (row,) = harness.aggregate([harness.summarize_run("pendulum", "genrl", 0, 220, -200.0, history)])
    [check] = [c for c in harness.targets([row]) if "dream - real" in c["target"]]
    assert check["met"] == "yes" and row["max_dream_gap"] == pytest.approx(3.0)


def test_the_dream_gap_is_measured_in_the_tasks_return_scale_near_a_zero_real_return(harness):
    # A real return near 0 would make any dream look infinitely far; the threshold sets the scale.
    row = {"return_mean": 11.3, "dream_return_mean": 728.0}
    assert harness.dream_gap(row, 200.0) == pytest.approx((728.0 - 11.3) / 200.0)
    assert harness.dream_gap({"return_mean": -150.0, "dream_return_mean": -100.0}, -110.0) == pytest.approx(
        50.0 / 150.0
    )
    assert harness.dream_gap({"return_mean": 0.0, "dream_return_mean": 0.5}, 0.0) == pytest.approx(0.5)
