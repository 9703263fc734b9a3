"""The documentation: every public name has an API page, and the guides run.

The API pages are generated from `docs/api_groups.py`; the guides' ```python
blocks run here in order, one namespace per guide (on the 8 simulated
devices of tests/conftest.py), so a guide cannot silently rot.
"""

import doctest
import pathlib
import re
import sys

import pytest

import cutmix_jax

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS))
import api_groups  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

GUIDES = sorted(DOCS.glob("**/*.md"))
GUIDES = [p for p in GUIDES if "_build" not in p.parts]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_every_public_name_is_in_exactly_one_group():
  names = api_groups.names()
  duplicates = sorted({n for n in names if names.count(n) > 1})
  assert not duplicates, f"listed twice in docs/api_groups.py: {duplicates}"
  missing = sorted(set(cutmix_jax.__all__) - set(names))
  assert not missing, f"public but not in docs/api_groups.py GROUPS: {missing}"
  extra = sorted(set(names) - set(cutmix_jax.__all__))
  assert not extra, f"in docs/api_groups.py but not in __all__: {extra}"


def test_every_page_has_a_see_also_to_public_names():
  assert set(api_groups.SEE_ALSO) == set(cutmix_jax.__all__)
  for name, twins in api_groups.SEE_ALSO.items():
    assert twins, name
    assert set(twins) <= set(cutmix_jax.__all__), (name, twins)
    assert name not in twins, name


def test_api_pages_document_every_public_name(tmp_path):
  api_groups.write_api_pages(tmp_path)
  index = (tmp_path / "index.rst").read_text()
  for name in cutmix_jax.__all__:
    page = (tmp_path / f"{name}.rst").read_text()
    directive = re.search(r"^\.\. auto(function|class):: (\w+)$", page, re.M)
    assert directive and directive.group(2) == name, page
    assert re.search(rf"^   {name}$", index, re.M), name
    # An example: in the docstring, or on the page.
    doc = getattr(cutmix_jax, name).__doc__ or ""
    assert ">>>" in doc or name in api_groups.EXAMPLES, f"{name}: no example"
    assert "seealso" in page, name


@pytest.mark.parametrize("name", sorted(api_groups.EXAMPLES))
def test_api_page_example_runs(name):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  test = doctest.DocTestParser().get_doctest(
      api_groups.EXAMPLES[name],
      {"jax": jax, "jnp": jnp, "cutmix_jax": cutmix_jax}, name, None, 0)
  runner = doctest.DocTestRunner(
      optionflags=doctest.NORMALIZE_WHITESPACE)
  runner.run(test, out=print)
  assert runner.failures == 0, f"the example on the {name} page fails"


def test_the_toctrees_name_existing_pages():
  text = (DOCS / "index.md").read_text()
  entries = []
  for body in re.findall(r"```\{toctree\}\n(.*?)```", text, re.S):
    entries += [line.strip() for line in body.splitlines()
                if line.strip() and not line.startswith(":")]
  assert entries
  for entry in entries:
    assert any((DOCS / f"{entry}{ext}").exists() for ext in (".md", ".rst")) \
        or entry == "api/index", entry


def test_guides_have_examples():
  assert sum(len(PYTHON_BLOCK.findall(p.read_text())) for p in GUIDES) >= 15


# Guides whose code compiles many ops or a model: over 10 s each on 2 cores.
SLOW_GUIDES = {"guides/devices.md", "guides/ops.md", "guides/flax_nnx.md",
               "guides/dense_targets.md", "guides/vit.md"}


@pytest.mark.parametrize(
    "guide", [pytest.param(name, marks=[pytest.mark.slow] * (name in SLOW_GUIDES))
              for name in (p.relative_to(DOCS).as_posix() for p in GUIDES
                           if PYTHON_BLOCK.search(p.read_text()))])
def test_guide_code_runs(guide):
  namespace = {}
  for i, block in enumerate(PYTHON_BLOCK.findall((DOCS / guide).read_text())):
    exec(compile(block, f"docs/{guide} block {i}", "exec"), namespace)  # pylint: disable=exec-used


# A MyST role's target: {func}`~name` or {func}`title <name>`.
ROLE = re.compile(r"\{(?:func|class|obj|mod|meth|attr|data)\}`"
                  r"(?:[^`<]*<([^`>]+)>|~?([^`<]+))`")
EXTERNAL = ("jax", "flax", "optax", "numpy", "grain")


def _role_targets(text):
  return [a or b for a, b in ROLE.findall(text)]


def test_guide_references_name_public_objects():
  # Sphinx only warns about an unresolved {func}/{class} reference when
  # nitpicky, which the docstrings' Markdown-style backticks rule out; so
  # check the guides' references to the library here.
  for guide in GUIDES:
    for target in _role_targets(guide.read_text()):
      if target.startswith("cutmix_jax."):
        assert target.removeprefix("cutmix_jax.") in cutmix_jax.__all__, (
            guide.name, target)


def _fallback_inventory(project):
  lines = (DOCS / "_inventories" / f"{project}.txt").read_text().splitlines()
  assert lines[0] == "# Sphinx inventory version 1", project
  assert lines[1].startswith("# Project: ") and lines[2].startswith(
      "# Version: "), project
  entries = [line.split() for line in lines[3:]]
  assert all(len(e) == 3 and e[1] in {"mod", "class", "function", "data"}
             for e in entries), project
  return {name for name, _, _ in entries}


def test_external_references_link_offline():
  # conf.py falls back to docs/_inventories/ when an online inventory cannot
  # be fetched; every external name a page links must be there, or an
  # offline build (CI's) silently leaves it unlinked.
  fallbacks = {project: _fallback_inventory(project) for project in EXTERNAL}
  for page in GUIDES:
    for target in _role_targets(page.read_text()):
      project = target.split(".")[0]
      if project in fallbacks:
        assert target in fallbacks[project], (page.name, target)


def test_signatures_name_nested_type_aliases():
  # Sphinx renders an autodoc_type_aliases alias nested in Optional[...] or
  # Mapping[...] as "TypeAliasForwardRef('jax.typing.ArrayLike')" unless
  # conf.py's autodoc-process-signature handler names it.
  sphinx_inspect = pytest.importorskip("sphinx.util.inspect")
  import conf  # pylint: disable=g-import-not-at-top

  for name in ("switch", "sample_switch", "apply_tree"):
    fn = getattr(cutmix_jax, name)
    sig = sphinx_inspect.signature(fn, type_aliases=conf.autodoc_type_aliases)
    text, _ = conf._process_signature(  # pylint: disable=protected-access
        None, "function", name, fn, {},
        sphinx_inspect.stringify_signature(sig), None)
    assert "TypeAliasForwardRef" not in text, (name, text)
    assert "jaxlib" not in text, (name, text)
    nested = ("Mapping[str, jax.typing.ArrayLike]" if name != "apply_tree"
              else "jax.typing.ArrayLike | None")
    assert nested in text, (name, text)


def test_lambda_figure_skips_without_the_zip(tmp_path, capsys):
  import lambda_figure  # pylint: disable=g-import-not-at-top

  out = tmp_path / "lambdas.png"
  assert lambda_figure.main(["--zip", str(tmp_path / "absent.zip"),
                             "--out", str(out)]) == 0
  assert not out.exists()
  assert "not found" in capsys.readouterr().out
