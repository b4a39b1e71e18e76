"""A small env of your own, in your own file: walk right along a corridor to its end.

genrl train corridor:Corridor-v0          (run next to this file)
"""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Position x in [-1, 1], starting near 0; push left or right by 0.1; the goal is x = 1."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.1, 0.1))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + (0.1 if action == 1 else -0.1), -1.0, 1.0))
        reward = -abs(1.0 - self.x)  # dense: the closer to the goal, the less it costs
        terminated = self.x >= 0.99
        return np.array([self.x], np.float32), reward, terminated, False, {}


# Registered on import: `genrl train corridor:Corridor-v0` imports this file, then makes the id.
# The time limit becomes the dream's horizon and the threshold the run's target.
gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=50, reward_threshold=-6.0)
