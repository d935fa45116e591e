"""Payload models, one per built-in task type. Input from outside: unknown fields are refused."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, EmailStr, Field, field_validator


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendEmailPayload(Payload):
    """An email sent over SMTP; `to` may be one address or a list."""

    to: list[EmailStr] = Field(min_length=1, max_length=100)
    # A line break would be a header injection; the email library refuses it anyway.
    subject: str = Field(max_length=998, pattern=r"^[^\r\n]*$")
    body: str = Field(max_length=1_000_000)
    cc: list[EmailStr] = Field(default_factory=list, max_length=100)
    bcc: list[EmailStr] = Field(default_factory=list, max_length=100)
    reply_to: EmailStr | None = None
    html: str | None = Field(default=None, max_length=1_000_000)

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WebhookPayload(Payload):
    """An HTTP request; a 2xx answer is success."""

    url: AnyHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: object | None = Field(default=None, alias="json")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SleepPayload(Payload):
    """Waits the given number of seconds: for demos and load tests."""

    seconds: float = Field(ge=0, le=300)
