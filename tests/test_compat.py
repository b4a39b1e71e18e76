"""Files written by earlier genrl versions still load, predict exactly what they predicted, and an
old run resumes as it resumed then: genrl 0.1.0 (tests/fixtures/v0_1_0, made by make_v0_1_0.py at
a2556fb; model format 1, flat run config) and 0.3.0.dev (tests/fixtures/v0_3_0_dev, made by
make_v0_3_0_dev.py at 48d0ce1; model format 2, run config 2, before the defaults and the support
limits of format 3) and model format 4 with run config 4 (tests/fixtures/v0_3_0_f4, made by
make_v0_3_0_f4.py at f7e1e66: Markov dynamics and ensembles, before the heads saw the latent
before a step) and model format 5 with run config 5 (tests/fixtures/v0_3_0_f5, made by
make_v0_3_0_f5.py at 8944124: before the reward of a step that ends an episode had its own head)
and model format 6 with run config 6 and dataset schema 1 (tests/fixtures/v0_3_0_f6, made by
make_v0_3_0_f6.py at e578912: before image models and compressed frames)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import genrl
from genrl import GenrlError, RolloutDataset, WorldModel

FIXTURES = Path(__file__).parent / "fixtures" / "v0_1_0"
VERSIONS = pytest.mark.parametrize(
    "fixtures", ["v0_1_0", "v0_3_0_dev", "v0_3_0_f4", "v0_3_0_f5", "v0_3_0_f6"], indirect=True
)
FORMAT_4 = Path(__file__).parent / "fixtures" / "v0_3_0_f4"
FORMAT_5 = Path(__file__).parent / "fixtures" / "v0_3_0_f5"
FORMAT_6 = Path(__file__).parent / "fixtures" / "v0_3_0_f6"


@pytest.fixture
def fixtures(request) -> Path:
    return Path(__file__).parent / "fixtures" / request.param


def predictions(model: WorldModel, dataset: RolloutDataset) -> dict[str, np.ndarray]:
    """As make_v0_1_0.py computes them: teacher-forced scores, encodings and one sampled step."""
    ep = dataset.episodes[0]
    obs, act = torch.as_tensor(ep.obs)[None], torch.as_tensor(ep.action)[None]
    seq = model.predict_sequence(obs, act)
    z = model.encode(obs[0])
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        step = model.step(z[:-1], model.initial_state(len(z))[:-1], act[0], temperature=1.0, generator=gen)
        decoded = model.decode(step.z)
    return {
        "nll": seq.nll.numpy(),
        "reward": seq.reward.numpy(),
        "termination_logit": seq.termination_logit.numpy(),
        "encoded": z.detach().numpy(),
        "step_z": step.z.numpy(),
        "step_reward": step.reward.numpy(),
        "step_uncertainty": step.uncertainty.numpy(),
        "step_decoded": decoded.numpy(),
    }


@VERSIONS
def test_an_old_dataset_loads(fixtures):
    dataset = RolloutDataset.load(fixtures / "dataset")
    assert len(dataset) == 12 and dataset.num_steps == 300
    assert all(
        isinstance(ep, genrl.Episode) and ep.obs.shape == (ep.length + 1, 4) for ep in dataset.episodes
    )


@pytest.mark.parametrize("fixtures", ["v0_1_0", "v0_3_0_dev"], indirect=True)
@pytest.mark.parametrize("name", ["model_vae", "model_identity"])
def test_an_old_model_predicts_as_it_did(fixtures, name):
    model = WorldModel.load(fixtures / name, device="cpu")
    expected = np.load(fixtures / f"{name}_predictions.npz")
    got = predictions(model, RolloutDataset.load(fixtures / "dataset"))
    # Equal to float32 rounding, not bitwise: torch's CPU kernels sum in an order that depends on
    # the thread count (the fixtures were written with 2 threads; OMP_NUM_THREADS=1 differs by 2e-7).
    for key in expected.files:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    meta = json.loads((fixtures / name / "model.json").read_text())
    assert model.seed == meta.get("seed", meta["config"].get("seed"))  # format 1 kept it in config
    assert int(model.trained_steps) == 20
    assert model.fit_config.open_loop_steps == 4  # a 0.1.0 fit setting, now in its own group
    # Defaults of their time for what the files left out, and no support limits before a refit.
    assert model.config.encoder == ("identity" if name == "model_identity" else "vae")
    assert torch.isinf(model.support_high).all() and torch.isinf(model.reward_low)


@pytest.mark.parametrize("name", ["model_identity", "model_ensemble"])
@pytest.mark.parametrize("folder, transition_heads", [(FORMAT_4, False), (FORMAT_5, True), (FORMAT_6, True)])
def test_a_format_4_5_or_6_model_predicts_as_it_did(folder, transition_heads, name):
    model = WorldModel.load(folder / name, device="cpu")
    expected = np.load(folder / f"{name}_predictions.npz")
    got = predictions(model, RolloutDataset.load(folder / "dataset"))
    for key in expected.files:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Format 4's heads saw only the latent after a step, format 5's both; in both one reward head
    # scored every step, endings too. Their dynamics were Markov, and a fit set their support.
    assert model.config.transition_heads is transition_heads and model.config.rnn_dim == 0
    terminal = folder == FORMAT_6  # format 6 added the terminal reward head, on by default
    assert model.config.terminal_reward is terminal
    assert any("terminal_reward_head" in key for key in model.state_dict()) is terminal
    assert model.config.image_size is None and model.config.likelihood == "auto"  # vector models
    assert model.ensemble_size == (2 if name == "model_ensemble" else 1)
    assert torch.isfinite(model.support_high).all() and torch.isfinite(model.reward_low)


def test_a_0_1_0_model_saved_again_loads_identically(tmp_path):
    model = WorldModel.load(FIXTURES / "model_vae", device="cpu")
    model.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "model.json").read_text())["version"] == 7
    again = WorldModel.load(tmp_path / "again", device="cpu")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


@VERSIONS
def test_an_old_run_loads_and_resumes_as_it_did(fixtures, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(fixtures / "run", run_dir)
    run = genrl.load_run(run_dir, device="cpu")
    assert run.config.env_id == "CartPole-v1" and run.config.train.iterations == 1
    assert run.config.fit.steps == 30 and run.config.world_model.hidden_dim == 32
    # What every run config before 5 had, and before 6.
    assert run.config.world_model.transition_heads is (fixtures.name in ("v0_3_0_f5", "v0_3_0_f6"))
    assert run.config.world_model.terminal_reward is (fixtures.name == "v0_3_0_f6")
    assert run.config.dream.obs_mode is None  # decoded, as every vector run
    assert [row["iteration"] for row in run.history] == [0]
    resumed = genrl.resume(run_dir, progress=False, iterations=2)
    expected = json.loads((fixtures / "run_resumed_history.json").read_text())
    keys = (
        "iteration",
        "real_steps",
        "eval_return_mean",
        "eval_return_std",
        "dream_return_mean",
        "eval_steps",
    )
    assert [{k: r[k] for k in keys} for r in resumed.history] == [{k: r[k] for k in keys} for r in expected]
    # Equal to float32 rounding: another CPU's vector units may sum the same losses in another order.
    assert resumed.history[1]["world_model_val"] == pytest.approx(expected[1]["world_model_val"], rel=1e-5)


def test_a_file_of_an_unknown_version_names_it(tmp_path):
    shutil.copytree(FIXTURES / "model_vae", tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    (tmp_path / "model" / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(
        GenrlError,
        match=r"genrl\.world_model version 99; this genrl reads version 1 or 2 or 3 or 4 or 5 or 6 or 7",
    ):
        WorldModel.load(tmp_path / "model")
