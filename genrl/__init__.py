"""genrl: learn a generative copy of a Gymnasium environment and train SB3 agents inside it.

The code follows the data flow, one folder per stage (imports point down this list only)::

    genrl.util        leaf helpers: files, checks, spaces, devices, seeds, progress
    genrl.data        real envs -> episodes on disk: collect (local or on Ray), RolloutDataset,
                      Episode, Minari import and export
    genrl.model       the world model: encoders, dynamics, losses, trainer, file format
    genrl.dream       dreams: DreamEnv, DreamVecEnv, genrl/Dream-v0; LatentObservation (a real env
                      seen through a model's features, as latent-mode dreams see themselves)
    genrl.evaluation  reports on a model       genrl.anomaly  surprise and faults
    genrl.guidance    steering the model toward reward: Planner, generate, augmentation, synthesis
    genrl.training    the loop, its config, checkpoints, runs, sweeps, SB3 callbacks (Dyna,
                      real evaluation), agents and presets
"""

from genrl.anomaly import AnomalyMonitor, SurpriseDetector
from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.data.episode import Episode
from genrl.data.minari import from_minari, to_minari
from genrl.dream.env import DreamEnv
from genrl.dream.latent import LatentObservation, LatentPolicy
from genrl.dream.package import EnvPackage, load_package
from genrl.dream.registration import register_envs
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.evaluation.evaluate import EvaluationReport, evaluate
from genrl.guidance.augment import ImaginedReplay
from genrl.guidance.generate import generate
from genrl.guidance.planner import Planner
from genrl.guidance.synthesis import SynthesisResult, synthesize
from genrl.model.config import FitConfig, WorldModelConfig
from genrl.model.world_model import WorldModel
from genrl.training.callbacks import DreamTraining, RealEvaluation
from genrl.training.config import TrainConfig
from genrl.training.loop import resume, train_in_imagination
from genrl.training.package import train_on_package
from genrl.training.run import TrainResult, load_run, save_run
from genrl.training.sweep import SweepResult, sweep

__version__ = "0.2.0"
__all__ = [
    "AnomalyMonitor",
    "DreamEnv",
    "DreamTraining",
    "DreamVecEnv",
    "EnvPackage",
    "Episode",
    "EvaluationReport",
    "FitConfig",
    "GenrlError",
    "ImaginedReplay",
    "LatentObservation",
    "LatentPolicy",
    "Planner",
    "RealEvaluation",
    "RolloutDataset",
    "SurpriseDetector",
    "SweepResult",
    "SynthesisResult",
    "TrainConfig",
    "TrainResult",
    "WorldModel",
    "WorldModelConfig",
    "collect",
    "evaluate",
    "from_minari",
    "generate",
    "load_package",
    "load_run",
    "resume",
    "save_run",
    "sweep",
    "synthesize",
    "to_minari",
    "train_in_imagination",
    "train_on_package",
]

register_envs()
