"""The MLflow pyfunc flavour of a labelloop model: ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` answer with :class:`~labelloop.mlops.predictor.Predictor`'s frame
(label, confidence, one probability per label; or value for regression)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

with warnings.catch_warnings():
    # MLflow warns about its own type hints on import.
    warnings.simplefilter("ignore", UserWarning)
    import mlflow.pyfunc

with warnings.catch_warnings():
    # It suggests type hints on predict when the class is made; it would turn them into an
    # input schema, and a labelloop model takes texts or table rows. MLflow checks inside its
    # own catch_warnings with a "once" filter, which beats any filter set here, so the
    # warning's display is what is switched off (catch_warnings restores it after).
    warnings.showwarning = lambda *args, **kwargs: None

    class LabelloopModel(mlflow.pyfunc.PythonModel):
        """Loads ``artifacts/model.joblib`` (pipeline, featurizer settings) once per process."""

        # No type hints on the two methods: MLflow reads them as an input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            from labelloop.mlops.predictor import Predictor

            self.predictor = Predictor.load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return self.predictor.predict_frame(model_input)


def save_pyfunc(model_file: Path, out_dir: Path) -> None:
    """Write the pyfunc model folder (MLmodel, the pickled wrapper, artifacts/model.joblib).
    The requirements are stated, not inferred: inference imports the model and runs pip."""
    # MLflow warns that a Python object is pickled with CloudPickle: the object is this
    # module's class with no state, unpickled by reference to labelloop.registry.pyfunc.
    # It also suggests type hints on predict, which it would turn into an input schema.
    with _mlflow_log_level(logging.ERROR), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            path=str(out_dir),
            python_model=LabelloopModel(),
            artifacts={"model": str(model_file)},
            pip_requirements=[f"labelloop=={version('labelloop')}"],
        )


@contextmanager
def _mlflow_log_level(level: int) -> Iterator[None]:
    logger = logging.getLogger("mlflow")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
