import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from genrl import GenrlError
from genrl.util.spaces import ActionCodec, check_supported, space_from_json, space_to_json, spaces_equal


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _json_round_trip(space: spaces.Space) -> spaces.Space:
    # Through real JSON text: no inf/NaN literals may leak into the file.
    text = json.dumps(space_to_json(space), allow_nan=False)
    return space_from_json(json.loads(text))


@pytest.mark.parametrize(
    "space",
    [
        spaces.Discrete(2),
        spaces.Discrete(5, start=-2),
        spaces.Box(-1.0, 1.0, (3,), np.float32),
        spaces.Box(_f32(-np.inf, 0.0), _f32(np.inf, 1.0), dtype=np.float32),
        spaces.Box(-np.inf, np.inf, (2, 3), np.float64),
        gym.make("CartPole-v1").observation_space,
        gym.make("Pendulum-v1").action_space,
    ],
)
def test_space_json_round_trip(space):
    back = _json_round_trip(space)
    assert type(back) is type(space)
    assert spaces_equal(back, space)
    if isinstance(space, spaces.Box):
        assert back.shape == space.shape
        assert back.dtype == space.dtype
        np.testing.assert_array_equal(back.low, space.low)
        np.testing.assert_array_equal(back.high, space.high)
    else:
        assert (back.n, back.start) == (space.n, space.start)


def test_infinite_bounds_survive_json():
    space = spaces.Box(_f32(-np.inf, -1.0), _f32(np.inf, 2.0), dtype=np.float32)
    back = _json_round_trip(space)
    assert np.isneginf(back.low[0]) and np.isposinf(back.high[0])
    assert (back.low[1], back.high[1]) == (-1.0, 2.0)


def test_spaces_equal_detects_differences():
    assert not spaces_equal(spaces.Discrete(2), spaces.Discrete(3))
    assert not spaces_equal(spaces.Box(-1, 1, (2,)), spaces.Box(-1, 2, (2,)))
    assert not spaces_equal(spaces.Box(-1, 1, (2,), np.float32), spaces.Box(-1, 1, (2,), np.float64))


@pytest.mark.parametrize(
    "data, match",
    [
        ({"type": "MultiBinary", "n": 3}, "expected type Discrete or Box"),
        ({"type": "Discrete"}, "invalid space description"),
        ({"type": "Box", "shape": [2], "dtype": "float32", "low": [0.0], "high": [1.0, 1.0]}, "invalid"),
        ({"type": "Box", "shape": [1], "dtype": "no-such-dtype", "low": [0], "high": [1]}, "invalid"),
    ],
)
def test_space_from_json_rejects_garbage(data, match):
    with pytest.raises(GenrlError, match=match):
        space_from_json(data)


def test_space_to_json_rejects_unsupported():
    with pytest.raises(GenrlError, match="cannot serialise space"):
        space_to_json(spaces.MultiBinary(3))


BOX = spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.mark.parametrize(
    "obs_space, act_space, match",
    [
        (spaces.Dict({"a": BOX}), spaces.Discrete(2), "unsupported observation space"),
        (spaces.Discrete(4), spaces.Discrete(2), "unsupported observation space"),
        (BOX, spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), "unsupported action space"),
        (BOX, spaces.Dict({"a": spaces.Discrete(2)}), "unsupported action space"),
        (BOX, spaces.MultiBinary(3), "unsupported action space"),
        (BOX, spaces.MultiDiscrete([2, 3]), "unsupported action space"),
        (BOX, spaces.Box(-np.inf, np.inf, (2,), np.float32), "bounded Box"),
        (BOX, spaces.Box(_f32(-1.0, 0.0), _f32(1.0, np.inf), dtype=np.float32), "bounded Box"),
    ],
)
def test_check_supported_rejects(obs_space, act_space, match):
    with pytest.raises(GenrlError, match=match):
        check_supported(obs_space, act_space)


def test_check_supported_accepts_discrete_and_box():
    check_supported(BOX, spaces.Discrete(3))
    check_supported(spaces.Box(-np.inf, np.inf, (4,), np.float32), BOX)
    # No exception means supported; make the test observable too.
    assert ActionCodec(spaces.Discrete(3)).dim == 3


def test_encode_discrete_is_one_hot_respecting_start():
    codec = ActionCodec(spaces.Discrete(3, start=1))
    out = codec.encode(torch.tensor([1, 3, 2]))
    assert out.dtype == torch.float32
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert torch.equal(out, expected)
    assert codec.discrete and codec.dim == 3


def test_encode_box_rescales_to_unit_interval():
    space = spaces.Box(_f32(-2.0, 0.0), _f32(2.0, 10.0), dtype=np.float32)
    codec = ActionCodec(space)
    actions = torch.tensor([[-2.0, 0.0], [2.0, 10.0], [0.0, 5.0], [1.0, 2.5]])
    out = codec.encode(actions)
    expected = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [0.5, -0.5]])
    assert torch.allclose(out, expected)
    assert not codec.discrete and codec.dim == 2


def test_encode_box_clips_out_of_range_actions():
    # Like the real Pendulum, the dream clips torques outside the bounds rather than extrapolating.
    codec = ActionCodec(spaces.Box(-2.0, 2.0, (1,), np.float32))
    out = codec.encode(torch.tensor([[5.0], [-7.0]]))
    assert torch.equal(out, torch.tensor([[1.0], [-1.0]]))


def test_encode_multidimensional_box_flattens():
    codec = ActionCodec(spaces.Box(-1.0, 1.0, (2, 2), np.float32))
    out = codec.encode(torch.zeros(3, 2, 2))
    assert out.shape == (3, 4)
    assert torch.equal(out, torch.zeros(3, 4))


def test_check_discrete_accepts_integers():
    codec = ActionCodec(spaces.Discrete(3))
    for action in (0, np.int64(2), np.array(1), np.array([1]), 2.0):
        checked = codec.check(action)
        assert checked.dtype == np.int64 and checked.shape == ()
        assert int(checked) == int(np.asarray(action).reshape(()))


@pytest.mark.parametrize(
    "action", [3, -1, 0.5, [0, 1], "1", True, np.nan, None, np.array([[1]]), [[1]], np.ones((1, 1, 1))]
)
def test_check_discrete_rejects(action):
    # A batch or a column of one ([[1]]) is refused, not read as its single element.
    codec = ActionCodec(spaces.Discrete(3))
    expected = r"^invalid action: expected an integer in Discrete\(3\), got "
    with pytest.raises(GenrlError, match=expected) as err:
        codec.check(action)
    assert "\n" not in str(err.value)


def test_check_box_accepts_matching_arrays():
    codec = ActionCodec(spaces.Box(-2.0, 2.0, (1,), np.float32))
    checked = codec.check(np.array([1.5], dtype=np.float64))
    assert checked.dtype == np.float32 and checked.shape == (1,)
    assert checked[0] == pytest.approx(1.5)


@pytest.mark.parametrize(
    "action, match",
    [
        (np.zeros(2), "expected shape \\(1,\\)"),
        (np.zeros((1, 1)), "expected shape \\(1,\\)"),
        (0.5, "expected shape \\(1,\\)"),
        (np.array([np.nan]), "expected finite numbers"),
        (np.array([np.inf]), "expected finite numbers"),
        (np.array(["a"]), "expected finite numbers"),
        (np.array([True]), "expected finite numbers"),
    ],
)
def test_check_box_rejects(action, match):
    codec = ActionCodec(spaces.Box(-2.0, 2.0, (1,), np.float32))
    with pytest.raises(GenrlError, match=match):
        codec.check(action)


def test_check_batch():
    discrete = ActionCodec(spaces.Discrete(3, start=1))
    discrete.check_batch(np.array([1, 2, 3]))
    discrete.check_batch(np.array([[1.0], [3.0]]))
    for bad in (np.array([0, 1]), np.array([1, 4]), np.array([1.5, 2.0]), np.array([True, False])):
        with pytest.raises(GenrlError, match=r"invalid actions: expected integers in Discrete\(3, start=1\)"):
            discrete.check_batch(bad)
    box = ActionCodec(spaces.Box(-1.0, 1.0, (2,), np.float32))
    box.check_batch(np.array([[0.5, 3.0], [-1.0, 1.0]]))  # out of bounds is clipped, like the real env
    for bad in (np.array([[np.nan, 0.0]]), np.array([[np.inf, 0.0]]), np.array([["a", "b"]])):
        with pytest.raises(GenrlError, match="invalid actions: expected finite numbers"):
            box.check_batch(bad)
