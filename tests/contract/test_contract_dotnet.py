"""The C# sample's request and response types match docs/openapi.yaml (CI has mono, no .NET SDK).

Read from examples/dotnet/*.cs: the classes' fields and the JSON keys each is filled from
(`Field = MiniJson.Str(map, "key")`), and the keys of the JSON bodies the client writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.contract.openapi import document

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "examples" / "dotnet").glob("*.cs"))
CLASSES = {
    "TemplateInfo": "TemplateReady",
    "TemplateList": "TemplateList",
    "Utterance": "UtteranceQueued",
    "Grant": "Grant",
}
"""C# class -> the schema it mirrors."""
METHODS = {
    "ListTemplates": (None, "TemplateList"),
    "CreateSession": ("OfferRequest", "SessionOpened"),
    "Stats": (None, "Stats"),
    "Speak": (None, "UtteranceQueued"),
    "Say": ("SayRequest", "UtteranceQueued"),
    "ChatAsync": ("ChatRequest", "ChatTurn"),
    "Interrupt": (None, "Interrupted"),
    "State": (None, "Session"),
    "Close": (None, "SessionClosed"),
    "CreateGrant": ("GrantRequest", "Grant"),
}
"""C# method that calls the server -> (request body schema, response schema)."""
CS_TYPES = {
    "string": {"string", "null"},
    "int": {"integer"},
    "long": {"integer"},
    "double": {"number", "integer"},
    "bool": {"boolean"},
}
READERS = {"Str": {"string", "null"}, "Num": {"number", "integer"}}
FIELD = re.compile(r"public ([\w<>]+) (\w+)(?: = [^;]+)?;")
ASSIGN = re.compile(r"(\w+) = (?:\(\w+\))?MiniJson\.(Str|Num)\(\w+, \"(\w+)\"\)")
INDEXED = re.compile(r"(\w+) = [^,\n]*\w+\[\"(\w+)\"\]")
READ = re.compile(r"MiniJson\.(?:Str|Num)\(\w+, \"(\w+)\"\)|\w+\[\"(\w+)\"\]")
WRITTEN = re.compile(r'\\"(\w+)\\":')


def _source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)


def _block(text: str, start: int) -> str:
    """From `start` to the brace that closes the first one opened after it."""
    depth, i = 0, text.index("{", start)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i : j + 1]
    raise ValueError("unbalanced braces")


def _schema(name: str) -> dict:
    return document()["components"]["schemas"][name]


def _types(prop: dict) -> set[str]:
    if "$ref" in prop:
        return _types(_schema(prop["$ref"].rsplit("/", 1)[1]))
    if "const" in prop:
        return {{bool: "boolean", str: "string"}.get(type(prop["const"]), "number")}
    kind = prop.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _methods() -> dict[str, str]:
    text, found = _source(), {}
    for m in re.finditer(r"public (?:async )?(?:static )?[\w<>, ]+ (\w+)\([^)]*\)\s*\{", text):
        body = _block(text, m.end() - 1)
        if "Send(" in body:
            found[m.group(1)] = body
    return found


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_class_fields_match_the_schema(cls: str) -> None:
    text = _source()
    declared = {name: kind for kind, name in FIELD.findall(_block(text, text.index(f"class {cls}")))}
    schema = _schema(CLASSES[cls])
    filled: dict[str, str] = {}
    for m in re.finditer(rf"new {cls}\b", text):
        init = _block(text, m.end())
        for field, reader, key in ASSIGN.findall(init):
            filled[field] = key
            assert key in schema["properties"], f"{cls}.{field} reads {key!r}, which {CLASSES[cls]} lacks"
            assert READERS[reader] & _types(schema["properties"][key]), f"{cls}.{field}: {key!r} is not a {reader}"
        filled.update(INDEXED.findall(init))
    assert filled, f"nothing fills {cls} from JSON"
    for field, key in filled.items():
        assert key in schema["properties"], f"{cls}.{field} reads {key!r}, which {CLASSES[cls]} lacks"
        if declared.get(field) in CS_TYPES:
            assert CS_TYPES[declared[field]] & _types(schema["properties"][key]), f"{cls}.{field} vs {key!r}"
    scalar_required = {k for k in schema["required"] if _types(schema["properties"][k]) - {"array", "object"}}
    missing = scalar_required - set(filled.values())
    assert not missing, f"{cls} lacks required fields of {CLASSES[cls]}: {sorted(missing)}"


def test_every_call_is_mapped_to_schemas() -> None:
    assert set(_methods()) == set(METHODS), "add the method's schemas to METHODS"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_request_and_response_keys_are_in_the_schemas(method: str) -> None:
    body = _methods()[method]
    request, response = METHODS[method]
    written = set(WRITTEN.findall(body))
    if request is not None:
        schema = _schema(request)
        assert written, f"{method} writes no JSON body"
        assert written <= set(schema["properties"]), f"{method} writes keys {request} lacks"
        assert set(schema.get("required", [])) <= written, f"{method} leaves out required keys of {request}"
    else:
        assert not written
    read = {a or b for a, b in READ.findall(body)}
    assert read <= _keys(_schema(response)), f"{method} reads keys {response} lacks"


def _keys(node: object) -> set[str]:
    """Property names of a schema and of every schema inside it."""
    if isinstance(node, list):
        return set().union(*(_keys(n) for n in node))
    if not isinstance(node, dict):
        return set()
    if "$ref" in node:
        return _keys(_schema(node["$ref"].rsplit("/", 1)[1]))
    return set(node.get("properties", {})) | _keys(list(node.values()))
