"""The pipeline's stage names as types, and in flow order (derived from `shared.pipeline`).

The `Literal`s are what type checkers see; the tuples come from the graph table, and importing
this module fails if the two disagree (a stage added to the table but not to its type).
"""

from typing import Final, Literal, cast, get_args

from shared.pipeline import PIPELINE

StageName = Literal["denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2"]
# "distribute" is the distributor's host assignment: it precedes every stage.
EventStage = Literal["distribute", "denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2"]
GpuStage = Literal["denoise", "ivr", "lid", "stt"]
LlmStage = Literal["llm1", "llm2"]

STAGES: Final = cast(tuple[StageName, ...], tuple(r.name for r in PIPELINE[1:]))
GPU_STAGES: Final = cast(
    tuple[GpuStage, ...], tuple(r.name for r in PIPELINE if r.runner == "gpu_stage")
)
LLM_STAGES: Final = cast(
    tuple[LlmStage, ...], tuple(r.name for r in PIPELINE if r.runner == "llm_stage")
)

for _type, _names in (
    (EventStage, tuple(r.name for r in PIPELINE)),
    (StageName, STAGES),
    (GpuStage, GPU_STAGES),
    (LlmStage, LLM_STAGES),
):
    if get_args(_type) != _names:
        raise ImportError(f"shared/stages.py: {get_args(_type)} disagrees with PIPELINE {_names}")
