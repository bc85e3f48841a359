"""``evaluate_utility``: does adding a synthetic set help a segmentation model on real test data?

The protocol, in the order it runs:

1. read real-train, synthetic and real-test once (:mod:`.data`);
2. refuse splits that share a patient, an image or a background (:mod:`.splits`);
3. for each task (``crops``: a UNet on lesion crops; ``full``: a DynUNet on whole images,
   :mod:`.crops`, :mod:`.full`), each seed and each data regime (a fraction of the real-train
   *patients*, drawn per seed, nested), train the same network for the same number of steps on
   ``real``, ``real+synthetic`` and (once per seed) ``synthetic`` only, and score it on every real test
   image;
4. summarise each arm and each arm-vs-real difference with the two-level bootstrap of :mod:`.stats`
   (patients and seeds resampled), overall, per lesion class and per margin.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError
from medsynth.metrics.utility.data import UtilitySet, read_set, regime_patients
from medsynth.metrics.utility.headlines import GROUP_HEADLINES, HEADLINES
from medsynth.metrics.utility.result import UtilityResult
from medsynth.metrics.utility.stats import (
    FrocMetric,
    MeanMetric,
    PatientBootstrap,
    summarize_arm,
    summarize_delta,
    threshold_grid,
)

TASKS = ("crops", "full")
ARMS = ("real", "real+synthetic", "synthetic")


def regime_key(fraction: float) -> str:
    """How a regime is named in the JSON: ``"0.1"``, ``"0.3"``, ``"1"``."""
    return f"{float(fraction):g}"


def _settings(config: Any, steps: int | None, seeds: int | None, batch_size: int | None, roi_mm: float | None,
              roi_px: int | None, tasks: Any, regimes: Any, device: str | None = None,
              spacing_mm: Any = None) -> dict[str, Any]:
    from medsynth.config import load_config
    from medsynth.runtime import resolve_device

    cfg = load_config(config, kind="evaluate", overrides={"roi_mm": roi_mm, "roi_px": roi_px, "device": device,
                                                              "spacing_mm": spacing_mm})
    u = cfg["utility"]
    u = {**u, "crops": dict(u["crops"]), "full": dict(u["full"]), "splits": dict(u["splits"])}
    u["device"] = str(resolve_device(cfg["device"]))
    u["given_spacing"] = cfg["spacing_mm"]
    if seeds is not None:
        u["seeds"] = seeds
    if tasks is not None:
        u["tasks"] = [tasks] if isinstance(tasks, str) else list(tasks)
    if regimes is not None:
        u["regimes"] = [regimes] if isinstance(regimes, (int, float)) else list(regimes)
    if steps is not None:
        u["crops"]["steps"] = u["full"]["steps"] = steps
    if batch_size is not None:
        u["crops"]["batch_size"] = batch_size
    u["tasks"] = ["crops", "full"] if u["tasks"] in ("both", ["both"]) else list(u["tasks"])
    bad = [t for t in u["tasks"] if t not in TASKS]
    if bad or not u["tasks"]:
        raise ConfigError(f"unknown utility task(s) {bad or u['tasks']}; known: crops, full (or both)")
    if not isinstance(u["seeds"], int) or u["seeds"] < 1:
        raise ConfigError(f"seeds must be an integer >= 1, got {u['seeds']!r}")
    for t in ("crops", "full"):
        if not isinstance(u[t]["steps"], int) or u[t]["steps"] < 1:
            raise ConfigError(f"steps must be an integer >= 1, got {u[t]['steps']!r} ({t} task)")
    try:
        u["regimes"] = sorted({float(r) for r in u["regimes"]})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"regimes must be fractions in (0, 1], got {u['regimes']!r}") from e
    if not u["regimes"] or any(not 0 < r <= 1 for r in u["regimes"]):
        raise ConfigError(f"regimes must be fractions in (0, 1], got {u['regimes']!r}")
    if not 0 <= float(u["full"]["foreground_fraction"]) <= 1:
        raise ConfigError(f"full.foreground_fraction must lie in [0, 1], got {u['full']['foreground_fraction']}")
    from medsynth.metrics.utility.full import LR_SCHEDULES, MIXED_PRECISION
    from medsynth.runtime import resolve_mixed_precision

    if u["full"]["lr_schedule"] not in LR_SCHEDULES:
        raise ConfigError(f"full.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                          f"got {u['full']['lr_schedule']!r}")
    ds, n_levels = u["full"]["deep_supervision"], len(u["full"]["filters"])
    if not (isinstance(ds, int) and not isinstance(ds, bool) and ds >= 0):
        raise ConfigError(f"full.deep_supervision must be an integer >= 0 (extra output heads below full "
                          f"resolution), got {ds!r}")
    # A network of n levels has n - 2 decoder levels below full resolution above its bottom; the settings
    # record the number of heads used.
    u["full"]["deep_supervision"] = min(ds, max(0, n_levels - 2))
    mp = u["full"]["mixed_precision"]
    if mp not in ("auto", *MIXED_PRECISION):
        raise ConfigError(f"full.mixed_precision must be one of auto, {', '.join(MIXED_PRECISION)}, got {mp!r}")
    if not isinstance(u["full"]["test_time_mirroring"], bool):
        raise ConfigError(f"full.test_time_mirroring must be true or false, got {u['full']['test_time_mirroring']!r}")
    # The settings record the precision used, "auto" resolved for this machine.
    u["full"]["mixed_precision"] = resolve_mixed_precision(mp, u["device"].split(":")[0])
    u["roi_mm"], u["roi_px"] = float(cfg["roi_mm"]), int(cfg["roi_px"])
    w = u["workers"]
    if not (w == "auto" or (isinstance(w, int) and not isinstance(w, bool) and w >= 1)):
        raise ConfigError(f"utility.workers must be 'auto' or an integer >= 1, got {w!r}")
    return u


def _usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_plan(workers: Any, device: str, n_jobs: int) -> int:
    """How many processes train ``n_jobs`` independent networks side by side.

    One on CUDA (one device), for a single job, and where the OS cannot fork; ``auto`` on the CPU: one
    per usable core. An integer is taken as given, capped at the number of jobs. Each worker runs on one
    thread (see :class:`_JobRunner`); one process uses all of torch's threads.
    """
    import multiprocessing

    if device.startswith("cuda") or n_jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    n = _usable_cores() if workers == "auto" else int(workers)
    return max(1, min(n, n_jobs))


def _subsets(train: UtilitySet, u: dict[str, Any]) -> dict[tuple[int, str], np.ndarray]:
    """Per (seed, regime): the real-train images of the regime's patients (extended until one has a lesion)."""
    pidx, names = train.patient_index()
    has_lesion = np.zeros(len(names), bool)
    if train.crop_image is not None:
        has_lesion[pidx[train.crop_image]] = True
    for k, fi in enumerate(train.full):
        if fi.lesions:
            has_lesion[pidx[k]] = True
    out = {}
    for seed in range(u["seeds"]):
        for frac in u["regimes"]:
            chosen, order = regime_patients(len(names), frac, seed, int(u["subset_seed"]))
            k = len(chosen)
            while not has_lesion[order[:k]].any() and k < len(order):
                k += 1  # a regime without a single lesion cannot train the crop task
            out[(seed, regime_key(frac))] = np.flatnonzero(np.isin(pidx, order[:k]))
    return out


class _TaskRun:
    """The per-seed outputs of one task on the test set, and how to turn them into metrics."""

    def __init__(self, task: str, test: UtilitySet, fp_rates: list[float], thresholds: np.ndarray | None) -> None:
        self.task = task
        self.fp_rates = fp_rates
        self.thresholds = thresholds
        pidx, self.patient_names = test.patient_index()
        self.n_patients = len(self.patient_names)
        self.outputs: dict[str, dict[str, list[np.ndarray]]] = {}
        self.n_train: dict[str, dict[str, list[int]]] = {}
        if task == "crops":
            assert test.crop_image is not None
            self.unit_patient = pidx[test.crop_image]
            self.classes, self.margins = list(test.crop_classes), list(test.crop_margins)
        else:
            self.image_patient = pidx
            self.has_lesion = np.asarray([bool(fi.lesions) for fi in test.full])
            self.unit_patient = np.asarray([pidx[i] for i, fi in enumerate(test.full) for _ in fi.lesions],
                                           dtype=np.int64)
            self.classes = [c for fi in test.full for c in fi.classes]
            self.margins = [m for fi in test.full for m in fi.margins]

    def add(self, arm: str, values: dict[str, np.ndarray], n_train: dict[str, int]) -> None:
        for name, v in values.items():
            self.outputs.setdefault(arm, {}).setdefault(name, []).append(v)
        for name, v in n_train.items():
            self.n_train.setdefault(arm, {}).setdefault(name, []).append(int(v))

    def _stack(self, arm: str, name: str) -> np.ndarray:
        return np.stack(self.outputs[arm][name])

    def groups(self) -> dict[str, dict[str, np.ndarray]]:
        """Units (crops or lesions) per class and per margin."""
        out: dict[str, dict[str, np.ndarray]] = {"by_class": {}, "by_margin": {}}
        for key, labels in (("by_class", self.classes), ("by_margin", self.margins)):
            for name in sorted({x for x in labels if x is not None}):
                out[key][name] = np.asarray([k for k, x in enumerate(labels) if x == name], dtype=np.int64)
        return out

    def metrics(self, arm: str, units: np.ndarray | None = None) -> dict[str, Any]:
        """The arm's metrics: over all test units (``units`` None) or over a group of crops/lesions."""
        if self.task == "crops":
            d = self._stack(arm, "dice")
            idx = slice(None) if units is None else units
            return {"dice": MeanMetric(d[:, idx], self.unit_patient[idx])}
        les_dice, les_score = self._stack(arm, "lesion_dice"), self._stack(arm, "lesion_score")
        fp = self._stack(arm, "fp_counts")
        idx = slice(None) if units is None else units
        out: dict[str, Any] = {}
        if units is None:
            img = self._stack(arm, "dice")
            out["dice"] = MeanMetric(img, self.image_patient)
            out["dice_lesion_images"] = MeanMetric(img[:, self.has_lesion], self.image_patient[self.has_lesion])
            out["dice_lesion_free"] = MeanMetric(img[:, ~self.has_lesion], self.image_patient[~self.has_lesion])
        out["lesion_dice"] = MeanMetric(les_dice[:, idx], self.unit_patient[idx])
        for r in self.fp_rates:
            out[f"sensitivity@{r:g}fp"] = FrocMetric(fp, self.image_patient, les_score[:, idx],
                                                     self.unit_patient[idx], self.thresholds, float(r))
        return out

    @property
    def headline(self) -> str:
        return HEADLINES[self.task]

    @property
    def group_headline(self) -> str:
        return GROUP_HEADLINES[self.task]

    def summarize(self, regimes: list[str], n_boot: int, seed: int) -> dict[str, Any]:
        plan = PatientBootstrap(self.n_patients, n_boot, seed)
        groups = self.groups()

        def arm_summary(arm_id: str) -> dict[str, Any]:
            out: dict[str, Any] = {name: summarize_arm(m, plan, arm_id) for name, m in self.metrics(arm_id).items()}
            for key, members in groups.items():
                out[key] = {}
                for name, units in members.items():
                    entry = {mname: summarize_arm(m, plan, arm_id)
                             for mname, m in self.metrics(arm_id, units).items()}
                    out[key][name] = {"n": int(len(units)), **entry}
            out["n_train"] = {k: v for k, v in self.n_train.get(arm_id, {}).items()}
            return out

        def delta(a: str, b: str) -> dict[str, Any]:
            ma, mb = self.metrics(a), self.metrics(b)
            all_metrics = {name: summarize_delta(ma[name], a, mb[name], b, plan) for name in ma}
            out: dict[str, Any] = {"metric": self.headline, **all_metrics[self.headline], "metrics": all_metrics}
            for key, members in groups.items():
                out[key] = {}
                for name, units in members.items():
                    ga, gb = self.metrics(a, units), self.metrics(b, units)
                    gm = {mname: summarize_delta(ga[mname], a, gb[mname], b, plan) for mname in ga}
                    out[key][name] = {"metric": self.group_headline, "n": int(len(units)),
                                      **gm[self.group_headline], "metrics": gm}
            return out

        syn = arm_summary("synthetic")
        result: dict[str, Any] = {}
        for r in regimes:
            real_id, mix_id = f"real@{r}", f"real+synthetic@{r}"
            result[r] = {
                "arms": {"real": arm_summary(real_id), "real+synthetic": arm_summary(mix_id), "synthetic": syn},
                "delta": {"arm": "real+synthetic", "versus": "real", **delta(mix_id, real_id)},
                "delta_synthetic_only": {"arm": "synthetic", "versus": "real", **delta("synthetic", real_id)},
            }
        return result


def evaluate_utility(
    real_train: Any,
    synthetic: Any,
    real_test: Any,
    steps: int | None = None,
    seeds: int | None = None,
    batch_size: int | None = None,
    roi_mm: float | None = None,
    roi_px: int | None = None,
    progress: bool = True,
    *,
    tasks: str | list[str] | None = None,
    regimes: float | list[float] | None = None,
    background_salt: bytes | str | Path | None = None,
    config: str | Path | dict[str, Any] | None = None,
    device: str | None = None,
    spacing_mm: Any = None,
) -> UtilityResult:
    """Train segmentation networks on real, real + synthetic and synthetic data; score them on real test data.

    Args:
        real_train, synthetic, real_test: dataset paths, Datasets or lists of Cases, with lesion masks;
            patient IDs (CBIS-DDSM, a folder's ``cases.csv``, ...) are used to subsample, resample and
            check the splits (without them each image counts as its own patient).
        steps: training steps per network, both tasks (default: ``utility.crops.steps`` and
            ``utility.full.steps`` of the config).
        seeds: training seeds per arm (>= 3 for a meaningful interval).
        batch_size: crops per step of the crop task.
        roi_mm, roi_px: physical size and pixels of the scored crops.
        progress: show progress bars.
        tasks: ``"crops"``, ``"full"``, ``"both"`` or a list.
        regimes: fractions of the real-train patients, e.g. ``[0.1, 0.3, 1]``.
        background_salt: the salt of the ``medsynth generate`` run (bytes, hex, or a file), to check the
            manifest's salted background identities against the real images.
        config: a path or dict laid over ``configs/evaluate.yaml`` (its ``utility`` section).
        device: where the networks train and predict (``"auto"``: CUDA when present, ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``); None: ``device`` of the config.
        spacing_mm: pixel spacing (mm) of images whose files state none (never assumed); None:
            ``spacing_mm`` of the config.

    Returns:
        A :class:`UtilityResult` (``to_dict()["utility"]`` is the JSON).

    Raises:
        InvalidDatasetError: a set is empty or has no masks; two sets share a patient, an image or a
            background.
        ConfigError: an unknown task, a regime outside (0, 1], steps or seeds below 1, a wrong salt.
    """
    from medsynth.utils import progress_bar

    # 1. Settings
    u = _settings(config, steps, seeds, batch_size, roi_mm, roi_px, tasks, regimes, device, spacing_mm)
    t0, c0 = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # process CPU seconds: on a shared machine, what the work itself cost
    child_cpu = 0.0  # CPU seconds of the worker processes' jobs

    # 2. Read the three sets (each image once)
    want = {"crops": "crops" in u["tasks"], "full": "full" in u["tasks"]}
    read = dict(roi_mm=u["roi_mm"], roi_px=u["roi_px"], spacing_mm=float(u["full"]["spacing_mm"]), progress=progress,
                given_spacing=u["given_spacing"],
                **want)
    train = read_set(real_train, "real-train", **read)
    syn = read_set(synthetic, "synthetic", **read)
    test = read_set(real_test, "real-test", **read)
    timings["read"], cpu["read"] = time.perf_counter() - t0, time.process_time() - c0

    # 3. Refuse overlapping splits before anything is trained
    s = u["splits"]
    splits = check_splits_and_describe(train, test, syn, background_salt, s)

    # 4. Train and score: every (task, seed, arm) network is an independent job, run in this process or
    # in worker processes; results are gathered in job order, so the figures do not depend on which
    # worker finished first.
    subsets = _subsets(train, u)
    regime_keys = [regime_key(r) for r in u["regimes"]]
    pidx, _ = train.patient_index()
    runs: dict[str, _TaskRun] = {}
    n_jobs = len(u["tasks"]) * u["seeds"] * (2 * len(regime_keys) + 1)
    n_workers = worker_plan(u["workers"], u["device"], n_jobs // len(u["tasks"]))
    u["workers_used"] = {"processes": n_workers, "threads_per_process": 1 if n_workers > 1 else torch_threads()}
    with progress_bar(progress, "{task.fields[what]}") as bar, \
            _JobRunner(n_workers, u, train, syn, test, pidx) as runner:
        job = bar.add_task("training utility networks", total=n_jobs, what="")
        for task in u["tasks"]:
            t1, c1 = time.perf_counter(), time.process_time()
            thresholds = threshold_grid(float(u["full"]["candidate_threshold"])) if task == "full" else None
            run = runs[task] = _TaskRun(task, test, [float(r) for r in u["fp_rates"]], thresholds)
            jobs: list[tuple[str, int, np.ndarray | None, bool]] = []
            for seed in range(u["seeds"]):
                jobs.append(("synthetic", seed, None, True))
                for r in regime_keys:
                    sub = subsets[(seed, r)]
                    jobs += [(f"real@{r}", seed, sub, False), (f"real+synthetic@{r}", seed, sub, True)]

            def done(k: int, task: str = task, jobs: list = jobs) -> None:
                arm_id, seed, _, _ = jobs[k]
                bar.update(job, what=f"{task} {arm_id} seed {seed}")
                bar.advance(job)

            for (arm_id, _, _, _), (values, n_train) in zip(jobs, runner.run(task, jobs, done)):
                run.add(arm_id, values, n_train)
            timings[task], cpu[task] = time.perf_counter() - t1, time.process_time() - c1
            cpu[task] += runner.child_cpu_seconds()
            child_cpu += runner.child_cpu_seconds()

    # 5. Statistics
    t2, c2 = time.perf_counter(), time.process_time()
    data: dict[str, Any] = {}
    for task, run in runs.items():
        n_units = len(run.unit_patient)
        data[task] = {
            "headline": run.headline,
            "n_test_images": len(test),
            "n_test_patients": run.n_patients,
            f"n_test_{'crops' if task == 'crops' else 'lesions'}": int(n_units),
            "test_by_class": {k: int(len(v)) for k, v in run.groups()["by_class"].items()},
            "test_by_margin": {k: int(len(v)) for k, v in run.groups()["by_margin"].items()},
            "regimes": run.summarize(regime_keys, int(u["n_boot"]), int(u["bootstrap_seed"])),
        }
    timings["statistics"], cpu["statistics"] = time.perf_counter() - t2, time.process_time() - c2
    timings["total"], cpu["total"] = time.perf_counter() - t0, time.process_time() - c0 + child_cpu
    settings = _public_settings(u, train, syn, test)
    return UtilityResult(tasks=data, splits=splits, settings=settings,
                         seconds={k: round(v, 1) for k, v in timings.items()},
                         cpu_seconds={k: round(v, 1) for k, v in cpu.items()})


def check_splits_and_describe(train: UtilitySet, test: UtilitySet, syn: UtilitySet, salt: Any,
                              s: dict[str, Any]) -> dict[str, Any]:
    from medsynth.metrics.utility.splits import check_splits

    report = check_splits(train, test, syn, salt=salt, dilate_mm=float(s["dilate_mm"]),
                          max_residual=float(s["max_residual"]))
    report["sets"] = {
        x.what: {"source": x.source, "images": len(x), "patients": len(set(x.patients)),
                 "patient_ids": "from the dataset" if x.has_patient_ids else "missing: each image is its own patient"}
        for x in (train, test, syn)
    }
    return report


# ----------------------------------------------------------------------------- jobs
_WORKER: dict[str, Any] = {}  # the settings and sets, set before the workers fork (they inherit them)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _worker_job(task: str, images: np.ndarray | None, with_syn: bool,
                seed: int) -> tuple[dict[str, np.ndarray], dict[str, int], float]:
    w = _WORKER
    c0 = time.process_time()
    values, n_train = _train_and_score(task, w["u"], w["train"], w["syn"], w["test"], images, with_syn, seed,
                                       w["pidx"])
    return values, n_train, time.process_time() - c0


class _JobRunner:
    """Runs training jobs in this process (one worker) or in a pool of forked processes of one thread each.

    Forked: the children share the sets with this process (copy-on-write) instead of receiving a copy,
    and, unlike spawn, nothing re-imports the user's script (a script without a ``__main__`` guard hangs
    a spawned pool). One thread each: a forked child of a process whose OpenMP threads have run hangs
    in its first multi-threaded OpenMP region (GNU libgomp is not fork-safe), and a single-threaded one
    never opens such a region.
    """

    def __init__(self, workers: int, u: dict[str, Any], train: UtilitySet, syn: UtilitySet,
                 test: UtilitySet, pidx: np.ndarray) -> None:
        self.workers = workers
        self.args = (u, train, syn, test, pidx)
        self.pool: Any = None
        self._child_cpu = 0.0

    def __enter__(self) -> _JobRunner:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            u, train, syn, test, pidx = self.args
            _WORKER.update(u=u, train=train, syn=syn, test=test, pidx=pidx)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_worker_init)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            _WORKER.clear()

    def child_cpu_seconds(self) -> float:
        """CPU seconds the workers spent on the jobs of the last :meth:`run` (0 in-process)."""
        return self._child_cpu

    def run(self, task: str, jobs: list[tuple[str, int, np.ndarray | None, bool]],
            done: Any) -> list[tuple[dict[str, np.ndarray], dict[str, int]]]:
        self._child_cpu = 0.0
        u, train, syn, test, pidx = self.args
        if self.pool is None:
            out = []
            for k, (_, seed, images, with_syn) in enumerate(jobs):
                out.append(_train_and_score(task, u, train, syn, test, images, with_syn, seed, pidx))
                done(k)
            return out
        from concurrent.futures import as_completed

        futures = {self.pool.submit(_worker_job, task, images, with_syn, seed): k
                   for k, (_, seed, images, with_syn) in enumerate(jobs)}
        results: dict[int, tuple[dict[str, np.ndarray], dict[str, int]]] = {}
        for fut in as_completed(futures):
            k = futures[fut]
            values, n_train, cpu_s = fut.result()
            results[k] = (values, n_train)
            self._child_cpu += cpu_s
            done(k)
        return [results[k] for k in range(len(jobs))]


def _train_and_score(task: str, u: dict[str, Any], train: UtilitySet, syn: UtilitySet, test: UtilitySet,
                     images: np.ndarray | None, with_syn: bool, seed: int,
                     pidx: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Train one network (real images ``images`` of the train set, plus the synthetic set or not) and
    score it on the test set."""
    from medsynth.metrics.utility import crops as crop_task
    from medsynth.metrics.utility import full as full_task
    from medsynth.metrics.utility.stats import dice_per_case

    real_images = np.zeros(0, np.int64) if images is None else images
    n_train = {"real_images": len(real_images), "real_patients": len(set(pidx[real_images].tolist())),
               "synthetic_images": len(syn) if with_syn else 0}
    if task == "crops":
        c = u["crops"]
        assert train.crops is not None and syn.crops is not None and test.crops is not None
        sel = np.flatnonzero(np.isin(train.crop_image, real_images))
        parts_x = [train.crops[sel]] + ([syn.crops] if with_syn else [])
        parts_m = [train.crop_masks[sel]] + ([syn.crop_masks] if with_syn else [])
        x, m = np.concatenate(parts_x), np.concatenate(parts_m)
        n_train["crops"] = len(x)
        model = crop_task.train_crop_segmenter(x, m, int(c["steps"]), seed, u["roi_px"], int(c["batch_size"]),
                                               float(c["lr"]), device=u["device"])
        xt = crop_task.centre_window(test.crops, u["roi_px"])
        mt = crop_task.centre_window(test.crop_masks, u["roi_px"])
        return {"dice": dice_per_case(crop_task.predict_crops(model, xt), mt)}, n_train
    f = u["full"]
    pool = [train.full[i] for i in real_images] + (list(syn.full) if with_syn else [])
    model = full_task.train_full_segmenter(pool, int(f["steps"]), seed, int(f["patch_px"]), int(f["batch_size"]),
                                           float(f["lr"]), float(f["foreground_fraction"]), list(f["filters"]),
                                           device=u["device"], lr_schedule=str(f["lr_schedule"]),
                                           deep_supervision=int(f["deep_supervision"]),
                                           mixed_precision=str(f["mixed_precision"]))
    thresholds = threshold_grid(float(f["candidate_threshold"]))
    dice, les_dice, les_score, fp_counts = [], [], [], []
    for fi in test.full:
        prob = full_task.predict_full(model, fi.image, int(f["patch_px"]), float(f["overlap"]),
                                      mirror=bool(f["test_time_mirroring"]))
        sc = full_task.score_image(prob, fi, float(f["spacing_mm"]), float(f["candidate_threshold"]),
                                   float(f["window_mm"]))
        dice.append(sc.dice)
        les_dice.append(sc.lesion_dice)
        les_score.append(sc.lesion_score)
        fp_counts.append((sc.fp_scores[:, None] >= thresholds[None, :]).sum(0))
    values = {"dice": np.asarray(dice), "lesion_dice": np.concatenate(les_dice),
              "lesion_score": np.concatenate(les_score), "fp_counts": np.stack(fp_counts)}
    return values, n_train


def _public_settings(u: dict[str, Any], train: UtilitySet, syn: UtilitySet, test: UtilitySet) -> dict[str, Any]:
    from medsynth.metrics.utility import crops as crop_task
    from medsynth.metrics.utility import full as full_task

    return {
        "tasks": list(u["tasks"]),
        "regimes": [float(r) for r in u["regimes"]],
        "seeds": int(u["seeds"]),
        "n_boot": int(u["n_boot"]),
        "fp_rates": [float(r) for r in u["fp_rates"]],
        "crops": {**u["crops"], "roi_mm": u["roi_mm"], "roi_px": u["roi_px"], "model": crop_task.MODEL_NAME},
        "full": {**u["full"], "model": full_task.model_name(
            u["full"]["filters"], u["full"]["lr_schedule"], int(u["full"]["deep_supervision"]),
            float(u["full"]["foreground_fraction"]))},
        "subset_seed": int(u["subset_seed"]),
        "device": u["device"],
        "workers": u.get("workers_used", {"processes": 1}),
        "bootstrap": "patients and seeds resampled (two levels), paired across arms; percentile 95 % CI",
        "warning": (f"only {u['seeds']} seed(s): the intervals barely include the variance of training; use >= 3"
                    if u["seeds"] < 3 else None),
    }


__all__ = ["ARMS", "HEADLINES", "TASKS", "evaluate_utility", "regime_key"]
