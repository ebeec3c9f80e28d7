"""Read Kubernetes manifests from a file or a folder: JSON or YAML, one object, a ``kind: List``,
or multi-document YAML.

A file that is not YAML/JSON at all raises `ManifestError` naming the file and line; objects
that parse but are malformed are not judged here (that is `model.from_kube`'s job).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")


class ManifestError(Exception):
    """A manifest file that cannot be read or parsed."""


def manifest_files(path: Path) -> list[Path]:
    """The file itself, or the folder's manifest files in name order (recursively)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if path.is_file():
        return [path]
    raise ManifestError(f"{path}: no such file or directory")


def parse_text(text: str, origin: str) -> list[Any]:
    """Every object in one file's text, with ``List`` objects unpacked."""
    try:
        if text.lstrip().startswith(("{", "[")):
            docs: list[Any] = [json.loads(text)]
        else:
            docs = list(yaml.load_all(text, Loader=_LOADER))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{origin}:{e.lineno}: not valid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{origin}{where}: not valid YAML: {problem}") from None
    objects: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, list):
            objects.extend(doc)
        elif isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List"):
            items = doc.get("items")
            objects.extend(items if isinstance(items, list) else [])
        elif isinstance(doc, (dict, str, int, float, bool)):
            if not isinstance(doc, dict):
                raise ManifestError(f"{origin}: not a Kubernetes manifest (a bare {type(doc).__name__})")
            objects.append(doc)
    return objects


def load_objects(path: str | Path) -> list[Any]:
    """All objects under ``path``, in file order."""
    objects: list[Any] = []
    for file in manifest_files(Path(path)):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ManifestError(f"{file}: cannot read: {e}") from None
        objects.extend(parse_text(text, str(file)))
    return objects


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
