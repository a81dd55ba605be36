"""The live score: which items the estimate describes, the order audit items are drawn
in, and the estimates of the model in use and of the learning curve, with the forecast.

Two sources, never mixed:
- a dataset that ships verified labels (a validation split) is scored on its embedded
  validation items, every one of them labelled;
- any other dataset is scored on the audit reserve (`audit.py`): answers that annotators
  gave to audit items, drawn by stratum.
Neither ever trains a model or chooses anything about one (`model.py` has nothing to
choose), so the estimate is honest for every model, the one in use and earlier ones.

Estimates are recomputed off the event loop after the labels, the model or the
population change, and read from here by the status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hitl.background import Debounced
from trainer_service.config import Config
from trainer_service.datasets import Catalog
from trainer_service.domain import Estimate, EstimateSource, Forecast, Label, Split, Strategy
from trainer_service.features.store import TaskFeatures
from trainer_service.models.classifier import LinearModel
from trainer_service.models.training import Training
from trainer_service.quality import audit, estimate, forecast
from trainer_service.store.labels import LabelLog

log = logging.getLogger(__name__)

# Audit draws ranked ahead at a time (the queue is rebuilt with every ranking).
AUDIT_QUEUE = 200
# Earlier models re-estimated for the learning curve: the newest ones, and a thinned
# sample of the rest.
CURVE_RECENT = 20
CURVE_OLDER = 10
REFRESH_DELAY_S = 0.5


@dataclass(frozen=True)
class Population:
    """What an estimate describes: bank rows, their ids and strata, and which of them are
    labelled (positions into `rows`) with what (1 positive, 0 negative)."""

    rows: np.ndarray
    ids: list[str]
    stratum: np.ndarray
    labelled: np.ndarray
    labels: np.ndarray
    source: EstimateSource


class Evaluation:
    def __init__(self, config: Config, catalog: Catalog, features: TaskFeatures,
                 labels: LabelLog, training: Training, notify: Callable[[], None],
                 reserve: dict[str, bool] | None = None) -> None:
        self.config, self.catalog, self.features = config, catalog, features
        self.labels, self.training, self.notify = labels, training, notify
        self.estimates: dict[str, Estimate] = {}  # by model version, all from one refresh
        self.forecast: Forecast | None = None
        # Item -> in the reserve: a hash of the item (and the seed and share every task of
        # a trainer has), so one cache may serve every task.
        self._reserve: dict[str, bool] = {} if reserve is None else reserve
        self._reserve_size: tuple[int, int] = (-1, 0)  # (pool size, reserve items in it)
        self._models: dict[str, LinearModel] = {}
        self._refresher = Debounced(self.refresh, name="live-estimate", log=log,
                                    failure="the live estimate could not be computed")
        self._lock = asyncio.Lock()

    # -- the reserve -----------------------------------------------------------------

    @property
    def audit_mode(self) -> bool:
        """No verified labels in the dataset: the audit reserve gives the estimate."""
        return not self.catalog.validation

    def reserved(self, item_id: str) -> bool:
        """Whether a pool item is kept for audits (never trained on, served only as an
        audit item)."""
        if not self.audit_mode:
            return False
        member = self._reserve.get(item_id)
        if member is None:
            member = audit.in_reserve(item_id, self.config.audit_reserve, self.config.seed)
            self._reserve[item_id] = member
        return member

    def reserve_size(self) -> int:
        """Pool items in the reserve (counted again only when the pool grows)."""
        if not self.audit_mode:
            return 0
        pool = self.catalog.pool
        if self._reserve_size[0] != len(pool):
            self._reserve_size = (len(pool), sum(1 for i in pool if self.reserved(i)))
        return self._reserve_size[1]

    # -- the population and the draws -----------------------------------------------------

    def population(self) -> Population:
        bank, items = self.features.bank, self.catalog.items
        if self.audit_mode:
            ids = [i for i in bank.ids if i in items and items[i].split == Split.POOL
                   and self.reserved(i) and not self._trains(i)]
            source = EstimateSource.AUDIT
        else:
            ids = [i for i in self.catalog.validation if i in bank]
            source = EstimateSource.VALIDATION
        labelled, labels = [], []
        for k, item_id in enumerate(ids):
            answer = self._answer(item_id)
            if answer is not None:
                labelled.append(k)
                labels.append(answer)
        rows = bank.row_indices(ids)
        detector = bank.matrix[rows, self.features.embedding_dimension] if len(rows) else []
        return Population(rows, ids, estimate.strata(np.asarray(detector)),
                          np.asarray(labelled, dtype=np.int64),
                          np.asarray(labels, dtype=float), source)

    def _trains(self, item_id: str) -> bool:
        record = self.labels.current(item_id)
        return record is not None and record.strategy != Strategy.AUDIT

    def _answer(self, item_id: str) -> int | None:
        if not self.audit_mode:
            return 1 if self.catalog.items[item_id].known_label == Label.POSITIVE else 0
        record = self.labels.current(item_id)
        if record is None or record.strategy != Strategy.AUDIT \
                or record.label not in (Label.POSITIVE, Label.NEGATIVE):
            return None
        return 1 if record.label == Label.POSITIVE else 0

    def audit_queue(self, model: LinearModel | None, available: Callable[[str], bool],
                    rng: np.random.Generator) -> list[tuple[str, float]]:
        """The next audit draws, in order, from the first answer on (before the first
        model, by stratum size); none where verified labels score the model."""
        if not self.audit_mode:
            return []
        population = self.population()
        if len(population.ids) == 0:
            return []
        logits = (model.logit(self.features.bank.matrix[population.rows])
                  if model is not None else None)
        current = self.estimates.get(self._version())
        f1 = current.f1.value if current is not None else audit.DEFAULT_F1
        labelled = set(population.labelled.tolist())
        open_rows = np.asarray([k for k, i in enumerate(population.ids)
                                if k not in labelled and available(i)], dtype=np.int64)
        order = audit.next_draws(population.stratum, logits,
                                 model.threshold_logit if model is not None else 0.0,
                                 population.labelled, population.labels, f1, open_rows,
                                 AUDIT_QUEUE, rng)
        return [(population.ids[k], float(population.stratum[k])) for k in order]

    # -- estimates ----------------------------------------------------------------------

    def _version(self) -> str:
        info = self.training.model_info
        return info.version if info is not None else ""

    def schedule(self, delay_s: float = REFRESH_DELAY_S) -> None:
        """A refresh soon: many changes in a burst cost one."""
        self._refresher.schedule(delay_s)

    async def close(self) -> None:
        await self._refresher.close()

    async def refresh(self) -> None:
        """Estimates the model in use and the curve's models with the labels there are
        now, and forecasts from them."""
        async with self._lock:
            population = self.population()
            curve = self._curve_versions()
            models = {v: m for v in curve if (m := self._model(v)) is not None}
            matrix = self.features.bank.matrix
            estimates, ahead = await asyncio.to_thread(
                _estimate_all, population, models, matrix, self.config.seed,
                [(self._given(v), v) for v in curve], self.config.target_f1)
            self.estimates, self.forecast = estimates, ahead
        self.notify()

    def _curve_versions(self) -> list[str]:
        versions = [i.version for i in self.training.curve
                    if i.extractor == self.features.extractor]
        older = versions[:-CURVE_RECENT]
        step = max(1, len(older) // CURVE_OLDER)
        return older[::step] + versions[-CURVE_RECENT:]

    def _given(self, version: str) -> int:
        info = next((i for i in self.training.curve if i.version == version), None)
        if info is None:
            return 0
        return info.labels_given or info.labels

    def _model(self, version: str) -> LinearModel | None:
        if version not in self._models:
            info = self.training.model_info
            if info is not None and info.version == version and self.training.model:
                self._models[version] = self.training.model
            else:
                loaded = self.training.registry.load(version)
                if loaded is None:
                    return None
                self._models[version] = loaded
        return self._models[version]


def _estimate_all(population: Population, models: dict[str, LinearModel], matrix: np.ndarray,
                  seed: int, curve: list[tuple[int, str]], target: float
                  ) -> tuple[dict[str, Estimate], Forecast | None]:
    """On a worker thread: every model's estimate, and the forecast from the curve."""
    out: dict[str, Estimate] = {}
    x = matrix[population.rows] if len(population.rows) else None
    for version, model in models.items():
        if x is None:
            break
        found = estimate.estimate(population.stratum, model.logit(x), model.threshold_logit,
                                  population.labelled, population.labels, population.source,
                                  seed=seed)
        if found is not None:
            out[version] = found
    points = [(given, out[v]) for given, v in curve if v in out]
    return out, forecast.forecast(points, target, seed)
