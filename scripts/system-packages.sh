#!/usr/bin/env bash
# System packages that `make demo` and `make test` use and PyPI does not serve offline:
# Chromium (the tests open the report in it) and WordNet 3.0 (the general-verb list, the
# lexical annotator). Run as root, installs what is missing with apt-get; otherwise says
# exactly what to install and what will be missing without it.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ -f "${WORDNET_DIR:-/usr/share/wordnet}/index.verb" ] || missing+=(wordnet-base)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}"
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1; then
        exit 0
    fi
    echo "error: apt-get could not install ${missing[*]}." >&2
else
    echo "error: missing system packages: ${missing[*]}." >&2
    echo "Install them as root: apt-get install -y ${missing[*]}" >&2
fi
for package in "${missing[@]}"; do
    case $package in
        chromium) echo "  without chromium: the tests that open the report in a browser fail." >&2 ;;
        wordnet-base) echo "  without wordnet-base: the report has no instruction-verb section and the WordNet tests fail (or set WORDNET_DIR to a WordNet 3.0 dict folder)." >&2 ;;
    esac
done
exit 1
