"""The gRPC face of the trainer: thin servicers over `trainer.Trainer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc

from hitl import channels
from hitl.channels import ClientSecurity
from hitl.grpc_server import GrpcService
from hitl.security import server_options
from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service.config import Config
from trainer_service.datasets import download, is_url
from trainer_service.store import Annotation
from trainer_service.trainer import Trainer, TrainerError, model_summary

SERVICE_NAME = "hitl.v1.TrainerService"
EXPORT_BATCH = 500
# With authentication on, every other RPC changes or reveals the labelled set, the gold
# answers or the dataset, and answers only TRAINER_PRIVILEGED_CALLERS (the gateway, an
# admin); any known caller may read the status.
OPEN_TO_EVERY_CALLER = frozenset({"GetStatus"})


def restricted_methods(config: Config) -> dict[str, frozenset[str]]:
    service = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    return {f"/{SERVICE_NAME}/{m.name}": frozenset(config.privileged_callers)
            for m in service.methods if m.name not in OPEN_TO_EVERY_CALLER}


def annotation_proto(a: Annotation) -> trainer_pb2.Annotation:
    message = trainer_pb2.Annotation(
        annotation_id=a.annotation_id, item_id=a.item_id, label=cast(Any, a.label),
        annotator=a.annotator, strategy=cast(Any, a.strategy), model_version=a.model_version,
        duration_ms=a.duration_ms, undone=a.undone, split=cast(Any, a.split))
    message.create_time.FromNanoseconds(int(a.time * 1e9))
    return message


async def _abort(context: grpc.aio.ServicerContext, error: TrainerError) -> None:
    await context.abort(getattr(grpc.StatusCode, error.code), str(error))


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    async def ImportDataset(self, request, context):  # type: ignore[no-untyped-def]
        if request.kind == trainer_pb2.DATASET_KIND_UNSPECIFIED or not request.location:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind and location are required")
        local = request.kind != trainer_pb2.DATASET_KIND_OPEN_IMAGES or not is_url(
            request.location)
        if not local:
            refusal = download.source_refusal(request.location)
            if refusal:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        if local and not Path(request.location).exists():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.location} does not exist")
        async for progress in self.trainer.load(request.kind, request.location):
            yield trainer_pb2.ImportDatasetResponse(progress=progress)

    async def AddAnnotation(self, request, context):  # type: ignore[no-untyped-def]
        try:
            record, duplicate, item = await self.trainer.add_annotation(request)
        except TrainerError as exc:
            await _abort(context, exc)
        response = trainer_pb2.AddAnnotationResponse(annotation=annotation_proto(record),
                                                     duplicate=duplicate)
        if item.known_label and record.split == trainer_pb2.SPLIT_VALIDATION:
            response.gold_check.known_label = cast(Any, item.known_label)
            response.gold_check.agrees = record.label == item.known_label
        return response

    async def UndoAnnotation(self, request, context):  # type: ignore[no-untyped-def]
        try:
            record = await self.trainer.undo_annotation(request.annotation_id, request.annotator)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.UndoAnnotationResponse(annotation=annotation_proto(record))

    async def GetNextItems(self, request, context):  # type: ignore[no-untyped-def]
        try:
            items = self.trainer.next_items(request)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.GetNextItemsResponse(items=items)

    async def GetImage(self, request, context):  # type: ignore[no-untyped-def]
        try:
            data, content_type = await self.trainer.image(request.item_id, request.thumbnail)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.GetImageResponse(data=data, content_type=content_type)

    async def GetStatus(self, request, context):  # type: ignore[no-untyped-def]
        return trainer_pb2.GetStatusResponse(status=self.trainer.status())

    async def WatchStatus(self, request, context):  # type: ignore[no-untyped-def]
        async for status in self.trainer.watch():
            yield trainer_pb2.WatchStatusResponse(status=status)

    async def ExportLabels(self, request, context):  # type: ignore[no-untyped-def]
        records = self.trainer.export(request.include_undone)
        for start in range(0, len(records), EXPORT_BATCH):
            yield trainer_pb2.ExportLabelsResponse(
                annotations=[annotation_proto(a) for a in records[start:start + EXPORT_BATCH]])

    async def Retrain(self, request, context):  # type: ignore[no-untyped-def]
        try:
            info, adopted = await self.trainer.retrain(force=True)
        except TrainerError as exc:
            await _abort(context, exc)
        response = trainer_pb2.RetrainResponse(adopted=adopted)
        if info is not None:
            response.model.CopyFrom(model_summary(info))
        return response


def build_service(config: Config) -> GrpcService:
    # The trainer's feature channel and its downloads are made deep inside; what they may
    # do and present is decided here, once, from the configuration.
    channels.register(config.feature_addr, ClientSecurity(
        config.feature_token, config.feature_ca, config.feature_client_cert,
        config.feature_client_key))
    download.configure(download.policy_from(config))
    trainer = Trainer(config)

    def add_servicers(server: grpc.aio.Server) -> None:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(TrainerServicer(trainer), server)

    service = GrpcService(name="trainer", service_names=[SERVICE_NAME], port=config.port,
                          grace_s=config.grace_s, max_message_bytes=config.max_message_bytes,
                          add_servicers=add_servicers, warm_up=trainer.open,
                          close=trainer.close, metrics_port=config.metrics_port,
                          options=server_options(config, "TRAINER", restricted_methods(config)))
    service.trainer = trainer  # type: ignore[attr-defined]
    return service
