"""File names in the JSON files the package writes, exactly and as valid UTF-8.

A file name on Linux is bytes, and one that is not UTF-8 (a byte 0xff, say) has no exact text: Python gives it
with the byte as a lone surrogate (``os.fsdecode``: ``"\\udcff"``), which ``json`` writes as such -- invalid
Unicode, which ``jq`` and other readers show as U+FFFD or refuse, and the name is lost to them. So such a name is
written as readable text, each such byte as ``\\xNN`` (as the command line's messages show it), and its exact bytes,
percent-encoded (``/data/in%FF.csv``), go into a field of their own beside it, present only when a name needs it:
files of names that are all text are as they were. The reader gets the name back as ``os.fsdecode`` gives it, so
that it opens and compares as the same file. Files written before, with ``"\\udcff"``, read as they were.

The stats file's ``sources`` and ``source_bytes`` (:mod:`wideann.stats`) were the first; :func:`spell_fields` and
:func:`exact_fields` do the same for any field of a JSON object (a string, or lists and objects of them), with a
parallel field that mirrors it: ``null`` (or, in an object, no key) where a name is text.
"""
from __future__ import annotations

import json
import os

# Kept as they are in a percent-encoded name: printable ASCII but "%" (so "/data/in%FF.csv" reads as the path).
_PLAIN = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def spell(name: str) -> tuple[str, str | None]:
    """A name as a file spells it: ``(text, None)`` for a name that is UTF-8 text; for one that is not,
    ``(text with each such byte as \\xNN, the exact bytes percent-encoded)``."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # (a surrogate that no file name gives: written as it is, as before)
        return name, None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        from urllib.parse import quote_from_bytes  # (imported for such a name only: a few milliseconds)

        return raw.decode("utf-8", "backslashreplace"), quote_from_bytes(raw, safe=_PLAIN)


def unspell(text, spelled) -> str:
    """The name that :func:`spell` spelled ``(text, spelled)``, as ``os.fsdecode`` gives it; ``ValueError`` when
    ``spelled`` is not a percent-encoded name whose text is ``text`` (one of the two was edited, and which is meant
    cannot be told)."""
    from urllib.parse import unquote_to_bytes

    if not isinstance(spelled, str) or not isinstance(text, str):
        raise ValueError("not a percent-encoded name beside a name")
    raw = unquote_to_bytes(spelled)
    if raw.decode("utf-8", "backslashreplace") != text:
        raise ValueError(f"{_short(spelled)} is not the name {_short(text)}")
    return os.fsdecode(raw)


def spell_tree(value):
    """``(value with every name spelled as text, the parallel exact bytes or None when every name is text)``: a
    string, or lists and objects (dicts) of them; other values are as they are."""
    if isinstance(value, str):
        return spell(value)
    if isinstance(value, (list, tuple)):
        pairs = [spell_tree(v) for v in value]
        exact = [e for _, e in pairs]
        return [t for t, _ in pairs], (exact if any(e is not None for e in exact) else None)
    if isinstance(value, dict):
        pairs = {k: spell_tree(v) for k, v in value.items()}
        exact = {k: e for k, (_, e) in pairs.items() if e is not None}
        return {k: t for k, (t, _) in pairs.items()}, (exact or None)
    return value, None


def exact_tree(value, exact):
    """The inverse of :func:`spell_tree`: ``value`` with each name that ``exact`` spells put back exactly.
    ``ValueError`` when ``exact`` does not mirror ``value``."""
    if exact is None:
        return value
    if isinstance(exact, str):
        return unspell(value, exact)
    if isinstance(exact, list) and isinstance(value, list) and len(exact) == len(value):
        return [exact_tree(v, e) for v, e in zip(value, exact)]
    if isinstance(exact, dict) and isinstance(value, dict) and exact.keys() <= value.keys():
        return {k: exact_tree(v, exact.get(k)) for k, v in value.items()}
    raise ValueError(f"{_short(exact)} does not mirror {_short(value)}")


def spell_fields(d: dict, fields: dict) -> dict:
    """``d`` to be written as JSON: each of ``fields`` (a key of ``d`` -> the key of its exact names) spelled
    (:func:`spell_tree`), its exact names beside it only when one of its names is not text."""
    out = dict(d)
    for key, exact_key in fields.items():
        if key in out:
            out[key], exact = spell_tree(out[key])
            if exact is not None:
                out[exact_key] = exact
    return out


def exact_fields(d: dict, fields: dict) -> dict:
    """``d`` as read back from JSON, with each of ``fields`` exact again (:func:`exact_tree`) and the keys of
    their exact names gone; a file without them (written before, or with names that are all text) is as it was.
    ``ValueError`` naming the field when its exact names do not mirror it."""
    out = dict(d)
    for key, exact_key in fields.items():
        if exact_key not in out:
            continue
        exact = out.pop(exact_key)
        try:
            out[key] = exact_tree(out.get(key), exact)
        except ValueError as e:
            raise ValueError(f"{json.dumps(exact_key)} does not match {json.dumps(key)}: {e}") from None
    return out


def _short(v, n: int = 60) -> str:
    text = json.dumps(v)
    return text if len(text) <= n else text[:n - 3] + "..."
