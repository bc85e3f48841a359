"""Downstream utility: Dice and the bootstrap CI against NumPy references, and an end-to-end run on phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.errors import ConfigError, InvalidDatasetError
from medsynth.metrics.images import load_image_set
from medsynth.metrics.utility import bootstrap_ci, dice_per_case, evaluate_utility


def _dice_numpy(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """medsynth's former hand-written Dice, kept as the reference for MONAI's: 1 where both are empty."""
    pred = pred.reshape(len(pred), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    inter = (pred & truth).sum(1)
    total = pred.sum(1) + truth.sum(1)
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


def _bootstrap_numpy(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """medsynth's former percentile bootstrap of the mean, kept as the reference for scipy's."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def test_dice_and_bootstrap():
    truth = np.zeros((3, 4, 4), bool)
    truth[0, :2] = True  # 8 px
    truth[1, 0, 0] = True
    pred = np.zeros_like(truth)
    pred[0, :1] = True  # 4 px, all inside -> 2*4/(4+8)
    # case 1: missed entirely -> 0; case 2: both empty -> 1
    np.testing.assert_allclose(dice_per_case(pred, truth), [8 / 12, 0.0, 1.0])
    v = np.random.default_rng(0).uniform(size=50)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi and hi - lo < 0.4
    assert bootstrap_ci(np.array([0.7])) == [0.7, 0.7]  # nothing to resample


@pytest.fixture(scope="module")
def lesion_masks(phantom_sets):
    """Real lesion crops of the phantom test set, and imperfect "predictions" of them."""
    truth = load_image_set(phantom_sets["test"], roi_mm=32.0, roi_px=64, with_rois=True, what="test").roi_masks
    rng = np.random.default_rng(0)
    pred = np.stack([np.roll(m, tuple(rng.integers(-6, 7, 2)), axis=(0, 1)) for m in truth])
    pred[::3] &= rng.random(pred[::3].shape) < 0.8  # holes in some
    pred[1] = False  # a missed lesion
    truth, pred = np.concatenate([truth, np.zeros_like(truth[:1])]), np.concatenate([pred, np.zeros_like(pred[:1])])
    return pred, truth  # the last pair: both empty


def test_monai_dice_equals_the_former_numpy_dice(lesion_masks):
    pred, truth = lesion_masks
    ref = _dice_numpy(pred, truth)
    assert len(ref) >= 7 and 0.0 < np.median(ref) < 1.0 and ref[1] == 0.0 and ref[-1] == 1.0
    got = dice_per_case(pred, truth)
    # MONAI computes in float32: equal to the float64 reference rounded to float32, bit for bit.
    np.testing.assert_array_equal(got.astype(np.float32), ref.astype(np.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-7)


def test_scipy_bootstrap_equals_the_former_percentile_bootstrap(lesion_masks):
    for values in (_dice_numpy(*lesion_masks), np.random.default_rng(1).beta(5, 2, size=60)):
        ref, got = _bootstrap_numpy(values), bootstrap_ci(values)
        width = ref[1] - ref[0]
        assert width > 0.02
        # Two Monte-Carlo estimates (2000 resamples each) of one percentile interval: over 50 pairs of
        # independent seeds they differ by 2.7% of the width on average, 6% at most. (scipy 1.17 draws
        # its resamples as the former code did, so with the same seed they agree to round-off.)
        assert got == pytest.approx(ref, abs=0.1 * width)
        assert bootstrap_ci(values) == got  # seeded


# Tiny settings for the mechanics: the images are 128x104 at 0.8 mm, so the full-image task works at
# that spacing with 32 px patches and a three-level DynUNet.
TINY = {"utility": {"n_boot": 200, "crops": {"steps": 3, "batch_size": 4},
                    "full": {"steps": 2, "batch_size": 2, "spacing_mm": 0.8, "patch_px": 32, "filters": [4, 8, 16]}}}


def test_utility_end_to_end_on_phantoms(utility_sets, tmp_path):
    # Settings not given come from the config (laid over configs/evaluate.yaml); arguments win.
    res = evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"],
                           seeds=2, regimes=[0.5, 1], config={**TINY, "utility": {**TINY["utility"], "seeds": 5}},
                           progress=False)
    s = res.settings
    assert s["seeds"] == 2 and s["regimes"] == [0.5, 1.0] and s["tasks"] == ["crops", "full"]
    assert (s["crops"]["steps"], s["crops"]["batch_size"], s["full"]["patch_px"]) == (3, 4, 32)
    assert (s["crops"]["roi_mm"], s["crops"]["roi_px"]) == (32.0, 64)
    data = res.to_dict()["utility"]
    for task in ("crops", "full"):
        t = data[task]
        assert set(t["regimes"]) == {"0.5", "1"} and t["n_test_patients"] == 4
        # Whole images lead with the Dice of the images with lesions (lesion-free ones are 0-or-1 counts).
        headline = t["headline"]
        assert headline == {"crops": "dice", "full": "dice_lesion_images"}[task] and res.headline(task) == headline
        for regime, reg in t["regimes"].items():
            assert set(reg["arms"]) == {"real", "real+synthetic", "synthetic"}
            for arm, a in reg["arms"].items():
                d = a["dice"]
                assert 0.0 <= d["value"] <= 1.0 and len(d["seed_values"]) == 2
                assert d["ci95"][0] <= d["value"] + 1e-9 <= d["ci95"][1] + 2e-9
                assert set(a["by_class"]) <= {"mass", "calcification"} and a["by_class"]
            n_real = reg["arms"]["real"]["n_train"]
            n_mix = reg["arms"]["real+synthetic"]["n_train"]
            assert n_mix["real_images"] == n_real["real_images"] and n_mix["synthetic_images"] == [8, 8]
            for key in ("delta", "delta_synthetic_only"):
                delta = reg[key]
                assert {"value", "ci95", "p"} <= set(delta) and 0 < delta["p"] <= 1
                assert delta["ci95"][0] <= delta["value"] + 1e-9 <= delta["ci95"][1] + 2e-9
                # The headline difference is the difference of the arms' means (same seeds, same test units).
                other = "real+synthetic" if key == "delta" else "synthetic"
                assert delta["metric"] == headline
                assert delta["value"] == pytest.approx(reg["arms"][other][headline]["value"]
                                                       - reg["arms"]["real"][headline]["value"])
                for group in delta["by_class"].values():
                    assert {"value", "ci95", "p", "n"} <= set(group)
        # Regimes draw patients per seed and nest: 50 % of 6 patients is 3, 100 % all 6.
        assert t["regimes"]["0.5"]["arms"]["real"]["n_train"]["real_patients"] == [3, 3]
        assert t["regimes"]["1"]["arms"]["real"]["n_train"]["real_patients"] == [6, 6]
    full = data["full"]["regimes"]["1"]["arms"]["real"]
    assert {"dice_lesion_images", "dice_lesion_free", "lesion_dice", "sensitivity@0.5fp", "sensitivity@1fp",
            "sensitivity@2fp"} <= set(full)
    assert data["splits"]["patient_ids"]["real-train / real-test"].startswith("checked")
    assert any("95 % CI" in line for line in data["summary"])
    assert '"delta"' in res.to_json(tmp_path / "u.json").read_text()
    assert "data:image/png;base64," in res._repr_html_()
    page = res.save_html(tmp_path / "u.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and page.count("data:image/png;base64,") == 4


def test_utility_input_errors(utility_sets, textures):
    with pytest.raises(InvalidDatasetError, match="dataset"):
        evaluate_utility(utility_sets["train"], textures(4, 64), utility_sets["test"], progress=False, config=TINY)
    with pytest.raises(ConfigError, match="steps"):
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], steps=0,
                         progress=False)
    with pytest.raises(ConfigError, match="regimes"):
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], regimes=[0, 0.5],
                         progress=False)
    with pytest.raises(ConfigError, match="task"):
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], tasks="crop",
                         progress=False)
    with pytest.raises(ConfigError, match="lr_schedule"):
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], progress=False,
                         config={"utility": {"full": {"lr_schedule": "cosine"}}})


def test_poly_learning_rate_is_nnunets_decay():
    from medsynth.metrics.utility.full import scheduled_lr

    lrs = [scheduled_lr(0.01, s, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing
    assert lrs[50] == pytest.approx(0.01 * 0.5 ** 0.9)  # nnU-Net: (1 - epoch / max_epochs) ** 0.9
    assert 0 < lrs[-1] < 0.01 * 0.02
    assert scheduled_lr(0.01, 99, 100, "constant") == 0.01


def test_worker_processes_give_the_figures_of_one_process(utility_sets):
    """Networks trained side by side in forked workers (one thread each) give exactly the figures of the
    same jobs run one after the other on one thread: same seeds, same data, results kept in job order."""
    import torch

    from medsynth.metrics.utility.protocol import worker_plan

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {w: evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], seeds=2,
                                    regimes=[0.5], progress=False,
                                    config={**TINY, "utility": {**TINY["utility"], "workers": w}})
                for w in (1, 2)}
    finally:
        torch.set_num_threads(threads)
    assert [runs[w].settings["workers"]["processes"] for w in (1, 2)] == [1, 2]
    one, two = (runs[w].to_dict()["utility"] for w in (1, 2))
    for task in ("crops", "full"):
        assert one[task] == two[task]
    seed_values = one["full"]["regimes"]["0.5"]["arms"]["real"]["lesion_dice"]["seed_values"]
    assert seed_values[0] != seed_values[1]  # the seeds differ, so a swapped job order would show
    assert worker_plan("auto", "cuda:0", 10) == 1 and worker_plan(3, "cpu", 2) == 2 and worker_plan(4, "cpu", 1) == 1
    with pytest.raises(ConfigError, match="workers"):
        evaluate_utility(utility_sets["train"], utility_sets["synthetic"], utility_sets["test"], progress=False,
                         config={**TINY, "utility": {**TINY["utility"], "workers": 0}})


def test_deep_supervision_trains_its_heads_and_infers_at_full_resolution():
    """nnU-Net's deep supervision: the lower decoder levels' heads are trained through
    ``DeepSupervisionLoss`` (their weights move), inference returns the full-resolution output only, and
    the settings record the number of heads used (capped by the network's depth)."""
    import torch

    from medsynth.metrics.utility.data import FullImage
    from medsynth.metrics.utility.full import make_full_net, predict_full, train_full_segmenter

    rng = np.random.default_rng(0)
    images = []
    for _ in range(3):
        label = np.zeros((48, 48), bool)
        r, c = rng.integers(10, 38, 2)
        label[r - 4 : r + 4, c - 4 : c + 4] = True
        images.append(FullImage(image=(rng.random((48, 48)) * 0.3 + 0.6 * label).astype(np.float32), label=label,
                                lesions=[], classes=[], margins=[]))
    filters = [4, 8, 16, 32]
    torch.manual_seed(5)
    start = make_full_net(filters, 2).state_dict()
    model = train_full_segmenter(images, 4, 5, 32, 4, 0.01, 0.0, filters, deep_supervision=2)
    heads = [k for k in start if k.startswith("deep_supervision_heads")]
    assert len({k.split(".")[1] for k in heads}) == 2
    for k in heads:  # every head learnt: its loss reached it
        assert not torch.equal(start[k], model.state_dict()[k]), k
    prob = predict_full(model, images[0].image, 32, 0.25)
    assert prob.shape == (48, 48) and 0 <= prob.min() and prob.max() <= 1
    with pytest.raises(ValueError, match="deep_supervision"):
        make_full_net([4, 8, 16], 2)

    from medsynth.metrics.utility.protocol import _settings

    def settings(full):
        return _settings({"utility": {"full": full}}, None, None, None, None, None, None, None)

    assert settings({"filters": [4, 8, 16]})["full"]["deep_supervision"] == 1
    assert settings({})["full"]["deep_supervision"] == 2
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigError, match="deep_supervision"):
            settings({"deep_supervision": bad})


def test_whole_image_training_runs_its_forward_pass_in_the_precision_the_settings_resolve(monkeypatch):
    """``full.mixed_precision``: ``bf16`` runs the training forward pass under bf16 autocast (a conv's
    output is bf16) with fp32 weights that learn; ``no`` stays fp32; inference is fp32 either way. ``auto``
    resolves by the chip (bf16 only where the CPU computes it natively) and the settings record the result."""
    import torch

    from medsynth import runtime
    from medsynth.metrics.utility import full as full_task
    from medsynth.metrics.utility.data import FullImage
    from medsynth.metrics.utility.protocol import _settings

    rng = np.random.default_rng(1)
    label = np.zeros((40, 40), bool)
    label[12:20, 14:22] = True
    images = [FullImage(image=(rng.random((40, 40)) * 0.3 + 0.6 * label).astype(np.float32), label=label,
                        lesions=[], classes=[], margins=[])]
    seen: dict[str, set] = {}
    make = full_task.make_full_net

    def recording_net(filters, deep_supervision=0):
        net = make(filters, deep_supervision)
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_hook(lambda m, i, o: seen.setdefault(mode, set()).add(o.dtype))
        return net

    monkeypatch.setattr(full_task, "make_full_net", recording_net)
    for mode in ("bf16", "no"):
        torch.manual_seed(3)
        start = make([4, 8, 16], 1).state_dict()
        model = full_task.train_full_segmenter(images, 2, 3, 32, 2, 0.01, 0.5, [4, 8, 16], deep_supervision=1,
                                               mixed_precision=mode)
        trained = model.state_dict()
        assert all(v.dtype == torch.float32 for v in trained.values() if v.is_floating_point())
        assert any(not torch.equal(start[k], trained[k]) for k in start)
        training_dtypes = set(seen.pop(mode))
        prob = full_task.predict_full(model, images[0].image, 32, 0.25)
        assert seen.pop(mode) == {torch.float32} and prob.dtype == np.float32
        assert training_dtypes == ({torch.bfloat16} if mode == "bf16" else {torch.float32})
    with pytest.raises(ValueError, match="mixed_precision"):
        full_task.train_full_segmenter(images, 1, 0, 32, 2, 0.01, 0.5, [4, 8, 16], mixed_precision="fp16")

    def settings(full):
        return _settings({"utility": {"full": full}}, None, None, None, None, None, None, None)

    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        assert settings({"mixed_precision": "auto"})["full"]["mixed_precision"] == expected
    assert settings({"mixed_precision": "no"})["full"]["mixed_precision"] == "no"
    for bad in ("fp16", True, "yes"):
        with pytest.raises(ConfigError, match="mixed_precision"):
            settings({"mixed_precision": bad})


def test_test_time_mirroring_makes_the_prediction_flip_equivariant():
    """nnU-Net's test-time mirroring averages the logits of the image's four flips, so the prediction of a
    flipped image is the flipped prediction (exactly, whatever the network); without it an untrained
    network is not equivariant, so the check can fail. A bad setting is refused."""
    import torch

    from medsynth.metrics.utility.full import make_full_net, predict_full
    from medsynth.metrics.utility.protocol import _settings

    torch.manual_seed(0)
    model = make_full_net([4, 8, 16], 1).eval()
    image = np.random.default_rng(2).random((40, 56)).astype(np.float32)
    for flip in (np.fliplr, np.flipud):
        plain = predict_full(model, image, 32, 0.25)
        assert np.abs(predict_full(model, flip(image), 32, 0.25) - flip(plain)).max() > 1e-4
        mirrored = predict_full(model, image, 32, 0.25, mirror=True)
        np.testing.assert_allclose(predict_full(model, flip(image), 32, 0.25, mirror=True), flip(mirrored),
                                   atol=1e-5)
        assert np.abs(mirrored - plain).max() > 1e-4 and mirrored.shape == image.shape
    with pytest.raises(ConfigError, match="test_time_mirroring"):
        _settings({"utility": {"full": {"test_time_mirroring": "yes"}}}, None, None, None, None, None, None, None)
