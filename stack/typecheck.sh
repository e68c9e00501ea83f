#!/usr/bin/env bash
# mypy over the apt_energy namespace. The stages live in top-level folders mapped into apt_energy.* by
# pyproject's package-dir, which mypy cannot read; a tree of symlinks under .typecheck/ gives it the
# installed layout (apt_energy/edge -> ../../edge, ...), so imports resolve exactly as at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.typecheck/apt_energy
rm -rf .typecheck && mkdir -p "$root"
for f in apt_energy/*.py; do ln -s "../../$f" "$root/$(basename "$f")"; done
mappings=$(python3 -c 'import re, tomllib; d = tomllib.load(open("pyproject.toml", "rb"))
print(" ".join(k.split(".", 1)[1] + ":" + v for k, v in d["tool"]["setuptools"]["package-dir"].items() if "." in k))')
for pkg in $mappings; do
    ln -s "../../${pkg#*:}" "$root/${pkg%%:*}"
done
exec .venv/bin/mypy --config-file pyproject.toml .typecheck/apt_energy "$@"
