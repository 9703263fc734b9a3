"""Sphinx configuration for the cutmix-jax documentation.

Build: sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import pathlib
import re
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import api_groups  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import cutmix_jax  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

project = "cutmix-jax"
author = "cutmix-jax developers"
copyright = "2026, cutmix-jax developers"  # pylint: disable=redefined-builtin
release = cutmix_jax.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints"]

# The docstrings quote code in single backticks (Markdown style): render them
# as Python references, which link where they name a documented object and
# are plain code otherwise.
default_role = "py:obj"

# autodoc + napoleon: Google-style docstrings, types in the signature.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
# Show the aliases by name, not as the unions they stand for.
autodoc_type_aliases = {
    "ArrayLike": "jax.typing.ArrayLike",
    "AxisName": "AxisName",
}
autosummary_generate = False
# Long signatures (most ops have ten keyword options) one parameter a line.
maximum_signature_line_length = 88
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # Attributes: as fields, not duplicate entries
napoleon_use_rtype = False
add_module_names = False

myst_enable_extensions = ["colon_fence", "dollarmath"]

# Links to the libraries the docs use. Each project is tried online first (its
# published objects.inv), then from a small text inventory under
# docs/_inventories/ (Sphinx's version-1 format) that lists the names these
# docs refer to, with the same URLs. So a build with internet gets every
# object of the real inventories, and an offline build (the package index
# only, as in CI) still links those names and stays green under -W: Sphinx
# warns only when *every* location of a project fails. tests/test_docs.py
# checks that each external name a guide references is in its fallback.
_INVENTORIES = DOCS / "_inventories"
intersphinx_mapping = {
    name: (url, (None, str(_INVENTORIES / f"{name}.txt")))
    for name, url in {
        "jax": "https://docs.jax.dev/en/latest/",
        "flax": "https://flax.readthedocs.io/en/latest/",
        "optax": "https://optax.readthedocs.io/en/latest/",
        "numpy": "https://numpy.org/doc/stable/",
        "grain": "https://google-grain.readthedocs.io/en/latest/",
    }.items()
}
# Offline, a name lookup fails at once; a slow network must not hang the build.
intersphinx_timeout = 10

# The copy button copies a doctest's input lines, without prompts or output.
copybutton_prompt_text = r">>> |\.\.\. "
copybutton_prompt_is_regexp = True
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = f"cutmix-jax {release}"
html_theme_options = {
    "repository_url": "https://github.com/cutmix-jax/cutmix-jax",
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # pydata-sphinx-theme >= 0.16 puts a search button in a top bar unless
    # this is set; sphinx-book-theme already has one in the sidebar, so the
    # bar showed a second one above the page.
    "navbar_persistent": [],
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


# Sphinx resolves an `autodoc_type_aliases` name to a `TypeAliasForwardRef`
# and unwraps it only when it is a parameter's whole annotation; nested in
# `Optional[ArrayLike]` or `Mapping[str, ArrayLike]` its repr leaked into the
# signature (switch, sample_switch, apply_tree). Put the alias's name back.
_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('([^']+)'\)")
# jax.Array's __qualname__ is "jaxlib._jax.Array" under __module__ "jax", so
# Sphinx writes "jax.jaxlib._jax.Array", which names nothing: not linked.
_JAX_ARRAY = "jax.jaxlib._jax.Array"


def _process_signature(app, what, name, obj, options, signature,
                       return_annotation):
  """Names nested type aliases and `jax.Array` as written in the source."""
  del app, what, name, obj, options
  fix = lambda s: s and _FORWARD_REF.sub(r"\1", s).replace(_JAX_ARRAY,
                                                           "jax.Array")
  return fix(signature), fix(return_annotation)


# Markdown-style plurals of quoted names ("the `Op`s") are not valid reST:
# an end-string must be followed by a space or punctuation.
_PLURAL = re.compile(r"(`[^`\s][^`]*`)(s\b)")


def _process_docstring(app, what, name, obj, options, lines):
  """Fixes Markdown-isms; a public object without a docstring is a warning."""
  del app, options
  lines[:] = [_PLURAL.sub(r"\1\\ \2", line).replace(_JAX_ARRAY, "jax.Array")
              for line in lines]
  short = name.rsplit(".", 1)[-1]
  if what in ("function", "class") and short in cutmix_jax.__all__:
    if not any(line.strip() for line in lines):
      from sphinx.util import logging  # pylint: disable=g-import-not-at-top
      logging.getLogger(__name__).warning(
          "cutmix_jax.%s has no docstring", short, type="cutmix_jax",
          subtype="missing_docstring")


def setup(app):
  # The API pages are generated from docs/api_groups.py on every build (here,
  # before Sphinx looks for sources, so that importing conf writes nothing).
  api_groups.write_api_pages(DOCS / "api")
  # After napoleon (priority 500), so its output is what gets fixed.
  app.connect("autodoc-process-docstring", _process_docstring, priority=900)
  app.connect("autodoc-process-signature", _process_signature)
