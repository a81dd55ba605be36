"""The questions a labelled dataset can ask: its own label column (bicycle on the street
tiles), or "is it <class>?" over its `source_class` column, and the task the trainer is
started with for each, down to the detector class that guides it."""

from __future__ import annotations

from typing import Any


def task_env(positive_class: str | None, detector_class: str) -> dict[str, str]:
    """The trainer's task: the dataset's own question (its label column, bicycle on the
    tiles), or "is it <positive_class>?", guided by the detector class of that name
    unless `detector_class` names another (or none)."""
    if positive_class is None:
        return {"TRAINER_DETECTOR_CLASS": detector_class}
    # The label id names the question too (an empty setting would mean the default, the
    # bicycle's, and "auto" would take the bicycle's detector class).
    return {"TRAINER_LABEL_ID": positive_class, "TRAINER_DISPLAY_NAME": positive_class,
            "TRAINER_DETECTOR_CLASS": detector_class}


def task_of(positive_class: str | None, detector_class: str) -> Any:
    """The feature client's view of that task (task_evidence.Task)."""
    from trainer_service.config import Config
    from trainer_service.features.task_evidence import Task

    env = task_env(positive_class, detector_class)
    return Task(env["TRAINER_DETECTOR_CLASS"], env.get("TRAINER_LABEL_ID", Config.label_id),
                env.get("TRAINER_DISPLAY_NAME", Config.display_name))


def guiding_class(address: str, positive_class: str | None, detector_class: str) -> str:
    """The detector class the trainer will take for the task, as it chooses it."""
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc
    from trainer_service.features.task_evidence import extractor_key

    with grpc.insecure_channel(address) as channel:
        info = feature_pb2_grpc.FeatureServiceStub(channel).Describe(
            feature_pb2.DescribeRequest(), timeout=60).extractor
    return str(extractor_key(info, task_of(positive_class, detector_class))["detector_class"])
