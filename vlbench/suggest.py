""""Did you mean" hints for unknown names."""

import difflib


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """A one-line message for an unknown `name` among `known` ones."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(sorted(known)) or "none"
    return f"unknown {kind} '{name}'.{hint} Known {kind}s: {listing}."
