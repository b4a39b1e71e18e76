"""genrl: learn a generative copy of a Gymnasium environment and train SB3 agents inside it."""

from genrl.anomaly.detector import AnomalyMonitor, SurpriseDetector
from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.dream.env import DreamEnv
from genrl.dream.registration import register_envs
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.evaluation.evaluate import EvaluationReport, evaluate
from genrl.model.world_model import WorldModel, WorldModelConfig
from genrl.training.loop import TrainConfig, TrainResult, resume, train_in_imagination

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
