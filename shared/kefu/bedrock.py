"""The answerer's model on Amazon Bedrock: one Converse call through boto3, bounded by a deadline.

boto3 reads AWS_ENDPOINT_URL_BEDROCK_RUNTIME by itself, so the local stack's stand-in and Bedrock
are reached by the same code. A call is made once: a throttled, failing or late call raises
ModelUnavailable and the customer is handed on at once (a retry would make them wait longer).
The client is made on the first question, so the route function's cold start does not pay for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kefu.answerer import ModelReply, ModelUnavailable


@cache
def _client(deadline: float) -> Any:
    import boto3
    from botocore.config import Config

    # read_timeout bounds the wait for the (whole, non-streamed) answer; no retries: see above.
    config = Config(connect_timeout=min(2.0, deadline), read_timeout=deadline,
                    retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client("bedrock-runtime", config=config)


class BedrockModel:
    def __init__(self, model_id: str) -> None:
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    def converse(self, request: dict[str, Any], deadline: float) -> ModelReply:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

        client = _client(deadline)  # one per rules deadline_seconds value: a handful at most
        try:
            response = client.converse(modelId=self._model_id, **request)
        except (ReadTimeoutError, ConnectTimeoutError):
            raise ModelUnavailable(f"gave no answer within {deadline:.1f} s") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ModelUnavailable("throttled" if code == "ThrottlingException" else f"failed: {code}") from None
        except BotoCoreError as exc:
            raise ModelUnavailable(f"unreachable: {type(exc).__name__}") from None
        blocks = (((response.get("output") or {}).get("message") or {}).get("content")) or []
        text = "".join(str(block.get("text") or "") for block in blocks if isinstance(block, dict))
        usage = response.get("usage") or {}
        return ModelReply(text, int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0),
                          cut=response.get("stopReason") == "max_tokens")
