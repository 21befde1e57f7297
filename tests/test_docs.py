"""The docs tell the truth about the tree: the generated configuration table, the
README's folder map and links."""

from __future__ import annotations

import re
from pathlib import Path

from estate import settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# top-level folders that are not the project's (made by set-up, tools, runs)
NOT_OURS = {
    ".git",
    ".venv",
    ".ci",
    "var",
    "node_modules",
    "test-artifacts",
    "smart_estate.egg-info",
}


def test_the_configuration_table_is_generated_from_the_settings() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = doc.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings.markdown(), (
        "run `python -m estate.settings` and paste into docs/configuration.md"
    )
    for name, field in settings.Settings.model_fields.items():
        assert field.description, f"{name} has no docstring: it would be undocumented"


def test_the_readme_folder_map_matches_the_tree() -> None:
    mapped = set(re.findall(r"^\| `([a-z_]+)/` \|", README, flags=re.M))
    folders = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir()
        and p.name not in NOT_OURS
        and not p.name.startswith((".", "_"))
        and not p.name.endswith(".egg-info")
    }
    assert mapped == folders


def test_every_doc_is_linked_from_the_readme_and_every_link_resolves() -> None:
    links = set(re.findall(r"\]\(([^)#]+)\)", README))
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs <= links, f"not linked from the README: {sorted(docs - links)}"
    for link in links:
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


def test_the_readme_keeps_to_what_a_newcomer_needs_first() -> None:
    assert len(README.encode()) < 20_000  # the reference lives in docs/
    for must in ("make demo", "make test", "docs/"):
        assert must in README


def test_the_capacity_model_in_the_docs_is_the_scripts_output() -> None:
    """docs/scale.md's table is what bench.capacity computes, not numbers typed in."""
    from bench import capacity  # noqa: PLC0415  (a bench module, only here)
    from simulators.devices import SIMULATORS  # noqa: PLC0415

    doc = (ROOT / "docs" / "scale.md").read_text(encoding="utf-8")
    block = doc.split("<!-- capacity:begin -->\n", 1)[1].split("<!-- capacity:end -->", 1)[0]
    c = capacity.city(2318)
    assert block == capacity.report(c, [10, 20], capacity.STAGES, markdown=True), (
        "run `python -m bench.capacity --markdown` and paste into docs/scale.md"
    )
    # the offered load is each device's rate, summed
    rates = {k: 1 / v[1] for k, v in SIMULATORS.items()}
    assert abs(c.msgs_per_s - sum(rates[k] * n for k, n in c.devices.items())) < 1e-6
    assert capacity.skew(c.per_estate, 16) >= 1.0
