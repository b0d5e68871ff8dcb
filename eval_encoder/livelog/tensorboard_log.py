"""The TensorBoard backend: event files under ``<logs folder>/tensorboard/``.

Each call writes one event holding all its scalars (one event per optimiser step, not one
per tag). A resumed run opens the same folder with ``purge_step`` at the first step it
logs: TensorBoard then hides what the interrupted process logged from that step on (the
steps between its last checkpoint and its end), so no step shows twice. The summary is a
text (a table of the record's result) and the scalars ``reported/top1`` and
``reported/top5`` at the run's last step. Imported only when ``--report_to tensorboard``.
"""
from __future__ import annotations

from typing import Any, Dict

from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from eval_encoder.livelog import Backend, LogPlace


class TensorBoardLog(Backend):
    name = "tensorboard"

    def __init__(self, place: LogPlace):
        folder = place.folder / "tensorboard"
        purge = place.first_step if place.first_step > 1 else None
        self.writer = SummaryWriter(str(folder), purge_step=purge, flush_secs=30)
        self.path = str(folder)

    def scalars(self, tags: Dict[str, float], step: int) -> None:
        values = [Summary.Value(tag=t, simple_value=float(v)) for t, v in tags.items()]
        self.writer._get_file_writer().add_summary(Summary(value=values), step)

    def summary(self, values: Dict[str, Any], step: int) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
        self.writer.add_text("summary", f"| value | |\n|---|---|\n{rows}", step)
        self.scalars({k: v for k, v in values.items()
                      if k in ("reported/top1", "reported/top5") and v is not None}, step)

    def close(self, ok: bool) -> None:
        self.writer.close()
