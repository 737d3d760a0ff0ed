"""The words of the tracker's status columns: one enum for the tracker, the dashboard and the CLI.

A stage's `batchStatus` column holds one of them; the batch's `status` holds Pending, a stage's
`done_value` (shared/pipeline.py) as it gets through the stages, then Complete or Cancelled.
"""

from enum import StrEnum


class Status(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"  # a stage some file has entered, not yet resolved for all
    COMPLETE = "Complete"
    CANCELLED = "Cancelled"  # only the batch's `status`: a stage of a cancelled batch stays


# A batch in one of these changes no more (but a cancel that came too late reads Complete).
FINISHED: frozenset[Status] = frozenset({Status.COMPLETE, Status.CANCELLED})
