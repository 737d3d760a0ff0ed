"""Every topic's name, in one place; the stages' input topics follow `shared.pipeline`.

GPU stages get a topic per host so that a slow or dead host stalls only its own topic.
"""

from dataclasses import dataclass

from shared.pipeline import PIPELINE, input_topic
from shared.stages import GpuStage, LlmStage


@dataclass(frozen=True)
class Topics:
    prefix: str = "cofi"

    @property
    def uploads(self) -> str:
        return f"{self.prefix}.uploads"

    @property
    def triage(self) -> str:
        return input_topic("triage", self)

    @property
    def done(self) -> str:
        return f"{self.prefix}.done"

    @property
    def failed(self) -> str:
        return f"{self.prefix}.failed"

    @property
    def control(self) -> str:
        """Compacted: the latest control event per batch (e.g. `BatchCancelled`)."""
        return f"{self.prefix}.control"

    def gpu(self, stage: GpuStage, host: str) -> str:
        return input_topic(stage, self, host)

    def llm(self, stage: LlmStage) -> str:
        return input_topic(stage, self)

    def all_topics(self, hosts: list[str]) -> list[str]:
        """Every topic of the pipeline for these GPU hosts: the stages' inputs in flow order,
        then the ends and the control topic."""
        inputs = [
            input_topic(row.name, self, host)
            for row in PIPELINE
            for host in (hosts if row.per_host else [None])
        ]
        return [*inputs, self.done, self.failed, self.control]
