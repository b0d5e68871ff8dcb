"""``python -m eval_encoder suite``: run a recipe over its datasets (recipes, launchers,
resuming and locks: :mod:`eval_encoder.suite`); ``suite status|collect <recipe>`` follow up."""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Optional, Sequence

from eval_encoder.config import DEFAULT_RESULTS, RESULTS_ENV, ConfigError, results_root
from eval_encoder.launch import LAUNCHERS
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser, option_names
from eval_encoder.suite.follow import collect_main, status_main
from eval_encoder.suite.launchers import (
    DEFAULT_LAUNCHER,
    _add_launcher_options,
    _add_torchrun_flags,
    make_launcher,
    topology_from,
)
from eval_encoder.suite.plan import SUITE_PROG, check_extra_flags, check_inputs, dry_run, seed_extras
from eval_encoder.suite.recipes import _dataset_list, load_recipe
from eval_encoder.suite.runner import check_wait, run_suite
from eval_encoder.suite.show import _summary

FOLLOW = {"status": status_main, "collect": collect_main}


def build_suite_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=SUITE_PROG,
        description="Run a recipe (probes/<name>.yaml) over its datasets; a rerun resumes. "
                    "Other flags go to the trainer (attentive_probe.py) and win over the recipe. "
                    "`suite status <recipe>` and `suite collect <recipe>` follow submitted jobs.")
    parser.add_argument("recipe", help="recipe YAML (e.g. probes/ov_encoder_large_8f.yaml) or a "
                        "shipped recipe's name (ov_encoder_large_8f; see `ls`)")
    parser.add_argument("--data_root", required=True,
                        help="folder holding <dataset>/<manifest>.csv and the videos")
    parser.add_argument("--datasets", help="comma-separated subset to run (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="run every dataset once per seed (head init, sampling and "
                             "augmentation); the leaderboard shows their mean and spread")
    parser.add_argument("--save_report", default=results_root(),
                        help="results root: records go to <save_report>/runs/<dataset>/ "
                             f"(default ${RESULTS_ENV}, else {DEFAULT_RESULTS}: now "
                             f"{results_root()})")
    parser.add_argument("--dry_run", action="store_true",
                        help="print each dataset's command (or batch script) and whether it is "
                             "done; run nothing")
    parser.add_argument("--no_wait_lock", action="store_true",
                        help="skip a dataset that another suite on this --save_report is "
                             "running, instead of waiting for it")
    parser.add_argument("--launcher", choices=list(LAUNCHERS), default=None,
                        help="how runs start: local torchrun or SLURM jobs (default: the "
                             f"recipe's suite.launcher, else {DEFAULT_LAUNCHER})")
    parser.add_argument("--no_wait", action="store_true",
                        help="submit and return (a scheduler's launcher); `suite status` and "
                             "`suite collect` follow the jobs")
    _add_torchrun_flags(parser.add_argument_group("processes and nodes (torchrun's flags)"))
    _add_launcher_options(parser)
    add_verbosity_flags(parser)  # -v/-q
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder suite``; exit 0 when every dataset is complete (with
    ``--no_wait``: complete or submitted), 1 otherwise, 2 for a recipe or option that cannot
    be used. ``suite status|collect <recipe>`` follow a suite's jobs."""
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FOLLOW:
        return FOLLOW[argv[0]](argv[1:])
    parser = build_suite_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        recipe = load_recipe(args.recipe)
        names = (_dataset_list(args.datasets, "--datasets") if args.datasets else recipe.datasets)
        check_extra_flags(extra, option_names(parser))
        launcher = make_launcher(recipe, args, topology_from(recipe, args))
        if args.dry_run:
            dry_run(recipe, names, args, extra, launcher)
            return 0
        if args.seeds and launcher.detached:
            raise ConfigError("--seeds runs the seeds one after another here; with a "
                              "scheduler, submit one suite per --seed")
        check_wait(launcher, not args.no_wait)
        check_inputs(recipe, names, args.data_root, args.save_report,
                     seed_extras(args.seeds, extra)[0])
        outcomes = []
        for seed_extra in seed_extras(args.seeds, extra):
            outcomes += run_suite(recipe, args.data_root, args.save_report, names,
                                  extra=seed_extra, launcher=launcher,
                                  wait_lock=not args.no_wait_lock, topology=launcher.topology,
                                  wait=not args.no_wait)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("\ninterrupted: run the same command again to resume (finished datasets are kept)",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    return _summary(recipe.name, outcomes, args.save_report, args.no_wait)


if __name__ == "__main__":
    sys.exit(main())
