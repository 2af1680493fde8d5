"""ctclab.training.experiments.train_family: which settings reach each model's train_model call."""

from ctclab.profiles import get_profile
from ctclab.training import experiments
from ctclab.training.options import OptimizerConfig


def test_schedule_per_model_and_for_all(monkeypatch, tmp_path):
    monkeypatch.setenv("CTCLAB_HOME", str(tmp_path))
    calls = {}

    class Stub:  # stands for a keras.Model: train_family only prints its parameter count
        def count_params(self) -> int:
            return 1

    def record(model, pickle_path, save_model_path, **options):
        calls[save_model_path] = options
        return {}

    monkeypatch.setattr(experiments, "train_model", record)
    warmup = OptimizerConfig(peak_learning_rate=2e-3, warmup_epochs=0.5)
    profile = get_profile("smoke")
    experiments.train_family(
        {"a": Stub(), "b": Stub()}, profile, "demo", epochs={"a": 3, "b": 1}, schedule={"a": warmup, "b": None}
    )
    assert calls["a.keras"]["schedule"] is warmup and calls["b.keras"]["schedule"] is None
    assert (calls["a.keras"]["epochs"], calls["b.keras"]["epochs"]) == (3, 1)

    experiments.train_family({"c": Stub()}, profile, "demo", epochs=2, schedule=warmup)
    assert calls["c.keras"]["schedule"] is warmup
    experiments.train_family({"d": Stub()}, profile, "demo", epochs=2)
    assert calls["d.keras"]["schedule"] is None
