"""HDF5 attributes as the writers write them (catalogs and the small per-box and campaign
files): scalars and text as they are, dicts, lists and None as JSON, with the names of the
JSON-encoded ones recorded (``JSON_ATTRS``) so that a reader decodes only those: a user's
text that happens to look like JSON (a file named ``[run1].hdf5``) is read back as written.
"""

from __future__ import annotations

import contextlib
import json

# The attribute that lists (as JSON) the attributes ``write_attrs`` encoded as JSON, so that
# a reader decodes those and leaves every other text as it is (``read_catalog``).
JSON_ATTRS = "json_attributes"
# Catalogs written before JSON_ATTRS existed: their attributes that may hold JSON (dicts,
# lists, None), the only ones decoded.
LEGACY_JSON_ATTRS = frozenset(
    {
        "model_params",
        "versions",
        "halo_cleaning",
        "host_limit",
        "snapshot_redshift",
        "log10_mstar_complete",
        "log10_sfr_complete",
    }
)


def _is_json(value) -> bool:
    return isinstance(value, dict | list | tuple) or value is None


def _attr_value(value):
    """HDF5 attributes take scalars and strings: dicts, lists and None become JSON."""
    if _is_json(value):
        return json.dumps(value, sort_keys=True)
    return value


def write_attrs(f, attrs: dict) -> None:
    """Attributes of ``f`` (a file, group or dataset); dicts, lists and None as JSON, their
    names recorded in the ``JSON_ATTRS`` attribute (merged with earlier calls')."""
    encoded = set(json.loads(f.attrs[JSON_ATTRS])) if JSON_ATTRS in f.attrs else set()
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)
        (encoded.add if _is_json(value) else encoded.discard)(key)
    if encoded:
        f.attrs[JSON_ATTRS] = json.dumps(sorted(encoded))


def read_attrs(obj) -> dict:
    """The attributes of an HDF5 object as ``write_attrs`` wrote them: the ones it encoded
    as JSON decoded, every other one as stored. Without ``JSON_ATTRS`` (written before it
    existed), the ``LEGACY_JSON_ATTRS`` that hold JSON are decoded."""
    attrs = dict(obj.attrs)
    marked = attrs.pop(JSON_ATTRS, None)
    if marked is not None:
        names = set(json.loads(marked))
        return {k: json.loads(v) if k in names else v for k, v in attrs.items()}
    for key in LEGACY_JSON_ATTRS & set(attrs):
        value = attrs[key]
        if isinstance(value, str) and (value[:1] in ("{", "[") or value == "null"):
            with contextlib.suppress(ValueError):
                attrs[key] = json.loads(value)
    return attrs
