"""How many near-duplicates a labelled image set holds, by cosine similarity of the
feature service's embeddings: the figures behind TRAINER_NEAR_DUPLICATE.

    python -m bench.near_duplicates                 # the 7,326 street tiles, lite
    python -m bench.near_duplicates --limit 500     # a stratified subset

Every image goes through a real `lite` feature service once (its LMDB cache is the
simulator's, `.run/sim-cache/features-lite`, so later runs are fast); the vectors are
kept in `.run/near-dup/`. Prints, per threshold, the share of pairs above it and of
items with at least one such neighbour; then, for `--variants` images, how similar a
re-encoded, resized, cropped or brightened copy stays to its original: the threshold
belongs between the most similar different pictures and the least similar copies. The
most similar pairs are drawn side by side in `artifacts/near-duplicates/pairs.png`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from bench import stack
from bench.dataset import Example, read_labelled, stratified_subset
from trainer_service.config import Config
from trainer_service.selection.near_duplicates import duplicate_pairs, unit_rows

ROOT = stack.ROOT
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "streetview-tiles" / "labels.csv"
CACHE = ROOT / ".run" / "sim-cache"
VECTORS = ROOT / ".run" / "near-dup"
OUT = ROOT / "artifacts" / "near-duplicates"
THRESHOLDS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
PER_CALL = 16
CALLERS = 4


def embed(examples: list[Example], name: str = "lite") -> tuple[np.ndarray, int]:
    """(vectors in the order of `examples`, embedding dimension), from the cache file or a
    real feature service."""
    digest = hashlib.sha256("\n".join(f"{e.id},{e.location}" for e in examples)
                            .encode()).hexdigest()[:12]
    saved = VECTORS / f"{name}-{digest}.npz"
    if saved.exists():
        data = np.load(saved)
        return data["vectors"], int(data["dims"])
    import grpc

    from hitl.v1 import feature_pb2, feature_pb2_grpc

    work = VECTORS / "work"
    service = stack.feature_service(work, CACHE / "features-lite").start()
    try:
        service.wait_healthy()
        with grpc.insecure_channel(service.address) as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            dims = stub.Describe(feature_pb2.DescribeRequest(), timeout=30
                                 ).extractor.embedding_dimension

            def call(chunk: list[Example]) -> list:
                refs = [feature_pb2.ImageRef(id=e.id, data=Path(e.location).read_bytes())
                        for e in chunk]
                reply = stub.Embed(feature_pb2.EmbedRequest(images=refs), timeout=3600)
                return list(reply.results)

            chunks = [examples[i:i + PER_CALL] for i in range(0, len(examples), PER_CALL)]
            results = []
            with concurrent.futures.ThreadPoolExecutor(CALLERS) as pool:
                for n, got in enumerate(pool.map(call, chunks), start=1):
                    results.extend(got)
                    if n % 50 == 0:
                        print(f"embedded {len(results)}/{len(examples)}", file=sys.stderr)
    finally:
        service.stop()
    bad = [r.id for r in results if r.WhichOneof("outcome") != "features"]
    if bad:
        raise RuntimeError(f"{len(bad)} images failed, e.g. {bad[:3]}")
    vectors = np.stack([np.frombuffer(r.features.vector, "<f4") for r in results])
    VECTORS.mkdir(parents=True, exist_ok=True)
    np.savez(saved, vectors=vectors, dims=dims)
    return vectors, int(dims)


def shares(unit: np.ndarray, thresholds: tuple[float, ...]) -> list[dict]:
    """Per threshold: pairs above it, their share of all pairs, and items with one."""
    n = len(unit)
    all_pairs = n * (n - 1) // 2
    lowest = min(thresholds)
    pairs = duplicate_pairs(unit, lowest)
    sims = np.asarray([s for _, _, s in pairs])
    out = []
    for t in thresholds:
        chosen = [(i, j) for (i, j, s) in pairs if s > t]
        items = {k for pair in chosen for k in pair}
        out.append({"threshold": t, "pairs": len(chosen),
                    "pair_share": len(chosen) / all_pairs if all_pairs else 0.0,
                    "items": len(items), "item_share": len(items) / n if n else 0.0})
    del sims
    return out


VARIANTS = ("jpeg q90", "jpeg q60", "resized 75%", "cropped 5%", "brighter 15%")


def variant_examples(examples: list[Example], count: int) -> list[Example]:
    """`count` images, each with a copy made every way of VARIANTS, in a scratch folder."""
    from PIL import Image, ImageEnhance

    folder = VECTORS / "variants"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for e in examples[:count]:
        image = Image.open(e.location).convert("RGB")
        w, h = image.size
        made = {
            "jpeg q90": (image, 90), "jpeg q60": (image, 60),
            "resized 75%": (image.resize((max(1, w * 3 // 4), max(1, h * 3 // 4))), 95),
            "cropped 5%": (image.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 95),
            "brighter 15%": (ImageEnhance.Brightness(image).enhance(1.15), 95),
        }
        for k, (copy, quality) in enumerate(made.values()):
            path = folder / f"{e.id}-{k}.jpg"
            if not path.exists():
                copy.save(path, quality=quality)
            out.append(Example(f"variant-{k}-{e.id}", str(path), e.label))
    return out


def variant_similarity(examples: list[Example], vectors: np.ndarray, dims: int,
                       count: int, threshold: float) -> list[dict]:
    """Per way of copying: the least, median and mean cosine of copy to original, and the
    share of copies above `threshold` (caught as near-duplicates)."""
    copies = variant_examples(examples, count)
    copy_vectors, _ = embed(copies, "variants")
    original = unit_rows(vectors[:count], dims)
    unit = unit_rows(copy_vectors, dims).reshape(count, len(VARIANTS), -1)
    rows = []
    for k, kind in enumerate(VARIANTS):
        sims = np.einsum("ij,ij->i", original, unit[:, k])
        rows.append({"variant": kind, "min": float(sims.min()),
                     "median": float(np.median(sims)), "mean": float(sims.mean()),
                     "caught": float(np.mean(sims > threshold))})
    return rows


def contact_sheet(examples: list[Example], pairs: list[tuple[int, int, float]],
                  path: Path, count: int = 12) -> None:
    """The first `count` pairs side by side, with their cosine: are they really the same
    picture?"""
    from PIL import Image, ImageDraw

    chosen = pairs[:count]
    if not chosen:
        return
    size = 160
    sheet = Image.new("RGB", (2 * size + 10, len(chosen) * (size + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (i, j, s) in enumerate(chosen):
        y = k * (size + 18)
        for col, index in enumerate((i, j)):
            image = Image.open(examples[index].location).convert("RGB").resize((size, size))
            sheet.paste(image, (col * (size + 10), y + 16))
        draw.text((2, y + 2), f"cosine {s:.4f}: {examples[i].id} / {examples[j].id}",
                  fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.near_duplicates",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--limit", type=int, default=0, help="a stratified subset (0: all)")
    p.add_argument("--threshold", type=float, default=Config().near_duplicate,
                   help="the threshold to show pairs for (default: the trainer's)")
    p.add_argument("--variants", type=int, default=200,
                   help="images to copy in every way of VARIANTS (0: none)")
    args = p.parse_args(argv)
    examples = read_labelled(args.dataset)
    if args.limit:
        examples = stratified_subset(examples, args.limit)
    vectors, dims = embed(examples)
    unit = unit_rows(vectors, dims)
    thresholds = tuple(sorted({*THRESHOLDS, args.threshold}))
    rows = shares(unit, thresholds)
    print(f"{len(examples)} images, {dims}-d embeddings "
          f"({len(examples) * (len(examples) - 1) // 2:,} pairs)")
    print("| cosine above | pairs | share of pairs | items with one | share of items |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        mark = " (chosen)" if r["threshold"] == args.threshold else ""
        print(f"| {r['threshold']:g}{mark} | {r['pairs']:,} | {r['pair_share']:.2e} | "
              f"{r['items']:,} | {r['item_share']:.2%} |")
    best = max((s for _, _, s in duplicate_pairs(unit, min(THRESHOLDS))), default=None)
    print(f"most similar two different images: {best:.4f}" if best is not None else
          f"no two images above {min(THRESHOLDS)}")
    variants = []
    if args.variants:
        count = min(args.variants, len(examples))
        variants = variant_similarity(examples, vectors, dims, count, args.threshold)
        print(f"\ncopies of {count} images, cosine to the original:")
        print(f"| copy | least | median | mean | above {args.threshold:g} |")
        print("|---|---:|---:|---:|---:|")
        for v in variants:
            print(f"| {v['variant']} | {v['min']:.4f} | {v['median']:.4f} | {v['mean']:.4f} "
                  f"| {v['caught']:.1%} |")
    top = sorted(duplicate_pairs(unit, min(THRESHOLDS)), key=lambda p: -p[2])[:12]
    contact_sheet(examples, top, OUT / "pairs.png")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "shares.json").write_text(json.dumps(
        {"dataset": str(args.dataset), "items": len(examples), "threshold": args.threshold,
         "rows": rows, "most_similar_different": best, "variants": variants}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
