"""Anomaly detection through a world model's likelihood, and faults to test it with."""

from genrl.anomaly.detector import SurpriseDetector, windowed_mean
from genrl.anomaly.monitor import AnomalyMonitor

__all__ = ["AnomalyMonitor", "SurpriseDetector", "windowed_mean"]
