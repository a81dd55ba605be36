"""The gRPC face of the trainer: thin servicers over `trainer.Trainer`, converting
messages with `convert`."""

from __future__ import annotations

from pathlib import Path

import grpc

from hitl import channels
from hitl.auth import ANONYMOUS
from hitl.channels import ClientSecurity
from hitl.grpc_server import GrpcService
from hitl.logs import caller_name
from hitl.security import server_options
from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service import convert
from trainer_service.config import Config
from trainer_service.core import Trainer
from trainer_service.datasets import download, is_url
from trainer_service.domain import DatasetKind, Label, Status, TrainerError
from trainer_service.outputs.records import ModelFormat, PredictionOrder

SERVICE_NAME = "hitl.v1.TrainerService"
EXPORT_BATCH = 500
# With authentication on, every other RPC changes or reveals the labelled set, the gold
# answers or the dataset, and answers only TRAINER_PRIVILEGED_CALLERS (the gateway, an
# admin); any known caller may read the status, without the annotators' names and
# agreement unless it is one of those.
OPEN_TO_EVERY_CALLER = frozenset({"GetStatus"})


def restricted_methods(config: Config) -> dict[str, frozenset[str]]:
    service = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    return {f"/{SERVICE_NAME}/{m.name}": frozenset(config.privileged_callers)
            for m in service.methods if m.name not in OPEN_TO_EVERY_CALLER}


async def _abort(context: grpc.aio.ServicerContext, error: TrainerError) -> None:
    await context.abort(getattr(grpc.StatusCode, error.code), str(error))


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        # Watchers share one status per change; so they share its message too.
        self._watched: tuple[Status, trainer_pb2.Status, trainer_pb2.Status] | None = None

    async def ImportDataset(self, request, context):  # type: ignore[no-untyped-def]
        kind = convert.to_enum(DatasetKind, request.kind)
        if kind == DatasetKind.UNSPECIFIED or not request.location:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kind and location are required")
        local = kind != DatasetKind.OPEN_IMAGES or not is_url(request.location)
        if not local:
            refusal = download.source_refusal(request.location)
            if refusal:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        if local and not Path(request.location).exists():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"{request.location} does not exist")
        async for progress in self.trainer.load(kind, request.location):
            yield trainer_pb2.ImportDatasetResponse(progress=convert.loading_progress(progress))

    async def AddAnnotation(self, request, context):  # type: ignore[no-untyped-def]
        try:
            recorded = await self.trainer.add_annotation(
                request.annotation_id, request.item_id, convert.to_enum(Label, request.label),
                request.annotator, request.duration_ms, request.note,
                request.given_time.ToNanoseconds() / 1e9
                if request.HasField("given_time") else None)
        except TrainerError as exc:
            await _abort(context, exc)
        return convert.recorded(recorded)

    async def ImportLabels(self, request, context):  # type: ignore[no-untyped-def]
        try:
            imported = await self.trainer.intake.import_labels(
                request.importer, convert.import_rows(request.labels))
        except TrainerError as exc:
            await _abort(context, exc)
        return convert.imported(imported)

    async def UndoAnnotation(self, request, context):  # type: ignore[no-untyped-def]
        try:
            record = await self.trainer.undo_annotation(request.annotation_id, request.annotator)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.UndoAnnotationResponse(annotation=convert.annotation(record))

    async def GetNextItems(self, request, context):  # type: ignore[no-untyped-def]
        try:
            items = await self.trainer.next_items(request.annotator, request.count,
                                                  list(request.held_item_ids))
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.GetNextItemsResponse(items=[convert.item(i) for i in items])

    async def GetImage(self, request, context):  # type: ignore[no-untyped-def]
        try:
            data, content_type = await self.trainer.image(request.item_id, request.thumbnail)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.GetImageResponse(data=data, content_type=content_type)

    async def GetStatus(self, request, context):  # type: ignore[no-untyped-def]
        message = convert.status(self.trainer.status())
        if not self._privileged():
            del message.annotators[:]
        return trainer_pb2.GetStatusResponse(status=message)

    async def WatchStatus(self, request, context):  # type: ignore[no-untyped-def]
        privileged = self._privileged()
        async for status in self.trainer.watch():
            yield trainer_pb2.WatchStatusResponse(
                status=self._watched_message(status, privileged))

    def _privileged(self) -> bool:
        """Whether the caller may see the annotators' names and agreement (any other
        known caller sees the status without them)."""
        caller = caller_name.get()
        return caller == ANONYMOUS or caller in self.trainer.config.privileged_callers

    def _watched_message(self, status: Status, privileged: bool) -> trainer_pb2.Status:
        if self._watched is None or self._watched[0] is not status:
            public = convert.status(status)
            del public.annotators[:]
            self._watched = (status, convert.status(status), public)
        return self._watched[1] if privileged else self._watched[2]

    async def ExportLabels(self, request, context):  # type: ignore[no-untyped-def]
        records = self.trainer.export(request.include_undone, request.include_skipped)
        for start in range(0, len(records), EXPORT_BATCH):
            yield trainer_pb2.ExportLabelsResponse(
                annotations=[convert.annotation(a)
                             for a in records[start:start + EXPORT_BATCH]])

    async def Retrain(self, request, context):  # type: ignore[no-untyped-def]
        try:
            summary, adopted = await self.trainer.retrain(force=True)
        except TrainerError as exc:
            await _abort(context, exc)
        response = trainer_pb2.RetrainResponse(adopted=adopted)
        if summary is not None:
            response.model.CopyFrom(convert.model_summary(summary))
        return response

    async def Classify(self, request, context):  # type: ignore[no-untyped-def]
        try:
            results, version, threshold = await self.trainer.outputs.classify(
                convert.image_sources(request.images))
        except TrainerError as exc:
            await _abort(context, exc)
        return convert.classify_response(results, version, threshold)

    async def ExportPredictions(self, request, context):  # type: ignore[no-untyped-def]
        try:
            batches = await self.trainer.outputs.prediction_batches()
        except TrainerError as exc:
            await _abort(context, exc)
        for batch in batches:
            yield convert.prediction_batch(batch)

    async def ListPredictions(self, request, context):  # type: ignore[no-untyped-def]
        try:
            page = await self.trainer.outputs.prediction_page(
                convert.to_enum(PredictionOrder, request.order), request.page_size,
                request.page_token)
            # The page's items may be answered by whoever it is shown to.
            await self.trainer.intake.shown(request.annotator, [i.id for i in page.items])
        except TrainerError as exc:
            await _abort(context, exc)
        return convert.prediction_page(page)

    async def ScoreDataset(self, request, context):  # type: ignore[no-untyped-def]
        return trainer_pb2.ScoreDatasetResponse(
            scoring=convert.scoring(self.trainer.outputs.score_dataset()))

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        entries, pinned = await self.trainer.outputs.models.entries()
        return trainer_pb2.ListModelsResponse(
            models=[convert.model_record(e) for e in entries], pinned=pinned)

    async def GetModel(self, request, context):  # type: ignore[no-untyped-def]
        try:
            found = await self.trainer.outputs.models.file(
                request.version, convert.to_enum(ModelFormat, request.format))
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.GetModelResponse(
            model=convert.model_record(found.entry), data=found.data,
            filename=found.filename, content_type=found.content_type)

    async def ActivateModel(self, request, context):  # type: ignore[no-untyped-def]
        try:
            entry, pinned = await self.trainer.outputs.models.activate(request.version)
        except TrainerError as exc:
            await _abort(context, exc)
        return trainer_pb2.ActivateModelResponse(model=convert.model_record(entry),
                                                 pinned=pinned)


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
