"""The course's ``train_utils``: train a model with CTC, then compare and score runs (course names).

Owners: :mod:`ctclab.training.trainer` (``train_model``), :mod:`ctclab.training.evaluation`
(scores on a held-out split), :mod:`ctclab.runs` (every file of a run folder),
:mod:`ctclab.course.notebook` (``get_predictions``, the course's STEP 3).
"""

from ctclab.course.notebook import get_predictions
from ctclab.runs import load_histories, load_history, load_trained_model
from ctclab.training.evaluation import compare_models, evaluate_model, predict_texts
from ctclab.training.trainer import course_optimizer, default_optimizer, train_model

__all__ = [
    "compare_models",
    "course_optimizer",
    "default_optimizer",
    "evaluate_model",
    "get_predictions",
    "load_histories",
    "load_history",
    "load_trained_model",
    "predict_texts",
    "train_model",
]
