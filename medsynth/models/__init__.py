"""medsynth.models: the lesion inpainting model and how it is trained.

- ``inpainter``: :class:`LesionInpainter` (save/load, sampling, full-size ``inpaint_scan``,
  ``per_sample_loss`` for membership inference);
- ``patches``: ROI crop at a fixed mm spacing and feathered paste-back;
- ``data``: the training patch bank (lesion-centred and healthy crops) and its augmentations;
- ``training``: the training loop (accelerate, EMA, atomic checkpoints, exact resume);
- ``lora``: LoRA adapters (peft); ``privacy``: DP-SGD (opacus); ``repaint``: RePaint baseline.

Submodules are imported on use, so ``import medsynth.models`` stays cheap.
"""
