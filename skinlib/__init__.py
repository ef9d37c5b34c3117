"""skinlib: adversarial attacks and defences for skin-lesion classifiers.

The library behind the compendium that re-runs Nedellec & Mouret (2021),
*Deep Learning Algorithms in Health Area: Adversarial Attacks and Countermeasures*
(NTNU master's thesis). Notebooks in ``notebooks/`` are thin layers over it.

Where things live:

- ``skinlib.labels``: class order and the two malignant/benign groupings.
- ``skinlib.data``: the dataset registry (``DATASETS``): synthetic, ham10000, isic2018, dermamnist.
- ``skinlib.split``: lesion-grouped stratified splits and class weights.
- ``skinlib.metrics``: model and health metrics with bootstrap intervals.
- ``skinlib.results``: the tidy results CSV (atomic writes).
- ``skinlib.models``: the model registry (``MODELS``) and training.
- ``skinlib.attacks``: FGSM, PGD, random noise, UAP (ART and fast) (``ATTACKS``).
- ``skinlib.defences``: adversarial retraining and low-level transformation (``DEFENCES``).
- ``skinlib.profiles``: profile YAML loading and validation.
- ``skinlib.pipeline``: ``skinlib run``: papermill execution, step cache, provenance.
"""

import os as _os

# TensorFlow 2.21's oneDNN CPU kernels crash (heap corruption) on some partial batches
# here (e.g. 329 training images, batch 32), and make results depend on the batch
# layout; the plain Eigen kernels are used instead. Must be set before TF is imported.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
