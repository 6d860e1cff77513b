"""Training and evaluating models: data, augmentation, the training loop, the command's recipe, metrics.

- :mod:`~frsurvey.training.datasets`: FRDEEP-F (download, md5) and labeled
  catalogs through the classify pipeline's sources and preprocessing;
- :mod:`~frsurvey.training.data`: training data assembled with its data cards;
- :mod:`~frsurvey.training.augment`: rotations, flips, physical perturbations;
- :mod:`~frsurvey.training.train`: the training loop, calibration, ensembles;
- :mod:`~frsurvey.training.pipeline`: what ``frsurvey train`` does;
- :mod:`~frsurvey.training.evaluate`: metrics, cross-validation, reports.
"""
