"""The settings a feature service measured at start, as its Describe gives them
(`ComputeSettings`), and the calibration table the benchmark's report shows."""

from __future__ import annotations

import grpc


def settings_of(address: str) -> dict:
    """What the service chose at start and the calibration table it chose from."""
    from hitl.v1 import feature_pb2, feature_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = feature_pb2_grpc.FeatureServiceStub(channel).Describe(
            feature_pb2.DescribeRequest(), timeout=30)
    s = reply.settings
    return {"precision": s.precision, "memory_layout": s.memory_layout,
            "intra_op_threads": s.intra_op_threads, "max_batch": s.max_batch,
            "workers": s.workers, "inference": s.inference, "sources": dict(s.sources),
            "measured_images_per_s": round(s.measured_images_per_second, 2),
            "calibration_s": round(s.calibration_seconds, 1),
            "calibration": [{"stage": r.stage, "candidate": r.candidate,
                             "images_per_s": round(r.images_per_second, 2),
                             "chosen": r.chosen} for r in s.calibration]}


def calibration_table(settings: dict) -> str:
    lines = ["| stage | candidate | images/s (synthetic 480x360 JPEGs) | chosen |",
             "|---|---|---:|---|"]
    for row in settings.get("calibration", []):
        rate_cell = row["images_per_s"] or "not measured (time budget)"
        lines.append(f"| {row['stage']} | {row['candidate']} | {rate_cell} | "
                     f"{'yes' if row['chosen'] else ''} |")
    return "\n".join(lines)
