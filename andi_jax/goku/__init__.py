"""GOKU-UI (Abrevaya et al., TMLR 2024) on stochastic Stuart-Landau oscillators, ported from the Julia
code (gabrevaya/TMLR_GOKU-UI; spec: ../shared/specs/GOKU_UI.md).

stuart_landau.py  the latent SDE, its diffrax solve and the synthetic data set
train.py          stacked runs (seeds x training-set sizes) trained by one jitted step; NRMSE
experiment.py     reconstruction and forecast NRMSE against training-set size; table and plot
The models are in andi_jax/goku/model.py (GOKU-UI, GOKU-basic) and goku_baselines.py.

Deviations from the Julia code:
- SDE integrator: fixed-step stochastic Heun at dt0 = 0.0125 (4 steps per observation) on Brownian
  increments pre-sampled on the step grid, differentiated by diffrax's RecursiveCheckpointAdjoint;
  Julia uses adaptive SOSRI with ForwardDiffSensitivity. Measured in benchmarks/GOKU_SDE.md. The data
  are generated with ShARK at dt0 = 0.005 instead of SOSRI.
- Data: independent keys per split, so test trajectories do not reuse training parameters (the Julia
  RNG quirk; DataConfig.test_shares_params restores it). The test set is simulated for the 66 points
  evaluation reads, not 200. W ~ U(-1, 1) as in Julia, but drawn from the data seed. Latent paths are
  stored and projected per batch (exact: the map is linear and noise-free).
- Batches: each step draws batch_size trajectories with replacement from the run's n, not epochs of
  shuffled whole batches. Validation windows and noise are fixed, not redrawn at every check.
- Schedule: the CPU-sized experiment warms up as Julia does, then decays along a cosine over a fixed
  budget; the "julia" schedule (plateau-triggered Cos4Exp, early stopping, the epoch cap) runs the
  paper's grid.
- A step whose gradient is not finite is skipped (optax.apply_if_finite); in Julia a failed solve
  returns NaNs.
- GOKU's unused log-variance heads (`:variational => false`) are left out; no Wilcoxon/Holm tests.
Replicated quirks: the BiLSTM halves are not realigned in time; the loss is divided by mean|x|; the
continuity penalty is in latent space; the SDE noise stays on at test time; wide parameter scales in the
model, narrow in the data; the NRMSE denominator is one scalar per scored segment; LSTM forget-gate bias
1 and trainable initial states.
"""
