#!/usr/bin/env bash
# Refreshes the price catalog shipped with the extension from the litellm
# wheel on PyPI (its model_prices_and_context_window_backup.json, MIT), kept
# to what import_price_catalog reads: the chat, completion and responses
# entries of the providers it imports. Usage: refresh_price_catalog.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps "litellm${version:+==$version}" -d "$tmp"
wheel=$(ls "$tmp"/litellm-*.whl)
unzip -q -o "$wheel" 'litellm/model_prices_and_context_window_backup.json' -d "$tmp"
python3 - "$tmp/litellm/model_prices_and_context_window_backup.json" "$(basename "$wheel")" \
    pg_usage_analytics/catalog/litellm_model_prices.json <<'PY'
import decimal, json, sys

source, wheel, target = sys.argv[1:]
PROVIDERS = {"openai", "text-completion-openai", "anthropic", "gemini", "perplexity", "mistral", "deepseek", "xai"}
MODES = {"chat", "completion", "responses"}
# Prices stay exactly as written: read as Decimal, written back from it.
with open(source) as f:
    catalog = json.load(f, parse_float=decimal.Decimal)
kept = {k: v for k, v in catalog.items()
        if isinstance(v, dict) and v.get("litellm_provider") in PROVIDERS and v.get("mode") in MODES}

def write(value):
    if isinstance(value, dict):
        return "{" + ", ".join(json.dumps(k) + ": " + write(v) for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(write(v) for v in value) + "]"
    if isinstance(value, decimal.Decimal):
        return str(value)
    return json.dumps(value)

with open(target, "w") as f:
    f.write("{\n" + ",\n".join(json.dumps(k) + ": " + write(kept[k]) for k in sorted(kept)) + "\n}\n")
print(f"{target}: {len(kept)} of {len(catalog)} entries from {wheel}")
PY
