"""medsynth.models: the lesion inpainting model and how it is trained.

- ``inpainter``: :class:`LesionInpainter`, the model and its sampling (full-size ``inpaint_scan``,
  ``per_sample_loss`` for membership inference);
- ``pretrained``: its files (``save_pretrained`` / ``from_pretrained``) and model cards;
- ``adapters``: LoRA wrapping (peft) and adapter files; ``lora``: LoRA fine-tuning;
- ``patches``: ROI crop at a fixed mm spacing and feathered paste-back;
- ``data``: the training patch bank (lesion-centred and healthy crops) and its augmentations;
- ``training``: the training loop (accelerate, EMA, atomic checkpoints, exact resume);
- ``privacy``: DP-SGD (opacus); ``repaint``: RePaint baseline.

Imports run one way: ``pretrained`` ← ``adapters`` ← ``inpainter`` ← ``training`` ← ``lora``.
Every default is in ``configs/train.yaml`` / ``configs/finetune.yaml``, read with
:func:`medsynth.config.load_config`. Submodules are imported on use, so ``import medsynth.models``
stays cheap.
"""
