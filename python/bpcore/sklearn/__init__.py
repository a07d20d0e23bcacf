"""scikit-learn estimators trained by bpcore: `MLPClassifier` and `MLPRegressor`.

Drop-in replacements for scikit-learn's: the same parameters (and positional order), the same
fitting logic and fitted attributes, passing scikit-learn's own MLP test file and
`check_estimator`, with bpcore's Rust core computing every loss, gradient and update.

- `solver="lbfgs"`: scipy's L-BFGS-B on the full-batch loss and gradient from the core;
  "sgd" (with `learning_rate` "constant", "invscaling", "adaptive", `momentum`,
  `nesterovs_momentum`) and "adam" train mini-batches in the core, one native call per epoch;
  bpcore adds the stochastic solvers "adamw", "rmsprop" and "adagrad".
- Weights start as scikit-learn's (Glorot uniform drawn from `random_state` in its order), and
  each epoch visits the rows in scikit-learn's shuffled order, so that one `random_state`
  starts both libraries from the same weights on the same batches.
- Targets as scikit-learn lays them out: a softmax output per class, one logistic output for
  two classes, one per label for a multi-label indicator `y`; `loss="poisson"` for the
  regressor (exponential output). X may be scipy sparse (CSR/CSC, made dense a block of rows at a
  time); the compute dtype follows X (float32 input trains in float32) unless `dtype` says.
- `sample_weight` and `alpha` as scikit-learn's, batch by batch: each mini-batch's loss is
  Σ w_i·l_i / Σ w_i over its rows (the core's `sample_weight_reduction=
  "mean_with_sample_weight"`), and its L2 gradient alpha·W / Σ w of that batch (the row count
  without weights, a shorter last batch included), on the weights only, not the intercepts
  (the optimizer's `no_decay=["bias"]` and `weight_decay_per_batch_weight`). So "sgd" takes
  scikit-learn's steps to rounding, with or without sample weights, momentum or shuffling, and a
  weight of 2 is a row repeated in its mini-batch (with shuffle=False and the copy in its
  row's batch: shuffled, the two data sets are permuted differently, in scikit-learn too).

  `loss_`, `loss_curve_` and the stopping rule on them add each batch's L2 term before its step,
  as scikit-learn's accumulated loss does.

Differences that remain: Adam adds its epsilon as torch does (to sqrt(v̂)). "adamw" decays the
weights by lr·alpha per step, decoupled, and its loss has no L2 term. bpcore's
own parameters: `dropout` (after every hidden activation; not with lbfgs) and `dtype` (None:
follow X; "float32" or "float64").

scikit-learn is needed (``pip install bpcore[sklearn]``); this module imports it.
"""

from __future__ import annotations

from bpcore.sklearn._classifier import MLPClassifier
from bpcore.sklearn._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
