"""The contract every phantom generator obeys: :class:`Phantom`, :class:`PhantomFields`, :class:`Instance`.

A task module (``blood_cells.py``, ``ana_hep2.py`` ...) defines four plain functions and builds one
``Phantom`` from them:

* ``sample_style(rng) -> dict[str, float]`` — one synthetic patient / specimen / slide (stain,
  exposure, focus ...). Every value is a float; they all go to the manifest.
* ``sample_params(label, rng, style) -> dict`` — *all* randomness of one image, as plain data.
* ``draw(params, size) -> uint8 (size, size, 3)`` — deterministic rendering, no random numbers.
  It must honour ``params.get("extra_blur_frac", 0.0)`` through :func:`draw.total_blur` (graded
  extra defocus for ``--blur``) and apply it before sensor noise.
* ``truth(params, size) -> dict`` — scalar per-image truth for the manifest; must include
  ``blur_sigma``: the generator's own defocus sigma in output pixels (without the extra blur).

Whole fields (many objects per image, ``--fields``) add a :class:`PhantomFields` whose drawer also returns
one :class:`Instance` (label + exact pixel mask) per annotated object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lablens.errors import SettingError, UnknownNameError

Style = dict[str, float]
Params = dict[str, Any]


@dataclass
class Instance:
    """One annotated object in a generated field.

    Attributes:
        label: object class (e.g. ``"neutrophil"``, ``"rbc"``, ``"nucleus"``).
        mask: ``bool`` array of the field's shape, True on the object's pixels (soft mask ``>= 0.5``).
        center: ``(x, y)`` pixel position the generator placed the object at.
        may_overlap: the generator allows this object to overlap others (red cells in a smear,
            touching capillaries). Masks of two objects that both say False never overlap.
        attrs: extra scalar truth for ``cells.csv`` (``mitotic``, ``subtype`` ...).
    """

    label: str
    mask: np.ndarray
    center: tuple[float, float]
    may_overlap: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)

    def box(self) -> tuple[int, int, int, int]:
        """Tight box ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive; ``(0, 0, 0, 0)`` if empty."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        if len(rows) == 0:
            return (0, 0, 0, 0)
        cols = np.flatnonzero(self.mask[rows[0] : rows[-1] + 1].any(axis=0))
        return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


@dataclass(frozen=True)
class PhantomFields:
    """Whole-field generation for a task.

    Attributes:
        classes: sample-level labels of fields (the ImageFolder classes of a ``--fields`` tree).
        instance_classes: labels that :class:`Instance` objects may carry.
        sampler: ``(label, rng, style) -> params``.
        drawer: ``(params, size) -> (uint8 image, list[Instance])``.
        truth_fn: ``(params, size) -> dict`` of scalars (must include ``blur_sigma``).
        default_size: field side in pixels when the user gives none.
        one_label_per_group: a group (patient, serum) carries a single field label.
    """

    classes: tuple[str, ...]
    instance_classes: tuple[str, ...]
    sampler: Callable[[str, np.random.Generator, Style], Params]
    drawer: Callable[[Params, int], tuple[np.ndarray, list[Instance]]]
    truth_fn: Callable[[Params, int], dict[str, Any]]
    default_size: int = 512
    one_label_per_group: bool = True


@dataclass(frozen=True)
class Phantom:
    """A synthetic image classification task.

    Attributes:
        name: task name used on the command line (e.g. ``"blood-cells"``).
        classes: class labels, in canonical order.
        description: one-line description.
        style_sampler: ``rng -> style dict`` (per group).
        param_sampler: ``(label, rng, style) -> params dict`` (per image, all randomness).
        drawer: ``(params, size) -> uint8 RGB image`` (deterministic).
        truth_fn: ``(params, size) -> dict`` of scalar per-image truth for the manifest.
        one_label_per_group: a group (patient, serum, biopsy) carries a single class, as in ANA
            (one serum, one pattern), kidney biopsies and nailfold patients. Blood smears hold every
            cell type, so there it is False.
        default_size: image side in pixels when the user gives none.
        fields: whole-field generation, if the task has it.
    """

    name: str
    classes: tuple[str, ...]
    description: str
    style_sampler: Callable[[np.random.Generator], Style]
    param_sampler: Callable[[str, np.random.Generator, Style], Params]
    drawer: Callable[[Params, int], np.ndarray]
    truth_fn: Callable[[Params, int], dict[str, Any]]
    one_label_per_group: bool = False
    default_size: int = 128
    fields: PhantomFields | None = None

    def sample_style(self, rng: np.random.Generator) -> Style:
        """Sample the per-group style (stain, exposure, focus blur...)."""
        return self.style_sampler(rng)

    def _check(self, label: str, classes: tuple[str, ...]) -> None:
        if label not in classes:
            raise UnknownNameError(f"unknown class {label!r} for task {self.name!r}; expected one of {classes}")

    def render_with_truth(
        self,
        label: str,
        rng: np.random.Generator,
        size: int = 128,
        style: Style | None = None,
        extra_blur_frac: float = 0.0,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Render one image and return it with its per-image truth.

        ``extra_blur_frac`` adds defocus with sigma ``extra_blur_frac * size`` pixels (``--blur``);
        the truth's ``blur_sigma`` is then the combined sigma.
        """
        self._check(label, self.classes)
        if style is None:
            style = self.sample_style(rng)
        params = self.param_sampler(label, rng, style)
        if extra_blur_frac > 0:
            params["extra_blur_frac"] = float(extra_blur_frac)
        img = self.drawer(params, size)
        return img, _combined_truth(self.truth_fn(params, size), extra_blur_frac * size)

    def render(
        self, label: str, rng: np.random.Generator, size: int = 128, style: Style | None = None
    ) -> np.ndarray:
        """Render one ``uint8`` RGB image of shape ``(size, size, 3)``."""
        return self.render_with_truth(label, rng, size, style)[0]

    def render_field(
        self,
        label: str,
        rng: np.random.Generator,
        size: int | None = None,
        style: Style | None = None,
        extra_blur_frac: float = 0.0,
    ) -> tuple[np.ndarray, list[Instance], dict[str, Any]]:
        """Render one whole field: image, annotated instances and scalar truth."""
        if self.fields is None:
            raise SettingError(f"phantom task {self.name!r} has no whole-field mode")
        self._check(label, self.fields.classes)
        size = size or self.fields.default_size
        if style is None:
            style = self.sample_style(rng)
        params = self.fields.sampler(label, rng, style)
        if extra_blur_frac > 0:
            params["extra_blur_frac"] = float(extra_blur_frac)
        img, instances = self.fields.drawer(params, size)
        truth = _combined_truth(self.fields.truth_fn(params, size), extra_blur_frac * size)
        return img, instances, truth


def _combined_truth(truth: dict[str, Any], extra_sigma: float) -> dict[str, Any]:
    out = dict(truth)
    own = float(out.get("blur_sigma", 0.0))
    out["blur_sigma"] = round(float(np.hypot(own, extra_sigma)), 4)
    return out
