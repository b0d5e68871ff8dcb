"""Run one recipe (a leaderboard row) over its datasets: ``python -m eval_encoder suite``.

A recipe (``probes/<name>.yaml``) is the probe options of one encoder configuration --
every key a ProbeConfig / CodecOptions field, exactly as ``--config`` takes them -- plus one
suite-only key that the suite strips before the trainer sees the file::

    model_family: sampling
    ...                      # any probe option
    nnodes: 2                # optional: torchrun's multi-node keys go to torchrun, not the trainer
    suite:
      datasets: [ssv2, diving48]       # required: the row's datasets, in run order
      per_dataset:                     # optional: options for one dataset only
        diving48: {static_abs_thresh: 126}
      description: one line for people
      launcher: slurm                  # optional: how the runs start (default local)
      slurm: {partition: gpu, time: "12:00:00"}   # optional: a launcher's settings

For each dataset the suite writes the probe options (merged with that dataset's
``per_dataset`` entry) to ``<save_report>/suite/<recipe>/<dataset>.yaml`` and runs
``attentive_probe.py --config <that> --dataset D --data_root R --save_report S [flags]``
(through torchrun when there is more than one process; flags the suite does not know go to
the trainer and win over the recipe). Epochs and batch size come from the dataset cards
unless the recipe sets them.

How a run starts is the launcher's business (``eval_encoder/launch``): ``local`` runs
torchrun here, one dataset at a time or ``--parallel N`` at once, or joins other nodes
(``--nnodes``/``--rdzv_endpoint``, one suite per node); ``slurm`` submits one batch job per
dataset and follows it (``--no_wait``: submit and return; ``suite status``/``suite collect``
follow up later). Every launcher has the same interface: the suite never branches on it.

Before it starts anything, the suite runs the trainer's usage checks for every dataset (data
root, manifests, model names, weights: ``plan.check_inputs``); a problem ends it with exit
status 2, listing the datasets that could run.

Resuming: a dataset is skipped when ``<save_report>/runs/<dataset>/`` holds a complete
record with the same ``config_hash`` -- computed exactly as the trainer does, from the very
argv it will receive -- and the same world size (the batch size is per process, so another
world size is another experiment). A run that ends without writing a record gets a failed
record written by the suite (saying how it ended: exit status, or the SLURM state, and where
its log is), and the suite goes on with the next dataset. It ends with the recipe's row of
the leaderboard; the exit status is 0 only when every dataset is complete (or, with
``--no_wait``, submitted).

Two suites on one ``--save_report``: each dataset of a recipe is claimed under a lock
(``<save_report>/suite/<recipe>/<dataset>.lock``, fcntl.flock), held for the whole run by a
local launcher and while submitting by a scheduler's; a dataset whose job an earlier suite
submitted and that is still queued or running is followed, not submitted again. The suite's
jobs are kept in ``<save_report>/suite/<recipe>/state.json``. Every file the suite writes
goes through a uniquely named temporary file.

A local trainer runs in its own process group and dies with the suite (see
``eval_encoder/launch/process.py``); SLURM jobs outlive it.

The package, from the bottom (each module imports only those above it in this list):
``recipes`` (read and check a recipe; write a dataset's ``--config`` file), ``books`` (the
records a run left, a failed record for one that left none, each dataset's Outcome),
``show`` (what the suite prints), ``locks`` (one suite per recipe and dataset), ``plan``
(each dataset's trainer flags, config hash and task; seeds; the dry run), ``launchers``
(the launcher and topology from flags and recipe), ``runner`` (the Drive over the
datasets; run_suite), ``follow`` (``suite status`` and ``suite collect``) and ``cli``
(``python -m eval_encoder suite``).
"""
