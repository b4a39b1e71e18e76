"""Environment synthesis: packages, their start states, reward overrides, cards and the CLI."""

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from genrl import DreamEnv, DreamVecEnv, GenrlError, WorldModel
from genrl.cli import main
from genrl.dream.package import is_package, load_package
from genrl.guidance.synthesis import synthesize
from genrl.training.agents import agent_preset, load_policy, make_agent

SCALE = {"type": "scale", "factor": 2.0, "offset": 0.5}


def balance(obs: np.ndarray) -> np.ndarray:
    """A hand-made CartPole policy: push the cart under the falling pole (500 from real resets)."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # keeps main() from raising torch's thread count


@pytest.fixture(scope="module")
def package(cartpole_model, cartpole_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthesis") / "package"
    return synthesize(
        cartpole_model,
        out,
        dataset=cartpole_dataset,
        env="CartPole-v1",
        horizon=40,
        temperature=0.5,
        start="perturbed",
        perturbation=0.3,
        n_starts=16,
        reward=SCALE,
        seed=0,
        progress=False,
    )


def _standardised_distance(model: WorldModel, starts: np.ndarray, real: np.ndarray) -> np.ndarray:
    """For each start, the L-infinity distance to the nearest real state, in the data's stds."""
    std = model.obs_std.numpy()
    return (np.abs(starts[:, None] - real[None]) / std).max(-1).min(-1)


# ---- a package is an environment ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # the checker's advice on unbounded spaces
def test_gymnasium_make_opens_a_package_with_its_settings(package, cartpole_model):
    assert is_package(package.path) and not is_package(package.path / "model")
    env = gym.make("genrl/Dream-v0", model=str(package.path))
    check_env(env.unwrapped)
    dream = env.unwrapped.dream
    assert (dream.horizon, dream.temperature) == (40, 0.5)
    np.testing.assert_array_equal(dream.starts.numpy(), package.starts)
    assert env.metadata["genrl_card"] == package.summary == env.unwrapped.card["summary"]
    assert "\n" not in package.summary and "CartPole-v1" in package.summary
    # Every reset starts from one of the package's start states (encoded and decoded again).
    with torch.no_grad():
        expected = cartpole_model.decode(cartpole_model.encode(torch.as_tensor(package.starts))).numpy()
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.abs(expected - obs).max(1).min() < 1e-5
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert steps <= 40 and (terminated or steps == 40)
    # Arguments given still win over the package's.
    mine = gym.make("genrl/Dream-v0", model=str(package.path), horizon=7, temperature=0.0).unwrapped
    assert (mine.dream.horizon, mine.dream.temperature) == (7, 0.0)
    vec = DreamVecEnv(package.path, 4, seed=0)
    assert vec.metadata["genrl_card"] == package.summary and vec.dream.horizon == 40
    assert vec.reset().shape == (4, 4)


def test_the_card_says_where_the_model_came_from_and_how_good_it_is(
    package, cartpole_model, cartpole_dataset
):
    card = json.loads((package.path / "card.json").read_text())
    assert card["format"] == "genrl.env-card" and card["version"] == 1
    assert card["source_env"] == "CartPole-v1" and card["summary"] == package.summary
    trained = set(cartpole_model.trained_episodes.tolist())
    digests = cartpole_dataset.episode_digests()
    steps = sum(ep.length for ep, d in zip(cartpole_dataset.episodes, digests, strict=True) if d in trained)
    assert card["real_data"] == {
        "episodes": len(trained),
        "steps": steps,
        "fit_steps": int(cartpole_model.trained_steps),
    }
    assert card["settings"]["start"] == {"mode": "perturbed", "count": 16, "perturbation": 0.3}
    assert card["settings"]["reward"] == SCALE and card["settings"]["horizon"] == 40
    errors = card["evaluation"]["open_loop_error"]
    assert set(errors) == {"model", "repeat last", "linear"} and errors["model"]["h1"] > 0
    assert card["evaluation"]["held_out_episodes"] == len(cartpole_model.held_out_episodes(cartpole_dataset))
    assert card["evaluation"]["dream_to_real_gap"] is None  # no agent was given
    markdown = (package.path / "CARD.md").read_text()
    assert package.summary in markdown and "| model |" in markdown
    meta = json.loads((package.path / "package.json").read_text())
    assert meta["format"] == "genrl.env-package" and meta["version"] == 1
    assert meta["settings"]["source_env"] == "CartPole-v1" and meta["settings"]["start"] == "perturbed"


def test_an_unevaluated_package_says_so(cartpole_model, tmp_path):
    result = synthesize(cartpole_model, tmp_path / "p", n_starts=4, seed=0, progress=False)
    assert result.card["evaluation"] is None and "not evaluated" in result.summary
    assert result.card["real_data"]["steps"] is None  # no dataset to count the steps in
    assert "Not evaluated: no held-out real data or env was given" in (tmp_path / "p" / "CARD.md").read_text()


# ---- start states -------------------------------------------------------------------------------


def test_real_starts_are_the_datasets_reset_states(cartpole_model, cartpole_dataset, tmp_path):
    real = cartpole_dataset.start_states()
    few = synthesize(
        cartpole_model, tmp_path / "a", dataset=cartpole_dataset, n_starts=10, seed=0, progress=False
    )
    assert len(few.starts) == 10 and _standardised_distance(cartpole_model, few.starts, real).max() == 0
    assert len({s.tobytes() for s in few.starts}) == 10
    # Asked for more than there are: each real start once. Without a dataset: the model's own.
    every = synthesize(cartpole_model, tmp_path / "b", n_starts=10_000, seed=0, progress=False)
    own = cartpole_model.start_states.numpy()
    assert (
        len(every.starts) == len(own) and _standardised_distance(cartpole_model, every.starts, own).max() == 0
    )


def test_perturbed_starts_stay_within_the_radius(package, cartpole_model, cartpole_dataset, tmp_path):
    real = cartpole_dataset.start_states()
    distance = _standardised_distance(cartpole_model, package.starts, real)
    assert distance.max() <= 0.3 + 1e-5 and distance.min() > 0.01
    assert cartpole_model.observation_space.contains(package.starts[0])
    again = synthesize(cartpole_model, tmp_path / "a", dataset=cartpole_dataset, start="perturbed",
                       perturbation=0.3, n_starts=16, seed=0, progress=False)  # fmt: skip
    np.testing.assert_array_equal(again.starts, package.starts)  # an int seed reproduces
    fresh = [synthesize(cartpole_model, tmp_path / f"n{i}", start="perturbed", n_starts=4, progress=False)
             for i in range(2)]  # fmt: skip
    assert not np.array_equal(fresh[0].starts, fresh[1].starts)  # None draws fresh entropy


def test_prior_starts_of_the_identity_encoder_match_the_datas_statistics(cartpole_dataset, tmp_path):
    space = cartpole_dataset.observation_space
    model = WorldModel(
        space, cartpole_dataset.action_space, encoder="identity", hidden_dim=8, rnn_dim=8, seed=0
    )
    mean, std = np.array([0.1, -0.2, 0.01, 0.3]), np.array([0.2, 0.5, 0.05, 0.8])
    model.obs_mean.copy_(torch.as_tensor(mean)), model.obs_std.copy_(torch.as_tensor(std))
    result = synthesize(model, tmp_path / "p", start="prior", n_starts=4000, seed=0, progress=False)
    assert result.starts.shape == (4000, 4) and result.card["settings"]["start"]["mode"] == "prior"
    assert np.all(np.abs(result.starts.mean(0) - mean) < 4 * std / np.sqrt(4000))
    np.testing.assert_allclose(result.starts.std(0), std, rtol=0.05)


# ---- rewards ------------------------------------------------------------------------------------


def _rewards(env: DreamEnv, actions, seed: int = 0):
    env.reset(seed=seed)
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((obs, reward))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize(
    "reward, expected",
    [
        ({"type": "constant", "value": 1.0}, lambda obs, learned: 1.0),
        (SCALE, lambda obs, learned: 2.0 * learned + 0.5),
        ({"type": "linear", "weights": [0, 0, -1, 0.5], "bias": 1}, lambda o, learned: 1 - o[2] + 0.5 * o[3]),
        (lambda obs, a, nxt, r: -nxt[:, 0].abs(), lambda obs, learned: -abs(obs[0])),
    ],
    ids=["constant", "scale", "linear", "callable"],
)
def test_reward_overrides_pay_as_declared(cartpole_model, cartpole_dataset, reward, expected):
    actions = [0, 1, 1, 0, 1, 0, 0, 1] * 3
    learned = _rewards(DreamEnv(cartpole_model, cartpole_dataset, horizon=20), actions)
    overridden = _rewards(DreamEnv(cartpole_model, cartpole_dataset, horizon=20, reward=reward), actions)
    assert len(learned) == len(overridden) > 1  # the same dream: the override changes rewards only
    for (obs, r), (obs2, r2) in zip(learned, overridden, strict=True):
        np.testing.assert_array_equal(obs, obs2)
        assert r2 == pytest.approx(expected(obs, r), abs=1e-5)


@pytest.mark.parametrize(
    "reward, match",
    [
        ({"type": "bonus"}, "expected a mapping with a type among"),
        ("constant", "expected a mapping with a type among"),
        ({"type": "constant"}, "reward 'constant': expected the fields type, value"),
        (
            {"type": "scale", "factor": 1, "power": 2},
            "reward 'scale': expected the fields type, factor, offset",
        ),
        ({"type": "scale", "factor": "x"}, "reward factor: expected a number"),
        ({"type": "linear", "weights": [1, 2]}, "reward weights: expected a list of 4 numbers"),
        ({"type": "constant", "value": float("nan")}, "reward value: expected a number"),
    ],
)
def test_a_bad_reward_override_is_one_line(cartpole_model, tmp_path, reward, match):
    with pytest.raises(GenrlError, match=match) as err:
        synthesize(cartpole_model, tmp_path / "p", reward=reward, n_starts=2, seed=0, progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "p").exists()


def test_a_reward_function_must_give_one_reward_per_dream(cartpole_model):
    env = DreamVecEnv(cartpole_model, 3, reward=lambda obs, a, nxt, r: r[:2], seed=0)
    env.reset()
    with pytest.raises(GenrlError, match=r"reward_fn: expected \(3,\) rewards, got shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.int64))


# ---- the files ----------------------------------------------------------------------------------


def test_a_failed_write_leaves_no_package(cartpole_model, tmp_path, monkeypatch):
    import genrl.dream.package as package_module

    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(package_module, "write_npz", full_disk)  # after the model is written
    with pytest.raises(OSError, match="No space left"):
        synthesize(cartpole_model, tmp_path / "p", n_starts=4, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the package nor its temporary folder


def test_an_existing_folder_is_kept_unless_a_package_is_overwritten(package, cartpole_model, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(GenrlError, match="already exists: expected a new folder for the package"):
            synthesize(cartpole_model, tmp_path / "mine", overwrite=overwrite, n_starts=2, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    copy = tmp_path / "copy"
    shutil.copytree(package.path, copy)
    result = synthesize(cartpole_model, copy, overwrite=True, horizon=9, n_starts=2, seed=0, progress=False)
    assert load_package(copy).settings.horizon == 9 and len(result.starts) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "mine"]


def _damage(package_path, tmp_path, file: str, change) -> str:
    copy = tmp_path / "damaged"
    shutil.copytree(package_path, copy)
    change(copy / file)
    return str(copy)


@pytest.mark.parametrize(
    "file, change, match",
    [
        (
            "package.json",
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "version": 99})),
            r"genrl\.env-package version 99; this genrl reads version 1",
        ),
        (
            "package.json",
            lambda p: p.write_text("{not json"),
            "expected a genrl environment package .* not valid JSON",
        ),
        (
            "package.json",
            lambda p: p.write_text(
                json.dumps({"format": "genrl.env-package", "version": 1, "settings": {"horizon": 0}})
            ),
            "package horizon: expected an integer >= 1, got 0",
        ),
        (
            "card.json",
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "version": 2})),
            r"genrl\.env-card version 2; this genrl reads version 1",
        ),
        (
            "starts.npz",
            lambda p: np.savez(p, starts=np.zeros((3, 5), np.float32)),
            r"starts: expected a finite array of shape \(N, 4\)",
        ),
        (
            "starts.npz",
            lambda p: p.write_bytes(b"garbage"),
            "expected the start states of a genrl environment package",
        ),
    ],
)
def test_a_damaged_or_newer_package_fails_in_one_line(package, tmp_path, file, change, match):
    path = _damage(package.path, tmp_path, file, change)
    for open_it in (load_package, lambda p: gym.make("genrl/Dream-v0", model=p)):
        with pytest.raises(GenrlError, match=match) as err:
            open_it(path)
        assert "\n" not in str(err.value)


# ---- adversarial starts -------------------------------------------------------------------------


def test_adversarial_starts_are_harder_than_ordinary_ones(cartpole_model, cartpole_dataset, tmp_path):
    result = synthesize(
        cartpole_model,
        tmp_path / "hard",
        dataset=cartpole_dataset,
        horizon=100,
        perturbation=1.0,
        n_starts=16,
        agent=balance,
        adversarial=True,
        search={"population": 64, "generations": 4},
        seed=0,
        progress=False,
    )
    adv = result.card["adversarial"]
    assert adv["agent"] == "balance" and adv["count"] == 16 and adv["ordinary_count"] == 16
    assert adv["hard_return"] < 0.6 * adv["ordinary_return"], adv
    assert np.all(np.diff(result.hard.returns) >= 0)  # hardest first
    distance = _standardised_distance(cartpole_model, result.starts, cartpole_dataset.start_states())
    assert distance.max() <= 1.0 + 1e-5
    assert all(cartpole_model.observation_space.contains(s) for s in result.starts)
    assert load_package(result.path).settings.start == "adversarial"
    assert "adversarial starts (agent's dream return" in result.summary
    with pytest.raises(GenrlError, match="adversarial synthesis: expected an agent"):
        synthesize(cartpole_model, tmp_path / "x", adversarial=True, progress=False)


# ---- the command --------------------------------------------------------------------------------


def test_the_command_synthesizes_a_package_and_trains_on_it(capsys, tmp_path, cartpole_model_path):
    pkg, agent = tmp_path / "pkg", tmp_path / "agent"
    argv = ["synthesize", str(cartpole_model_path), "--out", str(pkg), "--env", "cartpole", "--horizon", "30",
            "--starts", "8", "--reward", '{"type": "constant", "value": 1}', "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1 dreamed by genrl" in out and "reward constant 1" in out and "--env-package" in out
    assert load_package(pkg).settings.reward == {"type": "constant", "value": 1.0}
    assert main(["dream", str(pkg), "--episodes", "2", "--no-progress"]) == 0
    assert "(horizon 30, temperature 1)" in capsys.readouterr().out
    argv = [
        "train",
        "--env-package",
        str(pkg),
        "--dream-steps",
        "64",
        "--run-dir",
        str(agent),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Dream return" in out and "CartPole-v1: real return" in out
    meta = json.loads((agent / "agent.json").read_text())
    assert meta["format"] == "genrl.package_agent" and meta["agent"]["algorithm"] == "ppo"
    assert 0 < meta["results"]["dream_return"] <= 30  # a reward of 1 a step, for at most 30 steps
    trained = make_agent(agent_preset(meta["agent"]), DreamVecEnv(pkg, 8))
    load_policy(trained, agent / "policy.safetensors")


@pytest.mark.parametrize(
    "argv, match",
    [
        (["synthesize", "MODEL", "--out", "x", "--adversarial"], "--adversarial: expected --agent RUN_DIR"),
        (["synthesize", "no/such/model", "--out", "x"], "no such file"),
        (["train", "--env-package", "no/such/package"], "expected an environment package"),
        (["train", "cartpole", "--env-package", "PKG"], "expected none of ['ENV'] beside it"),
    ],
)
def test_bad_command_lines_are_one_line(capsys, tmp_path, monkeypatch, cartpole_model_path, argv, match):
    monkeypatch.chdir(tmp_path)
    argv = [str(cartpole_model_path) if a == "MODEL" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrl: error: ") and "\n" not in err and match in err, err
    assert main(["synthesize", str(cartpole_model_path), "--out", "x", "--reward", "{bad"]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
