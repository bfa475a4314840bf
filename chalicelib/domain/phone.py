"""Phone numbers are the natural key of a member: normalise before anything compares them.
A till sees them (and names) masked."""

from __future__ import annotations

from chalicelib.errors import InvalidInput

DEFAULT_REGION = "CN"


def normalise_phone(raw: str, default_region: str = DEFAULT_REGION) -> str:
    """Return the E.164 form ('+8613812345678') or raise InvalidInput.

    Accepts what people type: spaces, dashes, a leading 0086/+86, or none for the
    program's default region. Only numbers valid for their region are accepted, so two
    spellings of one number can never become two members.
    """
    import phonenumbers  # deferred: its metadata tables are cold-start weight

    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("phone is not a phone number", code="INVALID_PHONE") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput("phone is not a valid number", code="INVALID_PHONE")
    # A member's phone receives sign-in codes and messages: landlines and service
    # numbers (400/800) cannot. Where a plan cannot tell mobile from fixed, accept it.
    kind = phonenumbers.number_type(parsed)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidInput("phone must be a mobile number", code="INVALID_PHONE")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_name(name: str) -> str:
    """'李雷' -> '李*', 'Lily Chen' -> 'L*': the first letter, and never the length."""
    return name[:1] + "*"


def mask_phone(e164: str) -> str:
    """'+8613812345678' -> '+86138****5678': enough for a cashier to confirm, no more."""
    if len(e164) < 8:
        return "*" * len(e164)
    return e164[:-8] + "****" + e164[-4:]
