"""hsbench: a benchmark harness for the ablations of HyperSeg.

HyperSeg: "Patch-wise Hypernetwork for Real-time Semantic Segmentation",
Nirkin, Wolf and Hassner, CVPR 2021. hsbench bundles its own implementation of
the model (``hsbench.models``), the dynamic patch-wise convolution
(``hsbench.ops``), training and evaluation (``hsbench.engine``), measurement
protocols (``hsbench.measure``), a results store and the paper's tables.
"""

__version__ = "0.1.0"
