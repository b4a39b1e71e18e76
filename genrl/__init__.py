"""genrl: learn a generative copy of a Gymnasium environment and train SB3 agents inside it."""

from genrl.anomaly import AnomalyMonitor, SurpriseDetector
from genrl.collect import collect
from genrl.dataset import RolloutDataset
from genrl.dream_env import DreamEnv
from genrl.dream_vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.evaluate import EvaluationReport, evaluate
from genrl.loop import TrainConfig, TrainResult, resume, train_in_imagination
from genrl.registration import register_envs
from genrl.world_model import WorldModel, WorldModelConfig

__version__ = "0.1.0"
__all__ = [
    "AnomalyMonitor",
    "DreamEnv",
    "DreamVecEnv",
    "EvaluationReport",
    "GenrlError",
    "RolloutDataset",
    "SurpriseDetector",
    "TrainConfig",
    "TrainResult",
    "WorldModel",
    "WorldModelConfig",
    "collect",
    "evaluate",
    "resume",
    "train_in_imagination",
]

register_envs()
