"""Training tasks: what differs between model families on the one engine (:mod:`lablens.train.trainer`)."""

from __future__ import annotations

from lablens.train.tasks.base import Batch, StepContext, Task
from lablens.train.tasks.blur import BlurMultiTask, BlurSettings
from lablens.train.tasks.classification import ClassificationTask

__all__ = ["Batch", "BlurMultiTask", "BlurSettings", "ClassificationTask", "StepContext", "Task"]
