"""The answer each LLM stage must give, validated before it travels on."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Llm1Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    summary: str = Field(min_length=1)
    sentiment: Literal["positive", "neutral", "negative"]
    topics: list[str]


class Llm2Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    disposition: Literal["resolved", "escalated", "callback"]
    compliance_flags: list[str]
    score: int = Field(ge=0, le=100)


ANSWERS: dict[str, type[BaseModel]] = {"llm1": Llm1Answer, "llm2": Llm2Answer}
