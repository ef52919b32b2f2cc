"""Static facts about the datasets: class names, ignore index, label tables.

Everything here is data, not I/O. The tables are written by us from the
dataset papers and their official releases (cited per table); nothing is
copied from other code.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Label value that losses and metrics ignore (void / unlabelled / padding).
IGNORE_INDEX = 255

#: The 11 CamVid classes of the SegNet protocol, in SegNet label order 0..10
#: (Badrinarayanan et al., TPAMI 2017; Brostow et al., PRL 2009). Label 11
#: (void / unlabelled) becomes :data:`IGNORE_INDEX`.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)

#: The 32 classes of the full-resolution CamVid release and the SegNet class
#: (index into :data:`CAMVID_CLASSES`) each one is grouped into; ``None`` =
#: void (-> :data:`IGNORE_INDEX`).
#:
#: Source: the 11-class CamVid protocol groups the 32 original classes into
#: 11 larger categories (Brostow, Shotton, Fauqueur, Cipolla, ECCV 2008;
#: Sturgess, Alahari, Ladicky, Torr, BMVC 2009), the protocol that SegNet's
#: 480x360 release and HyperSeg (Sec. 4.4) use. The assignment below is the
#: semantic grouping of the 32 names into those 11 super-classes, written by
#: us: structures into Building, lane markings into Road, kerb-side surfaces
#: into Pavement, all vegetation into Tree, signs/text/lights into
#: SignSymbol, motor vehicles into Car, people and what they push into
#: Pedestrian, two-wheelers into Bicyclist. Keys are the class names of the
#: release's ``class_dict.csv`` / ``label_colors.txt``; they are compared
#: case- and punctuation-insensitively.
CAMVID32_TO_SEGNET11: dict[str, int | None] = {
    "Sky": 0,
    "Building": 1,
    "Wall": 1,
    "Bridge": 1,
    "Tunnel": 1,
    "Archway": 1,
    "Column_Pole": 2,
    "TrafficCone": 2,
    "Road": 3,
    "LaneMkgsDriv": 3,
    "LaneMkgsNonDriv": 3,
    "Sidewalk": 4,
    "ParkingBlock": 4,
    "RoadShoulder": 4,
    "Tree": 5,
    "VegetationMisc": 5,
    "SignSymbol": 6,
    "Misc_Text": 6,
    "TrafficLight": 6,
    "Fence": 7,
    "Car": 8,
    "SUVPickupTruck": 8,
    "Truck_Bus": 8,
    "Train": 8,
    "OtherMoving": 8,
    "Pedestrian": 9,
    "Child": 9,
    "CartLuggagePram": 9,
    "Animal": 9,
    "Bicyclist": 10,
    "MotorcycleScooter": 10,
    "Void": None,
}

#: The 19 Cityscapes evaluation classes in trainId order 0..18
#: (Cordts et al., CVPR 2016, Table/"labels.py" of the official release).
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

#: Cityscapes ``labelIds`` -> trainId for the 19 evaluated classes, written by
#: us from the class definitions of Cordts et al. (CVPR 2016); every other
#: labelId (0-6 void/flat-misc, 9 parking, 10 rail track, 14 guard rail,
#: 15 bridge, 16 tunnel, 18 polegroup, 29 caravan, 30 trailer, -1 license
#: plate) is ignored. Used when the optional ``cityscapesscripts`` package is
#: not installed; when it is, its own table is used (and a test checks that
#: both agree).
CITYSCAPES_LABELID_TO_TRAINID: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

#: PASCAL VOC 2012 classes, index 0..20 (Everingham et al., IJCV 2010).
VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: Classes of the synthetic shapes dataset (see :mod:`hsbench.data.synthetic`).
SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "rectangle", "disk", "triangle")

#: Class names per dataset name accepted by ``DataConfig.dataset``.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "camvid": CAMVID_CLASSES,
    "cityscapes": CITYSCAPES_CLASSES,
    "voc": VOC_CLASSES,
    "synthetic": SYNTHETIC_CLASSES,
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, as a result record should carry it.

    Attributes:
        name: ``"camvid"``, ``"cityscapes"``, ``"voc"`` or ``"synthetic"``.
        num_classes: number of evaluated classes (label values ``0..num_classes-1``).
        class_names: one name per class, in label order.
        ignore_index: label value excluded from loss and metrics (always 255).
        version: which release/layout was read, e.g.
            ``"CamVid 480x360 (SegNet layout)"`` or
            ``"CamVid 960x720 (full-resolution release, 32->11 SegNet grouping)"``.
        folder: the dataset folder that was probed (``""`` when not probed).
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX
    version: str = ""
    folder: str = ""


def cityscapes_labelid_table() -> tuple[dict[int, int], str]:
    """The labelId -> trainId table for the 19 Cityscapes classes, and its source.

    Uses ``cityscapesscripts.helpers.labels`` (the official table) when that
    optional package is installed (``pip install hsbench[cityscapes]``),
    otherwise :data:`CITYSCAPES_LABELID_TO_TRAINID`.

    Returns:
        ``(table, source)`` where ``table`` maps labelId -> trainId 0..18 and
        ``source`` is ``"cityscapesscripts"`` or ``"hsbench fallback table"``.
    """
    try:
        from cityscapesscripts.helpers.labels import labels  # type: ignore[import-not-found]
    except Exception:  # ImportError, or a broken optional install
        return dict(CITYSCAPES_LABELID_TO_TRAINID), "hsbench fallback table"
    table = {int(lab.id): int(lab.trainId) for lab in labels if lab.id >= 0 and 0 <= lab.trainId < 19}
    return table, "cityscapesscripts"
