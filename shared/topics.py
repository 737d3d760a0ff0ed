"""Every topic's name, in one place.

GPU stages get a topic per host so that a slow or dead host stalls only its own topic.
"""

from dataclasses import dataclass

from shared.stages import GpuStage, LlmStage


@dataclass(frozen=True)
class Topics:
    prefix: str = "cofi"

    @property
    def uploads(self) -> str:
        return f"{self.prefix}.uploads"

    @property
    def triage(self) -> str:
        return f"{self.prefix}.triage"

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
        return f"{self.prefix}.{stage}.{host}"

    def llm(self, stage: LlmStage) -> str:
        return f"{self.prefix}.{stage}"

    def all_topics(self, hosts: list[str]) -> list[str]:
        """Every topic of the pipeline for these GPU hosts, in flow order."""
        per_host = [self.gpu(s, h) for s in ("denoise", "ivr", "lid", "stt") for h in hosts]
        return [
            self.uploads,
            *per_host,
            self.triage,
            self.llm("llm1"),
            self.llm("llm2"),
            self.done,
            self.failed,
            self.control,
        ]
