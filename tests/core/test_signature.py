"""X-Hub-Signature-256 verification."""

from __future__ import annotations

import pytest

from bridge.core.errors import ConfigError, SignatureMismatch, SignatureMissing
from bridge.core.signature import sign, verify

GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_known_answer_from_github_docs() -> None:
    """The signature matches the example in GitHub's 'Validating webhook deliveries'."""
    assert sign(GITHUB_BODY, GITHUB_SECRET) == GITHUB_SIGNATURE
    verify(GITHUB_BODY, GITHUB_SIGNATURE, [GITHUB_SECRET])


def test_any_of_several_secrets_verifies() -> None:
    """During a rotation a body signed with either secret is accepted."""
    verify(GITHUB_BODY, GITHUB_SIGNATURE, [b"new secret", GITHUB_SECRET])


def test_missing_header_is_refused() -> None:
    """No header is SignatureMissing."""
    with pytest.raises(SignatureMissing):
        verify(GITHUB_BODY, None, [GITHUB_SECRET])


@pytest.mark.parametrize(
    "header",
    [
        GITHUB_SIGNATURE.replace("sha256=", "sha1="),
        "sha1=01dc10d0c83e72ed246219cdd91669167fe2ca2f",
        GITHUB_SIGNATURE[:-1] + "0",
        GITHUB_SIGNATURE.upper(),
        GITHUB_SIGNATURE + "00",
        "sha256=" + "é" * 64,
        "garbage",
    ],
)
def test_wrong_or_legacy_signature_is_refused(header: str) -> None:
    """Anything but the exact sha256 digest is a mismatch (SHA-1 alone is never enough)."""
    with pytest.raises(SignatureMismatch):
        verify(GITHUB_BODY, header, [GITHUB_SECRET])


def test_body_change_breaks_signature() -> None:
    """A re-serialised or altered body no longer verifies."""
    with pytest.raises(SignatureMismatch):
        verify(GITHUB_BODY + b"\n", GITHUB_SIGNATURE, [GITHUB_SECRET])


@pytest.mark.parametrize("secrets", [[], [b""]])
def test_no_secret_fails_closed(secrets: list[bytes]) -> None:
    """Without a secret nothing verifies, not even an empty-key signature."""
    with pytest.raises(ConfigError):
        verify(GITHUB_BODY, sign(GITHUB_BODY, b""), secrets)
