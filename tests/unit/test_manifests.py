"""Reading manifests: JSON or YAML, List, multi-document files and folders; clear errors."""

from pathlib import Path

import pytest

from clew.sources.manifests import ManifestError, load_objects


def test_multi_document_yaml_list_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kind: Service\n---\n---\nkind: List\nitems:\n- kind: Node\n- kind: Node\n")
    (tmp_path / "b.json").write_text('{"kind": "EndpointSlice"}')
    (tmp_path / "ignored.txt").write_text("not a manifest")
    kinds = [o["kind"] for o in load_objects(tmp_path)]
    assert kinds == ["Service", "Node", "Node", "EndpointSlice"]


def test_not_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Service\nspec: [unclosed\n")
    with pytest.raises(ManifestError, match=r"bad.yaml:\d+: not valid YAML"):
        load_objects(bad)


def test_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": ')
    with pytest.raises(ManifestError, match=r"bad.json:1: not valid JSON"):
        load_objects(bad)


def test_missing_path() -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_objects("/nonexistent/clew")


def test_bare_scalar_is_not_a_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("just a string\n")
    with pytest.raises(ManifestError, match="not a Kubernetes manifest"):
        load_objects(bad)
