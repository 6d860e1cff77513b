"""Canonical images: from a FIRST cutout to what the model sees, and what is measured on it.

- :mod:`~frsurvey.image.preprocess`: the canonical preprocessing (the
  FRDEEP-F/MiraBest recipe, proven against their own images);
- :mod:`~frsurvey.image.morphology`: ``FR_SNR``, ``FR_LAS``,
  ``FR_SIZE_DECONV``, ``FR_NCOMP`` and the refusal :class:`Thresholds`;
- :mod:`~frsurvey.image.prepare`: image source keys to model tensors and
  measurements (a torch ``Dataset``).
"""
