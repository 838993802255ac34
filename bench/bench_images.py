"""Images (issue 12, item 2): held-out accuracy against the number of labels, for the built-in
image featurizers (``embed/image.py``: v1 ``handcrafted-hsv-gray-hog-v1``, v2
``handcrafted-shape-v2``), on two image sets made without a download:

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), drawn dark on
  white and upscaled to 32x32;
* ``shapes``: circles, squares and triangles drawn here with PIL (64x64; random size, position,
  rotation, colours, filled or outlined; 3 classes, equal shares).

For each seed, 600 images are held out; the student the project uses (``StudentLabeler``:
logistic regression, C=100, on the L2-normalised features) is trained on the first N of a
random order of the rest, for each N. Labels are drawn at random, not by active learning: the
figure compares features, not the queue. Mean and standard deviation over the seeds.

    .venv/bin/python bench/bench_images.py --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
SIDE = 64


def draw_shape(kind: str, rng: np.random.Generator, side: int = SIDE) -> Image.Image:
    """One drawing of ``kind`` on a plain background of a clearly different colour."""
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    while True:
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if sum(abs(a - b) for a, b in zip(colour, background, strict=True)) > 150:
            break
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(8, 22)
    cx, cy = rng.uniform(radius + 2, side - radius - 2, 2)
    fill = colour if rng.random() < 0.5 else None
    width = int(rng.integers(2, 4))
    if kind == "circle":
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        draw.ellipse(box, fill=fill, outline=colour, width=width)
    else:
        corners = 4 if kind == "square" else 3
        start = rng.uniform(0, 2 * np.pi)
        angles = start + 2 * np.pi * np.arange(corners) / corners
        points = [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]
        draw.polygon(points, fill=fill, outline=colour, width=width)
    return image


def drawn_shapes(n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` drawings in equal shares of the three shapes (shuffled), and their names."""
    rng = np.random.default_rng(seed)
    names = np.array([SHAPES[i % len(SHAPES)] for i in range(n)])
    rng.shuffle(names)
    return [draw_shape(str(kind), rng) for kind in names], names


def digits() -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = [
        Image.fromarray((255 - row * 16).clip(0, 255).astype(np.uint8).reshape(8, 8))
        .resize((32, 32), Image.Resampling.NEAREST)
        .convert("RGB")
        for row in data.data
    ]
    return images, np.array([str(t) for t in data.target])


def accuracy_curve(
    vectors: np.ndarray, y: np.ndarray, sizes: list[int], seeds: list[int], test: int
) -> dict[int, list[float]]:
    """Held-out accuracy per number of labels, one value per seed."""
    from labelloop.labelers.student import StudentLabeler

    names = sorted(set(y))
    out: dict[int, list[float]] = {n: [] for n in sizes}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(y))
        held_out, pool = order[:test], order[test:]
        for n in sizes:
            train = pool[:n]
            student = StudentLabeler(names).fit(vectors[train], y[train])
            predicted = np.asarray(names)[student.predict_proba(vectors[held_out]).argmax(1)]
            out[n].append(float((predicted == y[held_out]).mean()))
    return out


def main() -> None:
    from labelloop.embed.image import BUILTIN_FEATURIZERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--sizes", default="20,50,100,200")
    parser.add_argument("--shapes", type=int, default=1500, help="drawings in the shapes set")
    parser.add_argument("--test", type=int, default=600, help="held-out images per seed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    sets = {"digits": digits(), "shapes": drawn_shapes(args.shapes, seed=1000)}
    results = []
    for set_name, (images, y) in sets.items():
        for featurizer_id, featurizer in BUILTIN_FEATURIZERS.items():
            started = time.perf_counter()
            vectors = featurizer().featurize(images)
            ms = (time.perf_counter() - started) / len(images) * 1000
            curve = accuracy_curve(vectors, y, sizes, seeds, args.test)
            results.append(
                {
                    "set": set_name,
                    "classes": len(set(y)),
                    "featurizer": featurizer_id,
                    "dim": int(vectors.shape[1]),
                    "ms_per_image": round(ms, 2),
                    "accuracy": {n: [round(a, 4) for a in accs] for n, accs in curve.items()},
                }
            )
            if not args.json:
                cells = "  ".join(
                    f"{n}: {np.mean(a):.3f} ± {np.std(a):.3f}" for n, a in curve.items()
                )
                print(f"{set_name:7} {featurizer_id:28} {ms:5.2f} ms/img  {cells}", flush=True)
    if args.json:
        print(json.dumps({"seeds": seeds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
