"""The bridge's error tree: every failure the core can name, each with a machine ``reason``.

```
BridgeError                      reason              HTTP (see bridge/http/errors.py)
├── DeliveryRejected             (bad webhook input: nothing is stored, a 4xx is answered)
│   ├── SignatureMissing         signature_missing   401
│   ├── SignatureMismatch        signature_mismatch  401
│   ├── MissingHeader            missing_header      400
│   ├── MalformedPayload         malformed_payload   400
│   ├── UnsupportedContentType   unsupported_media   415
│   └── PayloadTooLarge          payload_too_large   413
└── ConfigError                  config_invalid      (start-up stops with the message)
    └── RoutesError              routes_invalid
```

The class docstring is the default message; ``detail`` adds what is specific to one case and never
carries a secret or a body. ``reason`` is the log field and the metric label.
"""

from __future__ import annotations


class BridgeError(Exception):
    """The bridge failed."""

    reason = "bridge_error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        message = (self.__doc__ or self.reason).strip()
        super().__init__(f"{message.rstrip('.')}: {detail}" if detail else message)

    @property
    def message(self) -> str:
        return str(self)


class DeliveryRejected(BridgeError):
    """The webhook delivery was rejected."""

    reason = "delivery_rejected"
    status_code = 400


class SignatureMissing(DeliveryRejected):
    """The X-Hub-Signature-256 header is missing."""

    reason = "signature_missing"
    status_code = 401


class SignatureMismatch(DeliveryRejected):
    """The X-Hub-Signature-256 header does not match the body."""

    reason = "signature_mismatch"
    status_code = 401


class MissingHeader(DeliveryRejected):
    """A required GitHub header is missing or malformed."""

    reason = "missing_header"
    status_code = 400


class MalformedPayload(DeliveryRejected):
    """The body is not a well-formed payload for its event."""

    reason = "malformed_payload"
    status_code = 400


class UnsupportedContentType(DeliveryRejected):
    """The content type is neither application/json nor application/x-www-form-urlencoded."""

    reason = "unsupported_media"
    status_code = 415


class PayloadTooLarge(DeliveryRejected):
    """The body is larger than the configured limit."""

    reason = "payload_too_large"
    status_code = 413


class ConfigError(BridgeError):
    """The configuration is invalid."""

    reason = "config_invalid"


class RoutesError(ConfigError):
    """The routes file is invalid."""

    reason = "routes_invalid"
