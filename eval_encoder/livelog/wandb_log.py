"""The Weights & Biases backend: a run under ``<logs folder>/wandb/``, offline by default.

The mode is ``$WANDB_MODE`` when set (``offline``, ``online``, ``disabled``), else
``offline``: nothing is sent and nothing asks for a login; ``wandb sync <folder>`` uploads
later. Online, W&B's own credentials are used (``WANDB_API_KEY`` or ``wandb login``
beforehand); a missing one fails at once instead of prompting. The run's id and name are
the logs' id (the run id of the run that started them; a resumed run passes the same id
with ``resume="allow"``), its project ``--wandb_project``, its config the run's config.
Every scalar is plotted against ``global_step`` (W&B's own ``_step`` counts log calls),
so evaluations logged at the end of a run (``--eval_mode end``) sit at their epochs' steps.
Console capture, system metrics, git and code saving are off. Imported only when
``--report_to wandb``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import wandb

from eval_encoder.config import ConfigError
from eval_encoder.livelog import Backend, LogPlace

STEP = "global_step"


def settings(mode: str) -> "wandb.Settings":
    """A quiet run: no console capture, stats, git, code or job; no login prompt."""
    return wandb.Settings(mode=mode, console="off", disable_git=True, save_code=False,
                          disable_job_creation=True, x_disable_stats=True,
                          x_disable_machine_info=True, silent=True, login_timeout=0)


class WandbLog(Backend):
    name = "wandb"

    def __init__(self, place: LogPlace):
        folder = place.folder
        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE") or "offline"
        try:
            self.run = wandb.init(project=place.project, name=place.run_id, id=place.run_id,
                                  dir=str(folder), resume="allow", config=place.config,
                                  settings=settings(mode), reinit="create_new")
        except (wandb.errors.Error, ValueError) as exc:
            raise ConfigError(f"--report_to wandb: W&B did not start ({mode}): {exc}") from None
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)
        self.path = str(Path(self.run.dir).parent)  # .../wandb/<mode>-run-<time>-<id>

    def scalars(self, tags: Dict[str, float], step: int) -> None:
        self.run.log({**tags, STEP: step})

    def summary(self, values: Dict[str, Any], step: int) -> None:
        self.run.summary.update({k: v for k, v in values.items() if v is not None})

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)
