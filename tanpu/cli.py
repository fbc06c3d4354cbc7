"""The `tanpu` command line. Each command is a thin edge over dsl/ and engine/."""

from __future__ import annotations

import json
import sys

import click

from dsl import render_text

from . import sources


def _fail_on_missing(paths):
    try:
        return sources.compile_paths(paths)
    except sources.SourceError as error:
        raise click.UsageError(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tanpu")
def main():
    """Tanpu: executable, reviewable carbon-inclusion (碳普惠) methodologies."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text for people, json for tools (the web editor uses it).")
def check(paths, fmt):
    """Check methodology files (or folders of *.tanpu files) and report every problem.

    Exits 0 only when there are no errors; warnings do not fail the check.
    """
    compiled = _fail_on_missing(paths)
    errors = sum(len(c.errors) for c in compiled)
    warnings = sum(len(c.warnings) for c in compiled)
    if fmt == "json":
        click.echo(json.dumps([
            {"file": c.file, "ok": c.ok, "content_hash": c.content_hash,
             "id": c.methodology.metadata.id if c.methodology else None,
             "version": c.methodology.metadata.version if c.methodology else None,
             "diagnostics": [d.to_json() for d in c.diagnostics]}
            for c in compiled], ensure_ascii=False, indent=2))
    else:
        for c in compiled:
            for d in c.diagnostics:
                click.echo(render_text(d, c.source))
                click.echo()
        click.echo(f"checked {len(compiled)} file(s): {errors} error(s), {warnings} warning(s)")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
