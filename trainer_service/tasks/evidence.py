"""Which features a task's parts read: the embedding and the detector evidence of the class
that guides the task.

The feature service stores every detector class's evidence with each image, and the
trainer keeps those stored vectors (`features/store.py`). Each task reads the embedding
and the evidence row of its own detector class (`detector_class`: auto, none or a class,
resolved against the classes the feature service lists); tasks of one class share one
bank of vectors in memory. This module is the one place a task's evidence is decided.
"""

from __future__ import annotations

from trainer_service.config import Config
from trainer_service.features.store import FeatureStore, TaskFeatures
from trainer_service.features.task_evidence import Task


def feature_task(config: Config) -> Task:
    """What the feature client needs of a task's settings: which detector class guides it."""
    return Task(config.detector_class, config.label_id, config.display_name)


async def task_features(store: FeatureStore, config: Config) -> TaskFeatures:
    """The features as the task of `config` (a task's settings, `spec.task_config`) reads
    them."""
    return await store.open_task(feature_task(config))
