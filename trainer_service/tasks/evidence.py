"""Which features a task's parts read: the embedding and the detector evidence of the class
that guides the task.

The feature service stores every detector class's evidence with each image, and the
trainer keeps those stored vectors (`features/task_evidence.py`). The vectors in memory,
which every part of a task reads, carry the embedding and one class's evidence: the class
chosen for the trainer's default task (`feature_task`). A task of another class in the
same trainer reads that class's evidence too, today; a task whose class differs runs best
in a trainer of its own (TRAINER_DETECTOR_CLASS, see docs/tasks.md). This module is the
one place a task's evidence is decided.
"""

from __future__ import annotations

from trainer_service.config import Config
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import Task
from trainer_service.tasks.spec import TaskSpec


def feature_task(config: Config) -> Task:
    """What the feature client needs of a task's settings: which detector class guides it."""
    return Task(config.detector_class, config.label_id, config.display_name)


def task_features(store: FeatureStore, spec: TaskSpec) -> FeatureStore:
    """The feature store as the task `spec` reads it."""
    del spec  # every task reads the evidence of the default task's class (see above)
    return store
