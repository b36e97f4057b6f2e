"""Do the JAX generators (andi_jax.data.simulate) draw the same trajectories as andi-datasets 2.1.13?

  python experiments/validate_generators.py                  # default size: ~10 minutes on 2 cores
  python experiments/validate_generators.py --n 4000 --replay-seeds 20

1. Replay: every core fed the draws andi made for a seed; worst relative error per model and dtype.
2. Statistics with independent randomness, per model and alpha of the challenge grid (139 cells), n
   trajectories of T = 1000 per side, the JAX side from the recipe's own generator (float32):
   two-sample KS on the per-trajectory TAMSD exponent (lags 1..32, rounded to 1e-3) and on one
   increment per trajectory at lags 1, 10, 100 from t0 = 500 (normalised trajectories); and a closed
   form per model on the raw JAX output (Bonferroni-combined within the cell):
     SBM   Var x_j = (j+1)^a - 1 (chi-square, j = 1, 10, 100, 999)
     FBM   Var x_j = (j/(T-1))^a (chi-square, same j), increment correlation 2^(2H-1) - 1 (z-test)
     CTRW  P(all zero) = T^-a (binomial)
     LW    |dx| constant within a trajectory, |dx| ~ U(0, 10) across trajectories (KS)
     ATTM  E[dx_1^2] = 2 E[V^(1/sigma)], V ~ U(0.01, 0.9], sigma ~ U(0.03, min(3.3, a/(1-a))) (z-test)
   A few 2D and 3D cells repeat the TAMSD test. A p-value below 1e-4 (Bonferroni over ~700 tests) fails.
Writes experiments/results/generators/report.md and report.json.
"""

import argparse
import concurrent.futures as cf
import itertools
import json
import multiprocessing
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.stats

from andi_jax.data import recipe
from andi_jax.data import simulate as sim

OUT = os.path.join(os.path.dirname(__file__), "results", "generators")
LAGS = (1, 10, 100)
T0 = 500
FAIL = 1e-4


def andi_cell(model: str, alpha: float, n: int, T: int, dim: int, seed: int) -> np.ndarray:
  """n andi trajectories (n, dim, T), float64, from a seeded stream (runs in a worker process)."""
  theory, _, stochastic_random = recipe._andi()
  np.random.seed(seed)
  stochastic_random.seed(seed)
  with np.errstate(over="ignore"):
    return np.stack([getattr(theory, model)(T=T, alpha=alpha, D=dim).reshape(dim, T) for _ in range(n)])


def normalized(raw_NxDxT: np.ndarray) -> np.ndarray:
  n, dim, T = raw_NxDxT.shape
  return recipe._normalize(raw_NxDxT.reshape(n * dim, T)).reshape(n, dim, T)


def two_sample(ref_norm, ours_norm) -> dict:
  """KS p-values between andi's and our normalised trajectories (n, dim, T)."""
  tamsd = lambda x: np.round(sim.tamsd_exponents(x), 3)  # float32 vs float64 ties (LW lines)
  p = {"tamsd": scipy.stats.ks_2samp(tamsd(ref_norm), tamsd(ours_norm)).pvalue}
  if ref_norm.shape[1] == 1:
    for lag in LAGS:
      inc = lambda x: x[:, 0, T0 + lag] - x[:, 0, T0]
      p[f"dx{lag}"] = scipy.stats.ks_2samp(inc(ref_norm), inc(ours_norm)).pvalue
  return p


def chi2_variance(x, variance) -> float:
  """Two-sided p of sum(x^2) / variance ~ chi2(n) for zero-mean Gaussian x."""
  s = np.sum(np.asarray(x, np.float64) ** 2) / variance
  return float(2 * min(scipy.stats.chi2.cdf(s, len(x)), scipy.stats.chi2.sf(s, len(x))))


def z_mean(samples, expected) -> float:
  samples = np.asarray(samples, np.float64)
  z = (samples.mean() - expected) / (samples.std(ddof=1) / np.sqrt(len(samples)))
  return float(2 * scipy.stats.norm.sf(abs(z)))


def attm_mean_d(alpha: float) -> float:
  hi = 3.3 if alpha == 1 else min(3.3, alpha / (1 - alpha))
  mean_v = lambda s: (0.9 ** (1 / s + 1) - 0.01 ** (1 / s + 1)) / ((1 / s + 1) * 0.89)  # E[V^(1/s)]
  return scipy.integrate.quad(mean_v, 0.03, hi)[0] / (hi - 0.03)


def closed_form(model: str, alpha: float, raw_x, raw_dx) -> tuple[float, str]:
  """Bonferroni-combined p of the model's closed forms on raw output x (n, T), dx (n, T - 1)."""
  T = raw_x.shape[-1]
  js = (1, 10, 100, T - 1)
  if model == "sbm":
    ps = [chi2_variance(raw_x[:, j], (j + 1) ** alpha - 1) for j in js]
    what = "Var x_j"
  elif model == "fbm":
    H = alpha / 2
    ps = [chi2_variance(raw_x[:, j], (j / (T - 1)) ** alpha) for j in js]
    ps.append(z_mean(raw_dx[:, T0] * raw_dx[:, T0 + 1] * (T - 1) ** (2 * H), 2 ** (2 * H - 1) - 1))
    what = "Var x_j, rho(1)"
  elif model == "ctrw":
    zero = int(np.sum(np.all(raw_dx == 0, axis=1)))
    ps = [scipy.stats.binomtest(zero, len(raw_dx), T ** -alpha).pvalue]
    what = f"P(all 0) {zero / len(raw_dx):.3f} vs {T ** -alpha:.3f}"
  elif model == "lw":
    speed = np.abs(raw_dx)
    constant = np.all(speed.max(1) - speed.min(1) <= 1e-6 * speed.max(1))
    ps = [scipy.stats.kstest(speed[:, 0], scipy.stats.uniform(0, 10).cdf).pvalue * constant]
    what = "|dx| const, ~U(0,10)"
  else:
    ps = [z_mean(raw_dx[:, 0] ** 2, 2 * attm_mean_d(alpha))]
    what = "E dx_1^2"
  return min(1.0, len(ps) * min(ps)), what


def replay_sweep(seeds: int) -> list[dict]:
  """Worst relative error of each core fed andi's draws, float64 and float32 (FBM: with the table)."""
  cores = {name: jax.jit(core, static_argnums=1) for name, core in sim.CORE.items()}
  rows = []
  for model in recipe.MODELS:
    alphas = recipe.allowed_alphas(model)[[0, len(recipe.allowed_alphas(model)) // 2, -1]]
    cases = [(a, T, 1, s) for a, T, s in itertools.product(alphas, (10, 37, 100, 1000), range(seeds))]
    cases += [(a, T, d, s) for a, T, d, s in itertools.product(alphas, (37, 100), (2, 3), range(max(1, seeds // 4)))]
    replays = [(case, sim.andi_replay(model, *case)) for case in cases]
    for dtype, x64 in (("float64", True), ("float32", False)):
      errors = []
      with jax.enable_x64(x64):
        for (alpha, T, dim, seed), (noise, x) in replays:
          dt = jnp.float64 if x64 else jnp.float32
          noise = {k: jnp.asarray(v, dt if np.asarray(v).dtype.kind == "f" else None) for k, v in noise.items()}
          kw = {}
          if model == "fbm":
            kw["sqrt_eigenvalues"] = jnp.asarray(sim.fbm_eigenvalue_table([alpha], T)[0], dt)
          y = np.asarray(sim.positions(cores[model](jnp.asarray(alpha, dt), T, noise, **kw)), np.float64)
          errors.append(np.max(np.abs(y - x)) / max(np.max(np.abs(x)), 1e-300))
      errors = np.array(errors)
      tol = 1e-10 if x64 else 1e-5
      rows.append({"model": model, "dtype": dtype, "cases": len(errors), "worst": float(errors.max()),
                   "median": float(np.median(errors)), "over_tol": int(np.sum(errors > tol)), "tol": tol})
  return rows


def statistics(n: int, T: int, workers: int, extra_dims: bool) -> list[dict]:
  cells = [(m, i, 1, n) for m in recipe.MODELS for i in range(len(recipe.allowed_alphas(m)))]
  if extra_dims:
    cells += [(m, len(recipe.allowed_alphas(m)) // 2, d, n // 4) for d in (2, 3) for m in recipe.MODELS]
  generate = {key: jax.jit(lambda k, i, m=key[0], d=key[1]: sim.grid_increments(k, m, i, T, d))
              for key in {(m, d) for m, _, d, _ in cells}}
  ctx = multiprocessing.get_context("spawn")
  rows = []
  submit = lambda pool, c: pool.submit(andi_cell, cells[c][0], float(recipe.allowed_alphas(cells[c][0])[cells[c][1]]),
                                       cells[c][3], T, cells[c][2], 1000 + c)
  with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    window = 2 * workers  # cells in flight: bounds the memory of finished, unread ones
    futures = {c: submit(pool, c) for c in range(min(window, len(cells)))}
    for c, (model, i, dim, k) in enumerate(cells):
      future = futures.pop(c)
      if c + window < len(cells):
        futures[c + window] = submit(pool, c + window)
      alpha = float(recipe.allowed_alphas(model)[i])
      dx, _ = generate[model, dim](jax.random.key(c), jnp.full((k,), i, jnp.int32))
      ours_raw = np.asarray(sim.positions(dx), np.float64)
      ours_norm = np.asarray(sim.positions(sim.normalize(dx)), np.float64)
      ref = future.result()
      row = {"model": model, "alpha": round(alpha, 2), "dim": dim, "n": k, **two_sample(normalized(ref), ours_norm)}
      if dim == 1:
        row["closed"], row["closed_what"] = closed_form(model, alpha, ours_raw[:, 0], np.asarray(dx, np.float64)[:, 0])
      rows.append(row)
      print(f"{model} {alpha:.2f} {dim}D " + " ".join(f"{key}={v:.3g}" for key, v in row.items()
                                                     if isinstance(v, float) and key != "alpha"), flush=True)
  return rows


def report(replay_rows, stat_rows, args, seconds) -> str:
  keys = ["tamsd", *(f"dx{lag}" for lag in LAGS), "closed"]
  pvals = [(r, key) for r in stat_rows for key in keys if key in r]
  low = [(r, key) for r, key in pvals if r[key] < 0.01]
  fail = [(r, key) for r, key in low if r[key] < FAIL]
  cells = len(stat_rows)
  lines = [
      "# JAX generators vs andi-datasets 2.1.13",
      "",
      f"Generated by `experiments/validate_generators.py --n {args.n} --T {args.T} --replay-seeds {args.replay_seeds}`"
      f" in {seconds / 60:.1f} min (jax {jax.__version__}, {jax.default_backend()}).",
      "",
      "## Summary",
      "",
      f"- {cells} cells ({sum(r['dim'] == 1 for r in stat_rows)} in 1D over the challenge grid, "
      f"{sum(r['dim'] > 1 for r in stat_rows)} in 2D/3D), {len(pvals)} p-values.",
      f"- p < 0.01: {len(low)} (about {0.01 * len(pvals):.0f} expected by chance)"
      + (": " + ", ".join(f"{r['model']} {r['alpha']:.2f} {r['dim']}D {key} ({r[key]:.1e})" for r, key in low)
         if low else "") + ".",
      f"- p < {FAIL:g} (fail, Bonferroni over {len(pvals)} tests): {len(fail)}"
      + (": " + ", ".join(f"{r['model']} {r['alpha']:.2f} {r['dim']}D {key}" for r, key in fail) if fail else "")
      + ".",
      "- Replay (core fed andi's draws) worst relative error: "
      + "; ".join(f"{r['model']} {r['dtype']} {r['worst']:.1e}" for r in replay_rows) + ".",
      "",
      "## Replay exactness",
      "",
      "Relative error = max |ours - andi| / max |andi| per trajectory; 1D at T in {10, 37, 100, 1000},",
      "2D and 3D at T in {37, 100}; alphas: the model's first, middle and last grid value. float32 is",
      "allowed to differ where rounding moves an event time across the integer andi floors it to.",
      "",
      "| model | dtype | cases | median | worst | over tolerance (tol) |",
      "|---|---|---|---|---|---|",
  ]
  lines += [f"| {r['model']} | {r['dtype']} | {r['cases']} | {r['median']:.1e} | {r['worst']:.1e} | "
            f"{r['over_tol']} ({r['tol']:g}) |" for r in replay_rows]
  lines += ["", "## Statistical agreement (p-values)", "",
            f"n = {args.n} per side in 1D (n/4 in 2D/3D), T = {args.T}. KS: two-sample against andi; "
            "closed: the model's closed forms on the JAX output (see the script's docstring).", "",
            "| model | alpha | dim | n | KS TAMSD exp. | KS dx lag 1 | KS dx lag 10 | KS dx lag 100 | closed | closed form |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  fmt = lambda r, key: (f"**{r[key]:.3g}**" if r[key] < 0.01 else f"{r[key]:.3g}") if key in r else "-"
  for r in stat_rows:
    lines.append(f"| {r['model']} | {r['alpha']:.2f} | {r['dim']} | {r['n']} | "
                 + " | ".join(fmt(r, key) for key in keys) + f" | {r.get('closed_what', '-')} |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=int, default=2000, help="trajectories per side and cell (1D)")
  parser.add_argument("--T", type=int, default=1000)
  parser.add_argument("--replay-seeds", type=int, default=8)
  parser.add_argument("--workers", type=int, default=2, help="processes generating andi's side")
  parser.add_argument("--no-extra-dims", action="store_true", help="skip the 2D/3D cells")
  args = parser.parse_args()
  start = time.perf_counter()
  replay_rows = replay_sweep(args.replay_seeds)
  print(json.dumps(replay_rows, indent=1), flush=True)
  stat_rows = statistics(args.n, args.T, args.workers, not args.no_extra_dims)
  os.makedirs(OUT, exist_ok=True)
  text = report(replay_rows, stat_rows, args, time.perf_counter() - start)
  with open(os.path.join(OUT, "report.md"), "w") as f:
    f.write(text)
  with open(os.path.join(OUT, "report.json"), "w") as f:
    json.dump({"args": vars(args), "replay": replay_rows, "cells": stat_rows}, f, indent=1)
  print(text.split("## Replay")[0])


if __name__ == "__main__":
  main()
