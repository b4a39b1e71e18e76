"""The corridor of corridor.py seen only through pictures: a bright column on a dark 16x16 frame.

The agent never sees its position as a number: the world model's convolutional VAE must find it
in the frame. Small enough to learn from pixels in a few minutes on a laptop's CPU.

genrl train pixel_corridor:PixelCorridor-v0          (run next to this file)
"""

import gymnasium as gym
import numpy as np

SIZE = 16


class PixelCorridor(gym.Env):
    """Cell x in 0..15, starting in 0..3; step left or right; the goal is x = 15 (reward 1, end)."""

    observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = int(self.np_random.integers(0, 4))
        return self._frame(), {}

    def step(self, action):
        self.x = int(np.clip(self.x + (1 if action == 1 else -1), 0, SIZE - 1))
        terminated = self.x == SIZE - 1
        return self._frame(), float(terminated), terminated, False, {}

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 1), np.uint8)
        frame[4:12, self.x] = 255
        return frame


# A random walk from 0..3 rarely reaches 15 within 40 steps; walking right reaches it in 12 to 15.
gym.register("PixelCorridor-v0", entry_point=PixelCorridor, max_episode_steps=40, reward_threshold=0.9)
