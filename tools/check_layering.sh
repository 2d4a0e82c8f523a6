#!/usr/bin/env bash
# Checks the include graph of include/protoseg/ against the layer list of
# ARCHITECTURE.md ("The house", "Data flows one way"), so that an include that
# runs back up the list, or Eigen leaking out of the backend, fails CI instead
# of waiting for a reviewer to spot it.
#
# Usage: tools/check_layering.sh [repo_root]   (default: the script's repo)
# Prints each violation as  file:line: <include> : <reason>  and exits 1 if
# any; otherwise prints a one-line summary and exits 0.
# Known violations live in tools/layering_allow.txt as
#   path/of/file.hpp -> included/path.hpp  # reason
# They are reported but do not fail; an entry that matches nothing fails as
# "stale allowlist entry", so the list can only shrink.
#
# Only bash, grep and coreutils: CI is a bare Debian machine (no Python).
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root" 2>/dev/null || { echo "check_layering: no such directory: $root" >&2; exit 2; }
[[ -d include/protoseg ]] || { echo "check_layering: $root has no include/protoseg" >&2; exit 2; }

# Layer ranks, bottom to top. A header may include its own rank or lower;
# same-rank ("sideways") includes are allowed.
declare -A rank=(
  [backend]=1 [tensor]=2 [autograd]=3 [ops]=4 [nn]=5 [ot]=5 [loss]=5 [proto]=6
  [models]=7 [optim]=8 [data]=8 [metrics]=8 [io]=8 [viz]=8 [distributed]=8
)
# Top-level files: config/error/fwd are rank 0 (anything may include them);
# the umbrellas protoseg.hpp/cuda.hpp include everything, so nothing in a
# layer may include them (rank 99), and they themselves are not checked.
declare -A top=([config.hpp]=0 [error.hpp]=0 [fwd.hpp]=0 [protoseg.hpp]=99 [cuda.hpp]=99)

# Layer name and rank of a path relative to include/protoseg/ ("nn/conv.hpp",
# "config.hpp"); sets L (name) and R (rank, empty when unknown).
layer_of() {
  if [[ $1 == */* ]]; then L=${1%%/*}; R=${rank[$L]:-}
  else L=$1; R=${top[$1]:-}; fi
}

# ---- allowlist: key "file -> include", value the reason comment -------------
allow_file=tools/layering_allow.txt
declare -A allow=() allow_line=() used=()
bad=0 checked=0 known=0
if [[ -f $allow_file ]]; then
  n=0
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    body=${line%%#*}; read -r body <<<"$body" || true   # drop comment, trim
    [[ -z $body ]] && continue
    [[ $body =~ ^([^[:space:]]+)[[:space:]]*-\>[[:space:]]*([^[:space:]]+)$ ]] || {
      echo "$allow_file:$n: malformed entry (want 'file -> include  # reason'): $line"; bad=1; continue; }
    key="${BASH_REMATCH[1]} -> ${BASH_REMATCH[2]}"
    allow[$key]=; [[ $line == *#* ]] && { allow[$key]=${line#*#}; allow[$key]=${allow[$key]# }; }
    allow_line[$key]=$n
  done <"$allow_file"
fi

# Reports one violation, or an allowed one when the allowlist names it.
report() { # file line include reason
  local key="$1 -> $3"
  if [[ -n ${allow_line[$key]:-} ]]; then
    used[$key]=1; known=$((known + 1))
    echo "$1:$2: $3 : allowed (known): $4  [${allow[$key]:-no reason given}]"
  else
    echo "$1:$2: $3 : $4"; bad=1
  fi
}

# All #include lines as "file:line:text". The pattern is anchored at the start
# of the line, so includes in // comments (and /// doc examples) never match.
includes() { # dir [--include=glob]...
  local d=$1; shift
  grep -rnE "$@" '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$d" | sort -t: -k1,1 -k2,2n || true
}
# The included path, without its quotes or angle brackets.
inc_re='[<"]([^>"]*)[>"]'
target_of() { [[ $1 =~ $inc_re ]] && inc=${BASH_REMATCH[1]} || inc=; }

is_eigen='^(unsupported/)?Eigen/'
is_gpu='^(thrust/|cub/|cuda|cublas|cudnn|nccl)'

# ---- rules 1-3: the library headers ------------------------------------------
while IFS=: read -r file num text; do
  checked=$((checked + 1))
  target_of "$text"
  rel=${file#include/protoseg/}
  layer_of "$rel"; from=$L from_rank=$R
  [[ $from_rank == 99 ]] && continue          # umbrella: may include anything

  # Rule 2, backend isolation: Eigen and backend/cpu stay inside backend/,
  # and the two device backends never see each other's toolchain. backend/
  # itself may include backend/cpu to wire the default backend (default.hpp),
  # as Thrust's adl headers do.
  cpu_inc=0; [[ $inc =~ $is_eigen || $inc == protoseg/backend/cpu/* ]] && cpu_inc=1
  if [[ $rel == backend/cuda/* ]]; then
    ((cpu_inc)) && report "$file" "$num" "$inc" "backend isolation: backend/cuda must not include Eigen or backend/cpu"
  elif [[ $rel == backend/cpu/* ]]; then
    [[ $inc =~ $is_gpu || $inc == protoseg/backend/cuda/* ]] &&
      report "$file" "$num" "$inc" "backend isolation: backend/cpu must not include Thrust/CUDA headers or backend/cuda"
  elif [[ $rel != backend/* ]] && ((cpu_inc)); then
    report "$file" "$num" "$inc" "backend isolation: Eigen and backend/cpu only inside include/protoseg/backend/ (use the primitive declarations)"
  fi

  # Rule 1, layering: only library includes ("protoseg/..." or <protoseg/...>).
  [[ $inc == protoseg/* ]] || continue
  layer_of "${inc#protoseg/}"; to=$L to_rank=$R
  if [[ -z $from_rank ]]; then
    report "$file" "$num" "$inc" "unknown layer: includer is in '$from', not in the layer list"
  elif [[ -z $to_rank ]]; then
    report "$file" "$num" "$inc" "unknown layer: '$to' is not in the layer list"
  elif ((to_rank == 99)); then
    report "$file" "$num" "$inc" "upward include: $from may not include the umbrella header $to"
  elif ((to_rank > from_rank)); then
    report "$file" "$num" "$inc" "upward include: $from (rank $from_rank) may not include $to (rank $to_rank)"
  fi
done < <(includes include/protoseg --include='*.hpp' --include='*.cuh' --include='*.h')

# ---- rule 5: tests/ and examples/ do not reach into each other ---------------
srcs=(--include='*.cpp' --include='*.cc' --include='*.cu' --include='*.hpp' --include='*.cuh' --include='*.h')
for pair in tests:examples examples:tests; do
  dir=${pair%%:*} other=${pair#*:}
  [[ -d $dir ]] || continue
  while IFS=: read -r file num text; do
    checked=$((checked + 1))
    target_of "$text"
    [[ $inc =~ ^(\.\./)+$other/ ]] &&
      report "$file" "$num" "$inc" "$dir/ must not include files of $other/ (move shared code into the library or a shared folder)"
  done < <(includes "$dir" "${srcs[@]}")
done

# ---- allowlist entries that matched nothing: the debt was paid, drop them ----
while IFS=$'\t' read -r n key; do
  [[ -n ${used[$key]:-} ]] && continue
  echo "$allow_file:$n: $key : stale allowlist entry (no such violation any more; delete the line)"
  bad=1
done < <(for k in "${!allow_line[@]}"; do printf '%s\t%s\n' "${allow_line[$k]}" "$k"; done | sort -n)

if ((bad)); then
  echo "check_layering: FAILED ($checked include lines checked, $known allowed by $allow_file)" >&2
  exit 1
fi
echo "check_layering: OK, $checked include lines checked, 0 violations ($known known, allowed by $allow_file)"
