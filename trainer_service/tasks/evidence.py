"""Which features a task's parts read: the embedding and the detector evidence of the class
that guides the task.

The cached vectors carry the evidence of one detector class, the feature service's target
class, so today every task reads the vectors as they are stored, whatever detector class
it names (`auto`, `none` or a class); its `detector_class` is kept with it and listed.
This function is the one place a task's evidence is decided: where vectors carry every
class's evidence, it derives the task's from them.
"""

from __future__ import annotations

from trainer_service.features.store import FeatureStore
from trainer_service.tasks.spec import TaskSpec


def task_features(store: FeatureStore, spec: TaskSpec) -> FeatureStore:
    """The feature store as the task `spec` reads it."""
    del spec  # every task reads the target class's evidence (see above)
    return store
