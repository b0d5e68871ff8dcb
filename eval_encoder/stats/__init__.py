"""Intervals, paired comparisons and per-dataset metrics, from the per-clip prediction files.

Every complete run keeps what its reported head said about every scored validation clip in
``<run_id>.predictions.npz`` beside its record (``record["predictions"]``: file, sha256; arrays
``id``, ``label``, ``top5`` and, when the card's metrics need it, ``prob``). From those files:

- **Metrics** (:data:`METRICS`): top-1, top-5, mean per-class accuracy (mean over the classes
  present of each class's top-1 recall) and mAP (mean over the classes present of each class's
  average precision, from every class's probability; tied scores form one threshold, as in
  scikit-learn's ``average_precision_score``). EPIC-Kitchens action accuracy (verb and noun both
  right) joins an ``epic_verb`` and an ``epic_noun`` run by clip id (:data:`DERIVED`).
- **Intervals**: a clip-level bootstrap percentile interval with a fixed seed, and the exact
  Clopper-Pearson interval for a share of clips, which a single run's share also gets under
  ``--ci bootstrap`` when fewer than 10 clips are right or fewer than 10 wrong (``small``:
  the rule, its coverage simulation, Newcombe's paired interval for such shares). The interval of an average over datasets
  resamples each dataset's clips on its own (its own random stream, keyed by its name) and
  averages the per-dataset replicates.
- **Paired comparison**: two runs (or seed-means) on the same clips, resampled jointly, and
  the exact McNemar test (two-sided binomial test on the discordant clips).

How the bootstrap is computed. Every statistic here depends on the clips only through how many
clips fall in each of a few *cells* (:class:`ClipStat`): top-1 needs right/wrong (2 cells),
mean per-class accuracy (class, right) (2C cells), a paired difference (A right, B right) (4
cells), a seed-mean the pattern over seeds. Drawing n clips with replacement puts
Multinomial(n, counts / n) clips in the cells, so a resample is drawn as those counts: the same
distribution as resampling clip indices, at a cost that does not grow with n. mAP depends on
every clip's rank (one cell per clip), so it draws clip indices, in chunks, and its replicates
are re-centred on the estimate (see :func:`centre` for why and what was measured).

Rooms: ``clips`` (statistics of clips), ``intervals`` (bootstrap, exact intervals, McNemar),
``small`` (shares where the bootstrap misleads), ``measures`` (metrics, prediction files,
alignment), ``cells`` (leaderboard cells, paired comparison), ``errors``. This package re-exports their public names.
"""
from eval_encoder.stats.cells import (Cell, Paired, card_metrics, cell_summary, declared,
                                      derived_summary, paired, record_value, seed_of, seed_pairs)
from eval_encoder.stats.clips import (COLUMN_CELLS, ClipStat, average_precision, class_mean, joint,
                                      map_stat, mean_of, proportion)
from eval_encoder.stats.errors import ClipsDiffer, MissingPredictions, StatsError
from eval_encoder.stats.intervals import (CHUNK, INTERVALS, LEVEL, RESAMPLES, SEED, Interval,
                                          average_interval, binomial_cdf, bootstrap, centre,
                                          clopper_pearson, mcnemar_exact, percentile_interval,
                                          rng_for)
from eval_encoder.stats.measures import (DERIVED, METRICS, VIEWS, Derived, Measure, Metric, View,
                                         aligned, alignment, clip_keys, derived_measure,
                                         load_predictions, measure, predictions_path, view, where)
from eval_encoder.stats.small import (MINORITY, jeffreys_draws, needs_exact, newcombe,
                                      paired_draws, table_of, wilson)

__all__ = ["aligned", "alignment", "average_interval", "average_precision", "binomial_cdf",
           "bootstrap", "card_metrics", "Cell", "cell_summary", "centre", "CHUNK", "class_mean",
           "clip_keys", "ClipsDiffer", "ClipStat", "clopper_pearson", "COLUMN_CELLS", "declared",
           "DERIVED", "Derived", "derived_measure", "derived_summary", "Interval", "INTERVALS",
           "joint", "LEVEL", "load_predictions", "map_stat", "mcnemar_exact", "mean_of", "Measure",
           "measure", "Metric", "METRICS", "MissingPredictions", "Paired", "paired",
           "percentile_interval", "predictions_path", "proportion", "record_value", "RESAMPLES",
           "rng_for", "SEED", "seed_of", "seed_pairs", "StatsError", "View", "view", "VIEWS",
           "where", "MINORITY", "jeffreys_draws", "needs_exact", "newcombe", "paired_draws",
           "table_of", "wilson"]
