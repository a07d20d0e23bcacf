"""Deploy to ONNX: a digits network and a scikit-learn pipeline, trained by bpcore, served by ONNX
Runtime next to bpcore's own predictions.

The network (64-128-64-10, ReLU, dropout) trains on scikit-learn's digits and is written with
`bp.to_onnx(net, path, probabilities=True)`: a standard ONNX model with a dynamic batch, whose
outputs are the logits and the class probabilities. A pipeline (StandardScaler, then bpcore's
MLPClassifier) on the raw pixels is converted by skl2onnx, which `import bpcore.sklearn_onnx`
teaches about bpcore's estimators. ONNX Runtime loads both files and predicts the test set; the
example prints both accuracies and how far ONNX Runtime's probabilities are from bpcore's.
Without onnx, onnxruntime or skl2onnx installed it says how to get them and exits cleanly.

    pip install ".[sklearn,onnx]" skl2onnx && python examples/deploy_onnx.py [folder]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bpcore as bp
from bpcore.sklearn import MLPClassifier


def serve(ort: Any, path: Path, X: np.ndarray) -> list[Any]:
    """ONNX Runtime's outputs for X from the model file at `path` (as a server would load it)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(session.run(None, {session.get_inputs()[0].name: X}))


def main(folder: str = ".") -> dict[str, float] | None:
    """Trains, exports and serves both models; returns the accuracies and the largest
    probability differences (None without the ONNX packages)."""
    try:
        import onnxruntime as ort
        import skl2onnx

        import bpcore.sklearn_onnx  # noqa: F401  (registers bpcore's estimators with skl2onnx)
    except ImportError as e:
        print(
            f"This example needs onnx, onnxruntime and skl2onnx ({e}): "
            'pip install "bpcore[onnx]" skl2onnx, then run it again. Skipping.'
        )
        return None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pixels, y = load_digits(return_X_y=True)
    X = (pixels / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test, raw_train, raw_test = train_test_split(
        X, y, pixels, test_size=0.2, stratify=y, random_state=0
    )

    # The network, as bpcore trains it, and its ONNX file.
    net = bp.Network(
        [
            bp.Dense(64, 128),
            bp.ReLU(),
            bp.Dropout(0.2),
            bp.Dense(128, 64),
            bp.ReLU(),
            bp.Dense(64, 10),
        ],
        loss="cross_entropy",
        optimizer=bp.Adam(lr=3e-3),
        seed=0,
    )
    net.fit(X_train, y_train, epochs=25, batch_size=32, progress=False)
    network_file = out / "digits.onnx"
    bp.to_onnx(net, network_file, probabilities=True)
    logits, probabilities = serve(ort, network_file, X_test)
    network = {
        "bpcore": float(np.mean(net.predict(X_test) == y_test)),
        "onnx": float(np.mean(probabilities.argmax(axis=1) == y_test)),
        "probability_difference": float(np.abs(probabilities - net.predict_proba(X_test)).max()),
        "logit_difference": float(np.abs(logits - net.forward(X_test)).max()),
    }
    print(
        f"network:  bpcore test accuracy {network['bpcore']:.2%}, ONNX Runtime "
        f"{network['onnx']:.2%} ({network_file}); probabilities differ by at most "
        f"{network['probability_difference']:.1e}"
    )

    # The pipeline on raw pixels, converted by skl2onnx.
    pipeline = make_pipeline(
        StandardScaler(),
        MLPClassifier((64,), learning_rate_init=3e-3, max_iter=60, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(raw_train, y_train)
    model = skl2onnx.to_onnx(pipeline, raw_train[:1].astype(np.float32), options={"zipmap": False})
    pipeline_file = out / "digits_pipeline.onnx"
    pipeline_file.write_bytes(model.SerializeToString())
    labels, pipeline_probabilities = serve(ort, pipeline_file, raw_test.astype(np.float32))
    expected = pipeline.predict_proba(raw_test)
    served = {
        "bpcore": float(pipeline.score(raw_test, y_test)),
        "onnx": float(np.mean(labels == y_test)),
        "agreement": float(np.mean(labels == pipeline.predict(raw_test))),
        "probability_difference": float(np.abs(pipeline_probabilities - expected).max()),
    }
    print(
        f"pipeline: bpcore test accuracy {served['bpcore']:.2%}, ONNX Runtime "
        f"{served['onnx']:.2%} ({pipeline_file}); the same label for {served['agreement']:.2%} "
        f"of the samples, probabilities differ by at most {served['probability_difference']:.1e} "
        "(float32 input)"
    )
    return {
        **{f"network_{k}": v for k, v in network.items()},
        **{f"pipeline_{k}": v for k, v in served.items()},
    }


if __name__ == "__main__":
    main(*sys.argv[1:2])
