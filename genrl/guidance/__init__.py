"""Steering what a world model generates toward reward.

``planner``: model-predictive control (CEM, iCEM, MPPI) with SB3's ``predict``.
``generate``: imagined episodes steered by a guide. ``augment``: imagined transitions in an SB3
agent's replay batches (MBPO). ``synthesis``: environment packages written from a model.
"""
