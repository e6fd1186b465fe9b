"""eyeful: EyefulTower, Metashape rigs and iOS captures to nerfstudio datasets.

This package never imports torch; the trainer lives in ``trainer_adapter``.
"""

__version__ = "0.1.0"
