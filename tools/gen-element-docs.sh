#!/bin/sh
# Regenerates the reference documentation from the build:
#   tests/snapshots/inspect/<element>.txt   gst-inspect-1.0 output, with the lines that vary by
#                                           machine or version (file name, version) removed
#   README.md, between <!-- elements:begin --> and <!-- elements:end -->
#                                           a summary per element built from those snapshots
#   README.md, between <!-- pipelines:begin --> and <!-- pipelines:end -->
#                                           the parameters of every file in pipelines/
#
# usage: tools/gen-element-docs.sh [--build DIR] [--check]
#   --build DIR  the build tree holding plugins/libgstgemstream.so (default: build)
#   --check      regenerate into a temporary directory and fail (exit 1, with a diff) if the
#                committed snapshots or the README section differ; writes nothing
set -eu

source_dir=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$source_dir/build
check=no
while [ $# -gt 0 ]; do
  case $1 in
    --build) build_dir=$2; shift 2 ;;
    --check) check=yes; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gen-element-docs.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

plugin_dir=$build_dir/plugins
cli=$build_dir/tools/gemstream/gemstream
for f in "$plugin_dir/libgstgemstream.so" "$cli"; do
  if [ ! -f "$f" ]; then
    echo "gen-element-docs.sh: $f not found; build the gstgemstream and gemstream-cli targets" >&2
    exit 2
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
snapshots=$work/inspect
mkdir -p "$snapshots"

# Only this plugin, in a private registry: the output cannot depend on what else is installed.
export GST_PLUGIN_SYSTEM_PATH_1_0= GST_PLUGIN_SYSTEM_PATH= GST_PLUGIN_PATH_1_0="$plugin_dir" GST_PLUGIN_PATH="$plugin_dir"
export GST_REGISTRY_1_0="$work/registry.bin" GST_REGISTRY="$work/registry.bin"
export PAGER=cat LC_ALL=C

elements=$(gst-inspect-1.0 --no-colors gemstream | sed -n 's/^  \([a-z0-9_]*\): .*/\1/p' | sort)
if [ -z "$elements" ]; then
  echo "gen-element-docs.sh: the gemstream plugin lists no elements" >&2
  exit 1
fi

for element in $elements; do
  gst-inspect-1.0 --no-colors "$element" |
    sed -e '/^  Filename  /d' -e '/^  Version  /d' -e 's/[[:space:]]*$//' >"$snapshots/$element.txt"
done

# The property table of one snapshot: the element's own properties (not those of GstObject or
# of its GStreamer base class), with type, default, range or enum values, and blurb.
properties() {
  awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function flush() {
      if (prop != "" && !skip[prop]) {
        if (values != "") range = values
        gsub(/\|/, "\\|", blurb)
        printf "| `%s` | %s | %s | %s | %s |\n", prop, type, (def == "" ? "" : "`" def "`"), range, blurb
      }
      prop = ""
    }
    function skip_all(list,    names, i) { split(list, names, " "); for (i in names) skip[names[i]] = 1 }
    BEGIN { skip_all("name parent") }
    /GstBaseSrc$/ { skip_all("blocksize num-buffers typefind do-timestamp automatic-eos") }
    /GstBaseSink$/ { skip_all("sync max-lateness qos async ts-offset enable-last-sample last-sample blocksize render-delay throttle-time max-bitrate processing-deadline stats") }
    /GstBaseTransform$/ { skip_all("qos") }
    /^Element Properties:/ { on = 1; next }
    on && /^[A-Z]/ { flush(); on = 0 }
    on && /^  [a-z0-9-]+ +: / {
      flush()
      n = index($0, ":")
      prop = trim(substr($0, 3, n - 3)); blurb = trim(substr($0, n + 1))
      type = ""; def = ""; range = ""; values = ""; expect = "flags"
      next
    }
    on && prop != "" && expect == "flags" && /^ +flags: / { expect = "type"; next }
    on && prop != "" && expect == "type" {
      line = trim($0); expect = "values"
      if (match(line, / Default: /)) {
        def = substr(line, RSTART + RLENGTH); line = substr(line, 1, RSTART - 1)
        sub(/ Write only$/, "", def)
        sub(/^[0-9]+, /, "", def)
        sub(/^\(0x[0-9a-f]+\): /, "", def)
        gsub(/"/, "", def)
        def = trim(def)
      }
      if (match(line, /\. Range: /)) {
        range = substr(line, RSTART + RLENGTH); line = substr(line, 1, RSTART - 1)
        # Doubles are printed padded ("%15.7g").
        gsub(/  +/, " ", range); range = trim(range)
        sub(/ - /, " … ", range)
      }
      sub(/\.$/, "", line)
      if (line ~ /^Enum /) type = "enum"
      else if (line ~ /^Flags /) type = "flags"
      else if (line == "Unsigned Integer") type = "uint"
      else if (line == "Unsigned Integer64") type = "uint64"
      else if (line == "Integer") type = "int"
      else if (line == "Integer64") type = "int64"
      else if (line == "Boolean") type = "bool"
      else if (line == "String") type = "string"
      else if (line == "Double") type = "double"
      else if (line == "Float") type = "float"
      else { type = line; gsub(/"/, "", type) }
      next
    }
    on && prop != "" && expect == "values" && /^ +\([0-9a-fx]+\): / {
      line = trim($0); sub(/^\([^)]*\): /, "", line); split(line, parts, " ")
      values = (values == "" ? "" : values ", ") "`" parts[1] "`"
      next
    }
    END { flush() }
  ' "$1"
}

# One README section per element: metadata, pad templates, properties.
render_element() {
  file=$2
  awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    /^  Long-name / { longname = trim(substr($0, 28)) }
    /^  Klass / { klass = trim(substr($0, 28)) }
    /^  Description / && !seen_desc { description = trim(substr($0, 28)); seen_desc = 1 }
    END { printf "%s|%s|%s\n", longname, klass, description }
  ' "$file" >"$work/header"
  IFS='|' read -r longname klass description <"$work/header"
  printf '### `%s`: %s\n\n' "$1" "$longname"
  printf '%s. Classification `%s`. Full details: [`tests/snapshots/inspect/%s.txt`](tests/snapshots/inspect/%s.txt).\n\n' \
    "$description" "$klass" "$1" "$1"
  printf '| pad | name | availability | caps (fixed fields) |\n|---|---|---|---|\n'
  awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function out() { if (pad != "") printf "| %s | `%s` | %s | %s |\n", dir, pad, tolower(avail), caps }
    /^Pad Templates:/ { on = 1; next }
    on && /^[A-Z]/ { on = 0 }
    on && /^  (SRC|SINK) template: / {
      out(); dir = ($1 == "SRC") ? "src" : "sink"; pad = $3; gsub(/\047/, "", pad)
      avail = ""; caps = ""; n = 0; next
    }
    on && /^    Availability: / { avail = trim(substr($0, 19)); next }
    on && /^      [A-Za-z0-9-]+\/[A-Za-z0-9.+-]+$/ { caps = caps (n++ ? "; " : "") "`" trim($0) "`"; next }
    on && /^      ANY$/ { caps = "ANY"; next }
    on && /^ +[a-z0-9-]+: / && n > 0 {
      line = trim($0); i = index(line, ": "); v = substr(line, i + 2)
      if (v ~ /^[{\[]/) next
      sub(/^\([a-z]+\)/, "", v)
      caps = caps " " substr(line, 1, i - 1) "=" v
      next
    }
    END { out() }
  ' "$file"
  printf '\n| property | type | default | range / values | description |\n|---|---|---|---|---|\n'
  properties "$file"
  printf '\n'
}

section=$work/section.md
{
  echo '<!-- elements:begin -->'
  echo '<!-- Generated by tools/gen-element-docs.sh from tests/snapshots/inspect/; do not edit. -->'
  echo
  for element in $elements; do
    render_element "$element" "$snapshots/$element.txt"
  done
  echo '<!-- elements:end -->'
} >"$section"

pipelines=$work/pipelines.md
{
  echo '<!-- pipelines:begin -->'
  echo '<!-- Generated by tools/gen-element-docs.sh from pipelines/*.json; do not edit. -->'
  echo
  GEMSTREAM_DATA_DIR=$source_dir "$cli" pipelines --markdown
  echo '<!-- pipelines:end -->'
} >"$pipelines"

readme=$source_dir/README.md
for marker in elements pipelines; do
  if ! grep -q "^<!-- $marker:begin -->\$" "$readme" || ! grep -q "^<!-- $marker:end -->\$" "$readme"; then
    echo "gen-element-docs.sh: README.md lacks the <!-- $marker:begin --> / <!-- $marker:end --> markers" >&2
    exit 1
  fi
done
awk -v elements="$section" -v pipelines="$pipelines" '
  /^<!-- (elements|pipelines):begin -->$/ {
    file = ($0 ~ /elements/) ? elements : pipelines
    while ((getline line < file) > 0) print line
    skipping = 1
    next
  }
  /^<!-- (elements|pipelines):end -->$/ { skipping = 0; next }
  !skipping { print }
' "$readme" >"$work/README.md"

if [ "$check" = yes ]; then
  status=0
  if ! diff -ru "$source_dir/tests/snapshots/inspect" "$snapshots"; then
    status=1
  fi
  if ! diff -u "$readme" "$work/README.md"; then
    status=1
  fi
  if [ $status -ne 0 ]; then
    echo "gen-element-docs.sh: the element documentation is out of date; run tools/gen-element-docs.sh --build $build_dir and commit the result" >&2
  fi
  exit $status
fi

mkdir -p "$source_dir/tests/snapshots/inspect"
rm -f "$source_dir/tests/snapshots/inspect/"*.txt
cp "$snapshots/"*.txt "$source_dir/tests/snapshots/inspect/"
cp "$work/README.md" "$readme"
echo "updated tests/snapshots/inspect/ ($(echo $elements | wc -w) elements) and README.md"
