"""Many tasks over one dataset: what each task adds to one trainer process, and how fast a
task added at run time starts over images already embedded.

Real feature (lite) and trainer processes over street tiles (with their source_class):
- the baseline: the first task's cold start, from the trainer's start until every pool
  item is embedded (what a second deployment of the same images would spend again);
- tasks added with CreateTask, cycling through the tiles' source classes: the time until
  each serves its first detector-guided item, as a ratio to the baseline, and the feature
  service's own Embed counters, which must not move;
- memory: the trainer's resident memory with one task and with every task added, each
  with `labels` answers and a model: the increment per task, as a ratio to the one-task
  trainer;
- CPU: the trainer's CPU time in an idle window with one task and with all of them, and
  per label (a label retrains only its own task);
- the catalogue in this process: a manifest of `catalog_rows` rows read once as the
  dataset's and once more with another positive class (a task's own catalogue), as
  Python allocates them.

    python -m bench.tasks                          # 1,500 tiles, 8 added tasks
    python -m bench.tasks --every 60 --tasks 3     # about what `make bench --short` runs
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import grpc

from bench import stack
from tools.probes import free_port, prometheus, rss_mib
from tools.supervisor import running

TILES = stack.ROOT.parent / "shared" / "data" / "streetview-tiles"
CLASSES = ("Hydrant", "Crosswalk", "Bus", "Car", "Palm", "Bridge", "Traffic Light", "Other")
EMBED_LIMIT_S = 1800.0
IDLE_S = 20.0
TICKS = os.sysconf("SC_CLK_TCK")


def write_tiles(path: Path, every: int) -> dict[str, str]:
    """Every `every`-th tile (id,location,label,source_class); item id -> class."""
    with (TILES / "labels.csv").open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])[::every]
    with path.open("w") as out:
        out.write("id,location,label,source_class\n")
        for r in rows:
            out.write(f"{Path(r['filename']).stem},{TILES / r['filename']},{r['label']},"
                      f"{r['source_class']}\n")
    return {Path(r["filename"]).stem: r["source_class"] for r in rows}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def embed_calls(port: int) -> float:
    """Embedding calls and model batches the feature service counted."""
    found = prometheus(port)
    return sum(v for k, v in found.items() if k.startswith("grpc_server_handled_total")
               and ("/Embed\"" in k or "/EmbedStream\"" in k)) + found.get(
        "feature_batch_size_count", 0.0)


class Trainer:
    def __init__(self, address: str) -> None:
        from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc

        self.pb, self.labels = trainer_pb2, common_pb2
        self.channel = grpc.insecure_channel(address)
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    def status(self, task: str = ""):  # type: ignore[no-untyped-def]
        return self.stub.GetStatus(self.pb.GetStatusRequest(task=task), timeout=30).status

    def embedded(self, task: str = "") -> bool:
        try:
            s = self.status(task)
        except grpc.RpcError:
            return False
        return bool(s.loading.state == self.pb.LOADING_STATE_READY and not s.extraction.pending
                    and s.counts.embedded >= s.counts.pool > 0)

    def label(self, task: str, truth: dict[str, str], positive: str, count: int) -> None:
        """`count` true answers, then a model now."""
        given = 0
        while given < count:
            items = self.stub.GetNextItems(self.pb.GetNextItemsRequest(
                task=task, annotator=f"bench-{task}", count=min(10, count - given)),
                timeout=30).items
            for item in items:
                label = (self.labels.LABEL_POSITIVE if truth[item.id] == positive
                         else self.labels.LABEL_NEGATIVE)
                self.stub.AddAnnotation(self.pb.AddAnnotationRequest(
                    task=task, annotation_id=uuid.uuid4().hex, item_id=item.id, label=label,
                    annotator=f"bench-{task}"), timeout=30)
                given += 1
        self.stub.Retrain(self.pb.RetrainRequest(task=task), timeout=300)

    def create(self, name: str, positive_class: str) -> float:
        """Adds a task; seconds until its first detector-guided item."""
        started = time.monotonic()
        self.stub.CreateTask(self.pb.CreateTaskRequest(task=self.pb.Task(
            name=name, display_name=name, positive_class=positive_class)), timeout=300)
        (item,) = self.stub.GetNextItems(self.pb.GetNextItemsRequest(
            task=name, annotator="bench-first", count=1), timeout=30).items
        assert item.strategy == self.pb.STRATEGY_COLD_START, item
        return time.monotonic() - started


def idle(pid: int) -> dict:
    """The trainer's memory once settled, and its CPU time in an idle window."""
    time.sleep(3)
    rss = rss_mib(pid)
    before = cpu_s(pid)
    time.sleep(IDLE_S)
    return {"rss_mib": round(rss, 1),
            "idle_cpu_s_per_min": round((cpu_s(pid) - before) * 60 / IDLE_S, 2)}


def wait(done, limit_s: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > limit_s:
            raise TimeoutError(f"{what} not done in {limit_s:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def catalog_mib(rows: int, labelled_every: int) -> dict:
    """The dataset's catalogue of `rows` manifest rows (one in `labelled_every` with a
    label: 1 is a fully labelled manifest like the tiles', 25 a pool-heavy one like Open
    Images'), and what a task's own reading of it (another positive class) adds, as
    Python allocates them (tracemalloc)."""
    from trainer_service.datasets import Catalog
    from trainer_service.datasets.local import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        with path.open("w") as out:
            out.write("id,location,label,source_class\n")
            for i in range(rows):
                known = i % labelled_every == 0
                cls = CLASSES[i % len(CLASSES)] if known else ""
                label = int(i % 13 == 0) if known else ""
                out.write(f"row-{i:07d},tiles/{i:07d}.jpg,{label},{cls}\n")
        tracemalloc.start()
        dataset = Catalog()
        for items, _ in load_manifest(path, 0.2, 0.2, 0):
            dataset.add(items)
        shared = tracemalloc.get_traced_memory()[0]
        own = Catalog()
        for items, _ in load_manifest(path, 0.2, 0.2, 0, positive="source_class=Hydrant"):
            own.add(dataset.share(items))
        both = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    return {"rows": rows, "labelled_share": round(1 / labelled_every, 3),
            "dataset_bytes_per_row": round(shared / rows),
            "own_catalogue_bytes_per_row": round((both - shared) / rows)}


def measure(every: int, tasks: int, labels: int, catalog_rows: int, work: Path) -> dict:
    truth = write_tiles(work / "tiles.csv", every)
    (work / "tasks.toml").write_text('[[task]]\nname = "bicycle"\ndisplay_name = "Bicycle"\n')
    feature = stack.feature_service(work, work / "cache")
    metrics_port = free_port()
    feature.env["FEATURE_METRICS_PORT"] = str(metrics_port)
    trainer = stack.trainer_service(work, work / "trainer", feature.address, work / "tiles.csv",
                                    {"TRAINER_TASKS_FILE": str(work / "tasks.toml"),
                                     "TRAINER_PREFETCH": str(len(truth)),
                                     "TRAINER_MIN_PER_CLASS": "3"})
    out: dict = {"items": len(truth)}
    with running(feature, 600):
        started = time.monotonic()
        with running(trainer, 600):
            assert trainer.popen is not None
            pid, client = trainer.popen.pid, Trainer(trainer.address)
            wait(client.embedded, EMBED_LIMIT_S, "the first task's embedding")
            out["cold_start_s"] = round(time.monotonic() - started, 1)
            client.label("bicycle", truth, "Bicycle", labels)
            one = idle(pid)
            embeds_before = embed_calls(metrics_port)
            warm, label_cpu = [], []
            for k in range(tasks):
                name, positive = f"task-{k}", CLASSES[k % len(CLASSES)]
                warm.append(client.create(name, f"source_class={positive}"))
                before = cpu_s(pid)
                client.label(name, truth, positive, labels)
                label_cpu.append((cpu_s(pid) - before) / labels)
            embeds_after = embed_calls(metrics_port)
            every_task = idle(pid)
    per_task = (every_task["rss_mib"] - one["rss_mib"]) / tasks
    out.update({
        "tasks_added": tasks, "labels_per_task": labels,
        "warm_start_s": {"median": round(sorted(warm)[len(warm) // 2], 2),
                         "max": round(max(warm), 2)},
        "warm_over_cold": round(sorted(warm)[len(warm) // 2] / out["cold_start_s"], 4),
        "embed_calls_while_adding_tasks": embeds_after - embeds_before,
        "one_task": one, "all_tasks": every_task,
        "rss_mib_per_added_task": round(per_task, 2),
        "per_task_over_one_task_trainer": round(per_task / one["rss_mib"], 4),
        "cpu_s_per_label": round(sorted(label_cpu)[len(label_cpu) // 2], 3),
        "catalogue": [catalog_mib(catalog_rows, every) for every in (1, 25)]})
    return out


def run(short: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        if short:
            return measure(60, 3, 8, 20_000, Path(tmp))
        return measure(5, 8, 30, 1_000_000, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=5,
                        help="take every n-th street tile (5: 1,466 tiles)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks added at run time")
    parser.add_argument("--labels", type=int, default=30, help="answers given in each task")
    parser.add_argument("--catalog-rows", type=int, default=1_000_000,
                        help="rows of the synthetic manifest the catalogue is measured on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        result = measure(args.every, args.tasks, args.labels, args.catalog_rows, Path(tmp))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
