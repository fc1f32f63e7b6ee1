"""A run's life on the GUI thread: start the worker (from Run, or from the slider in live mode), lock the
controls, show progress, hand each finished layer step to napari, then report timings and warnings.

Its own part because this is the one place that talks to the worker; every handler here stays short (issue #11:
no GUI-thread step over 100 ms), as the volume-sized work is the worker's (:mod:`.worker`).
"""

from __future__ import annotations

from typing import Any

from napari_sff.imports import collect_if_due
from napari_sff.inference import ARCH_LABELS
from napari_sff.widgets._layers import SCOPES, output_name
from napari_sff.widgets._turns import after_turns
from napari_sff.widgets.predict.layers import difference_colormap
from napari_sff.widgets.predict.worker import LayerOutput, RunRequest, compute


class RunMixin:
    """The widget's runs. Uses the widget's controls, ``_worker``, ``_worker_request``, ``_link`` (the worker's
    :class:`~napari_sff.widgets.predict.worker.WorkerLink`), ``_cancel``, ``_shown``, ``_closed``, ``_adding``,
    ``_live_done``, ``_controls``, and the other parts' ``make_request``, ``_add``, ``_style``, ``_present``,
    ``_badge`` and ``_warn_once``."""

    def run(self, *_: Any, scope: str | None = None):
        """Start a run in a worker; returns the worker (tests wait on it) or None if nothing was started."""
        if self._worker is not None:
            return None
        request = self.make_request(scope)
        if request is None:
            return None
        return self._start(request)

    def _start(self, request: RunRequest, live: bool = False):
        from napari.qt.threading import create_worker

        self._cancel.clear()
        self._set_running(True, live)
        # Errors are ours to report (as notifications), not napari's to re-raise.
        worker = create_worker(compute, request, self._link, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker, self._worker_request = worker, request
        worker.start()
        return worker

    def stop(self, *_: Any) -> None:
        """Ask the worker to stop after the current batch (or DDIM step)."""
        self._cancel.set()

    def _set_running(self, running: bool, live: bool = False) -> None:
        for widget in self._controls:
            widget.enabled = not running
        self.stop_button.enabled = running and not live
        if running:
            self.progress.value = 0

    def _on_progress(self, done: int, total: int, arch: str) -> None:
        if self._closed:
            return
        self.progress.max = max(1, total)
        self.progress.value = min(done, total)
        self.progress.label = f"{ARCH_LABELS[arch]}"

    def _on_errored(self, error: Exception) -> None:
        if self._closed:
            return
        from napari.utils.notifications import show_error

        show_error(f"napari-sff: {error}")

    def _on_finished(self) -> None:
        self._worker, self._worker_request = None, None  # the run's fractions and truth: no longer held
        if self._closed:
            return
        self._set_running(False)

    def _on_yielded(self, step: tuple[str, LayerOutput]) -> None:
        """One layer step of a finished run (see :func:`~napari_sff.widgets.predict.worker.compute` and its
        ``LAYER_STEPS``): add or update the layer, or style and reveal it."""
        what, output = step
        try:
            if self._closed:
                return
            self.stop_button.enabled = False  # the maps are being shown: too late to stop
            request = self._worker_request
            if what == "collect":  # ahead of an allocation-heavy step (worker.LAYER_STEPS), in a turn of its own
                collect_if_due()
            elif what == "add":
                options = dict(output.options)
                if output.kind == "difference":
                    options["colormap"] = difference_colormap()
                self._adding = True
                try:
                    self._add(request.layer, request, output.name, output.data, output.arch, output.prediction,
                              kind=output.kind, **options)
                finally:
                    self._adding = False
            elif output.name in self.viewer.layers:
                self._reveal_step(what, self.viewer.layers[output.name], output.kind)
        finally:
            # The next step is released two event-loop turns later (_turns.after_turns), not here: the timers,
            # input and the canvas's draw of this layer (60-400 ms here) get their turn in between.
            after_turns(self._shown.set)

    def _on_returned(self, request: RunRequest | None) -> None:
        if self._closed:
            return
        if request is None:
            from napari.utils.notifications import show_info

            show_info("napari-sff: prediction stopped; no layer was changed")
            return
        layer = request.layer
        timings = []
        for arch, prediction in request.results.items():
            device = prediction.device
            self._badge(request.device, device)
            resampled = (f", at {prediction.model_spacing[0]:.2f} × {prediction.model_spacing[1]:.2f} mm"
                         if prediction.model_spacing else "")
            mirrored = ", with mirror" if prediction.mirrored else ""
            precision = "" if prediction.precision == "float32" else f", {prediction.precision}"
            timings.append(f"{ARCH_LABELS[arch]} {prediction.ms_per_slice:.1f} ms "
                           f"({device}{precision}{mirrored}{resampled})")
            if prediction.out_of_distribution:  # napari_sff.domain: the scan against the checkpoint's training data
                self._warn_once(f"napari-sff: {ARCH_LABELS[arch]} on '{layer.name}': {prediction.out_of_distribution}")
        self.timing.value = "; ".join(timings)
        self._source, self._anatomy = layer, request.volume.array
        if not request.live:  # live mode follows the slider: leave the user's selection alone
            self._present(layer, list(request.results))

    # -------------------------------------------------------------------------------------- live mode
    def _on_live_toggled(self, on: bool) -> None:
        self._live_done.clear()
        if on:
            self._on_step()

    def _on_step(self, *_: Any) -> None:
        if self._closed or not self.live.value or self._worker is not None or self.image.value is None:
            return
        layer = self.image.value
        if layer.ndim != 3:
            return
        axis, index = self.current_slice_index(layer)
        name = output_name("sff", "unet", layer.name)
        key = (id(layer), axis, index)
        if key in self._live_done and name in self.viewer.layers:
            return
        request = self.make_request(scope=SCOPES[1], archs=("unet",))
        if request is not None:
            request.live = True
            self._live_done.add(key)
            self._start(request, live=True)
