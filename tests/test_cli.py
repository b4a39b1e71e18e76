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
        (["anomaly", "no/such/model", "no/such/data"], "no such file"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, argv, match)


def test_usage_errors_return_their_code(capsys):
    assert main(["collect", "CartPole-v1", "--steps", "0", "--path", "x"]) == 2
    assert "argument --steps: expected a positive integer, got '0'" in capsys.readouterr().err


def test_collect_fit_dream(capsys, tmp_path):
    data, model = tmp_path / "data", tmp_path / "model"
    assert main(["collect", "cartpole", "--steps", "300", "--path", str(data), "--no-progress"]) == 0
    assert RolloutDataset.load(data).num_steps == 300
    argv = ["fit", str(data), "--out", str(model), "--steps", "20", "--env", "cartpole", "--no-progress"]
    assert main(argv) == 0
    loaded = WorldModel.load(model, device="cpu")
    assert int(loaded.trained_steps) == 20
    assert loaded.fit_config.termination_weight == 10.0  # taken from envs/cartpole.yaml
    assert list((model / "tb").glob("events.out.tfevents.*"))
    capsys.readouterr()
    assert main(["dream", str(model), "--episodes", "2", "--horizon", "15", "--no-progress"]) == 0
    assert "2 dreams: return" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:calibrate. .* held-out episodes set the thresholds"
)  # tiny data on purpose
def test_eval_and_anomaly_on_a_model_folder(capsys, tmp_path, cartpole_model, cartpole_dataset):
    model, data, normal, train = (tmp_path / name for name in ("model", "data", "normal", "train"))
    cartpole_model.save(model)
    held_out = cartpole_model.held_out_episodes(cartpole_dataset)
    held = cartpole_dataset.subset(held_out)
    training = cartpole_dataset.subset([i for i in range(len(cartpole_dataset)) if i not in held_out])
    for folder, source in ((data, cartpole_dataset), (normal, held), (train, training)):
        copy = RolloutDataset(source.observation_space, source.action_space, folder)
        for ep in source.episodes:
            copy.add(ep)
    _one_line_error(capsys, ["eval", str(model)], "expected --data DATA_DIR")
    assert (
        main(["eval", str(model), "--data", str(data), "--horizon", "5", "--out", str(tmp_path / "ev")]) == 0
    )
    assert "Open-loop error" in capsys.readouterr().out
    assert "held-out episodes of the dataset" in (tmp_path / "ev" / "report.md").read_text()
    assert list((tmp_path / "ev" / "tb").glob("events.out.tfevents.*"))
    argv = ["anomaly", str(model), str(data), "--normal", str(normal), "--out", str(tmp_path / "s.json")]
    assert main(argv) == 0
    assert "false-positive rate" in capsys.readouterr().out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert len(scores["episodes"]) == len(cartpole_dataset)
    assert [len(e["surprise"]) for e in scores["episodes"]] == [
        len(ep.action) for ep in cartpole_dataset.episodes
    ]
    # Calibrating on training episodes would set the threshold too low: refused in one line.
    _one_line_error(capsys, ["anomaly", str(model), str(data), "--normal", str(train)], "held-out")


@pytest.mark.slow
def test_train_then_eval(capsys, tmp_path):
    preset = {
        "id": "CartPole-v1",
        "agent": "ppo",
        "collect": {"initial_steps": 200, "steps_per_iteration": 100},
        # genrl 0.1.0's preset form: fit settings inside world_model, still read.
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
    assert main(["eval", str(run_dir), "--episodes", "2", "--horizon", "10"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1: real return" in out and "both baselines at every horizon up to 10" in out
    report = (run_dir / "eval" / "report.md").read_text()
    assert "2 fresh real episodes played by the policy" in report
    assert (run_dir / "eval" / "open_loop.png").is_file() and (run_dir / "eval" / "report.json").is_file()
    # --resume continues with the run's own settings; here it extends the run by one iteration.
    assert main(["train", "--resume", str(run_dir), "--iterations", "3", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Trained on 400 real env steps" in captured.out
    assert "genrl: resuming" in captured.err and "genrl: iteration 2: collecting real steps" in captured.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["real_steps"] for row in summary["history"]] == [200, 300, 400]
    _one_line_error(capsys, ["train", "--resume", str(run_dir), "--seed", "0"], "got ['--seed']")
    _one_line_error(capsys, ["train"], "expected an ENV to train on, or --resume RUN_DIR")


def test_plan_acts_in_the_real_env_with_a_planner(cartpole_model_path, capsys, tmp_path):
    argv = ["plan", str(cartpole_model_path), "--env", "CartPole-v1", "--episodes", "1", "--horizon", "5"]
    argv += ["--population", "16", "--elites", "2", "--iterations", "1"]
    argv += ["--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "episode 0: return" in out and "cem in CartPole-v1: return" in out
    assert any((tmp_path / "tb").iterdir())


def test_plan_without_an_env_is_one_line(cartpole_model_path, capsys):
    _one_line_error(capsys, ["plan", str(cartpole_model_path)], "--env: expected the real env")


def test_generate_writes_guided_episodes(cartpole_model_path, capsys, tmp_path):
    argv = ["generate", str(cartpole_model_path), "--out", str(tmp_path / "gen"), "--episodes", "4"]
    assert main([*argv, "--candidates", "4", "--horizon", "10"]) == 0
    data = RolloutDataset.load(tmp_path / "gen")
    assert len(data) == 4 and all(e.info["guide"] == "best-of-n" for e in data.episodes)
    assert "4 episodes" in capsys.readouterr().out
