"""Kubeflow Pipelines watcher: find the data upcoming pipeline steps read, and preload it.

The pure core (:func:`plan_workflow`, :func:`upcoming`) turns an Argo Workflow object into a
plan of steps, their states and input URIs; it does no I/O.
"""

from .workflow import (
    ANNOTATION,
    Input,
    Plan,
    Problem,
    Step,
    WorkflowError,
    decode_compressed_nodes,
    plan_workflow,
    upcoming,
)

__all__ = [
    "ANNOTATION",
    "Input",
    "Plan",
    "Problem",
    "Step",
    "WorkflowError",
    "decode_compressed_nodes",
    "plan_workflow",
    "upcoming",
]
