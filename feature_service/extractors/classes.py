"""The classes each detector knows, with the Open Images labels they correspond to.

Every feature vector carries evidence for each of these classes (`hitl.evidence`), in
the order listed, so a task picks the class that guides it by name or by Open Images id.

- `lite`: MediaPipe's Open Images v4 SSD-MobileNetV2 has 24 outputs; 0 is background
  ("???"), the 23 others are Open Images boxable classes (their MIDs from the Open Images
  class descriptions).
- `resnext50-frcnn`: torchvision's COCO Faster R-CNN has 91 category ids, 80 of them
  real classes; each maps to the Open Images class of the same thing where there is one
  (COCO "cow" is Open Images "Cattle", "potted plant" is "Houseplant", ...). COCO "cup"
  has none: Open Images splits it into "Coffee cup" and "Mug".
"""

from __future__ import annotations

from hitl.evidence import DetectorClass

# The lite detector's outputs 1..23, in order (the package's object_detection_oidv4_labelmap).
LITE_LABELS = (
    ("Bicycle", "/m/0199g"), ("Boot", "/m/01b638"), ("Laptop", "/m/01c648"),
    ("Person", "/m/01g317"), ("Chair", "/m/01mzpv"), ("Cattle", "/m/01xq0k1"),
    ("Desk", "/m/01y9k5"), ("Cat", "/m/01yrx"), ("Computer mouse", "/m/020lf"),
    ("Computer monitor", "/m/02522"), ("Box", "/m/025dyy"), ("Mug", "/m/02jvh9"),
    ("Coffee cup", "/m/02p5f1q"), ("Stationary bicycle", "/m/03kt2w"), ("Table", "/m/04bcr3"),
    ("Bottle", "/m/04dr76w"), ("High heels", "/m/06k2mb"), ("Vehicle", "/m/07yv9"),
    ("Footwear", "/m/09j5n"), ("Dog", "/m/0bt9lr"), ("Book", "/m/0bt_c3"),
    ("Camera", "/m/0dv5r"), ("Car", "/m/0k4j"))
LITE_CLASSES = tuple(DetectorClass(name, mid, name) for name, mid in LITE_LABELS)

# COCO name -> (Open Images MID, Open Images name).
COCO_TO_OPEN_IMAGES = {
    "person": ("/m/01g317", "Person"), "bicycle": ("/m/0199g", "Bicycle"),
    "car": ("/m/0k4j", "Car"), "motorcycle": ("/m/04_sv", "Motorcycle"),
    "airplane": ("/m/0cmf2", "Airplane"), "bus": ("/m/01bjv", "Bus"),
    "train": ("/m/07jdr", "Train"), "truck": ("/m/07r04", "Truck"),
    "boat": ("/m/019jd", "Boat"), "traffic light": ("/m/015qff", "Traffic light"),
    "fire hydrant": ("/m/01pns0", "Fire hydrant"), "stop sign": ("/m/02pv19", "Stop sign"),
    "parking meter": ("/m/015qbp", "Parking meter"), "bench": ("/m/0cvnqh", "Bench"),
    "bird": ("/m/015p6", "Bird"), "cat": ("/m/01yrx", "Cat"), "dog": ("/m/0bt9lr", "Dog"),
    "horse": ("/m/03k3r", "Horse"), "sheep": ("/m/07bgp", "Sheep"),
    "cow": ("/m/01xq0k1", "Cattle"), "elephant": ("/m/0bwd_0j", "Elephant"),
    "bear": ("/m/01dws", "Bear"), "zebra": ("/m/0898b", "Zebra"),
    "giraffe": ("/m/03bk1", "Giraffe"), "backpack": ("/m/01940j", "Backpack"),
    "umbrella": ("/m/0hnnb", "Umbrella"), "handbag": ("/m/080hkjn", "Handbag"),
    "tie": ("/m/01rkbr", "Tie"), "suitcase": ("/m/01s55n", "Suitcase"),
    "frisbee": ("/m/02wmf", "Flying disc"), "skis": ("/m/071p9", "Ski"),
    "snowboard": ("/m/06__v", "Snowboard"), "sports ball": ("/m/018xm", "Ball"),
    "kite": ("/m/02zt3", "Kite"), "baseball bat": ("/m/03g8mr", "Baseball bat"),
    "baseball glove": ("/m/03grzl", "Baseball glove"),
    "skateboard": ("/m/06_fw", "Skateboard"), "surfboard": ("/m/019w40", "Surfboard"),
    "tennis racket": ("/m/0h8my_4", "Tennis racket"), "bottle": ("/m/04dr76w", "Bottle"),
    "wine glass": ("/m/09tvcd", "Wine glass"), "fork": ("/m/0dt3t", "Fork"),
    "knife": ("/m/04ctx", "Knife"), "spoon": ("/m/0cmx8", "Spoon"),
    "bowl": ("/m/04kkgm", "Bowl"), "banana": ("/m/09qck", "Banana"),
    "apple": ("/m/014j1m", "Apple"), "sandwich": ("/m/0l515", "Sandwich"),
    "orange": ("/m/0cyhj_", "Orange"), "broccoli": ("/m/0hkxq", "Broccoli"),
    "carrot": ("/m/0fj52s", "Carrot"), "hot dog": ("/m/01b9xk", "Hot dog"),
    "pizza": ("/m/0663v", "Pizza"), "donut": ("/m/0jy4k", "Doughnut"),
    "cake": ("/m/0fszt", "Cake"), "chair": ("/m/01mzpv", "Chair"),
    "couch": ("/m/02crq1", "Couch"), "potted plant": ("/m/03fp41", "Houseplant"),
    "bed": ("/m/03ssj5", "Bed"), "dining table": ("/m/04bcr3", "Table"),
    "toilet": ("/m/09g1w", "Toilet"), "tv": ("/m/07c52", "Television"),
    "laptop": ("/m/01c648", "Laptop"), "mouse": ("/m/020lf", "Computer mouse"),
    "remote": ("/m/0qjjc", "Remote control"), "keyboard": ("/m/01m2v", "Computer keyboard"),
    "cell phone": ("/m/050k8", "Mobile phone"), "microwave": ("/m/0fx9l", "Microwave oven"),
    "oven": ("/m/029bxz", "Oven"), "toaster": ("/m/01k6s3", "Toaster"),
    "sink": ("/m/0130jx", "Sink"), "refrigerator": ("/m/040b_t", "Refrigerator"),
    "book": ("/m/0bt_c3", "Book"), "clock": ("/m/01x3z", "Clock"),
    "vase": ("/m/02s195", "Vase"), "scissors": ("/m/01lsmm", "Scissors"),
    "teddy bear": ("/m/0kmg4", "Teddy bear"), "hair drier": ("/m/03wvsk", "Hair dryer"),
    "toothbrush": ("/m/012xff", "Toothbrush"),
}
# torchvision's COCO category list names its unused ids so.
COCO_PLACEHOLDERS = ("__background__", "N/A")


def coco_classes(categories: list[str]) -> tuple[tuple[DetectorClass, ...], tuple[int, ...]]:
    """The real classes of a COCO category list (index = the detector's label id), and
    the label id of each."""
    kept = [(i, name) for i, name in enumerate(categories) if name not in COCO_PLACEHOLDERS]
    classes = tuple(DetectorClass(name, *COCO_TO_OPEN_IMAGES.get(name, ("", "")))
                    for _, name in kept)
    return classes, tuple(i for i, _ in kept)
