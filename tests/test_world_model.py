import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from safetensors.torch import load_file, save_file

from genrl import FitConfig, GenrlError, RolloutDataset, WorldModel, WorldModelConfig, collect

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"


def _copy_model(model: WorldModel, tmp_path) -> WorldModel:
    model.save(tmp_path / "copy")
    return WorldModel.load(tmp_path / "copy")


def test_fit_reduces_held_out_losses(cartpole_dataset, small_config):
    model = WorldModel(cartpole_dataset.observation_space, cartpole_dataset.action_space, **small_config)
    model.fit(cartpole_dataset, steps=1, progress=False)  # sets normalisation, so losses compare
    held_out = cartpole_dataset.subset(range(9, len(cartpole_dataset), 10))
    before = model.trainer.evaluate_losses(held_out, np.random.default_rng(1))
    after_fit = model.fit(cartpole_dataset, steps=150, progress=False)
    after = model.trainer.evaluate_losses(held_out, np.random.default_rng(1))
    assert int(model.trained_steps) == 151
    assert set(after_fit) == set(before)
    for head in ("reconstruction", "dynamics_nll", "reward", "termination"):
        assert after[head] < before[head], (head, before[head], after[head])
    assert after["reconstruction"] < 0.5 * before["reconstruction"]
    assert after["dynamics_nll"] < before["dynamics_nll"] - 0.5


def test_fit_stores_statistics_and_start_states(cartpole_model, cartpole_dataset):
    np.testing.assert_array_equal(cartpole_model.start_states.numpy(), cartpole_dataset.start_states())
    obs = cartpole_dataset.all_states()
    assert torch.allclose(cartpole_model.obs_mean, torch.as_tensor(obs.mean(0)), atol=0.05)
    assert torch.all(cartpole_model.obs_std > 0)


def test_fit_rejects_dataset_of_other_spaces(cartpole_model, pendulum_dataset, tmp_path):
    model = _copy_model(cartpole_model, tmp_path)
    with pytest.raises(GenrlError, match="space mismatch"):
        model.fit(pendulum_dataset, steps=1, progress=False)
    empty = RolloutDataset(cartpole_model.observation_space, cartpole_model.action_space)
    with pytest.raises(GenrlError, match="empty"):
        model.fit(empty, steps=1, progress=False)


def test_config_validation():
    box = spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(GenrlError, match=r"unknown world model settings \['hiden_dim'\]"):
        WorldModel(box, spaces.Discrete(2), hiden_dim=3)
    with pytest.raises(GenrlError, match="unsupported action space"):
        WorldModel(box, spaces.MultiBinary(2))
    model = WorldModel(box, spaces.Discrete(2), WorldModelConfig(hidden_dim=16, encoder="vae"), rnn_dim=8)
    assert (model.config.hidden_dim, model.config.rnn_dim) == (16, 8)
    assert model.config.latent_dim == 8  # twice the observation size, at least 8


def test_step_output_shapes(cartpole_model, pendulum_model):
    for model, action in (
        (cartpole_model, torch.tensor([0, 1, 1, 0, 1])),
        (pendulum_model, torch.linspace(-2, 2, 5).reshape(5, 1)),
    ):
        d, r = model.config.latent_dim, model.config.rnn_dim
        obs = model.start_states[torch.arange(5) % len(model.start_states)]
        z = model.encode(obs)
        assert z.shape == (5, d)
        with torch.no_grad():
            out = model.step(z, model.initial_state(5), action)
        assert out.z.shape == (5, d) and out.h.shape == (5, r)
        assert out.reward.shape == (5,) and out.reward.dtype == torch.float32
        assert out.terminated.shape == (5,) and out.terminated.dtype == torch.bool
        assert out.uncertainty.shape == (5,) and torch.all(out.uncertainty >= 0)
        assert model.decode(out.z).shape == (5, *model.observation_space.shape)


def test_learned_model_predicts_cartpole(cartpole_model, cartpole_dataset):
    episodes = cartpole_dataset.episodes
    obs = torch.as_tensor(np.concatenate([ep.obs[:-1] for ep in episodes]))
    next_obs = torch.as_tensor(np.concatenate([ep.obs[1:] for ep in episodes]))
    action = torch.as_tensor(np.concatenate([ep.action for ep in episodes]))
    terminated = np.concatenate([ep.terminated for ep in episodes])
    with torch.no_grad():
        out = cartpole_model.step(
            cartpole_model.encode(obs), cartpole_model.initial_state(len(obs)), action, 0.0
        )
        pred = cartpole_model.decode(out.z)
    # CartPole pays 1 per step.
    assert torch.allclose(out.reward, torch.ones_like(out.reward), atol=0.05)
    # One-step predictions beat "nothing changes" by far on the velocities, which change the most.
    error, naive = (pred - next_obs).abs().mean(0), (obs - next_obs).abs().mean(0)
    assert torch.all(error < naive)
    assert torch.all(error[[1, 3]] < 0.5 * naive[[1, 3]])
    # Falling poles end episodes; poles five or more steps from the end rarely do. (The last few
    # non-terminal steps look like terminal ones: over config seeds 0-2 the model flags 4-7% of all
    # non-terminal steps but under 1% of these.)
    predicted = out.terminated.numpy()
    far = np.concatenate([np.arange(len(ep.reward))[::-1] >= 5 for ep in episodes])
    assert predicted[terminated].mean() > 0.8
    assert predicted[far].mean() < 0.02


def test_dynamics_respond_to_actions(cartpole_model, cartpole_dataset):
    """The dream must depend on what the agent does, or no agent can learn in it.

    From the same real states, pushing right instead of left changes CartPole's next cart and pole
    velocities by a large, known amount; the model's expected next observation must show it.
    """
    real = gym.make("CartPole-v1").unwrapped
    real.reset(seed=0)
    states = cartpole_dataset.all_states()[::7][:64]
    true_next = np.zeros((2, *states.shape))
    for i, state in enumerate(states):
        for action in (0, 1):
            real.state, real.steps_beyond_terminated = state.astype(np.float64), None
            true_next[action, i] = real.step(action)[0]
    with torch.no_grad():
        z = cartpole_model.encode(torch.as_tensor(states))
        h = cartpole_model.initial_state(len(z))
        pred = [
            cartpole_model.decode(cartpole_model.step(z, h, torch.full((len(z),), a), 0.0).z).numpy()
            for a in (0, 1)
        ]
    true_effect = (true_next[1] - true_next[0]).mean(0)
    model_effect = (pred[1] - pred[0]).mean(0)
    for dim, name in ((1, "cart velocity"), (3, "pole angular velocity")):
        assert abs(model_effect[dim] - true_effect[dim]) < 0.5 * abs(true_effect[dim]), (
            f"effect of the action on the {name}: real {true_effect[dim]:.3f}, model {model_effect[dim]:.3f}"
        )


def test_temperature_zero_is_deterministic(cartpole_model):
    z = cartpole_model.encode(cartpole_model.start_states[:8])
    h = cartpole_model.initial_state(8)
    a = torch.ones(8, dtype=torch.long)
    with torch.no_grad():
        one = cartpole_model.step(z, h, a, 0.0, torch.Generator().manual_seed(1))
        two = cartpole_model.step(z, h, a, 0.0, torch.Generator().manual_seed(2))
        hot1 = cartpole_model.step(z, h, a, 1.0, torch.Generator().manual_seed(1))
        hot2 = cartpole_model.step(z, h, a, 1.0, torch.Generator().manual_seed(2))
    for x, y in zip(one, two, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(hot1.z, hot2.z)  # sampling is random above zero temperature


def test_decoded_observations_stay_in_bounds(pendulum_model, cartpole_model):
    for model in (pendulum_model, cartpole_model):
        z = torch.randn(256, model.config.latent_dim, generator=torch.Generator().manual_seed(0)) * 50
        with torch.no_grad():
            obs = model.decode(z).numpy()
        space = model.observation_space
        assert np.all(obs >= space.low) and np.all(obs <= space.high)
        assert all(space.contains(o) for o in obs)
    # Pendulum's cos/sin are bounded to [-1, 1]: extreme latents hit the bounds, so clipping happened.
    with torch.no_grad():
        extreme = pendulum_model.decode(torch.full((1, pendulum_model.config.latent_dim), 1e3))
    assert torch.all(extreme.abs() <= torch.tensor([1.0, 1.0, 8.0]))


def test_save_load_gives_identical_predictions(cartpole_model, tmp_path):
    cartpole_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "weights.safetensors"]
    loaded = WorldModel.load(tmp_path / "m")
    assert loaded.config == cartpole_model.config
    assert loaded.observation_space == cartpole_model.observation_space
    assert loaded.action_space == cartpole_model.action_space
    assert not loaded.training
    for (name, a), b in zip(cartpole_model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    obs = cartpole_model.start_states[:6]
    with torch.no_grad():
        z1, z2 = cartpole_model.encode(obs), loaded.encode(obs)
        assert torch.equal(z1, z2)
        assert torch.equal(cartpole_model.decode(z1), loaded.decode(z2))
        action = torch.tensor([0, 1, 0, 1, 1, 0])
        for temperature in (0.0, 1.0):
            s1 = cartpole_model.step(
                z1, cartpole_model.initial_state(6), action, temperature, torch.Generator().manual_seed(3)
            )
            s2 = loaded.step(
                z2, loaded.initial_state(6), action, temperature, torch.Generator().manual_seed(3)
            )
            for x, y in zip(s1, s2, strict=True):
                assert torch.equal(x, y)


def test_loaded_model_continues_training(pendulum_model, pendulum_dataset, tmp_path):
    model = _copy_model(pendulum_model, tmp_path)
    before = int(model.trained_steps)
    assert before == 150
    model.fit(pendulum_dataset, steps=3, progress=False)
    assert int(model.trained_steps) == before + 3
    # Statistics come from the first fit and are not recomputed.
    assert torch.equal(model.obs_mean, pendulum_model.obs_mean)


@pytest.fixture
def saved(cartpole_model, tmp_path):
    path = tmp_path / "model"
    cartpole_model.save(path)
    return path


def _edit_json(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    meta.update(changes)
    (path / "model.json").write_text(json.dumps(meta))
    return meta


def test_load_rejects_corrupted_weights(saved):
    data = (saved / "weights.safetensors").read_bytes()
    (saved / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenrlError, match="expected a safetensors file, got an unreadable one"):
        WorldModel.load(saved)
    (saved / "weights.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(GenrlError, match="unreadable"):
        WorldModel.load(saved)


def test_load_rejects_missing_files(saved, tmp_path):
    (saved / "weights.safetensors").unlink()
    with pytest.raises(GenrlError, match="expected model weights at .* found no such file"):
        WorldModel.load(saved)
    with pytest.raises(GenrlError, match=r"expected a genrl world model \(model.json\) at .* no such file"):
        WorldModel.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"format": "genrl.rollouts"}, "expected a genrl.world_model file .* got format 'genrl.rollouts'"),
        ({"version": 99}, r"genrl\.world_model version 99; this genrl reads version 1 or 2"),
        ({"config": "big"}, "expected a config object"),
        ({"config": {"hidden_dim": 32, "bogus": 1}}, r"unknown world model settings \['bogus'\]"),
        ({"action_space": {"type": "Discrete", "n": 3, "start": 0}}, "weights do not match"),
        ({"observation_space": {"type": "Tuple"}}, "expected type Discrete or Box"),
    ],
)
def test_load_rejects_foreign_model_json(saved, changes, match):
    _edit_json(saved, **changes)
    with pytest.raises(GenrlError, match=match):
        WorldModel.load(saved)


def test_load_rejects_weights_of_another_size(saved):
    meta = json.loads((saved / "model.json").read_text())
    _edit_json(saved, config={**meta["config"], "hidden_dim": 48})
    with pytest.raises(GenrlError, match="weights do not match the model described in model.json"):
        WorldModel.load(saved)


def test_load_rejects_missing_tensors(saved):
    save_file({"obs_mean": torch.zeros(4)}, str(saved / "weights.safetensors"))
    with pytest.raises(GenrlError, match="weights do not match"):
        WorldModel.load(saved)


def test_load_rejects_non_json_model_file(saved):
    (saved / "model.json").write_bytes(pickle.dumps({"format": "genrl.world_model"}))
    with pytest.raises(GenrlError, match="not valid JSON"):
        WorldModel.load(saved)


class _Marker:
    """Unpickling this creates a file: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_never_executes_pickles(saved, cartpole_model, tmp_path):
    marker = tmp_path / "code-was-executed"
    payload = pickle.dumps({"state": _Marker(marker)})
    # Pickles under every name a loader might be tempted to read...
    for name in ("model.pkl", "weights.pt", "pytorch_model.bin", "model.pt", "optimizer.pt"):
        (saved / name).write_bytes(payload)
    torch.save({"x": _Marker(marker)}, saved / "model.pth")
    loaded = WorldModel.load(saved)
    assert not marker.exists()
    assert torch.equal(loaded.obs_mean, cartpole_model.obs_mean)

    # ...and in place of the weights themselves.
    shutil.copy(saved / "model.pkl", saved / "weights.safetensors")
    with pytest.raises(GenrlError, match="expected a safetensors file"):
        WorldModel.load(saved)
    torch.save({"obs_mean": _Marker(marker)}, saved / "weights.safetensors")
    with pytest.raises(GenrlError, match="expected a safetensors file"):
        WorldModel.load(saved)
    assert not marker.exists()


def test_check_env_spaces(cartpole_model):
    cartpole_model.check_env_spaces(cartpole_model.observation_space, cartpole_model.action_space)
    with pytest.raises(GenrlError, match="action space mismatch"):
        cartpole_model.check_env_spaces(cartpole_model.observation_space, spaces.Discrete(3))


def test_model_records_the_episodes_it_trained_on(cartpole_model, cartpole_dataset, tmp_path):
    # fit holds out every 10th episode; exactly those count as held out, in any dataset order.
    expected = list(range(9, len(cartpole_dataset), 10))
    assert cartpole_model.held_out_episodes(cartpole_dataset) == expected
    reordered = cartpole_dataset.subset(list(reversed(range(len(cartpole_dataset)))))
    assert (
        sorted(len(cartpole_dataset) - 1 - i for i in cartpole_model.held_out_episodes(reordered)) == expected
    )
    loaded = _copy_model(cartpole_model, tmp_path)
    assert torch.equal(loaded.trained_episodes, cartpole_model.trained_episodes)
    fresh = collect("CartPole-v1", 100, seed=123, progress=False)
    assert loaded.held_out_episodes(fresh) == list(range(len(fresh)))


def test_model_saved_before_episode_records_loads_with_none(tmp_path):
    # Models from before the episode records are version-1 files (genrl 0.1.0's format).
    original = FIXTURES / "model_vae"
    shutil.copytree(original, tmp_path / "model")
    state = load_file(str(tmp_path / "model" / "weights.safetensors"))
    del state["trained_episodes"]
    save_file(state, str(tmp_path / "model" / "weights.safetensors"))
    loaded = WorldModel.load(tmp_path / "model", device="cpu")
    assert loaded.trained_episodes.shape == (0,)
    reference = WorldModel.load(original, device="cpu")
    for name, value in reference.state_dict().items():
        if name != "trained_episodes":
            assert torch.equal(loaded.state_dict()[name], value), name


def test_predict_sequence_scores_real_history(cartpole_model, cartpole_dataset):
    ep = cartpole_dataset.episodes[9]
    obs, actions = torch.as_tensor(ep.obs)[None], torch.as_tensor(ep.action)[None]
    whole = cartpole_model.predict_sequence(obs, actions)
    steps = len(ep.action)
    assert whole.nll.shape == whole.reward.shape == whole.termination_logit.shape == (1, steps)
    # Scoring in two calls, carrying the recurrent state, gives the same per-step figures.
    cut = steps // 2
    first = cartpole_model.predict_sequence(obs[:, : cut + 1], actions[:, :cut])
    second = cartpole_model.predict_sequence(obs[:, cut:], actions[:, cut:], h=first.h)
    torch.testing.assert_close(torch.cat([first.nll, second.nll], 1), whole.nll, atol=1e-4, rtol=1e-4)
    # The real next observation is far more likely than a shuffled one; the last step ends the episode.
    shuffled = obs[:, torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(steps) + 1])]
    assert cartpole_model.predict_sequence(shuffled, actions).nll.mean() > whole.nll.mean() + 5
    assert whole.termination_logit[0, -1] > whole.termination_logit[0, :-3].max()
    np.testing.assert_allclose(whole.reward.numpy(), ep.reward[None], atol=0.2)


PRECISE = {"encoder": "identity", "num_mixtures": 1, "nll_beta": 1.0, "prediction_weight": 10.0}


def test_identity_encoder_keeps_the_observation(cartpole_dataset, small_config, tmp_path):
    model = WorldModel(
        cartpole_dataset.observation_space, cartpole_dataset.action_space, **{**small_config, **PRECISE}
    )
    assert model.config.latent_dim == 4
    # fit(0) sets the statistics and the least-squares core without a gradient step.
    model.fit(cartpole_dataset, steps=0, progress=False)
    obs = torch.as_tensor(cartpole_dataset.all_states()[:50])
    torch.testing.assert_close(model.decode(model.encode(obs)), obs, atol=1e-5, rtol=1e-5)
    # The core alone is least-squares linear dynamics: on CartPole's nearly linear physics, one
    # step is predicted to within a small fraction of each dimension's spread.
    ep = cartpole_dataset.episodes[9]
    z = model.encode(torch.as_tensor(ep.obs[:-1]))
    out = model.step(z, model.initial_state(len(z)), torch.as_tensor(ep.action), temperature=0.0)
    error = (model.decode(out.z) - torch.as_tensor(ep.obs[1:])) / model.obs_std
    assert error.abs().max() < 0.05
    assert "reconstruction" not in model.fit(cartpole_dataset, steps=5, progress=False)
    loaded = _copy_model(model, tmp_path)
    assert loaded.encoder.exact and loaded.config.encoder == "identity"
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_vector_state_gets_markov_dynamics_by_default(cartpole_dataset, tmp_path):
    obs_space, act_space = cartpole_dataset.observation_space, cartpole_dataset.action_space
    model = WorldModel(obs_space, act_space, hidden_dim=16, steps=40, batch_size=8, seq_len=8, seed=0)
    assert (model.config.encoder, model.config.rnn_dim) == ("identity", 0)
    assert not any(".rnn" in name for name in model.state_dict())  # no GRU at all
    assert WorldModel(obs_space, act_space, encoder="vae", hidden_dim=16).config.rnn_dim == 128
    before = model.fit(cartpole_dataset, steps=0, progress=False)
    after = model.fit(cartpole_dataset, progress=False)
    assert after["dynamics_nll"] < before["dynamics_nll"]
    # Markov: a transition's prediction is the same whatever history came before it.
    ep = cartpole_dataset.episodes[3]
    obs, act = torch.as_tensor(ep.obs), torch.as_tensor(ep.action)
    whole = model.predict_sequence(obs[None], act[None])
    tail = model.predict_sequence(obs[None, 5:], act[None, 5:])
    assert whole.h.shape == (1, 0)
    torch.testing.assert_close(whole.nll[0, 5:], tail.nll[0])
    torch.testing.assert_close(whole.termination_logit[0, 5:], tail.termination_logit[0])
    loaded = _copy_model(model, tmp_path)
    assert loaded.config == model.config
    z = model.encode(obs[:-1])
    a, b = (m.step(z, m.initial_state(len(z)), act, temperature=0.0) for m in (model, loaded))
    assert a.h.shape == (len(z), 0)
    assert torch.equal(a.z, b.z) and torch.equal(a.reward, b.reward)


def test_cosine_schedule_anneals_each_fit(pendulum_dataset, small_config):
    model = WorldModel(
        pendulum_dataset.observation_space,
        pendulum_dataset.action_space,
        **{**small_config, "lr_schedule": "cosine"},
    )
    model.fit(pendulum_dataset, steps=10, progress=False)
    assert model.trainer.state_dict()["param_groups"][0]["lr"] == pytest.approx(
        1e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 9 / 10)))
    )


@pytest.mark.parametrize(
    "settings, match",
    [
        (
            {"encoder": "pca"},
            r"world model setting encoder: expected one of \['auto', 'vae', 'identity'\], got 'pca'",
        ),
        (
            {"lr_schedule": "linear"},
            r"fit setting lr_schedule: expected one of \['constant', 'cosine'\], got 'linear'",
        ),
        (
            {"encoder": "identity", "latent_dim": 8},
            r"expected a vector observation and latent_dim None or 4, got shape \(4,\) and latent_dim 8",
        ),
        ({"nll_beta": -1.0}, "fit setting nll_beta: expected a number >= 0, got -1.0"),
    ],
)
def test_precise_settings_are_checked(cartpole_dataset, settings, match):
    with pytest.raises(GenrlError, match=match):
        WorldModel(cartpole_dataset.observation_space, cartpole_dataset.action_space, **settings)


def test_sizes_and_fit_settings_are_two_groups(cartpole_dataset):
    spaces_ = (cartpole_dataset.observation_space, cartpole_dataset.action_space)
    # genrl 0.1.0's flat mapping (sizes, fit settings and seed together) splits by name...
    flat = WorldModel(
        *spaces_,
        {"encoder": "vae", "hidden_dim": 16, "rnn_dim": 8, "fit_steps": 5, "batch_size": 4, "seed": 7},
    )
    # ...into the same model as the two groups given apart, with keyword overrides routed by name.
    grouped = WorldModel(
        *spaces_,
        WorldModelConfig(hidden_dim=16, encoder="vae"),
        FitConfig(steps=5),
        seed=7,
        rnn_dim=8,
        batch_size=4,
    )
    for model in (flat, grouped):
        assert (model.config.hidden_dim, model.config.rnn_dim, model.seed) == (16, 8, 7)
        assert (model.fit_config.steps, model.fit_config.batch_size) == (5, 4)
        assert not model.encoder.exact  # the VAE's latent is a compression, not the observation
    for (name, a), b in zip(flat.state_dict().items(), grouped.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not hasattr(WorldModelConfig, "from_dict")
    with pytest.raises(dataclasses.FrozenInstanceError):
        flat.config.hidden_dim = 3
    positive = r"expected an integer >= 1 \(int64\), got 0$"
    with pytest.raises(GenrlError, match="^world model setting hidden_dim: " + positive):
        WorldModelConfig(hidden_dim=0)
    zero_or_more = r"expected an integer >= 0 \(int64\), got -1$"
    with pytest.raises(GenrlError, match="^world model setting rnn_dim: " + zero_or_more):
        WorldModelConfig(rnn_dim=-1)
    with pytest.raises(GenrlError, match="^fit setting batch_size: " + positive):
        FitConfig(batch_size=0)
    # The dynamics' tensors live under dynamics.
    assert {name.split(".")[0] for name in flat.state_dict() if "." in name} == {
        "encoder",
        "decoder",
        "dynamics",
    }
    assert "dynamics.0.rnn.weight_ih_l0" in flat.state_dict()


def test_model_json_is_version_7_with_sizes_fit_settings_and_seed(saved, cartpole_model):
    meta = json.loads((saved / "model.json").read_text())
    assert (meta["format"], meta["version"], meta["seed"]) == ("genrl.world_model", 7, cartpole_model.seed)
    assert meta["config"] == dataclasses.asdict(cartpole_model.config)
    assert meta["fit"] == dataclasses.asdict(cartpole_model.fit_config)
    assert set(meta["config"]) == {f.name for f in dataclasses.fields(WorldModelConfig)}
    assert meta["fit"]["termination_weight"] == 10.0 and meta["fit"]["steps"] == 1000
    loaded = WorldModel.load(saved, device="cpu")
    assert (loaded.seed, loaded.config, loaded.fit_config) == (
        cartpole_model.seed,
        cartpole_model.config,
        cartpole_model.fit_config,
    )


def test_unroll_imagines_what_stepping_does(cartpole_model, pendulum_model):
    for model, actions in (
        (cartpole_model, torch.tensor([[0, 1, 1, 0, 1, 0]] * 3)),
        (pendulum_model, torch.linspace(-2, 2, 18).reshape(3, 6, 1)),
    ):
        z = model.encode(model.start_states[:3])
        h = model.initial_state(3)
        out = model.unroll(z, h, actions, 1.0, torch.Generator().manual_seed(5))
        d, r = model.config.latent_dim, model.config.rnn_dim
        assert out.z.shape == (3, 6, d) and out.h.shape == (3, r)
        assert out.reward.shape == out.terminated.shape == out.uncertainty.shape == (3, 6)
        assert out.terminated.dtype == torch.bool
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for k in range(6):
                step = model.step(z, h, actions[:, k], 1.0, generator)
                z, h = step.z, step.h
                assert torch.equal(out.z[:, k], step.z) and torch.equal(out.reward[:, k], step.reward)
                assert torch.equal(out.terminated[:, k], step.terminated)
                assert torch.equal(out.uncertainty[:, k], step.uncertainty)
        assert torch.equal(out.h, h)


def _walk_to_an_edge(seed: int, episodes: int) -> RolloutDataset:
    """A 1-D walk of +-0.25 a step that ends past |x| = 1: a step pays its progress to the right
    (shaping, +-0.25) and the end pays +10 on the right, -10 on the left (a goal and a crash)."""
    rng = np.random.default_rng(seed)
    data = RolloutDataset(spaces.Box(-2.0, 2.0, (1,), np.float32), spaces.Discrete(2))
    for _ in range(episodes):
        xs, actions = [rng.uniform(-0.5, 0.5)], []
        while abs(xs[-1]) <= 1.0:
            actions.append(int(rng.integers(2)))
            xs.append(xs[-1] + (0.25 if actions[-1] else -0.25))
        x = np.array(xs, np.float32)[:, None]
        reward = np.diff(x[:, 0])
        reward[-1] = 10.0 if x[-1, 0] > 0 else -10.0
        ends = np.zeros(len(actions), bool)
        ends[-1] = True
        data.add_episode(x, np.array(actions), reward.astype(np.float32), ends, np.zeros(len(actions), bool))
    return data


def test_endings_that_pay_apart_get_their_own_reward_head():
    train, held_out = _walk_to_an_edge(0, 60), _walk_to_an_edge(1, 30)
    errors = {}
    for terminal_reward in (True, False):
        spaces_ = (train.observation_space, train.action_space)
        model = WorldModel(*spaces_, hidden_dim=32, terminal_reward=terminal_reward, seed=0)
        model.fit(train, steps=500, progress=False)
        dyn, ending, going_on = model.dynamics[0], [], []
        for ep in held_out.episodes:
            z, a = model.encode(torch.as_tensor(ep.obs)), model.actions.encode(torch.as_tensor(ep.action))
            with torch.no_grad():
                regular, terminal, _ = dyn.all_heads(z.new_zeros(len(a), 0), a, z[:-1], z[1:])
            terminal = regular if terminal is None else terminal
            std, mean = model.reward_std, model.reward_mean
            ending.append(((terminal * std + mean).numpy()[-1] - ep.reward[-1]) ** 2)
            going_on.extend(((regular * std + mean).numpy()[:-1] - ep.reward[:-1]) ** 2)
        errors[terminal_reward] = (float(np.mean(ending)), float(np.mean(going_on)))
    # Each head on its own steps: the shaping (+-0.25, variance 1/16) and the +-10 endings. One
    # head for both explains neither.
    assert errors[True][1] < 0.01 < errors[False][1]
    assert errors[True][0] < 10.0 < 40.0 < errors[False][0]
    assert model.config.terminal_reward is False and not hasattr(model.dynamics[0], "terminal_reward_head")


def test_a_dream_step_that_ends_pays_the_terminal_reward_head(cartpole_dataset):
    spaces_ = (cartpole_dataset.observation_space, cartpole_dataset.action_space)
    model = WorldModel(*spaces_, hidden_dim=16, seed=0)
    obs = torch.as_tensor(cartpole_dataset.all_states()[:64])
    z, h, action = model.encode(obs), model.initial_state(64), torch.arange(64) % 2
    with torch.no_grad():
        out = model.step(z, h, action, temperature=0.0)
        dyn, a = model.dynamics[0], model.actions.encode(action)
        regular, terminal, logit = dyn.all_heads(dyn.cell(z, h, a), a, z, out.z)
    expected = torch.where(logit > 0, terminal, regular) * model.reward_std + model.reward_mean
    torch.testing.assert_close(out.reward, expected)
    assert out.terminated.equal(logit > 0)
    assert not torch.allclose(terminal, regular)
