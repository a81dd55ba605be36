"""What a caller is sent from a stored vector.

The cache keeps one vector per image: the embedding and every detector class's evidence
(`hitl.evidence`). A caller gets the embedding and the target class's evidence as
`Features.vector`, the layout every client has always read, and, when it asks
(`include_class_evidence`), every class's rows as `Features.class_evidence`: byte
slices of the stored vector, so answering costs no arithmetic.
"""

from __future__ import annotations

import struct

from feature_service.extractors.base import ExtractorInfo
from hitl.evidence import BOX, COUNT, EVIDENCE_DIM, EVIDENCE_FIELDS, EVIDENCE_VERSION, SCORE
from hitl.v1 import feature_pb2

_FLOAT = 4
_ROW = struct.Struct(f"<{EVIDENCE_DIM}f")


def describe(info: ExtractorInfo) -> feature_pb2.ExtractorInfo:
    """The extractor as Describe and every Embed reply tell it."""
    return feature_pb2.ExtractorInfo(
        name=info.name, version=info.version, dimension=info.dimension,
        embedding_dimension=info.embedding_dim, evidence_dimension=EVIDENCE_DIM,
        backbone=info.backbone, detector=info.detector, target_class=info.target_class,
        device=info.device,
        detector_classes=[feature_pb2.DetectorClass(
            name=c.name, open_images_id=c.open_images_id,
            open_images_name=c.open_images_name) for c in info.detector_classes],
        evidence_fields=list(EVIDENCE_FIELDS), evidence_version=EVIDENCE_VERSION)


class VectorLayout:
    def __init__(self, info: ExtractorInfo) -> None:
        self.embedding_bytes = info.embedding_dim * _FLOAT
        self.stored_bytes = info.stored_dimension * _FLOAT
        start = self.embedding_bytes + info.target_row * _ROW.size
        self.target = slice(start, start + _ROW.size)

    def served(self, stored: bytes) -> bytes:
        """The embedding and the target class's evidence."""
        if len(stored) == self.embedding_bytes + _ROW.size:
            return stored
        return stored[:self.embedding_bytes] + stored[self.target]

    def class_evidence(self, stored: bytes) -> bytes:
        return stored[self.embedding_bytes:]

    def fill(self, features: feature_pb2.Features, stored: bytes, every_class: bool) -> None:
        """The vector, its decoded target evidence and, when asked, every class's."""
        features.vector = self.served(stored)
        if every_class:
            features.class_evidence = self.class_evidence(stored)
        row = _ROW.unpack_from(stored, self.target.start)
        evidence = features.evidence
        evidence.score, evidence.count = row[SCORE], int(row[COUNT])
        if row[SCORE] > 0:
            box = evidence.box
            box.x1, box.y1, box.x2, box.y2 = row[BOX]
