"""A wide raw CSV that is not Friedman #1: a dozen informative inputs at random positions among
thousands of noise inputs, on wildly different raw scales, with sines, squares and products in the target.

    python benchmarks/wide_table.py -o benchmarks/work/wide.csv --rows 60000 --cols 2000 [--seed 1]

The layout — which inputs are informative, each input's distribution (uniform or normal), raw scale
(10^U(-4, 4)) and offset — depends on ``--cols`` and ``--layout-seed`` only, never on ``--seed``: files
made with different ``--seed`` are new rows of the same distribution (a separate test set is
``--seed 2``). With ``s1 … s12`` the informative inputs standardized (mean 0, variance 1), the target is

    f = 2 sin(1.5 s1) + s2 s3 + 0.7 s4² + 1.5 sin(s5 + s6) + s7 s8 + 1.5 s9 + s10 sin(s11) + 0.5 s12²
    y = f + ε,  ε ~ N(0, σ²),  σ chosen so that the best R² any model can reach is --best-r2 (0.98)

The noise σ and the best R² are printed and written beside the CSV (``wide.csv.json``, with the
informative columns' names), so a result can be read against the best possible. Rows are written in
chunks with NumPy (the table is never in memory), to a temporary name renamed when complete.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

N_INFORMATIVE = 12


def target(s: np.ndarray) -> np.ndarray:
    """f of the standardized informative inputs ``s`` (rows x 12)."""
    return (2.0 * np.sin(1.5 * s[:, 0]) + s[:, 1] * s[:, 2] + 0.7 * s[:, 3] ** 2
            + 1.5 * np.sin(s[:, 4] + s[:, 5]) + s[:, 6] * s[:, 7] + 1.5 * s[:, 8]
            + s[:, 9] * np.sin(s[:, 10]) + 0.5 * s[:, 11] ** 2)


class Layout:
    """Which inputs are informative and how every input is drawn and scaled (``--cols``, ``--layout-seed``)."""

    def __init__(self, cols: int, layout_seed: int = 0, best_r2: float = 0.98):
        if cols < N_INFORMATIVE + 2:
            raise SystemExit(f"--cols must be at least {N_INFORMATIVE + 2}")
        if not 0 < best_r2 < 1:
            raise SystemExit("--best-r2 must be in (0, 1)")
        rng = np.random.default_rng([layout_seed, cols])
        self.n_inputs = cols - 1
        self.informative = np.sort(rng.choice(self.n_inputs, N_INFORMATIVE, replace=False))
        rng.shuffle(self.informative)  # the k-th term of f uses input informative[k], in no particular order
        self.normal = rng.random(self.n_inputs) < 0.5                 # else uniform
        self.scale = 10.0 ** rng.uniform(-4, 4, self.n_inputs)         # raw = offset + scale * s
        self.offset = self.scale * rng.uniform(-50, 50, self.n_inputs)
        # the variance of f, by Monte Carlo with a fixed seed, gives the noise for the best R² asked for
        s = self.standard(np.random.default_rng(12345), 1_000_000, self.informative)
        self.var_f = float(np.var(target(s)))
        self.sigma = float(np.sqrt(self.var_f * (1 - best_r2) / best_r2))
        self.best_r2 = best_r2

    def standard(self, rng, n: int, columns=None) -> np.ndarray:
        """``n`` rows of the inputs ``columns`` (default: all), standardized: N(0, 1) or U(-√3, √3)."""
        normal = self.normal if columns is None else self.normal[columns]
        z = rng.standard_normal((n, normal.size))
        u = rng.uniform(-np.sqrt(3), np.sqrt(3), (n, normal.size))
        return np.where(normal, z, u)

    def names(self) -> list[str]:
        return [f"x{j + 1}" for j in range(self.n_inputs)] + ["y"]


def write(path: Path, rows: int, layout: Layout, seed: int, chunk_rows: int = 1000) -> dict:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rng = np.random.default_rng([seed, 1])
    sse = sst_sum = sst_sq = 0.0
    fmt = ",".join(["%.7g"] * (layout.n_inputs + 1))
    try:
        with open(tmp, "w") as f:
            f.write(",".join(layout.names()) + "\n")
            for start in range(0, rows, chunk_rows):
                n = min(chunk_rows, rows - start)
                s = layout.standard(rng, n)
                fx = target(s[:, layout.informative])
                y = fx + layout.sigma * rng.standard_normal(n)
                sse += float(np.sum((y - fx) ** 2))
                sst_sum, sst_sq = sst_sum + float(y.sum()), sst_sq + float(np.sum(y ** 2))
                raw = np.empty((n, layout.n_inputs + 1))
                raw[:, :-1] = layout.offset + layout.scale * s
                raw[:, -1] = y
                np.savetxt(f, raw, fmt=fmt, delimiter=",")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sst = sst_sq - sst_sum ** 2 / rows
    return {"rows": rows, "cols": layout.n_inputs + 1, "seed": seed,
            "informative": [f"x{j + 1}" for j in layout.informative],
            "noise_sigma": layout.sigma, "var_f": layout.var_f, "best_r2": layout.best_r2,
            "oracle_r2_of_these_rows": 1 - sse / sst,
            "target": "2 sin(1.5 s1) + s2 s3 + 0.7 s4^2 + 1.5 sin(s5 + s6) + s7 s8 + 1.5 s9 + s10 sin(s11) "
                      "+ 0.5 s12^2 + noise; s_k = informative[k-1] standardized"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="the CSV to write")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--cols", type=int, required=True, help="columns, the target y included")
    ap.add_argument("--seed", type=int, default=1, help="seed of the rows (not of the layout)")
    ap.add_argument("--layout-seed", type=int, default=0, help="seed of the informative positions and scales")
    ap.add_argument("--best-r2", type=float, default=0.98, help="R² of the true f: sets the noise σ")
    args = ap.parse_args(argv)
    if args.rows < 1:
        raise SystemExit("--rows must be at least 1")
    t0 = time.perf_counter()
    layout = Layout(args.cols, args.layout_seed, args.best_r2)
    info = write(Path(args.output), args.rows, layout, args.seed)
    info["layout_seed"] = args.layout_seed
    Path(args.output + ".json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{args.rows} rows x {args.cols} columns -> {args.output} ({time.perf_counter() - t0:.0f} s); "
          f"informative: {', '.join(info['informative'])}; noise σ {layout.sigma:.4f}, best R² {args.best_r2}",
          file=sys.stderr)
    return info


if __name__ == "__main__":
    main()
