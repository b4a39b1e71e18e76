"""A run's settings as TensorBoard hyperparameters, so that runs compare in one HPARAMS view.

:func:`log_hparams` writes the hparams plugin's *session start* summary, this run's value of each
hyperparameter, into the run's own event file (``RUN_DIR/tb``, the TensorBoard run that holds its
scalars; not a sub-run, as ``SummaryWriter.add_hparams`` would make). The session has no group
name, so TensorBoard lists it under the run's name (``cartpole-seed0/tb`` with ``--logdir runs``).

Hyperparameters are every setting of the run's :class:`~genrl.training.config.TrainConfig`,
flattened with dotted names: ``env_id``, ``seed``, ``device``, ``agent`` (the preset's name; an
agent given as a mapping is flattened instead: ``agent.algorithm``, ``agent.hyperparameters.n_steps``
...), then each section's fields: ``collect.initial_steps``, ``world_model.hidden_dim``,
``fit.steps``, ``dream.horizon``, ``train.dream_steps``... Values are bools, numbers or strings;
lists, mappings (``collect.planner``) and None (``seed`` or ``train.target_return`` unset) are
JSON strings.

Metrics are the run's scalars, each at its last value: that of the final evaluation for those the
loop logs at each evaluation (x-axis: real steps). The headline ones, :data:`METRICS`, sort first
in TensorBoard's list (by tag):

* ``dream/eval_return_mean``: the agent's mean return in the dream;
* ``real/eval_return_mean``: its mean return in the real env;
* ``real/steps``: the real steps collected by then.

No *experiment* summary is written: TensorBoard reads a single one for a whole ``--logdir``, so one
run's would stand for all. Without it TensorBoard derives the experiment from every run's session:
the hyperparameters of all runs, each one's type and range, which ones differ between runs (shown
first), and every scalar as a metric.

The loop calls :func:`log_hparams` once per run, when it starts; a resumed run does not log again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from genrl.training.config import SECTIONS, TOP, TrainConfig

METRICS = ("dream/eval_return_mean", "real/eval_return_mean", "real/steps")


def log_hparams(writer: SummaryWriter, cfg: TrainConfig) -> None:
    """Write ``cfg``'s settings as the hyperparameters of ``writer``'s run (its own event file)."""
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in hparam_values(cfg).items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = value
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_START_INFO_TAG,
        metadata=metadata.create_summary_metadata(
            plugin_data_pb2.HParamsPluginData(session_start_info=start)
        ),
        tensor=metadata.NULL_TENSOR,
    )
    writer.file_writer.add_summary(summary, 0)
    writer.flush()


def hparam_values(cfg: TrainConfig) -> dict[str, bool | int | float | str]:
    """``cfg``'s settings by dotted name, each a bool, a number or a string (see the module's doc)."""
    data = cfg.to_dict()
    values: dict[str, Any] = {}
    for name in TOP:
        if name == "agent" and isinstance(data[name], dict):
            _flatten(data[name], "agent.", values)
        else:
            values[name] = data[name]
    for section in SECTIONS:
        values.update({f"{section}.{k}": v for k, v in data[section].items()})
    return {name: _scalar(value) for name, value in values.items()}


def _flatten(mapping: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            _flatten(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def _scalar(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):  # floats are finite: TrainConfig refuses inf and nan
        return value
    return json.dumps(value, sort_keys=True)
