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
- `sample_weight`: a batch's loss is Σ w_i·l_i / Σ w_i and the L2 term's `alpha` is divided by
  the same sum, as scikit-learn's.

Differences that remain: the core's optimizers apply `alpha` as weight decay to the intercepts
too (scikit-learn penalizes the weights only; lbfgs here follows scikit-learn exactly), with
the decay of a full batch (alpha / batch_size) also on a shorter last batch and, with sample
weights, the whole set's mean weight in place of each batch's sum; `loss_curve_` of the
stochastic solvers adds the penalty of the weights at the end of each epoch. Adam adds its
epsilon as torch does (to sqrt(v̂)). bpcore's own parameters: `dropout` (after every hidden
activation; not with lbfgs) and `dtype` (None: follow X; "float32" or "float64").

scikit-learn is needed (``pip install bpcore[sklearn]``); this module imports it.
"""

from __future__ import annotations

from bpcore.sklearn._classifier import MLPClassifier
from bpcore.sklearn._regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
