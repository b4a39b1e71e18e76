"""The genrl command: each stage on tiny budgets, and one-line errors for bad input."""

import json

import pytest
import yaml

from genrl import RolloutDataset, WorldModel
from genrl.cli import main


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # keeps main() from raising torch's thread count


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrl: error: ") and "\n" not in err and "Traceback" not in err, err
    assert match in err, err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["collect", "NoSuchEnv-v9", "--steps", "10", "--path", "x"], "NoSuchEnv-v9"),
        (["train", "no-such-preset"], "expected a Gymnasium id or an env preset"),
        (["train", "cartpole", "--agent", "no-such-agent"], "unknown agent preset 'no-such-agent'"),
        (["collect", "Blackjack-v1", "--steps", "10", "--path", "x"], "unsupported observation space"),
        (["dream", "no/such/model"], "no such file"),
        (["eval", "no/such/run"], "no such file"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, argv, match)


def test_usage_errors_return_their_code(capsys):
    assert main(["collect", "CartPole-v1", "--steps", "0", "--path", "x"]) == 2
    assert "positive integer" in capsys.readouterr().err


def test_collect_fit_dream(capsys, tmp_path):
    data, model = tmp_path / "data", tmp_path / "model"
    assert main(["collect", "cartpole", "--steps", "300", "--path", str(data), "--no-progress"]) == 0
    assert RolloutDataset.load(data).num_steps == 300
    argv = ["fit", str(data), "--out", str(model), "--steps", "20", "--env", "cartpole", "--no-progress"]
    assert main(argv) == 0
    loaded = WorldModel.load(model)
    assert int(loaded.trained_steps) == 20
    assert loaded.config.termination_weight == 10.0  # taken from envs/cartpole.yaml
    assert list((model / "tb").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["dream", str(model), "--episodes", "2", "--horizon", "15", "--no-progress"]) == 0
    assert "2 dreams: return" in capsys.readouterr().out


def test_train_then_eval(capsys, tmp_path):
    preset = {
        "id": "CartPole-v1",
        "agent": "ppo",
        "collect": {"initial_steps": 200, "steps_per_iteration": 100},
        "world_model": {"fit_steps": 20, "refit_steps": 10, "hidden_dim": 16, "rnn_dim": 16},
        "dream": {"n_envs": 8, "horizon": 50},
        "train": {"iterations": 2, "dream_steps": 512, "eval_episodes": 2},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(preset))
    run_dir = tmp_path / "run"
    assert main(["train", str(path), "--run-dir", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Trained on 300 real env steps" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["real_steps"] for row in summary["history"]] == [200, 300]
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert "CartPole-v1: real return" in capsys.readouterr().out
    # --resume continues with the run's own settings; here it extends the run by one iteration.
    assert main(["train", "--resume", str(run_dir), "--iterations", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Trained on 400 real env steps" in captured.out
    assert "genrl: resuming" in captured.err and "genrl: iteration 2: collecting real steps" in captured.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["real_steps"] for row in summary["history"]] == [200, 300, 400]
    _one_line_error(capsys, ["train", "--resume", str(run_dir), "--seed", "0"], "got ['--seed']")
    _one_line_error(capsys, ["train"], "expected an ENV to train on, or --resume RUN_DIR")
