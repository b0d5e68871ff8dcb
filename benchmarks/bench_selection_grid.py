"""The optimism of reporting a grid's validation maximum, and of the held-out choice, by
simulation (:mod:`eval_encoder.stats.grid`: the model is stated there).

    python benchmarks/bench_selection_grid.py [--replicates 10000] [--seed 0]

Every snapshot has the same true accuracy p = 0.6; prints, per validation size n and grid
(heads x epochs), the mean points the val maximum gains over p and what the held-out choice's
validation score gains (held-out slice: 10% of the training manifest: HMDB51 split 1 (1,530
val clips) 357, SSv2 (24,777 val clips) 16,891), then the 20 x 20 grid under other
correlations. The tables of results/README.md are this script's output at its defaults.
"""
import argparse

from eval_encoder.stats.grid import simulate_grid

SIZES = ((1_530, 357), (24_777, 16_891))  # (val clips, held-out clips)
GRIDS = ((1, 1), (1, 20), (5, 20), (20, 1), (20, 20))
# (epoch_fresh, head_fresh): near copies, the default, looser, independent snapshots
MODELS = ((0.05, 0.1), (0.1, 0.3), (0.3, 0.5), (1.0, 1.0))


def cell(g) -> str:
    return f"{g.val_max.mean:+.2f} ± {g.val_max.error:.2f} | {g.heldout.mean:+.2f} ± " \
           f"{g.heldout.error:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| n val | held-out clips | heads x epochs | val max - p (points) | "
          "held-out choice - p (points) |\n|---:|---:|:-:|---:|---:|")
    for n, m in SIZES:
        for h, e in GRIDS:
            g = simulate_grid(h, e, n, m, replicates=args.replicates, seed=args.seed)
            print(f"| {n:,} | {m:,} | {h} x {e} | {cell(g)} |")
    print("\n| n val | epoch_fresh | head_fresh | 20 x 20: val max - p | held-out choice - p "
          "|\n|---:|---:|---:|---:|---:|")
    for n, m in SIZES:
        for u, v in MODELS:
            g = simulate_grid(20, 20, n, m, replicates=args.replicates, seed=args.seed,
                              epoch_fresh=u, head_fresh=v)
            print(f"| {n:,} | {u} | {v} | {cell(g)} |")


if __name__ == "__main__":
    main()
