"""The gRPC face of the trainer: thin servicers over the running tasks (`core.Trainer`,
one per task, found by the request's `task`) and what they share, converting messages with
`convert`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from hitl import channels
from hitl.auth import ANONYMOUS
from hitl.channels import ClientSecurity
from hitl.config import ConfigError
from hitl.grpc_server import GrpcService
from hitl.logs import caller_name
from hitl.rpc_types import AnyContext
from hitl.security import server_options
from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service import convert
from trainer_service.config import Config
from trainer_service.core import Trainer, exported, open_task
from trainer_service.datasets import download, is_url
from trainer_service.datasets.images import item_image
from trainer_service.domain import DatasetKind, Label, Status, TrainerError
from trainer_service.features.calls import embed_results
from trainer_service.outputs.records import ModelFormat, PredictionOrder
from trainer_service.shared import Shared
from trainer_service.tasks.file import declared_tasks
from trainer_service.tasks.refusals import answered, streamed
from trainer_service.tasks.running import TaskSet
from trainer_service.tasks.spec import TaskError, TaskSpec, from_dict, settings_task

SERVICE_NAME = "hitl.v1.TrainerService"
EXPORT_BATCH = 500
# With authentication on, every other RPC changes or reveals the labelled set, the gold
# answers or the dataset, and answers only TRAINER_PRIVILEGED_CALLERS (the gateway, an
# admin); any known caller may read the status, without the annotators' names and
# agreement unless it is one of those, and the list of tasks.
OPEN_TO_EVERY_CALLER = frozenset({"GetStatus", "ListTasks"})


def restricted_methods(config: Config) -> dict[str, frozenset[str]]:
    service = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]
    return {f"/{SERVICE_NAME}/{m.name}": frozenset(config.privileged_callers)
            for m in service.methods if m.name not in OPEN_TO_EVERY_CALLER}


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, tasks: TaskSet[Trainer], shared: Shared, template: TaskSpec) -> None:
        # `template`: what a task added at run time takes for what it leaves out.
        self.tasks, self.shared, self.template = tasks, shared, template
        # Watchers share one status per change; so they share its message too.
        self._watched: dict[str, tuple[Status, trainer_pb2.Status, trainer_pb2.Status]] = {}

    @streamed
    async def ImportDataset(self, request: trainer_pb2.ImportDatasetRequest, context: AnyContext
                            ) -> AsyncIterator[trainer_pb2.ImportDatasetResponse]:
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
        async for progress in self.shared.loading.load(kind, request.location):
            yield trainer_pb2.ImportDatasetResponse(progress=convert.loading_progress(progress))

    @answered
    async def AddAnnotation(self, request: trainer_pb2.AddAnnotationRequest,
                            context: AnyContext) -> trainer_pb2.AddAnnotationResponse:
        trainer = self.tasks.get(request.task)
        recorded = await trainer.add_annotation(
            request.annotation_id, request.item_id, convert.to_enum(Label, request.label),
            request.annotator, request.duration_ms, request.note,
            request.given_time.ToNanoseconds() / 1e9
            if request.HasField("given_time") else None)
        return convert.recorded(recorded)

    @answered
    async def ImportLabels(self, request: trainer_pb2.ImportLabelsRequest,
                           context: AnyContext) -> trainer_pb2.ImportLabelsResponse:
        trainer = self.tasks.get(request.task)
        imported = await trainer.intake.import_labels(
            request.importer, convert.import_rows(request.labels))
        return convert.imported(imported)

    @answered
    async def UndoAnnotation(self, request: trainer_pb2.UndoAnnotationRequest,
                             context: AnyContext) -> trainer_pb2.UndoAnnotationResponse:
        trainer = self.tasks.get(request.task)
        record = await trainer.undo_annotation(request.annotation_id, request.annotator)
        return trainer_pb2.UndoAnnotationResponse(annotation=convert.annotation(record))

    @answered
    async def GetNextItems(self, request: trainer_pb2.GetNextItemsRequest,
                           context: AnyContext) -> trainer_pb2.GetNextItemsResponse:
        trainer = self.tasks.get(request.task)
        items = await trainer.next_items(request.annotator, request.count,
                                         list(request.held_item_ids))
        return trainer_pb2.GetNextItemsResponse(items=[convert.item(i) for i in items])

    @answered
    async def GetImage(self, request: trainer_pb2.GetImageRequest,
                       context: AnyContext) -> trainer_pb2.GetImageResponse:
        data, content_type = await item_image(self.shared.catalog, request.item_id,
                                              request.thumbnail)
        return trainer_pb2.GetImageResponse(data=data, content_type=content_type)

    @answered
    async def GetStatus(self, request: trainer_pb2.GetStatusRequest,
                        context: AnyContext) -> trainer_pb2.GetStatusResponse:
        trainer = self.tasks.get(request.task)
        message = convert.status(trainer.status())
        if not self._privileged():
            del message.annotators[:]
        return trainer_pb2.GetStatusResponse(status=message)

    @streamed
    async def WatchStatus(self, request: trainer_pb2.WatchStatusRequest,
                          context: AnyContext) -> AsyncIterator[trainer_pb2.WatchStatusResponse]:
        trainer = self.tasks.get(request.task)
        privileged = self._privileged()
        async for status in trainer.watch():
            yield trainer_pb2.WatchStatusResponse(status=self._watched_message(status, privileged))

    def _privileged(self) -> bool:
        """Whether the caller may see the annotators' names and agreement (any other
        known caller sees the status without them)."""
        caller = caller_name.get()
        return caller == ANONYMOUS or caller in self.shared.config.privileged_callers

    def _watched_message(self, status: Status, privileged: bool) -> trainer_pb2.Status:
        seen = self._watched.get(status.task)
        if seen is None or seen[0] is not status:
            public = convert.status(status)
            del public.annotators[:]
            seen = self._watched[status.task] = (status, convert.status(status), public)
        return seen[1] if privileged else seen[2]

    @streamed
    async def ExportLabels(self, request: trainer_pb2.ExportLabelsRequest,
                           context: AnyContext) -> AsyncIterator[trainer_pb2.ExportLabelsResponse]:
        labels = await self.tasks.archived_labels(request.task, self.shared.database)
        if labels is None:  # a running task: its own log, as it stands
            labels = self.tasks.get(request.task).labels
        records = exported(labels, request.include_undone, request.include_skipped)
        for start in range(0, len(records), EXPORT_BATCH):
            yield trainer_pb2.ExportLabelsResponse(annotations=[
                convert.annotation(a) for a in records[start:start + EXPORT_BATCH]])

    @answered
    async def Retrain(self, request: trainer_pb2.RetrainRequest,
                      context: AnyContext) -> trainer_pb2.RetrainResponse:
        trainer = self.tasks.get(request.task)
        summary, adopted = await trainer.retrain(force=True)
        response = trainer_pb2.RetrainResponse(adopted=adopted)
        if summary is not None:
            response.model.CopyFrom(convert.model_summary(summary))
        return response

    @answered
    async def Classify(self, request: trainer_pb2.ClassifyRequest,
                       context: AnyContext) -> trainer_pb2.ClassifyResponse:
        trainer = self.tasks.get(request.task)
        if not request.HasField("embedded"):
            results, version, threshold = await trainer.outputs.classify(
                convert.image_sources(request.images))
        elif request.images:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT,
                               "send either images or embedded, not both")
        else:
            results, version, threshold = trainer.outputs.classify_embedded(
                *embed_results(request.embedded, trainer.outputs.features.task))
        return convert.classify_response(results, version, threshold)

    @streamed
    async def ExportPredictions(self, request: trainer_pb2.ExportPredictionsRequest,
                                context: AnyContext
                                ) -> AsyncIterator[trainer_pb2.ExportPredictionsResponse]:
        trainer = self.tasks.get(request.task)
        batches = await trainer.outputs.prediction_batches()
        for batch in batches:
            yield convert.prediction_batch(batch)

    @answered
    async def ListPredictions(self, request: trainer_pb2.ListPredictionsRequest,
                              context: AnyContext) -> trainer_pb2.ListPredictionsResponse:
        trainer = self.tasks.get(request.task)
        page = await trainer.outputs.prediction_page(
            convert.to_enum(PredictionOrder, request.order), request.page_size,
            request.page_token)
        # The page's items may be answered by whoever it is shown to.
        await trainer.intake.shown(request.annotator, [i.id for i in page.items])
        return convert.prediction_page(page)

    @answered
    async def ScoreDataset(self, request: trainer_pb2.ScoreDatasetRequest,
                           context: AnyContext) -> trainer_pb2.ScoreDatasetResponse:
        trainer = self.tasks.get(request.task)
        return trainer_pb2.ScoreDatasetResponse(
            scoring=convert.scoring(trainer.outputs.score_dataset()))

    @answered
    async def ListModels(self, request: trainer_pb2.ListModelsRequest,
                         context: AnyContext) -> trainer_pb2.ListModelsResponse:
        trainer = self.tasks.get(request.task)
        entries, pinned = await trainer.outputs.models.entries()
        return trainer_pb2.ListModelsResponse(
            models=[convert.model_record(e) for e in entries], pinned=pinned)

    @answered
    async def GetModel(self, request: trainer_pb2.GetModelRequest,
                       context: AnyContext) -> trainer_pb2.GetModelResponse:
        trainer = self.tasks.get(request.task)
        found = await trainer.outputs.models.file(
            request.version, convert.to_enum(ModelFormat, request.format))
        return trainer_pb2.GetModelResponse(
            model=convert.model_record(found.entry), data=found.data,
            filename=found.filename, content_type=found.content_type)

    @answered
    async def ActivateModel(self, request: trainer_pb2.ActivateModelRequest,
                            context: AnyContext) -> trainer_pb2.ActivateModelResponse:
        trainer = self.tasks.get(request.task)
        entry, pinned = await trainer.outputs.models.activate(request.version)
        return trainer_pb2.ActivateModelResponse(model=convert.model_record(entry),
                                                 pinned=pinned)

    # -- tasks ---------------------------------------------------------------------------

    def _task_message(self, spec: TaskSpec) -> trainer_pb2.Task:
        return convert.task(spec, self.tasks.state(spec.name), spec.name == self.tasks.default)

    @answered
    async def ListTasks(self, request: trainer_pb2.ListTasksRequest,
                        context: AnyContext) -> trainer_pb2.ListTasksResponse:
        specs = self.tasks.specs()
        return trainer_pb2.ListTasksResponse(
            tasks=[self._task_message(s) for s in specs
                   if request.include_archived or not s.archived],
            default_task=self.tasks.default)

    @answered
    async def CreateTask(self, request: trainer_pb2.CreateTaskRequest,
                         context: AnyContext) -> trainer_pb2.CreateTaskResponse:
        spec = from_dict(convert.task_values(request.task), self.template)
        spec = await self.tasks.create(spec)
        return trainer_pb2.CreateTaskResponse(task=self._task_message(spec))

    @answered
    async def ArchiveTask(self, request: trainer_pb2.ArchiveTaskRequest,
                          context: AnyContext) -> trainer_pb2.ArchiveTaskResponse:
        spec = await self.tasks.set_archived(request.task, request.archived)
        return trainer_pb2.ArchiveTaskResponse(task=self._task_message(spec))


def build_service(config: Config) -> GrpcService:
    # The trainer's feature channel and its downloads are made deep inside; what they may
    # do and present is decided here, once, from the configuration.
    channels.register(config.feature_addr, ClientSecurity(
        config.feature_token, config.feature_ca, config.feature_client_cert,
        config.feature_client_key))
    download.configure(download.policy_from(config))
    try:
        declared = declared_tasks(config)
    except TaskError as exc:
        raise ConfigError(f"TRAINER_TASKS_FILE: {exc}") from None
    shared = Shared(config)
    tasks: TaskSet[Trainer] = TaskSet(lambda spec: open_task(config, shared, spec))

    def add_servicers(server: grpc.aio.Server) -> None:
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(
            TrainerServicer(tasks, shared, settings_task(config)), server)

    service = GrpcService(name="trainer", service_names=[SERVICE_NAME], port=config.port,
                          grace_s=config.grace_s, max_message_bytes=config.max_message_bytes,
                          add_servicers=add_servicers,
                          warm_up=lambda: shared.open_tasks(tasks, declared),
                          close=lambda: shared.close_tasks(tasks), metrics_port=config.metrics_port,
                          options=server_options(config, "TRAINER", restricted_methods(config)))
    service.tasks = tasks  # type: ignore[attr-defined]
    return service
