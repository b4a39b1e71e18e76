"""Finished runs as TensorBoard serves them: a real server on loopback, asked over HTTP as its web
page asks, for the runs, their scalars and their hyperparameters (the hparams plugin)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from torch.utils.tensorboard import SummaryWriter

import genrl
from genrl.training.config import TrainConfig
from genrl.training.hparams import METRICS, hparam_values, log_hparams

# Two evaluations, a few seconds on one core; target_return is above CartPole's 500, so both happen.
TINY_RUN = dict(
    agent="ppo",
    seed=0,
    progress=False,
    iterations=2,
    initial_steps=100,
    steps_per_iteration=30,
    fit_steps=20,
    refit_steps=10,
    dream_steps=256,
    eval_episodes=2,
    n_envs=8,  # the ppo preset's 32 steps per env fill its batch of 256
    horizon=20,
    target_return=501,
    world_model={"hidden_dim": 16, "rnn_dim": 16, "batch_size": 4, "seq_len": 4, "open_loop_steps": 2},
)
# Two runs that differ in one setting, as TensorBoard names them under --logdir (their tb folders).
DREAM_STEPS = {"cartpole-seed0": 256, "cartpole-dream512": 512}
RUNS = [f"{name}/tb" for name in DREAM_STEPS]
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A runs folder with the two runs."""
    runs = tmp_path_factory.mktemp("runs")
    for name, steps in DREAM_STEPS.items():
        genrl.train_in_imagination("CartPole-v1", run_dir=runs / name, **{**TINY_RUN, "dream_steps": steps})
    return runs


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory) -> Iterator[str]:
    """A real TensorBoard over the runs folder on 127.0.0.1 (a free port); its URL."""
    log = tmp_path_factory.mktemp("tensorboard") / "stderr.txt"
    argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1"]
    argv += ["--port", "0", "--load_fast", "false", "--reload_interval", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        url = _wait(lambda: _served_url(log.read_text(), proc), "TensorBoard to serve")
        # Loaded, not only listed: each run's tags from both its event files (genrl's and SB3's).
        _wait(lambda: _has_tags(url), f"{RUNS} and their scalars to be served at {url}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_server_lists_the_runs_and_their_scalars(server, runs):
    assert set(RUNS) <= set(_get(server, "data/runs"))
    all_tags = _get(server, "data/plugin/scalars/tags")
    for run in RUNS:
        tags = set(all_tags[run])
        assert {"real/eval_return_mean", "real/steps", "dream/eval_return_mean"} <= tags
        assert any(tag.startswith("rollout/") for tag in tags), f"SB3's scalars, in the same run: {tags}"
        history = _summary(runs, run)["history"]
        steps = _get(server, "data/plugin/scalars/scalars", run=run, tag="real/steps")
        assert [(step, value) for _, step, value in steps] == [(r["real_steps"],) * 2 for r in history]


def test_the_hparams_plugin_serves_the_runs_settings_and_final_metrics(server, runs):
    expected = {run: hparam_values(TrainConfig.from_dict(_summary(runs, run)["config"])) for run in RUNS}
    names = set(expected[RUNS[0]])
    assert names == set(expected[RUNS[1]])
    assert {"train.dream_steps", "seed", "collect.initial_steps", "fit.steps", "dream.horizon"} <= names

    # As TensorBoard's hparams dashboard asks (tf-hparams-dashboard: POST, a JSON body).
    experiment = _post(server, "data/plugin/hparams/experiment", {"experimentName": "", "hparamsLimit": 1000})
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(infos) == names
    # The one setting that differs between the runs comes first: the dashboard shows it by default.
    assert experiment["hparamInfos"][0]["name"] == "train.dream_steps"
    assert [name for name, info in infos.items() if info.get("differs")] == ["train.dream_steps"]
    assert infos["train.dream_steps"]["domainInterval"] == {"minValue": 256, "maxValue": 512}
    assert infos["seed"]["type"] == "DATA_TYPE_FLOAT64" and infos["env_id"]["type"] == "DATA_TYPE_STRING"
    assert set(METRICS) <= {m["name"]["tag"] for m in experiment["metricInfos"]}

    columns = [{"hparam": name, "includeInResult": True} for name in sorted(names)]
    columns += [{"metric": {"tag": tag}, "includeInResult": True} for tag in METRICS]
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": columns,
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = _post(server, "data/plugin/hparams/session_groups", request)["sessionGroups"]
    # One group per run, named after it (its Trial ID), holding the run's own session.
    assert sorted(g["name"] for g in groups) == sorted(RUNS)
    for group in groups:
        run = group["name"]
        assert [s["name"] for s in group["sessions"]] == [run]
        summary = _summary(runs, run)
        config, final = summary["config"], summary["history"][-1]
        hparams = group["hparams"]
        assert hparams == expected[run]
        assert (
            hparams["train.dream_steps"]
            == config["train"]["dream_steps"]
            == DREAM_STEPS[run.removesuffix("/tb")]
        )
        assert hparams["seed"] == config["seed"] == 0
        assert hparams["env_id"] == "CartPole-v1" and hparams["agent"] == "ppo"
        assert hparams["train.target_return"] == 501 and hparams["world_model.latent_dim"] == "null"
        metrics = {m["name"]["tag"]: m for m in group["metricValues"] if m["name"]["tag"] in METRICS}
        assert metrics["real/eval_return_mean"]["value"] == pytest.approx(final["eval_return_mean"], rel=1e-6)
        assert metrics["real/steps"]["value"] == final["real_steps"] == 100 + 30
        assert metrics["dream/eval_return_mean"]["value"] == pytest.approx(
            final["dream_return_mean"], rel=1e-6
        )
        assert {m["trainingStep"] for m in metrics.values()} == {final["real_steps"]}


def test_a_run_logs_its_hparams_once_and_a_resumed_run_not_again(runs, tmp_path):
    run = runs / "cartpole-seed0"
    assert _hparams_events(run) == 1
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    history = json.loads((copy / "summary.json").read_text())["history"]
    genrl.train_in_imagination("CartPole-v1", run_dir=copy, **TINY_RUN)  # finished: resumes, adds nothing
    assert len(list((copy / "tb").glob("events.out.tfevents.*"))) > len(list((run / "tb").glob("events.*")))
    assert _hparams_events(copy) == 1
    assert json.loads((copy / "summary.json").read_text())["history"] == history


def test_log_hparams_writes_the_settings_into_the_writers_own_file(tmp_path):
    cfg = TrainConfig.from_dict(
        {"env_id": "CartPole-v1", "seed": 3},
        agent={"algorithm": "ppo", "hyperparameters": {"n_steps": 16, "policy_kwargs": {"net_arch": [8]}}},
        collect={"planner": {"horizon": 4}},
        dream_steps=64,
        train={"target_return": None},
    )
    writer = SummaryWriter(str(tmp_path))
    log_hparams(writer, cfg)
    writer.close()
    [events] = tmp_path.iterdir()  # no sub-run, unlike SummaryWriter.add_hparams
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert acc.Tags()["tensors"] == [metadata.SESSION_START_INFO_TAG]
    [start] = acc.Tensors(metadata.SESSION_START_INFO_TAG)
    content = acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    info = metadata.parse_session_start_info_plugin_data(content)
    values = dict(info.hparams)
    assert start.step == 0 and info.group_name == "" and info.start_time_secs > 0
    assert set(values) == set(hparam_values(cfg))
    assert values["agent.algorithm"].string_value == "ppo"
    assert values["agent.hyperparameters.n_steps"].number_value == 16
    assert values["agent.hyperparameters.policy_kwargs.net_arch"].string_value == "[8]"
    assert values["collect.planner"].string_value == '{"horizon": 4}'
    assert values["train.dream_steps"].number_value == 64 and values["seed"].number_value == 3
    assert values["train.target_return"].string_value == "null"
    assert "agent" not in values and "format" not in values and "version" not in values


def test_hparam_values_are_bools_numbers_or_strings():
    values = hparam_values(TrainConfig.from_dict({"env_id": "CartPole-v1"}, epsilon=0.25))
    assert values["collect.epsilon"] == 0.25 and values["agent"] == "auto" and values["seed"] == "null"
    assert all(type(v) in (bool, int, float, str) for v in values.values())
    assert {"collect.initial_steps", "fit.steps", "dream.horizon", "train.dream_steps", "env_id"} <= set(
        values
    )


# ---- helpers ---------------------------------------------------------------------------------


def _wait(ready, what: str):
    """``ready()``'s first truthy result, polled every 0.1 s, at most TIMEOUT_S seconds."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        result = ready()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {TIMEOUT_S} s waiting for {what}")


def _served_url(stderr: str, proc: subprocess.Popen) -> str | None:
    if proc.poll() is not None:
        raise AssertionError(f"TensorBoard exited with {proc.returncode}:\n{stderr}")
    for word in stderr.split():
        if word.startswith("http://127.0.0.1:"):
            return word
    return None


def _has_tags(url: str) -> bool:
    served = _get(url, "data/plugin/scalars/tags")
    tags = [served.get(run, {}) for run in RUNS]
    return all("real/steps" in t and any(tag.startswith("rollout/") for tag in t) for t in tags)


def _summary(runs: Path, run: str) -> dict:
    return json.loads((runs / run.removesuffix("/tb") / "summary.json").read_text())


def _get(url: str, route: str, **query: str):
    full = url + route + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(full, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, route: str, body: dict):
    request = urllib.request.Request(
        url + route, data=json.dumps(body).encode(), headers={"Content-Type": "text/plain"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _hparams_events(run_dir: Path) -> int:
    """The hparams summaries in the run's event files, all files together."""
    count = 0
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        count += sum(len(acc.Tensors(tag)) for tag in acc.Tags()["tensors"] if tag.startswith("_hparams_/"))
    return count
