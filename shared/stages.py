"""The pipeline's stages, in order, and what follows each one."""

from typing import Final, Literal

StageName = Literal["denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2"]
# "distribute" is the distributor's host assignment: it precedes every stage.
EventStage = Literal["distribute", "denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2"]
GpuStage = Literal["denoise", "ivr", "lid", "stt"]
LlmStage = Literal["llm1", "llm2"]

STAGES: Final[tuple[StageName, ...]] = ("denoise", "ivr", "lid", "triage", "stt", "llm1", "llm2")
GPU_STAGES: Final[tuple[GpuStage, ...]] = ("denoise", "ivr", "lid", "stt")
LLM_STAGES: Final[tuple[LlmStage, ...]] = ("llm1", "llm2")


def stage_index(stage: str) -> int:
    """Position of a stage in the pipeline; "distribute" comes first at -1."""
    return -1 if stage == "distribute" else STAGES.index(stage)
